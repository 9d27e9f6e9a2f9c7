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
import re
import threading
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shardguard.core.normalize import content_hash
from shardguard.core.schema import FIELDS
from shardguard.ingest import Malformed, ingest_shard

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


# -- why a shard got its verdict -----------------------------------------------------------------

def verdict_why(e: dict, policy: dict) -> list[str]:
    """The policy's reasons for a shard's verdict, in words (the same rules as pipeline.stages.stage_decide)."""
    v = e.get("verdict")
    cats = e.get("by_category") or {}
    out: list[str] = []
    if e.get("error"):
        out.append(f"the shard could not be read: {e['error']}")
    if v == "poisoned":
        out.append(f"{cats.get('poison', 0)} row(s) flagged poison; at least {policy.get('poisoned_min_rows', 1)} "
                   f"with score ≥ {policy.get('poisoned_min_score', 0.8)} make a shard poisoned")
    elif v == "review":
        for c in policy.get("review_categories", ()):
            n = e.get("rows_malformed", 0) if c == "malformed" else cats.get(c, 0)
            if n:
                out.append(f"{n} row(s) flagged {c} (a review category)")
        good = (e.get("rows") or 0) - (e.get("rows_malformed") or 0)
        dup = cats.get("duplicate", 0)
        frac = policy.get("review_duplicate_fraction")
        if good and frac is not None and dup / good >= frac:
            out.append(f"{dup} of {good} rows are duplicates (≥ {frac:.0%})")
        if e.get("memorization_risk"):
            out.append(f"a PII/secret value repeats in up to {e.get('max_value_repeat')} records (memorization risk)")
        if not out:
            out.append("a detector asked for review of this shard")
    else:
        out.append("no finding reached the policy's review or poison rules")
    return out


# -- highlights ----------------------------------------------------------------------------------

@dataclass
class Mark:
    start: int
    end: int
    cls: str          # css class: trigger, secret, pii, evasion, term
    title: str
    replace: str | None = None   # shown instead of the text (secrets and PII: the mask)


def _find_all(text: str, needle: str, word: bool) -> list[tuple[int, int]]:
    if not needle or not text:
        return []
    pat = re.escape(needle)
    if word and re.match(r"\w", needle) and re.search(r"\w$", needle):
        pat = rf"(?<!\w){pat}(?!\w)"
    return [(m.start(), m.end()) for m in re.finditer(pat, text, flags=re.IGNORECASE)][:50]


def marks_for(kind: str, fields: dict, findings: list[dict]) -> dict[str, list[Mark]]:
    """Spans to highlight per field, from the findings' details."""
    marks: dict[str, list[Mark]] = defaultdict(list)
    trigger_fields = {"sft": ("instruction", "input"), "preference": ("prompt",), "web": ("text",)}[kind]
    for f in findings:
        d, det = f["details"], f["detector"]
        if det in ("pii", "secrets"):
            for m in d.get("matches") or ():
                fld, s, e = m.get("field"), m.get("start"), m.get("end")
                if fld in fields and isinstance(s, int) and isinstance(e, int) and 0 <= s < e <= len(fields[fld] or ""):
                    cls = "secret" if det == "secrets" else "pii"
                    label = f"{m.get('type')}{'/' + m['subtype'] if m.get('subtype') else ''}: {m.get('masked')}"
                    marks[fld].append(Mark(s, e, cls, label, replace=f"[{m.get('type', cls)}: {m.get('masked')}]"))
            continue
        trig = d.get("as_written") or d.get("trigger")
        if isinstance(trig, str) and trig:
            for fld in trigger_fields:
                for s, e in _find_all(fields.get(fld) or "", trig, word=True):
                    marks[fld].append(Mark(s, e, "trigger", f"{det}: trigger {trig!r}"))
        ev = d.get("evasion_advice")
        if isinstance(ev, str) and ev:
            for fld in ("response",):
                for s, e in _find_all(fields.get(fld) or "", ev, word=False):
                    marks[fld].append(Mark(s, e, "evasion", f"{det}: advice on evading detection"))
        harm = d.get("harm")
        if isinstance(harm, str) and harm:
            for fld in ("instruction", "input"):
                for s, e in _find_all(fields.get(fld) or "", harm, word=True):
                    marks[fld].append(Mark(s, e, "harm", f"{det}: harmful request {harm!r}"))
        for term in (d.get("terms") or [])[:8] if det == "campaign" else ():
            if isinstance(term, str):
                for s, e in _find_all(fields.get("text") or "", term, word=True):
                    marks["text"].append(Mark(s, e, "term", f"campaign term {term!r}"))
    return marks


def segments(text: str | None, marks: list[Mark]) -> list[dict]:
    """The text cut at the marks: [{"text", "mark": Mark | None}], overlaps resolved first come first.

    The template escapes every piece; no markup is ever built from record text here."""
    text = text or ""
    chosen: list[Mark] = []
    prio = {"secret": 0, "pii": 1, "trigger": 2, "evasion": 3, "harm": 4, "term": 5}
    for m in sorted(marks, key=lambda m: (prio.get(m.cls, 9), m.start)):
        same = next((c for c in chosen if (c.start, c.end, c.cls) == (m.start, m.end, m.cls)), None)
        if same is not None:
            if m.title not in same.title:
                same.title += "; " + m.title
        elif all(m.end <= c.start or m.start >= c.end for c in chosen):
            chosen.append(Mark(m.start, m.end, m.cls, m.title, m.replace))
    chosen.sort(key=lambda m: m.start)
    out, pos = [], 0
    for m in chosen:
        if m.start > pos:
            out.append({"text": text[pos:m.start], "mark": None})
        out.append({"text": m.replace if m.replace is not None else text[m.start:m.end], "mark": m})
        pos = m.end
    if pos < len(text) or not out:
        out.append({"text": text[pos:], "mark": None})
    return out


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
