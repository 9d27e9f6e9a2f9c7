"""Atomic output: write to a temporary sibling, then rename over the target."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def _atomic_open(path: Path, mode: str, **kw):
    """A file object on a temporary sibling of `path`; on success it is synced and renamed over `path`,
    on any error removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **kw) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with _atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_jsonl(path: Path, rows) -> Path:
    """Records as JSON Lines (UTF-8, one object a line), written atomically; returns `path`."""
    with _atomic_open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    return Path(path)


def replace_dir(new: Path, target: Path) -> None:
    """Swap folder `new` into `target`: the old one is renamed aside, then removed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    trash = None
    if target.exists():
        trash = target.parent / f".trash-{os.getpid()}-{target.name}"
        if trash.exists():
            shutil.rmtree(trash)
        os.replace(target, trash)
    os.replace(new, target)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)
