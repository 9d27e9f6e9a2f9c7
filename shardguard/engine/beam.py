"""The Beam engine: the same detector methods as the local engine, as an Apache Beam pipeline.

    ReadFromParquetBatched(records)            elements are Arrow tables (record batches), never rows
      ├─ Map(observe per detector) ─ CombineGlobally(merge) ─ Map(finalize, in dependency order) ─┐
      └─ FlatMap(flag per detector, models as a singleton side input) ─ write findings parts      │
                                                     discoveries written out  <───────────────────┘

Runner: the in-process `FnApiRunner` by default (the DirectRunner first tries to download the
Prism binary). Pass Beam options to go elsewhere, e.g.
`--beam-option=--runner=FlinkRunner --beam-option=--flink_master=HOST:8081`,
`--beam-option=--runner=SparkRunner`, or `--runner=DataflowRunner --project=P --region=R
--temp_location=gs://B/tmp`; the records and outputs must then live on storage the workers see
(`--beam-option=--shardguard_work=gs://...` is not needed locally).
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from shardguard.core.schema import FINDING_SCHEMA, RECORD_SCHEMA
from shardguard.detectors import Detector
from shardguard.engine.driver import Driver
from shardguard.engine.local import iter_batches

DEFAULT_RUNNER = "FnApiRunner"


def pipeline_options(beam_options: list[str]):
    from apache_beam.options.pipeline_options import PipelineOptions

    return PipelineOptions(list(beam_options))


def make_runner(options):
    from apache_beam.options.pipeline_options import StandardOptions

    runner = options.view_as(StandardOptions).runner
    if runner in (None, DEFAULT_RUNNER):
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        return FnApiRunner()
    return None  # let Beam resolve the named runner from the options


def records_to_parquet(records_path: Path, out: Path, row_group_rows: int = 4096) -> None:
    """The Beam engine reads Parquet (what distributed runners read well)."""
    writer = None
    for b in iter_batches(records_path):
        if writer is None:
            writer = pq.ParquetWriter(str(out), b.schema)
        writer.write_batch(b, row_group_size=row_group_rows)
    if writer is None:
        pq.write_table(RECORD_SCHEMA.empty_table(), str(out))
    else:
        writer.close()


def run_beam(records_path: Path, detectors: list[Detector], beam_options: list[str]):
    import apache_beam as beam

    t0 = time.perf_counter()
    work = records_path.parent / f"beam-{uuid.uuid4().hex[:8]}"
    work.mkdir(parents=True, exist_ok=True)
    parquet_path = work / "records.parquet"
    records_to_parquet(records_path, parquet_path)
    findings_dir = work / "findings"
    findings_dir.mkdir()
    disc_path = work / "discoveries.json"  # written by the pipeline's finalize step, read back here
    drv = Driver(detectors)

    class _Combine(beam.CombineFn):
        def create_accumulator(self):
            return {}

        def add_input(self, acc, table):
            for batch in table.to_batches():
                acc = drv.observe(batch, acc)
            return acc

        def merge_accumulators(self, accs):
            out = {}
            for a in accs:
                out = drv.merge(out, a)
            return out

        def extract_output(self, acc):
            return acc

    def finalize(states: dict) -> dict:
        models = drv.finalize(states)
        disc = drv.discoveries(models)
        disc_path.write_text(json.dumps(disc, default=str), encoding="utf-8")
        return models

    def flag(table: pa.Table, models: dict):
        tables = []
        for batch in table.to_batches():
            tables += drv.flag(batch, models)
        if tables:
            path = findings_dir / f"part-{uuid.uuid4().hex}.parquet"
            pq.write_table(pa.concat_tables(tables), str(path))
            yield str(path)

    options = pipeline_options(beam_options)
    runner = make_runner(options)
    with beam.Pipeline(runner=runner, options=options) as p:
        tables = p | "read" >> beam.io.ReadFromParquetBatched(str(parquet_path))
        models = (tables | "observe+merge" >> beam.CombineGlobally(_Combine())
                  | "finalize" >> beam.Map(finalize))
        _ = tables | "flag" >> beam.FlatMap(flag, models=beam.pvalue.AsSingleton(models))
    parts = sorted(findings_dir.glob("part-*.parquet"))
    findings = pa.concat_tables([pq.read_table(str(x)) for x in parts]).cast(FINDING_SCHEMA) if parts \
        else FINDING_SCHEMA.empty_table()
    discoveries = json.loads(disc_path.read_text(encoding="utf-8"))
    timings = {"beam_pipeline": time.perf_counter() - t0}
    shutil.rmtree(work, ignore_errors=True)
    return findings, discoveries, timings


def describe(beam_options: list[str]) -> str:
    return json.dumps(pipeline_options(beam_options).get_all_options(drop_default=True))
