"""The scan as a Prefect flow: one task per stage (ingest, detect, decide, write, report).

Run it three ways, all with this same code:
- `shardguard scan` with no Prefect server configured calls `scan_flow.fn(...)`: the tasks run as
  plain functions (`stage()` below), so a one-off scan pays no Prefect start-up (≈ 23 s here);
- with `PREFECT_API_URL` set, the CLI calls `scan_flow(...)`: a real flow run, recorded in that
  server, with a Markdown artifact summarising the scan;
- under `shardguard serve`, the scheduled deployment runs it.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import pyarrow as pa
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows import run_flow
from shardguard import scan
from shardguard.config import ScanConfig


def in_prefect_run() -> bool:
    from prefect.context import FlowRunContext

    return FlowRunContext.get() is not None


def stage(t, *args, **kwargs):
    """Run a task through Prefect inside a flow run, or as the plain function outside one."""
    return t(*args, **kwargs) if in_prefect_run() else t.fn(*args, **kwargs)


@task(name="ingest", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=2)
def ingest_task(paths, work, kind, cfg):
    return scan.stage_ingest(paths, work, kind, cfg)


@task(name="detect", cache_policy=NO_CACHE)
def detect_task(records_path, cfg, engine, beam_options):
    return scan.stage_detect(records_path, cfg, engine, beam_options)


@task(name="decide", cache_policy=NO_CACHE)
def decide_task(findings, ingested, cfg):
    return scan.stage_decide(findings, ingested, cfg)


@task(name="write", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=2)
def write_task(out, staging, ingested, decided, findings, summary, cfg):
    redactor = None
    if cfg.redact:
        from detectors.pii import make_redactor  # provided by the PII detector

        redactor = make_redactor()
    files = scan.stage_write_records(staging, ingested, decided, redactor)
    for e in summary["shards"]:
        e["outputs"] = files.get(e["shard"], {})
    flags = scan.sort_findings(pa.concat_tables([findings, scan.malformed_findings(ingested.malformed)]))
    from report.html import scan_report
    from report.sections import detector_sections

    html = scan_report(summary, flags, detector_sections(summary.get("discoveries", {})))
    scan.publish(Path(out), staging, flags, summary, html)
    return summary


def _artifact(summary: dict) -> None:
    from prefect.artifacts import create_markdown_artifact

    lines = ["| shard | rows | flagged | held back | malformed | verdict |", "|---|---|---|---|---|---|"]
    for s in summary["shards"][:200]:
        lines.append(f"| {s['shard']} | {s['rows']} | {s['flagged']} | {s['held_back']} | {s['rows_malformed']} | **{s['verdict']}** |")
    md = (f"### shardguard scan\n{summary['rows_total']} rows: {summary['rows_kept']} kept, {summary['rows_held_back']} "
          f"held back, {summary['rows_malformed']} malformed. Verdicts: {summary['verdicts']}\n\n" + "\n".join(lines))
    create_markdown_artifact(markdown=md, key="shardguard-scan", description="shardguard scan summary")


@flow(name="shardguard-scan", log_prints=True, validate_parameters=False)
def scan_flow(paths: list[str], out: str, kind: str = "auto", engine: str = "local", config: dict | None = None,
              beam_options: list[str] | None = None) -> dict:
    t0 = time.time()
    cfg = config if isinstance(config, ScanConfig) else ScanConfig.from_dict(config or {})
    out_p = Path(out)
    out_p.mkdir(parents=True, exist_ok=True)
    scan.clear_stale(out_p)
    work = scan.work_dir(out_p)
    staging = out_p / f".staging-{os.getpid()}"
    try:
        ingested = stage(ingest_task, [str(p) for p in paths], work, kind, cfg)
        findings, discoveries, timings = stage(detect_task, ingested.records_path, cfg, engine, beam_options)
        decided = stage(decide_task, findings, ingested, cfg)
        summary = scan.scan_meta(paths, kind, engine, cfg) | decided["summary"]
        summary["discoveries"] = discoveries
        summary["timings"] = {"ingest": round(ingested.seconds, 3), **timings}
        summary["seconds"] = round(time.time() - t0, 3)
        summary = stage(write_task, str(out_p), staging, ingested, decided, findings, summary, cfg)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)
    if in_prefect_run():
        _artifact(summary)
    return summary


def run_scan(paths, out, kind="auto", engine="local", config: ScanConfig | dict | None = None,
             beam_options=None, use_prefect: bool | None = None) -> dict:
    """Entry point for the CLI and tests: through Prefect when a server is configured, else direct."""
    if isinstance(config, ScanConfig):
        config = asdict(config)
    args = dict(paths=[str(p) for p in paths], out=str(out), kind=kind, engine=engine, config=config,
                beam_options=beam_options)
    return run_flow(scan_flow, args, use_prefect)
