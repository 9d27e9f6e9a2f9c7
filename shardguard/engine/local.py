"""The local engine: runs detectors over the ingested records, in-process, batch by batch.

The records live in one Arrow IPC file (written by ingest, read a batch at a time here), so both detector
passes stream batches without holding the dataset in memory. The Beam engine
(`shardguard.engine.beam`) runs the very same `Driver` as a Beam pipeline.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from shardguard.core.records import IpcRecords, ManyRecords
from shardguard.detectors import Detector
from shardguard.engine.driver import Driver, concat_findings


def iter_batches(records_path: Path) -> Iterator[pa.RecordBatch]:
    with pa.OSFile(str(records_path)) as src:  # read, not mapped: mapped pages count as resident memory
        reader = pa.ipc.open_file(src)
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i)


def run_local(records_path: Path, detectors: list[Detector], base_state: dict[str, Any] | None = None,
              base_records: list[Path] | None = None, progress: Callable[[str, int], None] | None = None,
              ) -> tuple[pa.Table, dict[str, Any], dict[str, float]]:
    """Returns (findings, discoveries per detector, seconds per detector).

    `base_state`: detector states already observed elsewhere (the service's accepted corpus), merged
    with this file's before `finalize`; only this file's records are flagged. `base_records`: the
    records files of those states, so finalize can read their records back by seq.
    `progress(pass, rows)` is called after each batch of a pass ("observe", "flag") and once as
    ("finalize", 0) before the models are built."""
    readers = [IpcRecords(p) for p in base_records or []] + [IpcRecords(records_path)]
    drv = Driver(detectors, records=readers[0] if len(readers) == 1 else ManyRecords(readers))
    state: dict[str, Any] = dict(base_state or {})
    for batch in iter_batches(records_path):
        state = drv.observe(batch, state)
        if progress:
            progress("observe", batch.num_rows)
    if progress:
        progress("finalize", 0)
    models = drv.finalize(state)
    tables = []
    for batch in iter_batches(records_path):
        tables += drv.flag(batch, models)
        if progress:
            progress("flag", batch.num_rows)
    return concat_findings(tables), drv.discoveries(models), drv.timings
