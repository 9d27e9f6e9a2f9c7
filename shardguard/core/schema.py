"""The record and finding schemas, record kinds, finding categories and compression suffixes.

Everything here is defined once; every other layer imports it from here."""

from __future__ import annotations

import pyarrow as pa

KINDS = ("web", "sft", "preference")

# The canonical fields of each kind.
FIELDS = {
    "web": ("text", "url"),
    "sft": ("instruction", "input", "response"),
    "preference": ("prompt", "chosen", "rejected"),
}
# The text a kind-agnostic detector (duplicates, PII) looks at.
TEXT_FIELDS = {"web": ("text",), "sft": ("instruction", "input", "response"), "preference": ("prompt", "chosen", "rejected")}

# The public categories (../CONTRACT.md). Detectors may declare more (`Detector.categories`).
CATEGORIES = ("poison", "duplicate", "pii", "secret", "quality", "malformed")

VERDICTS = ("clean", "review", "poisoned")

# file suffix -> compression codec
COMPRESSIONS = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd", ".bz2": "bz2", ".xz": "xz"}


def strip_compression(name: str) -> str:
    """'a.jsonl.gz' -> 'a.jsonl' (one compression suffix, case as given)."""
    for suf in COMPRESSIONS:
        if name.endswith(suf):
            return name[: -len(suf)]
    return name


RECORD_SCHEMA = pa.schema([
    ("shard", pa.string()),
    ("row", pa.int64()),
    ("seq", pa.int64()),  # the record's position in the whole scan's input order (for order-free merges)
    ("record_id", pa.string()),
    ("kind", pa.string()),
    ("text", pa.string()),  # the record's whole text (fields joined): what kind-agnostic detectors read
    ("url", pa.string()),
    ("instruction", pa.string()),
    ("input", pa.string()),
    ("response", pa.string()),
    ("prompt", pa.string()),
    ("chosen", pa.string()),
    ("rejected", pa.string()),
    ("raw", pa.string()),  # the original record as JSON, for writing clean/ and quarantine/
])

FINDING_SCHEMA = pa.schema([
    ("shard", pa.string()),
    ("row", pa.int64()),
    ("record_id", pa.string()),
    ("detector", pa.string()),
    ("category", pa.string()),
    ("score", pa.float64()),
    ("reason", pa.string()),
    ("details", pa.string()),  # JSON object: machine-readable specifics (cluster id, trigger, span...)
])

# a file shardguard writes at the top of every --out folder: such a folder is never read as input
OUTPUT_MARKER = ".shardguard-out"
