"""`manifest.parquet`: what a scan read, record by record, so a later `shardguard verify` can tell
whether the data about to be trained on is still the data that was scanned (split-view poisoning,
Carlini et al. 2023: what was audited is not always what gets downloaded).

One row per record read, in shard then row order:

    shard         string   the shard's name, as in summary.json and flags.parquet
    row           int64    0-based row in the shard (null on the one row of a shard without good records)
    record_id     string   the record's content hash over its canonical fields (as in flags.parquet)
    content_hash  string   sha256 of the record's raw content (the whole record as read, every field)
    url           string   the record's URL (web records; null otherwise)
    kind          string   web / sft / preference, as detected at the scan
    shard_sha256  string   sha256 of the shard file itself (null where the shard is not one file)

The Parquet file's key-value metadata `shardguard.manifest` holds {"version": 1, "shards": [...]}, one
entry per shard (name, path, sha256, size, rows, malformed, kind, format, error), so a shard without a
single good record is still known. Malformed rows are not records: they are counted, not hashed.

The shard's file hash is taken after ingest, when the write stage runs: a file replaced while the scan
runs gets the new file's hash beside the old records, so `verify` (which skips a shard whose file hash
is unchanged) would miss it; `verify --reread` compares every shard record by record.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from shardguard.core.atomic import atomic_write_bytes

MANIFEST = "manifest.parquet"
META_KEY = b"shardguard.manifest"
SCHEMA = pa.schema([
    ("shard", pa.string()), ("row", pa.int64()), ("record_id", pa.string()), ("content_hash", pa.string()),
    ("url", pa.string()), ("kind", pa.string()), ("shard_sha256", pa.string()),
])


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str | None:
    """sha256 of a file's bytes; None when it is not a readable file."""
    p = Path(path)
    if not p.is_file():
        return None
    h = hashlib.sha256()
    try:
        with open(p, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
    except OSError:
        return None
    return h.hexdigest()


def raw_hash(raw: str | None) -> str:
    return hashlib.sha256((raw or "").encode("utf-8", "surrogatepass")).hexdigest()


def shard_entries(shards: list[dict]) -> list[dict]:
    """The manifest's per-shard metadata, with each file's sha256 and size."""
    out = []
    for info in shards:
        p = Path(info["path"])
        out.append({"shard": info["shard"], "path": info["path"], "sha256": file_sha256(p),
                    "size": p.stat().st_size if p.is_file() else None, "rows": info.get("rows", 0),
                    "malformed": info.get("malformed", 0), "kind": info.get("kind"),
                    "format": info.get("format"), "error": info.get("error")})
    return out


def manifest_rows(batches, entries: list[dict]) -> pa.Table:
    """Manifest rows from record batches (the records file's, or one shard's re-read)."""
    sha = {e["shard"]: e["sha256"] for e in entries}
    cols: dict[str, list] = {n: [] for n in SCHEMA.names}
    seen: set[str] = set()
    for b in batches:
        d = b.select(["shard", "row", "record_id", "url", "kind", "raw"]).to_pydict()
        for s, r, rid, url, k, raw in zip(d["shard"], d["row"], d["record_id"], d["url"], d["kind"], d["raw"]):
            seen.add(s)
            cols["shard"].append(s)
            cols["row"].append(r)
            cols["record_id"].append(rid)
            cols["content_hash"].append(raw_hash(raw))
            cols["url"].append(url or None)
            cols["kind"].append(k)
            cols["shard_sha256"].append(sha.get(s))
    for e in entries:  # shards without a good record still get their file hash in the table
        if e["shard"] not in seen:
            for n in SCHEMA.names:
                cols[n].append({"shard": e["shard"], "kind": e["kind"], "shard_sha256": e["sha256"]}.get(n))
    t = pa.table(cols, schema=SCHEMA)
    return t.sort_by([("shard", "ascending"), ("row", "ascending")])


def build_manifest(records_path: str | Path, shards: list[dict]) -> pa.Table:
    """The manifest of a scan: `records_path` is the scan's Arrow records file, `shards` its ShardInfo dicts."""
    entries = shard_entries(shards)
    with pa.memory_map(str(records_path), "r") as src:
        reader = ipc.open_file(src)
        t = manifest_rows((reader.get_batch(i) for i in range(reader.num_record_batches)), entries)
    meta = json.dumps({"version": 1, "shards": entries}, ensure_ascii=False, default=str)
    return t.replace_schema_metadata({META_KEY: meta.encode()})


def write_manifest(path: str | Path, records_path: str | Path, shards: list[dict]) -> Path:
    """Build the manifest and write it atomically to `path`."""
    buf = pa.BufferOutputStream()
    pq.write_table(build_manifest(records_path, shards), buf)
    atomic_write_bytes(Path(path), buf.getvalue().to_pybytes())
    return Path(path)


def read_manifest(path: str | Path) -> tuple[pa.Table, list[dict]]:
    """(rows, per-shard entries). Raises ValueError when `path` is not a shardguard manifest."""
    try:
        t = pq.read_table(str(path))
    except (OSError, pa.ArrowInvalid) as e:
        raise ValueError(f"cannot read {path}: {e}") from e
    missing = [n for n in ("shard", "row", "content_hash", "shard_sha256") if n not in t.column_names]
    if missing:
        raise ValueError(f"{path} is not a shardguard manifest (no column {', '.join(missing)})")
    meta = (t.schema.metadata or {}).get(META_KEY)
    if meta:
        entries = json.loads(meta)["shards"]
    else:  # a manifest written by other tools: the shards its rows name
        d = t.select(["shard", "shard_sha256"]).to_pydict()
        first: dict[str, str | None] = {}
        for s, h in zip(d["shard"], d["shard_sha256"]):
            first.setdefault(s, h)
        entries = [{"shard": s, "path": None, "sha256": h, "kind": None} for s, h in first.items()]
    return t, entries
