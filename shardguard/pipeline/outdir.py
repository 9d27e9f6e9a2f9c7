"""The `--out` folder: published whole in one step, never shared by two scans, never mixed with
the user's own files or with the inputs.

    out/
      .shardguard-out               marker: this folder is shardguard's (it deletes only in such a folder)
      .shardguard/lock              held (flock) while a scan writes here: a second scan is refused
      .shardguard/runs/<run>/       one complete result: flags.parquet, summary.json, report.html,
                                    manifest.parquet, clean/, quarantine/
      .shardguard/current -> runs/<run>     the published result; replaced by one atomic rename
      flags.parquet -> .shardguard/current/flags.parquet        (and the same for every output)

A scan writes its result into a new run folder and publishes it by pointing `current` at it (one
`rename`), so `--out` always shows one whole result: the previous one until the new one is complete,
even if the scan is killed at any point. The files the contract names sit at the top of `--out` as
relative links through `current`, so readers open `out/summary.json` as before (copying the folder
with its `.shardguard/` keeps them working). A rerun after a kill removes the dead run's folders.

Refused before any work (`OutputError`, exit 2): an `--out` that is, contains or lies inside an input;
an existing non-empty `--out` without the marker (the user's files, or an older version's outputs:
choose a new folder); an `--out` another scan is writing into (`OutputBusy`).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
import uuid
from pathlib import Path

from shardguard.core.schema import OUTPUT_MARKER as MARKER

INTERNAL = ".shardguard"
OUTPUTS = ("flags.parquet", "summary.json", "report.html", "manifest.parquet", "clean", "quarantine")


class OutputError(ValueError):
    """An --out the scan must not write into (a usage error)."""


class OutputBusy(OutputError):
    pass


def is_output_folder(path: Path) -> bool:
    """A folder shardguard wrote (its outputs are never read back as input)."""
    return (Path(path) / MARKER).is_file()


def check_out(out: Path, inputs: list[Path]) -> None:
    o = Path(out).resolve()
    for p in inputs:
        r = Path(p).resolve()
        if o == r:
            raise OutputError(f"--out {out} is an input; write the results to a folder of their own")
        if r in o.parents and r.is_dir():
            raise OutputError(f"--out {out} lies inside the input folder {p}; its outputs would be read as input "
                              "next time: write the results outside the inputs")
        if o in r.parents:
            raise OutputError(f"--out {out} contains the input {p}; write the results to a folder of their own")
    if o.exists():
        if not o.is_dir():
            raise OutputError(f"--out {out} exists and is not a folder")
        if not (o / MARKER).is_file():
            foreign = sorted(e.name for e in o.iterdir())
            if foreign:
                shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
                raise OutputError(f"--out {out} already holds files shardguard did not write ({shown}); "
                                  "use an empty or new folder (shardguard deletes only in folders it made)")


class OutDir:
    """`with OutDir(out) as od:` lock, then `od.work`, `od.new_run()`, `od.publish(run)`."""

    def __init__(self, out: Path):
        self.out = Path(out)
        self.root = self.out / INTERNAL
        self._lock = None

    def __enter__(self) -> OutDir:
        self.out.mkdir(parents=True, exist_ok=True)
        if not (self.out / MARKER).is_file():
            tmp = self.out / f".{MARKER}.{os.getpid()}"
            tmp.write_text(json.dumps({"tool": "shardguard", "note": "scan outputs; shardguard may replace "
                                       "everything it lists in .shardguard/"}) + "\n", encoding="utf-8")
            os.replace(tmp, self.out / MARKER)
        self.root.mkdir(exist_ok=True)
        self._lock = open(self.root / "lock", "a+")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            self._lock = None
            raise OutputBusy(f"another scan is writing into {self.out}; wait for it or choose another --out") from None
        self._lock.seek(0)
        self._lock.truncate()
        self._lock.write(f"{os.getpid()}\n")
        self._lock.flush()
        self.clear_stale()
        self.work = self.root / f"work-{os.getpid()}"
        self.work.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc) -> None:
        shutil.rmtree(getattr(self, "work", self.root / "-"), ignore_errors=True)
        for run in (self.root / "runs").glob("*") if (self.root / "runs").is_dir() else []:
            if run.name != self.current_name() and run.name.endswith(f"-{os.getpid()}"):
                shutil.rmtree(run, ignore_errors=True)  # this scan's unpublished result (it failed)
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def current_name(self) -> str | None:
        try:
            return Path(os.readlink(self.root / "current")).name
        except OSError:
            return None

    def clear_stale(self) -> None:
        """Folders of scans that died here (we hold the lock, so none is running)."""
        cur = self.current_name()
        for p in self.root.glob("work-*"):
            shutil.rmtree(p, ignore_errors=True)
        if (self.root / "runs").is_dir():
            for run in (self.root / "runs").iterdir():
                if run.name != cur:
                    shutil.rmtree(run, ignore_errors=True)
        for p in self.root.glob(".current-*"):
            p.unlink(missing_ok=True)

    def new_run(self) -> Path:
        run = self.root / "runs" / f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}-{os.getpid()}"
        run.mkdir(parents=True)
        return run

    def publish(self, run: Path) -> None:
        """Point `current` at `run` (one rename), then make sure the top-level links exist."""
        for f in run.rglob("*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        tmp = self.root / f".current-{os.getpid()}"
        tmp.unlink(missing_ok=True)
        os.symlink(f"runs/{run.name}", tmp)
        old = self.current_name()
        os.replace(tmp, self.root / "current")
        dfd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        for name in OUTPUTS:
            link = self.out / name
            target = f"{INTERNAL}/current/{name}"
            if not (run / name).exists():
                if link.is_symlink():
                    link.unlink()
                continue
            if link.is_symlink() and os.readlink(link) == target:
                continue
            if link.is_symlink() or link.is_file():
                link.unlink()
            elif link.is_dir():  # an older layout's folder in our own (marked) folder
                shutil.rmtree(link)
            tmpl = self.out / f".{name}.link-{os.getpid()}"
            tmpl.unlink(missing_ok=True)
            os.symlink(target, tmpl)
            os.replace(tmpl, link)
        if old and old != run.name:
            shutil.rmtree(self.root / "runs" / old, ignore_errors=True)
