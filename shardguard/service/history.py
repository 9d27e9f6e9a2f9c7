"""The audit history: scans, the shards they judged, and reviewers' decisions, in a real database.

SQLite by default (`<state>/history.db`); any SQLAlchemy URL is accepted, e.g. Postgres
`postgresql+psycopg://user:pw@host/db` (install a driver: `pip install "psycopg[binary]"`).

    scans      one row per incremental scan: when, what was new, where its outputs are
    shards     one row per (scan, new shard): content hash, rows, verdict, counts per category,
               review status (accepted | pending | rejected) and where its clean output is
    decisions  every accept/reject, automatic or by a person: who, when, why

A shard is identified by the SHA-256 of its bytes: the same content dropped again (under any name)
is not scanned twice. Everything is appended or updated in transactions, so a restart loses nothing.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    func,
    select,
)
from sqlalchemy.engine import Engine

STATUSES = ("accepted", "pending", "rejected")
AUTO = "shardguard (auto)"

metadata = MetaData()

scans = Table(
    "scans", metadata,
    Column("id", String(64), primary_key=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("status", String(16), nullable=False),          # running | done | failed
    Column("watch", Text),
    Column("state", Text),                                  # the service's state folder (accepted/, scans/)
    Column("out_dir", Text),
    Column("trigger", String(32)),                          # schedule | manual
    Column("flow_run_id", String(64)),
    Column("n_new", Integer, default=0),
    Column("rows_total", Integer, default=0),
    Column("context_rows", Integer, default=0),             # rows of the accepted corpus scanned alongside
    Column("verdicts", JSON),
    Column("notified", Text),                               # webhook outcome, if any
    Column("error", Text),
)

shards = Table(
    "shards", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("scan_id", String(64), ForeignKey("scans.id"), nullable=False, index=True),
    Column("name", Text, nullable=False),                   # path relative to the watched folder
    Column("content_hash", String(64), nullable=False, index=True),
    Column("kind", String(16)),
    Column("rows", Integer, default=0),
    Column("rows_malformed", Integer, default=0),
    Column("flagged", Integer, default=0),
    Column("held_back", Integer, default=0),
    Column("by_category", JSON),
    Column("findings", JSON),                               # detector:category -> count
    Column("verdict", String(16), nullable=False),          # clean | review | poisoned
    Column("status", String(16), nullable=False),           # accepted | pending | rejected
    Column("clean_path", Text),                             # clean output of the scan (relative to state)
    Column("quarantine_path", Text),
    Column("accepted_path", Text),                          # copy in the accepted corpus, while accepted
)

decisions = Table(
    "decisions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("shard_id", Integer, ForeignKey("shards.id"), nullable=False, index=True),
    Column("decision", String(16), nullable=False),         # accept | reject
    Column("by", Text, nullable=False),
    Column("reason", Text),
    Column("at", DateTime(timezone=True), nullable=False),
)


def now() -> datetime:
    return datetime.now(UTC)


def file_hash(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


def default_url(state: str | Path) -> str:
    return f"sqlite:///{Path(state).resolve() / 'history.db'}"


def resolve_url(db: str | None, state: str | Path | None) -> str:
    """--db wins, then $SHARDGUARD_DB, then <state>/history.db."""
    url = db or os.environ.get("SHARDGUARD_DB")
    if url:
        return url if "://" in url else f"sqlite:///{Path(url).resolve()}"
    if state is None:
        raise ValueError("give --state DIR (history in DIR/history.db) or --db URL")
    return default_url(state)


def _row(r) -> dict[str, Any]:
    d = dict(r._mapping)
    for k, v in d.items():
        if isinstance(v, datetime):
            d[k] = (v if v.tzinfo else v.replace(tzinfo=UTC)).isoformat(timespec="seconds")
    return d


class History:
    def __init__(self, url: str):
        self.url = url
        kw: dict[str, Any] = {}
        if url.startswith("sqlite"):
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            kw["connect_args"] = {"timeout": 30}
        self.engine: Engine = create_engine(url, future=True, **kw)
        metadata.create_all(self.engine)

    @classmethod
    def open(cls, db: str | None = None, state: str | Path | None = None) -> History:
        return cls(resolve_url(db, state))

    def close(self) -> None:
        self.engine.dispose()

    # -- writes ----------------------------------------------------------------------------------

    def start_scan(self, scan_id: str, watch: str, state: str, out_dir: str, trigger: str = "manual",
                   flow_run_id: str | None = None) -> None:
        with self.engine.begin() as c:
            c.execute(scans.insert().values(id=scan_id, started_at=now(), status="running", watch=watch,
                                            state=state, out_dir=out_dir, trigger=trigger,
                                            flow_run_id=flow_run_id))

    def finish_scan(self, scan_id: str, status: str = "done", **values: Any) -> None:
        with self.engine.begin() as c:
            c.execute(scans.update().where(scans.c.id == scan_id)
                      .values(finished_at=now(), status=status, **values))

    def set_scan(self, scan_id: str, **values: Any) -> None:
        with self.engine.begin() as c:
            c.execute(scans.update().where(scans.c.id == scan_id).values(**values))

    def add_shard(self, **values: Any) -> int:
        with self.engine.begin() as c:
            return c.execute(shards.insert().values(**values)).inserted_primary_key[0]

    def decide(self, shard_id: int, decision: str, by: str, reason: str | None,
               accepted_path: str | None = None) -> None:
        if decision not in ("accept", "reject"):
            raise ValueError(f"decision must be accept or reject, not {decision!r}")
        with self.engine.begin() as c:
            c.execute(decisions.insert().values(shard_id=shard_id, decision=decision, by=by, reason=reason,
                                                at=now()))
            c.execute(shards.update().where(shards.c.id == shard_id).values(
                status="accepted" if decision == "accept" else "rejected", accepted_path=accepted_path))

    # -- reads -----------------------------------------------------------------------------------

    def known_hashes(self) -> set[str]:
        """Content hashes of every shard ever recorded (whatever its verdict or status)."""
        with self.engine.connect() as c:
            return set(c.execute(select(shards.c.content_hash).distinct()).scalars())

    def scans(self, limit: int | None = None) -> list[dict]:
        q = select(scans).order_by(scans.c.started_at.desc(), scans.c.id.desc())
        if limit:
            q = q.limit(limit)
        with self.engine.connect() as c:
            return [_row(r) for r in c.execute(q)]

    def scan(self, scan_id: str) -> dict | None:
        """One scan by id or unique id prefix."""
        with self.engine.connect() as c:
            rows = c.execute(select(scans).where(scans.c.id.like(f"{scan_id}%"))).all()
        if len(rows) > 1:
            exact = [r for r in rows if r.id == scan_id]
            if not exact:
                raise LookupError(f"scan id prefix {scan_id!r} is ambiguous: {[r.id for r in rows]}")
            rows = exact
        return _row(rows[0]) if rows else None

    def shards(self, scan_id: str | None = None, status: str | None = None) -> list[dict]:
        q = select(shards).order_by(shards.c.id)
        if scan_id:
            q = q.where(shards.c.scan_id == scan_id)
        if status:
            q = q.where(shards.c.status == status)
        with self.engine.connect() as c:
            return [_row(r) for r in c.execute(q)]

    def shard(self, ref: str | int) -> dict:
        """A shard by id, content-hash prefix (>= 6 hex digits) or name (the latest with that name)."""
        ref = str(ref)
        with self.engine.connect() as c:
            if ref.isdigit():
                r = c.execute(select(shards).where(shards.c.id == int(ref))).first()
                if r:
                    return _row(r)
            rows = c.execute(select(shards).where(shards.c.name == ref).order_by(shards.c.id.desc())).all()
            if not rows and len(ref) >= 6:
                rows = c.execute(select(shards).where(shards.c.content_hash.like(f"{ref.lower()}%"))
                                 .order_by(shards.c.id.desc())).all()
                if len({r.content_hash for r in rows}) > 1:
                    raise LookupError(f"hash prefix {ref!r} matches several shards; give more digits")
        if not rows:
            raise LookupError(f"no shard {ref!r} in the history (give its name, id or content hash)")
        return _row(rows[0])

    def decisions(self, shard_id: int | None = None) -> list[dict]:
        q = select(decisions, shards.c.name).join(shards, shards.c.id == decisions.c.shard_id) \
            .order_by(decisions.c.at, decisions.c.id)
        if shard_id is not None:
            q = q.where(decisions.c.shard_id == shard_id)
        with self.engine.connect() as c:
            return [_row(r) for r in c.execute(q)]

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as c:
            got = dict(c.execute(select(shards.c.status, func.count()).group_by(shards.c.status)).all())
        return {s: int(got.get(s, 0)) for s in STATUSES}

    # -- diff ------------------------------------------------------------------------------------

    def diff(self, scan_a: str, scan_b: str) -> dict:
        """What changed from scan A to scan B, shard by shard (matched by name).

        Shards only in B are new (or renamed); in both, a changed content hash, verdict or findings
        count is reported; a shard's current review status is shown too."""
        a, b = self.scan(scan_a), self.scan(scan_b)
        if a is None or b is None:
            raise LookupError(f"no scan {scan_a if a is None else scan_b!r} in the history")
        sa = {s["name"]: s for s in self.shards(a["id"])}
        sb = {s["name"]: s for s in self.shards(b["id"])}
        changed = []
        for name in sorted(set(sa) & set(sb)):
            x, y = sa[name], sb[name]
            delta = {}
            for k in ("content_hash", "verdict", "rows", "flagged", "held_back"):
                if x[k] != y[k]:
                    delta[k] = [x[k], y[k]]
            cats = sorted(set(x["by_category"] or {}) | set(y["by_category"] or {}))
            dc = {c: [(x["by_category"] or {}).get(c, 0), (y["by_category"] or {}).get(c, 0)] for c in cats}
            dc = {c: v for c, v in dc.items() if v[0] != v[1]}
            if dc:
                delta["by_category"] = dc
            if delta:
                changed.append({"name": name, **delta})
        brief = ("name", "verdict", "status", "rows", "flagged", "content_hash")
        return {
            "a": {k: a[k] for k in ("id", "started_at", "n_new", "verdicts")},
            "b": {k: b[k] for k in ("id", "started_at", "n_new", "verdicts")},
            "only_in_a": [{k: sa[n][k] for k in brief} for n in sorted(set(sa) - set(sb))],
            "only_in_b": [{k: sb[n][k] for k in brief} for n in sorted(set(sb) - set(sa))],
            "changed": changed,
            "verdicts_delta": {v: (b["verdicts"] or {}).get(v, 0) - (a["verdicts"] or {}).get(v, 0)
                               for v in ("clean", "review", "poisoned")},
        }


# -- the review queue (no Prefect needed: `shardguard review` stays fast) --------------------------

@contextmanager
def state_lock(state: Path):
    """One scan or review change at a time per state folder (a scheduled run may overlap a reviewer)."""
    state.mkdir(parents=True, exist_ok=True)
    with open(state / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _accepted_name(sh: dict, clean_rel: str) -> str:
    flat = clean_rel.replace("/", "__")
    return f"{sh['content_hash'][:12]}-{flat}"


def _state_of(hist: History, sh: dict, state: str | Path | None) -> Path:
    if state is not None:
        return Path(state).resolve()
    s = hist.scan(sh["scan_id"])
    return Path(s["state"])


def record_accept(hist: History, state: Path, sh: dict, by: str, reason: str | None) -> str | None:
    dst = None
    if sh["clean_path"] and (sh["rows"] - sh["rows_malformed"] - sh["held_back"]) > 0:
        src = state / sh["clean_path"]
        if not src.is_file():
            raise FileNotFoundError(f"clean output of {sh['name']} is missing: {src}")
        acc = state / "accepted"
        acc.mkdir(parents=True, exist_ok=True)
        name = _accepted_name(sh, sh["clean_path"].split("/clean/", 1)[-1])
        tmp = acc / f".{name}.tmp"
        shutil.copyfile(src, tmp)
        os.replace(tmp, acc / name)
        dst = f"accepted/{name}"
    hist.decide(sh["id"], "accept", by, reason, accepted_path=dst)
    return dst


def _record_reject(hist: History, state: Path, sh: dict, by: str, reason: str | None) -> None:
    if sh["accepted_path"]:
        (state / sh["accepted_path"]).unlink(missing_ok=True)
    hist.decide(sh["id"], "reject", by, reason, accepted_path=None)


def _decide_shard(record, ref: str, by: str, reason: str | None, state: str | Path | None, db: str | None) -> dict:
    """Look the shard up, apply `record` under the state folder's lock, return the shard as it now is."""
    hist = History(resolve_url(db, state))
    try:
        sh = hist.shard(ref)
        st = _state_of(hist, sh, state)
        with state_lock(st):
            record(hist, st, sh, by, reason)
        return hist.shard(sh["id"])
    finally:
        hist.close()


def accept_shard(ref: str, by: str, reason: str | None = None, state: str | Path | None = None,
                 db: str | None = None) -> dict:
    """Accept a shard: its clean output joins the accepted corpus (and so every later scan's context)."""
    return _decide_shard(record_accept, ref, by, reason, state, db)


def reject_shard(ref: str, by: str, reason: str | None = None, state: str | Path | None = None,
                 db: str | None = None) -> dict:
    """Reject a shard: it stays quarantined (and leaves the accepted corpus if it was in it)."""
    return _decide_shard(_record_reject, ref, by, reason, state, db)


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False, default=str)
