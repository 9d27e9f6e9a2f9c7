"""The one interface every detector implements.

A detector never changes records. It sees Arrow record batches (the canonical schema of
`ingest.RECORD_SCHEMA`, already filtered to the kinds it declares) in two passes:

1. `observe(batch) -> partial`   map: a small, picklable summary of the batch (counts, signatures)
   `merge(a, b) -> partial`      combine: associative, so batches and shards can merge in any order
   `finalize(state, context)`    once: turn the merged state into a model (clusters, triggers...)
2. `flag(batch, model) -> rows`  map again: findings for this batch's records, given the model

Engines decide how batches move (in-process, Apache Beam); flows decide when (Prefect);
detectors know neither. Findings are data (`FINDING_SCHEMA`); a later step (`shardguard.decide`)
turns them into verdicts and the clean/quarantine split.

A per-record detector (PII, say) needs only `flag`; a dataset-wide one (MinHash) uses all four.
`context` holds the finalized models of detectors that ran before (see `requires`), so e.g. a
campaign detector can read the MinHash clusters.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc

CATEGORIES = ("poison", "duplicate", "pii", "secret", "quality", "malformed")

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


def concat_columns(a: dict | None, b: dict | None) -> dict | None:
    """`merge` for the common partial state: a dict of per-record columns (lists or numpy arrays),
    merged by concatenation. Order-free as long as `finalize` orders by the `seq` column."""
    if a is None:
        return b
    if b is None:
        return a
    import numpy as np

    return {k: np.concatenate([a[k], b[k]]) if isinstance(a[k], np.ndarray) else a[k] + b[k] for k in a}


class Detector:
    """Base class. Subclass it in one file under `detectors/`; it is found by name automatically."""

    name: ClassVar[str] = ""
    kinds: ClassVar[tuple[str, ...]] = ("web", "sft", "preference")
    category: ClassVar[str] = "quality"
    requires: ClassVar[tuple[str, ...]] = ()  # detectors whose models this one reads in finalize
    defaults: ClassVar[dict[str, Any]] = {}
    enabled_by_default: ClassVar[bool] = True

    def __init__(self, **config: Any):
        unknown = set(config) - set(self.defaults)
        if unknown:
            raise ValueError(f"detector '{self.name}': unknown setting(s) {sorted(unknown)}; known: {sorted(self.defaults)}")
        self.config = {**self.defaults, **config}

    # -- pass 1 ---------------------------------------------------------------------------------
    def observe(self, batch: pa.RecordBatch) -> Any:
        return None

    def merge(self, a: Any, b: Any) -> Any:
        return None

    def finalize(self, state: Any, context: dict[str, Any]) -> Any:
        return state

    # -- pass 2 ---------------------------------------------------------------------------------
    def flag(self, batch: pa.RecordBatch, model: Any) -> list[dict]:
        """Findings for records of this batch: dicts with row index `i` (position in the batch),
        `score`, `reason`, and optional `category` and `details`."""
        return []

    def discoveries(self, model: Any) -> dict:
        """What this detector found about the dataset as a whole, for summary.json."""
        return {}

    # -- helpers ---------------------------------------------------------------------------------
    def select(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        if set(self.kinds) >= {"web", "sft", "preference"}:
            return batch
        mask = pc.is_in(batch.column("kind"), value_set=pa.array(list(self.kinds)))
        return batch.filter(mask)

    def to_table(self, batch: pa.RecordBatch, found: list[dict]) -> pa.Table:
        if not found:
            return FINDING_SCHEMA.empty_table()
        idx = pa.array([f["i"] for f in found], pa.int64())
        return pa.table({
            "shard": pc.take(batch.column("shard"), idx),
            "row": pc.take(batch.column("row"), idx),
            "record_id": pc.take(batch.column("record_id"), idx),
            "detector": pa.array([self.name] * len(found), pa.string()),
            "category": pa.array([f.get("category", self.category) for f in found], pa.string()),
            "score": pa.array([float(min(1.0, max(0.0, f["score"]))) for f in found], pa.float64()),
            "reason": pa.array([f["reason"] for f in found], pa.string()),
            "details": pa.array([json.dumps(f.get("details", {}), ensure_ascii=False, sort_keys=True, default=str)
                                 for f in found], pa.string()),
        }, schema=FINDING_SCHEMA)
