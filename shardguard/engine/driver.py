"""The one loop that drives detectors. The local engine, the Beam engine and the detector contract
test all go through it, so a detector behaves the same wherever it runs.

    d = Driver(detectors)                 # setup() once per process
    part = d.observe(batch)               # {detector: partial state} for one batch
    state = d.merge(state, part)          # associative, any order
    models = d.finalize(state)            # in dependency order; each sees the models before it
    tables = d.flag(batch, models)        # findings (FINDING_SCHEMA tables) for one batch
    disc = d.discoveries(models)          # {detector: what it found about the dataset}
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from shardguard.core.records import RECORDS_KEY
from shardguard.core.schema import FINDING_SCHEMA
from shardguard.detectors import Detector


class Driver:
    def __init__(self, detectors: list[Detector], records: Any = None):
        """`records`: a reader of the scan's records by seq (`shardguard.core.records`), given to
        `finalize` as `context[RECORDS_KEY]`; without one, detectors that need texts in finalize
        keep them in their state."""
        self.detectors = list(detectors)
        self.records = records
        for d in self.detectors:
            d.records_in_context = records is not None
        self.timings: dict[str, float] = {d.name: 0.0 for d in self.detectors}
        self._ready = False

    def setup(self) -> None:
        if not self._ready:
            for d in self.detectors:
                t0 = time.perf_counter()
                d.setup()
                self.timings[d.name] += time.perf_counter() - t0
            self._ready = True

    # -- pass 1 -------------------------------------------------------------------------------------
    def observe(self, batch: pa.RecordBatch, state: dict[str, Any] | None = None) -> dict[str, Any]:
        """Partial states of one batch, merged into `state` (a new dict) when given."""
        self.setup()
        out = dict(state or {})
        for d in self.detectors:
            t0 = time.perf_counter()
            sel = d.select(batch)
            if sel.num_rows:
                part = d.observe(sel)
                out[d.name] = part if d.name not in out else d.merge(out[d.name], part)
            self.timings[d.name] += time.perf_counter() - t0
        return out

    def merge(self, a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any]:
        out = dict(a or {})
        for d in self.detectors:
            if b and d.name in b:
                t0 = time.perf_counter()
                out[d.name] = b[d.name] if d.name not in out else d.merge(out[d.name], b[d.name])
                self.timings[d.name] += time.perf_counter() - t0
        return out

    def finalize(self, state: dict[str, Any] | None) -> dict[str, Any]:
        self.setup()
        models: dict[str, Any] = {} if self.records is None else {RECORDS_KEY: self.records}
        for d in self.detectors:
            t0 = time.perf_counter()
            models[d.name] = d.finalize((state or {}).get(d.name), models)
            self.timings[d.name] += time.perf_counter() - t0
        models.pop(RECORDS_KEY, None)
        return models

    # -- pass 2 -------------------------------------------------------------------------------------
    def flag_raw(self, batch: pa.RecordBatch, models: dict[str, Any]
                 ) -> Iterator[tuple[Detector, pa.RecordBatch, list[dict]]]:
        """(detector, its selection of the batch, the dicts its `flag` returned) per detector."""
        self.setup()
        for d in self.detectors:
            t0 = time.perf_counter()
            sel = d.select(batch)
            found = d.flag(sel, models[d.name]) if sel.num_rows else []
            self.timings[d.name] += time.perf_counter() - t0
            yield d, sel, found

    def flag(self, batch: pa.RecordBatch, models: dict[str, Any]) -> list[pa.Table]:
        tables = []
        for d, sel, found in self.flag_raw(batch, models):
            if found:
                t0 = time.perf_counter()
                tables.append(d.to_table(sel, found))
                self.timings[d.name] += time.perf_counter() - t0
        return tables

    def discoveries(self, models: dict[str, Any]) -> dict[str, Any]:
        return {d.name: d.discoveries(models[d.name]) for d in self.detectors}


def concat_findings(tables: list[pa.Table]) -> pa.Table:
    tables = [t for t in tables if t.num_rows]
    return pa.concat_tables(tables) if tables else FINDING_SCHEMA.empty_table()
