"""The accepted corpus as the service keeps it between runs: its records (Arrow) and its merged
detector states, so a scheduled run observes only the new shards (O(new), not O(accepted + new)).

    <state>/corpus/meta.json          which accepted files are in, the config fingerprint, the version
    <state>/corpus/state-<v>.json|npz the merged detector states of those files (`core.codec`, no pickle)
    <state>/corpus/records-<n>.arrow  each accepted file's records, with the seq numbers they were observed under

Each run first brings the store up to date with `<state>/accepted/`: files accepted since the last
run (automatically or by a reviewer) are ingested and observed alone and merged in; a file that left
the folder (a rejection after an acceptance) or a changed detector configuration rebuilds the store
from the folder once. The accepted records take seq numbers below zero (`SEQ_BASE + k`, in
acceptance order), so they come before every new record, as they do in a full rescan where the
accepted corpus is read first; detectors order by seq, so the verdicts equal a full rescan's.
Versions are written next to each other and `meta.json` is replaced last: a killed update leaves the
previous complete store.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pyarrow as pa

from shardguard import detectors
from shardguard.core import codec
from shardguard.core.records import ManyRecords
from shardguard.core.schema import RECORD_SCHEMA
from shardguard.engine.driver import Driver
from shardguard.ingest import Malformed, ShardError, expand_paths, ingest_shard
from shardguard.pipeline.config import ScanConfig
from shardguard.pipeline.stages import CONTEXT_PREFIX

SEQ_BASE = -(2**62)
FORMAT = "shardguard-corpus-1"


def fingerprint(cfg: ScanConfig, kind: str) -> str:
    """What the stored states depend on: the detectors, their settings, the ingest limits, the kind."""
    names = [d.name for d in detectors.build(cfg.detectors, cfg.only)]
    doc = {"detectors": names, "settings": cfg.detectors, "only": cfg.only, "limits": asdict(cfg.limits),
           "kind": kind, "format": FORMAT}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _file_id(p: Path) -> str:
    st = p.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


class AcceptedCorpus:
    def __init__(self, state: Path, cfg: ScanConfig, kind: str = "auto"):
        self.root = Path(state) / "corpus"
        self.accepted = Path(state) / "accepted"
        self.cfg, self.kind = cfg, kind
        self.fp = fingerprint(cfg, kind)
        self.meta = self._read_meta()

    # -- reading ----------------------------------------------------------------------------------
    def _read_meta(self) -> dict:
        try:
            meta = json.loads((self.root / "meta.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return meta if meta.get("format") == FORMAT else {}

    def state(self) -> dict[str, Any] | None:
        v = self.meta.get("version")
        return codec.load(self.root / f"state-{v}") if v is not None else None

    def record_files(self) -> list[Path]:
        return [self.root / f["records"] for f in self.meta.get("files", [])]

    @property
    def rows(self) -> int:
        return sum(f["rows"] for f in self.meta.get("files", []))

    # -- bringing it up to date -------------------------------------------------------------------
    def _accepted_files(self) -> list[tuple[Path, str]]:
        if not self.accepted.is_dir():
            return []
        shards, _ = expand_paths([self.accepted])
        return shards

    def sync(self) -> dict[str, int]:
        """Make the store cover exactly `accepted/`. Returns what it did: files added, rebuilt (0/1)."""
        files = self._accepted_files()
        have = {f["name"]: f for f in self.meta.get("files", [])}
        now = {name: _file_id(p) for p, name in files}
        stale = (self.meta.get("fingerprint") != self.fp
                 or any(name not in now or now[name] != f["id"] for name, f in have.items())
                 or any(not (self.root / f["records"]).is_file() for f in have.values()))
        if stale and (have or self.meta):
            self._reset()
        todo = [(p, n) for p, n in files if n not in {f["name"] for f in self.meta.get("files", [])}]
        if todo:
            self._add(todo)
        return {"added": len(todo), "rebuilt": int(bool(stale and have))}

    def _reset(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        self.meta = {}

    def _add(self, files: list[tuple[Path, str]]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        dets = detectors.build(self.cfg.detectors, self.cfg.only)
        # observe only: the scan finalizes these states later with a reader over the records files
        # written here, so detectors keep seq numbers rather than texts, as they do in the scan
        drv = Driver(dets, records=ManyRecords([]))
        meta = dict(self.meta) or {"format": FORMAT, "fingerprint": self.fp, "version": None, "files": [],
                                   "next": 0, "n": 0}
        state = self.state()
        entries = list(meta["files"])
        k, n = meta["next"], meta["n"]
        for path, name in files:
            rec = f"records-{n:06d}.arrow"
            n += 1
            rows = 0
            tmp = self.root / f".{rec}.tmp"
            with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, RECORD_SCHEMA) as w:
                try:
                    for item in ingest_shard(path, CONTEXT_PREFIX + name, self.kind, self.cfg.batch_size,
                                             self.cfg.limits, seq_start=SEQ_BASE + k):
                        if isinstance(item, Malformed):
                            continue
                        w.write_batch(item)
                        state = drv.merge(state, drv.observe(item))
                        rows += item.num_rows
                except (ShardError, OSError):
                    pass  # an accepted file we cannot read adds nothing (it was read when it was scanned)
            os.replace(tmp, self.root / rec)
            k += rows
            entries.append({"name": name, "id": _file_id(path), "records": rec, "rows": rows})
        version = (meta["version"] or 0) + 1
        codec.dump(state or {}, self.root / f"state-{version}")
        old = meta["version"]
        meta.update({"version": version, "files": entries, "next": k, "n": n, "fingerprint": self.fp})
        tmp = self.root / ".meta.json.tmp"
        tmp.write_text(json.dumps(meta, indent=1), encoding="utf-8")
        os.replace(tmp, self.root / "meta.json")
        if old is not None:
            for suf in (".json", ".npz"):
                (self.root / f"state-{old}{suf}").unlink(missing_ok=True)
        self.meta = meta
