"""The scan as a Prefect flow: `shardguard.pipeline.scan` with each stage (ingest, detect, decide,
write) as a task run.

Run it three ways, all with the same pipeline code:
- `shardguard scan` with no Prefect server configured calls `pipeline.scan` directly: a one-off scan
  pays no Prefect start-up (≈ 23 s here);
- with `PREFECT_API_URL` set, the CLI calls `scan_flow(...)`: a real flow run, recorded in that
  server, with a Markdown artifact summarising the scan;
- under `shardguard serve`, the scheduled deployment runs the incremental flow (`flows.service`).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from shardguard.flows import in_prefect_run, run_flow
from shardguard.pipeline.config import ScanConfig
from shardguard.pipeline.scan import scan

_RETRY = {"ingest": 1, "write": 1}


def prefect_stage(name: str, fn, *args: Any) -> Any:
    """A `pipeline.scan` stage runner: each stage a Prefect task run inside a flow run, else a plain call."""
    if not in_prefect_run():
        return fn(*args)
    t = task(fn, name=name, cache_policy=NO_CACHE, retries=_RETRY.get(name, 0), retry_delay_seconds=2)
    return t(*args)


def artifact(summary: dict) -> None:
    from prefect.artifacts import create_markdown_artifact

    lines = ["| shard | rows | flagged | held back | malformed | verdict |", "|---|---|---|---|---|---|"]
    for s in summary["shards"][:200]:
        lines.append(f"| {s['shard']} | {s['rows']} | {s['flagged']} | {s['held_back']} | {s['rows_malformed']} | **{s['verdict']}** |")
    md = (f"### shardguard scan\n{summary['rows_total']} rows: {summary['rows_kept']} kept, {summary['rows_held_back']} "
          f"held back, {summary['rows_malformed']} malformed. Verdicts: {summary['verdicts']}\n\n" + "\n".join(lines))
    create_markdown_artifact(markdown=md, key="shardguard-scan", description="shardguard scan summary")


@flow(name="shardguard-scan", log_prints=True, validate_parameters=False)
def scan_flow(paths: list[str], out: str, kind: str = "auto", engine: str = "local",
              config: ScanConfig | dict | None = None, beam_options: list[str] | None = None) -> dict:
    summary = scan(paths, out, kind, engine, config, beam_options, run_stage=prefect_stage).summary
    if in_prefect_run():
        artifact(summary)
    return summary


def run_scan(paths, out, kind="auto", engine="local", config: ScanConfig | dict | None = None,
             beam_options=None, use_prefect: bool | None = None) -> dict:
    """The CLI's entry: a recorded flow run when a Prefect server is configured, else a direct scan."""
    args = dict(paths=[str(p) for p in paths], out=str(out), kind=kind, engine=engine, config=config,
                beam_options=beam_options)
    return run_flow(scan_flow, args, use_prefect)
