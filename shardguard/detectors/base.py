"""The one interface every detector implements.

A detector never changes records. It sees Arrow record batches (the canonical schema of
`shardguard.core.schema.RECORD_SCHEMA`, already filtered to the kinds it declares) in two passes:

0. `setup()`                     once per process before the first batch: load models, compile patterns
1. `observe(batch) -> partial`   map: a small, picklable summary of the batch (counts, signatures)
   `merge(a, b) -> partial`      combine: associative, so batches and shards can merge in any order
   `finalize(state, context)`    once: turn the merged state into a model (clusters, triggers...)
2. `flag(batch, model) -> rows`  map again: findings for this batch's records, given the model
3. `discoveries(model) -> dict`  what it found about the dataset as a whole: data only (summary.json);
                                 `shardguard.report` renders it, detectors never write markup
   `shard_notes(details) -> dict` optional shard-level facts and rules (e.g. memorization risk)

Engines decide how batches move (`shardguard.engine`: one driver for the local and Beam engines);
flows decide when (Prefect); detectors know neither. Findings are data (`FINDING_SCHEMA`); the
pipeline's decide step turns them into verdicts and the clean/quarantine split.

A per-record detector (PII, say) needs only `flag`; a dataset-wide one (MinHash) uses all four.
`context` holds the finalized models of the detectors named in `requires`: building the detector
set enables them (or fails with a clear message when the configuration disables them). It may also
hold a reader of the records by `seq` (`shardguard.core.records`, key `RECORDS_KEY`; then
`records_in_context` is True): a detector keeps seq numbers and vectors, and reads the few texts it
needs in finalize.

Settings are typed: a detector declares a dataclass `Settings` (or a `defaults` dict, from which a
dataclass with the defaults' types is derived); unknown keys and wrong types are rejected with the
list of known ones.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, ClassVar, get_type_hints

import pyarrow as pa
import pyarrow.compute as pc

from shardguard.core.schema import CATEGORIES, FINDING_SCHEMA, KINDS
from shardguard.core.settings import type_name, type_ok

__all__ = ["CATEGORIES", "FINDING_SCHEMA", "KINDS", "Detector", "SettingsError", "concat_columns"]


class SettingsError(ValueError):
    """A detector setting that is unknown or of the wrong type."""


def concat_columns(a: dict | None, b: dict | None) -> dict | None:
    """`merge` for the common partial state: a dict of per-record columns (lists or numpy arrays),
    merged by concatenation. Order-free as long as `finalize` orders by the `seq` column."""
    if a is None:
        return b
    if b is None:
        return a
    import numpy as np

    return {k: np.concatenate([a[k], b[k]]) if isinstance(a[k], np.ndarray) else a[k] + b[k] for k in a}


def _derived_settings(cls: type) -> type:
    """A frozen dataclass with one field per `defaults` key, typed by its default value."""
    fields = []
    for k, v in cls.defaults.items():
        typ: Any = Any if v is None else (float if isinstance(v, float) else type(v))
        default = dataclasses.field(default_factory=lambda v=v: type(v)(v)) if isinstance(v, list | dict | set) \
            else dataclasses.field(default=v)
        fields.append((k, typ, default))
    return dataclasses.make_dataclass(f"{cls.__name__}Settings", fields, frozen=True)


class Detector:
    """Base class. Subclass it in one file: under `shardguard/detectors/<family>/` for ours, or in
    your own package registered under the `shardguard.detectors` entry point group."""

    name: ClassVar[str] = ""
    kinds: ClassVar[tuple[str, ...]] = KINDS
    category: ClassVar[str] = "quality"
    # categories this detector may emit beyond the public six (declared here, nowhere else)
    categories: ClassVar[tuple[str, ...]] = ()
    requires: ClassVar[tuple[str, ...]] = ()  # detectors whose models this one reads in finalize
    defaults: ClassVar[dict[str, Any]] = {}
    Settings: ClassVar[type | None] = None  # a dataclass; derived from `defaults` when not given
    enabled_by_default: ClassVar[bool] = True
    # set by the engine's Driver: True when finalize's context holds a records reader
    # (`context[shardguard.core.records.RECORDS_KEY]`), so observe need not keep texts in its state
    records_in_context: bool = False

    def __init__(self, **config: Any):
        self.settings = self.parse_settings(config)
        self.config = dataclasses.asdict(self.settings)

    @classmethod
    def settings_type(cls) -> type:
        own = cls.__dict__.get("_settings_type")
        if own is None:
            own = cls.Settings if cls.Settings is not None and "Settings" in _own_attrs(cls) \
                else _derived_settings(cls)
            cls._settings_type = own
        return own

    @classmethod
    def parse_settings(cls, config: dict[str, Any]):
        st = cls.settings_type()
        known = {f.name: f for f in dataclasses.fields(st)}
        unknown = sorted(set(config) - set(known))
        if unknown:
            raise SettingsError(f"detector '{cls.name}': unknown setting(s) {unknown}; known: {sorted(known)}")
        hints = get_type_hints(st)
        for k, v in config.items():
            if not type_ok(v, hints.get(k, Any)):
                raise SettingsError(f"detector '{cls.name}': setting '{k}' must be {type_name(hints.get(k))}, "
                                    f"got {type(v).__name__} {v!r}; known: {sorted(known)}")
        return st(**config)

    def setup(self) -> None:
        """Load what the detector needs once per process (models, patterns). Engines call it before
        the first batch; it must be idempotent (a Beam worker may call it again)."""

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

    # -- shard-level rules -------------------------------------------------------------------------
    def shard_notes(self, details: list[dict], policy: Any) -> dict[str, Any]:
        """Shard-level facts from this detector's findings in one shard (their `details`), added to the
        shard's summary entry. Numbers merge across detectors by max, flags by or. Return
        {"review": True} among them to raise a `clean` shard to `review`."""
        return {}


def _own_attrs(cls: type) -> set[str]:
    out: set[str] = set()
    for c in cls.__mro__:
        if c is Detector:
            break
        out |= set(vars(c))
    return out

