"""Progress of the long evaluation jobs (bench, compare, demo) on stderr, with tqdm: what runs, how far
it is (runs, training steps and epochs), its rate and an ETA.

The CLI makes `Bars.for_terminal(quiet)`: live bars only when stderr is a terminal and `-q` was not
given; tests, logs and library callers get `NO_BARS`, which prints nothing. Messages printed while a
bar is live go through `Bars.write`, so they do not tear the bar.

    bars = Bars.for_terminal(quiet)
    with bars.bar("train clean", total=600, unit="step") as b:
        b.update(1); b.note("epoch 2 loss 1.31")
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import IO

from shardguard.pipeline.progress import _Bar


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def note(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


class Bars:
    def __init__(self, on: bool = True, stream: IO[str] | None = None, delay: float = 0.0):
        self.on, self.stream, self.delay = on, stream, delay

    @classmethod
    def for_terminal(cls, quiet: bool = False) -> Bars:
        """Live bars on stderr when it is a terminal and not `quiet`; otherwise none."""
        return cls(on=not quiet and sys.stderr.isatty())

    def open(self, desc: str, total: int | None = None, unit: str = "it") -> _Bar | _NoBar:
        if not self.on:
            return _NoBar()
        from tqdm import tqdm

        return _Bar(tqdm(total=total, desc=desc, unit=f" {unit}", file=self.stream or sys.stderr, leave=True,
                         delay=self.delay, mininterval=0.5, smoothing=0.1, dynamic_ncols=True))

    @contextmanager
    def bar(self, desc: str, total: int | None = None, unit: str = "it"):
        b = self.open(desc, total, unit)
        try:
            yield b
        finally:
            b.close()

    def write(self, text: str) -> None:
        """A message line on stderr that does not tear a live bar."""
        if self.on:
            from tqdm import tqdm

            tqdm.write(text, file=self.stream or sys.stderr)
        else:
            print(text, file=self.stream or sys.stderr, flush=True)


NO_BARS = Bars(on=False)
