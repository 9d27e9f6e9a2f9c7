"""Progress of a scan on stderr: one line per stage (ingest, detect's passes, write) with rows, rows/s
and, where the total is known, an ETA.

The CLI makes one `Progress` when stderr is a terminal and `-q` was not given; everything else (tests,
CI logs, library callers) passes none and prints nothing. A stage's line appears only once the stage
has run for `delay` seconds, so a small scan prints nothing at all.

    progress = Progress()                       # or Progress(stream=..., delay=0) to always show
    with progress.stage("ingest", total=None) as bar:
        bar.update(2048)                         # rows done
        bar.note("shard 2/5")
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from contextlib import contextmanager
from typing import IO


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def note(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


NO_BAR = _NoBar()


class _Bar:
    def __init__(self, bar):
        self._bar = bar

    def update(self, n: int = 1) -> None:
        if n:
            self._bar.update(n)

    def note(self, text: str) -> None:
        self._bar.set_postfix_str(text, refresh=False)

    def close(self) -> None:
        self._bar.close()


class Progress:
    def __init__(self, stream: IO[str] | None = None, delay: float = 2.0):
        self.stream = stream if stream is not None else sys.stderr
        self.delay = delay

    def open(self, name: str, total: int | None = None, unit: str = "rows") -> _Bar:
        from tqdm import tqdm

        size = shutil.get_terminal_size((100, 24))  # a terminal that reports no size (0x0) gets 100x24
        return _Bar(tqdm(total=total, desc=f"{name:<16}", unit=f" {unit}", unit_scale=True, file=self.stream,
                         delay=self.delay, ncols=max(size.columns, 60), nrows=max(size.lines, 5), leave=True,
                         mininterval=0.5, smoothing=0.1))

    @contextmanager
    def stage(self, name: str, total: int | None = None, unit: str = "rows"):
        bar = self.open(name, total, unit)
        try:
            yield bar
        finally:
            bar.close()

    def passes(self, total: int | None, prefix: str = "detect") -> tuple[Callable[[str, int], None], Callable[[], None]]:
        """A callback `(pass_name, rows)` for an engine's batch loop, one line per pass (a pass ends when
        the next one starts), and a function that closes the last one."""
        current: dict[str, _Bar] = {}

        def on_rows(name: str, rows: int) -> None:
            if name not in current:  # a pass that reports no rows first (finalize) shows its elapsed time only
                close()
                current[name] = self.open(f"{prefix}: {name}", total if rows else None)
            current[name].update(rows)

        def close() -> None:
            for bar in current.values():
                bar.close()
            current.clear()

        return on_rows, close


@contextmanager
def stage_bar(progress: Progress | None, name: str, total: int | None = None):
    """`progress.stage(...)`, or (no progress wanted) a bar that does nothing."""
    if progress is None:
        yield NO_BAR
    else:
        with progress.stage(name, total) as bar:
            yield bar
