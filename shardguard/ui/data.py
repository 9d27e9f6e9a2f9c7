"""What the review app reads: a scan's `--out` folder (summary.json, flags.parquet, clean/, quarantine/).

Records are read back from the scan's own outputs: a shard's kept rows are in `clean/<name>` and its
held-back rows in `quarantine/<name>`, each in input order, so a row number is found again from the
policy in summary.json (which rows were held back) and the malformed rows (which are in neither).
Each record read back is checked against the finding's `record_id` (a hash of its content); a
mismatch (a `--redact` scan rewrote the text) is reported on the page and no span is highlighted.
Nothing here writes.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shardguard.core.normalize import content_hash
from shardguard.core.schema import FIELDS
from shardguard.ingest import Malformed, ingest_shard
from shardguard.report.evidence import Mark, marks_for, segments, verdict_why  # noqa: F401 (re-exported)

CATEGORY_ORDER = ("poison", "secret", "pii", "duplicate", "quality", "malformed")
FLAG_COLUMNS = ["shard", "row", "record_id", "detector", "category", "score", "reason", "details"]


def _inside(root: Path, rel: str | None) -> Path | None:
    """root/rel when it stays inside root (summary.json is data: never follow it outside the folder)."""
    if not rel:
        return None
    p = (root / rel).resolve()
    return p if p.is_relative_to(root.resolve()) and p.is_file() else None


@dataclass
class ScanOut:
    """One scan's output folder, loaded lazily and cached (the folder is immutable once published)."""

    root: Path
    key: str                                   # how URLs name this scan: "out" or the service's scan id
    label: str = ""
    _summary: dict | None = None
    _flags: pa.Table | None = None
    _records: OrderedDict = field(default_factory=OrderedDict)
    _lock: threading.RLock = field(default_factory=threading.RLock)   # pages are served from a thread pool

    @property
    def summary(self) -> dict:
        with self._lock:
            return self._load_summary()

    def _load_summary(self) -> dict:
        if self._summary is None:
            p = self.root / "summary.json"
            self._summary = json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {"shards": []}
        return self._summary

    @property
    def flags(self) -> pa.Table:
        with self._lock:
            return self._load_flags()

    def _load_flags(self) -> pa.Table:
        if self._flags is None:
            p = self.root / "flags.parquet"
            if p.is_file():
                self._flags = pq.read_table(p, columns=FLAG_COLUMNS)
            else:
                self._flags = pa.table({c: pa.array([], pa.string() if c not in ("row", "score") else
                                                    (pa.int64() if c == "row" else pa.float64()))
                                        for c in FLAG_COLUMNS})
        return self._flags

    def shard_entry(self, name: str) -> dict | None:
        for e in self.summary.get("shards", []):
            if e.get("shard") == name:
                return e
        return None

    def shard_findings(self, name: str) -> list[dict]:
        t = self.flags
        rows = t.filter(pc.equal(t.column("shard"), name)).to_pylist()
        for r in rows:
            r["details"] = _details(r["details"])
        return rows

    def record_findings(self, name: str, row: int) -> list[dict]:
        t = self.flags
        m = pc.and_(pc.equal(t.column("shard"), name), pc.equal(t.column("row"), row))
        rows = t.filter(m).to_pylist()
        for r in rows:
            r["details"] = _details(r["details"])
        rows.sort(key=lambda r: (_cat_rank(r["category"]), -r["score"], r["detector"]))
        return rows

    def findings_where(self, detector: str, key: str, value: Any, limit: int = 12) -> tuple[list[dict], int]:
        """Findings of `detector` whose details[key] == value (a campaign's or a group's members)."""
        t = self.flags
        sub = t.filter(pc.equal(t.column("detector"), detector)).to_pylist()
        out = []
        for r in sub:
            d = _details(r["details"])
            if d.get(key) == value:
                r["details"] = d
                out.append(r)
        out.sort(key=lambda r: (r["shard"], r["row"]))
        return out[:limit], len(out)

    def top_reason(self, name: str) -> dict | None:
        rows = self.shard_findings(name)
        if not rows:
            return None
        rows.sort(key=lambda r: (_cat_rank(r["category"]), -r["score"], r["row"]))
        return rows[0]

    # -- records ---------------------------------------------------------------------------------

    def records(self, name: str, rows: set[int] | None = None) -> dict[int, dict]:
        """{row: record} for the requested rows of shard `name` (all rows when None), from the outputs.

        A record: kind, its canonical fields, `raw` (the stored JSON), `record_id`, `side` (clean /
        quarantine / malformed) and, for malformed rows, `reason`."""
        e = self.shard_entry(name)
        if e is None:
            return {}
        want = None if rows is None else set(rows)
        if want is not None:
            with self._lock:
                hit = {r: self._records[(name, r)] for r in want if (name, r) in self._records}
            if len(hit) == len(want):
                return hit
        out = self._read_records(e, want)
        if want is not None:
            with self._lock:
                for r, rec in out.items():
                    self._records[(name, r)] = rec
                    self._records.move_to_end((name, r))
                while len(self._records) > 5000:
                    self._records.popitem(last=False)
        return out

    def _read_records(self, e: dict, want: set[int] | None) -> dict[int, dict]:
        name, kind = e["shard"], e.get("kind")
        outs = e.get("outputs") or {}
        policy = self.summary.get("policy") or {}
        hold_cats = set(policy.get("hold_back") or ())
        min_score = policy.get("min_score") or {}
        held: set[int] = set()
        malformed: set[int] = set()
        for f in self.shard_findings(name):
            if f["category"] == "malformed":
                malformed.add(f["row"])
            elif f["category"] in hold_cats and f["score"] >= float(min_score.get(f["category"], 0.0)):
                held.add(f["row"])
        n_rows = int(e.get("rows") or 0)
        good = [r for r in range(n_rows) if r not in malformed]
        order = {"clean": [r for r in good if r not in held], "quarantine": [r for r in good if r in held]}
        out: dict[int, dict] = {}
        for side in ("clean", "quarantine"):
            rows_here = order[side]
            if want is not None and not (want & set(rows_here)):
                continue
            path = _inside(self.root, outs.get(side))
            if path is None or not kind:
                continue
            i = 0
            for item in ingest_shard(path, name, kind):
                if isinstance(item, Malformed):
                    i += 1
                    continue
                for d in item.to_pylist():
                    if i < len(rows_here):
                        r = rows_here[i]
                        if want is None or r in want:
                            rec = {f: d.get(f) for f in FIELDS[kind]}
                            out[r] = {"kind": kind, "fields": rec, "raw": d["raw"], "record_id": d["record_id"],
                                      "side": side, "row": r}
                    i += 1
        mpath = _inside(self.root, outs.get("malformed"))
        if mpath is not None and (want is None or want & malformed):
            for line in mpath.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    m = json.loads(line)
                except ValueError:
                    continue
                r = m.get("row")
                if isinstance(r, int) and (want is None or r in want):
                    out[r] = {"kind": kind, "fields": {}, "raw": m.get("raw") or "", "record_id": None,
                              "side": "malformed", "row": r, "reason": m.get("reason")}
        return out


def _details(s: str | None) -> dict:
    try:
        d = json.loads(s or "{}")
    except ValueError:
        return {}
    return d if isinstance(d, dict) else {}


def _cat_rank(c: str) -> int:
    return CATEGORY_ORDER.index(c) if c in CATEGORY_ORDER else len(CATEGORY_ORDER)


def record_id_of(kind: str, fields: dict) -> str:
    return content_hash({k: fields.get(k) for k in FIELDS[kind]})


def related_refs(f: dict) -> list[tuple[str, Any]]:
    """How to find the records a finding points at: ("row", (shard, row)) or ("members", (detector, key, value))."""
    d, det = f["details"], f["detector"]
    refs: list[tuple[str, Any]] = []
    if isinstance(d.get("kept_shard"), str) and isinstance(d.get("kept_row"), int):
        refs.append(("row", (d["kept_shard"], d["kept_row"], "the kept copy")))
    if isinstance(d.get("other_shard"), str) and isinstance(d.get("other_row"), int):
        refs.append(("row", (d["other_shard"], d["other_row"], "the conflicting record")))
    if det == "campaign" and "cluster_id" in d:
        refs.append(("members", (det, "cluster_id", d["cluster_id"], f"campaign cluster {d['cluster_id']}")))
    elif det == "answer_conflict" and "cluster_id" in d and "size" in d:
        refs.append(("members", (det, "cluster_id", d["cluster_id"], f"repeated-answer cluster {d['cluster_id']}")))
    elif det == "response_cluster" and "group" in d:
        refs.append(("members", (det, "group", d["group"], f"response group {d['group']}")))
    elif det == "trigger" and "trigger_id" in d:
        refs.append(("members", (det, "trigger_id", d["trigger_id"], f"other rows with trigger {d.get('trigger')!r}")))
    elif det in ("label_flip", "pref_flip") and isinstance(d.get("trigger"), str):
        refs.append(("members", (det, "trigger", d["trigger"], f"other rows with trigger {d['trigger']!r}")))
    elif det == "semantic_dup" and "group" in d:
        refs.append(("members", (det, "group", d["group"], f"paraphrase group {d['group']}")))
    return refs
