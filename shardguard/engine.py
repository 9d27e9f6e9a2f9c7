"""The local engine: runs detectors over the ingested records, in-process, batch by batch.

The records live in one Arrow IPC file (written by ingest, memory-mapped here), so both detector
passes stream batches without holding the dataset in memory. The Beam engine
(`shardguard.beam_engine`) runs the very same detector methods as a Beam pipeline.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from detectors import FINDING_SCHEMA, Detector


def iter_batches(records_path: Path) -> Iterator[pa.RecordBatch]:
    with pa.memory_map(str(records_path)) as src:
        reader = pa.ipc.open_file(src)
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i)


def run_local(records_path: Path, detectors: list[Detector]) -> tuple[pa.Table, dict[str, Any], dict[str, float]]:
    """Returns (findings, discoveries per detector, seconds per detector)."""
    timings: dict[str, float] = {d.name: 0.0 for d in detectors}
    states: dict[str, Any] = {}
    for batch in iter_batches(records_path):
        for d in detectors:
            t0 = time.perf_counter()
            sel = d.select(batch)
            if sel.num_rows:
                part = d.observe(sel)
                states[d.name] = part if d.name not in states else d.merge(states[d.name], part)
            timings[d.name] += time.perf_counter() - t0
    models: dict[str, Any] = {}
    for d in detectors:
        t0 = time.perf_counter()
        models[d.name] = d.finalize(states.get(d.name), models)
        timings[d.name] += time.perf_counter() - t0
    tables = []
    for batch in iter_batches(records_path):
        for d in detectors:
            t0 = time.perf_counter()
            sel = d.select(batch)
            if sel.num_rows:
                t = d.to_table(sel, d.flag(sel, models[d.name]))
                if t.num_rows:
                    tables.append(t)
            timings[d.name] += time.perf_counter() - t0
    findings = pa.concat_tables(tables) if tables else FINDING_SCHEMA.empty_table()
    discoveries = {d.name: d.discoveries(models[d.name]) for d in detectors}
    return findings, discoveries, timings
