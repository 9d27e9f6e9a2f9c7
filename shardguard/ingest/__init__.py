"""Ingest: shards of any supported format -> Arrow record batches in one canonical schema.

`expand_paths` turns the user's paths into (path, shard name) pairs; `ingest_shard` streams one
shard as `pa.RecordBatch`es (good records, with provenance) and `Malformed` items (rows that could
not be read, naming the row and what is wrong). Memory is bounded by the batch size.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from shardguard.core.normalize import content_hash
from shardguard.core.schema import OUTPUT_MARKER, RECORD_SCHEMA
from shardguard.ingest.readers import (
    SIDE_FILES,
    Limits,
    Raw,
    ShardError,
    is_shard_file,
    read_shard,
    shard_label,
    split_ext,
)
from shardguard.ingest.schema import FIELDS, KINDS, TEXT_FIELDS, SchemaError, detect_kind, to_canonical

__all__ = [
    "RECORD_SCHEMA", "Limits", "Malformed", "ShardError", "ShardInfo", "expand_paths", "ingest_shard",
    "KINDS", "FIELDS", "read_records",
]



@dataclass
class Malformed:
    shard: str
    row: int
    reason: str
    raw: str | None = None


@dataclass
class ShardInfo:
    shard: str
    path: str
    format: str = ""
    kind: str | None = None
    rows: int = 0
    malformed: int = 0
    error: str | None = None
    notes: list[str] = field(default_factory=list)


def _inside(target: str, root: str) -> bool:
    return target == root or target.startswith(root.rstrip(os.sep) + os.sep)


def expand_paths(paths: list[str | Path], follow_links: bool = False) -> tuple[list[tuple[Path, str]], list[dict]]:
    """Files as given; folders walked recursively (sorted), shard names relative to the folder.

    Returns (shards, skipped) where skipped lists files in folders that are not shards, with why.
    Special files (devices, FIFOs) with a shard's name are returned, to be refused as unreadable;
    links that point out of the folder are skipped with a reason unless `follow_links`. Names that
    are not UTF-8 are kept readable as backslash escapes (`shard_label`)."""
    out: list[tuple[Path, str]] = []
    skipped: list[dict] = []
    for p in map(Path, paths):
        if not p.is_dir():
            out.append((p, shard_label(str(p))))
            continue
        root = os.path.realpath(p)
        seen = {root}
        for d, dirs, files in os.walk(p, followlinks=follow_links):
            if OUTPUT_MARKER in files:  # shardguard's own output folders (marked) are never read back as input
                skipped.append({"file": shard_label(str(Path(d).relative_to(p))) or ".",
                                "reason": "a shardguard output folder"})
                dirs[:] = []
                continue
            dirs[:] = sorted(x for x in dirs if not x.startswith("."))
            if follow_links:  # never walk one real folder twice (link loops)
                keep = []
                for x in dirs:
                    real = os.path.realpath(os.path.join(d, x))
                    if real not in seen:
                        seen.add(real)
                        keep.append(x)
                dirs[:] = keep
            else:
                for x in [x for x in dirs if os.path.islink(os.path.join(d, x))]:
                    rel = shard_label(str(Path(d, x).relative_to(p)))
                    skipped.append({"file": rel, "reason": f"link to a folder ({os.path.realpath(os.path.join(d, x))}), "
                                    "not followed; pass --follow-links to read it"})
            for name in sorted(files):
                if name.startswith("."):
                    continue
                f = Path(d, name)
                rel = shard_label(str(f.relative_to(p)))
                if f.is_symlink() and not follow_links:
                    target = os.path.realpath(f)
                    if not _inside(target, root):
                        skipped.append({"file": rel, "reason": f"link to {shard_label(target)}, outside the input "
                                        "folder: not followed; pass --follow-links to read it"})
                        continue
                if is_shard_file(f):
                    out.append((f, rel))
                elif not f.is_file():
                    skipped.append({"file": rel, "reason": "not a regular file (device, FIFO, socket or a broken link)"})
                elif name.lower() not in SIDE_FILES and "license" not in name.lower():
                    skipped.append({"file": rel, "reason": "not a supported shard format "
                                    f"({shard_label(''.join(f.suffixes)) or 'no extension'})"})
    return out, skipped


# json.dumps(obj, ensure_ascii=False, default=str) with one encoder for the whole scan (the `raw` column)
_RAW_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)


def _obj_preview(obj) -> str | None:
    try:
        return json.dumps(obj, ensure_ascii=False, default=str)[:4096]
    except (TypeError, ValueError, RecursionError):
        return None


def _record_text(kind: str, rec: dict) -> str:
    return "\n".join(rec[f] for f in TEXT_FIELDS[kind] if rec.get(f))


def ingest_shard(
    path: Path, shard: str, kind: str = "auto", batch_size: int = 2048, limits: Limits | None = None,
    info: ShardInfo | None = None, seq_start: int = 0,
) -> Iterator[pa.RecordBatch | Malformed]:
    """Stream one shard. Raises ShardError only when nothing of the shard can be read.

    `seq` numbers the good records from `seq_start` (the scan passes the count so far)."""
    info = info or ShardInfo(shard=shard, path=str(path))
    ext, comp = split_ext(path)
    info.format = ext.lstrip(".") + (f"+{comp}" if comp else "")
    if path.is_dir():
        raise ShardError("is a folder inside a file list")
    if not path.exists():
        raise ShardError("file does not exist")
    raws = read_shard(path, limits)
    resolved = None if kind == "auto" else kind
    pending: list[Raw] = []
    if resolved is None:  # look ahead until one record tells the kind
        for r in raws:
            pending.append(r)
            if r.obj is not None and (k := detect_kind(r.obj)):
                resolved = k
                break
            if len(pending) >= 1000:
                break
    info.kind = resolved

    # per row, only what varies: the kind's own fields (the others are null), text, id, raw, row
    encode_raw = _RAW_ENCODER.encode
    fields = FIELDS[resolved] if resolved else ()
    own = [(f, []) for f in fields]
    c_row: list[int] = []
    c_id: list[str] = []
    c_text: list[str] = []
    c_raw: list[str] = []
    web = resolved == "web"
    first_seq = seq_start

    def flush():
        n = len(c_row)
        arrays = {"shard": pa.array([shard] * n, pa.string()), "row": pa.array(c_row, pa.int64()),
                  "seq": pa.array(range(first_seq, first_seq + n), pa.int64()),
                  "record_id": pa.array(c_id, pa.string()), "kind": pa.array([resolved] * n, pa.string()),
                  "text": pa.array(c_text, pa.string()), "raw": pa.array(c_raw, pa.string())}
        arrays.update((f, pa.array(col, pa.string())) for f, col in own)
        batch = pa.RecordBatch.from_arrays([arrays.get(name) if name in arrays else pa.nulls(n, pa.string())
                                            for name in RECORD_SCHEMA.names], schema=RECORD_SCHEMA)
        for col in (c_row, c_id, c_text, c_raw, *(col for _, col in own)):
            col.clear()
        return batch

    def chain():
        yield from pending
        yield from raws

    for r in chain():
        info.rows += 1
        if r.repair is not None and len(info.notes) < 20:  # a kept row that was repaired: say so
            info.notes.append(f"row {r.row}: {r.repair}")
        if r.obj is None:
            info.malformed += 1
            yield Malformed(shard, r.row, r.error or "unreadable", r.text)
            continue
        if resolved is None:
            info.malformed += 1
            yield Malformed(shard, r.row, f"cannot tell the record kind from fields {sorted(r.obj)[:8]}; pass --kind",
                            _obj_preview(r.obj))
            continue
        try:
            rec = to_canonical(r.obj, resolved)
        except SchemaError as e:
            info.malformed += 1
            yield Malformed(shard, r.row, f"{resolved} record: {e}", _obj_preview(r.obj))
            continue
        try:
            raw = encode_raw(r.obj)
        except (TypeError, ValueError, RecursionError) as e:  # nesting near the limit, odd values
            info.malformed += 1
            yield Malformed(shard, r.row, f"record cannot be serialised: {e}")
            continue
        if not c_row:  # the batch's first record: good records are numbered consecutively
            first_seq = seq_start + info.rows - info.malformed - 1
        c_row.append(r.row)
        c_id.append(content_hash({k: rec[k] for k in fields}))
        c_text.append(rec["text"] if web else _record_text(resolved, rec))
        for f, col in own:
            col.append(rec[f])
        c_raw.append(raw)
        if len(c_row) >= batch_size:
            yield flush()
    if c_row:
        yield flush()


def read_records(path: str | Path, kind: str = "auto") -> tuple[str, list[dict], list[Malformed]]:
    """Whole shard as canonical dicts (for small tools: poisoning, training). Returns (kind, records, bad)."""
    path = Path(path)
    info = ShardInfo(shard=path.name, path=str(path))
    recs: list[dict] = []
    bad: list[Malformed] = []
    for item in ingest_shard(path, path.name, kind, info=info):
        if isinstance(item, Malformed):
            bad.append(item)
            continue
        for d in item.to_pylist():
            k = d["kind"]
            out = {f: d[f] for f in FIELDS[k]}
            recs.append(out)
    return info.kind or kind, recs, bad
