"""The scheduled service as Prefect flows: `incremental_scan_flow` (what `shardguard serve` deploys on a
schedule) over `shardguard.service.incremental`, with each scan stage as a task run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from shardguard.flows import in_prefect_run
from shardguard.flows.scan import prefect_stage
from shardguard.service.incremental import deployment_parameters, incremental_scan, parse_every


@flow(name="shardguard-incremental", log_prints=True, validate_parameters=False)
def incremental_scan_flow(watch: str, state: str, config: dict | None = None, kind: str = "auto",
                          webhook: str | None = None, db: str | None = None, settle_seconds: float = 2.0,
                          engine: str = "local", beam_options: list[str] | None = None) -> dict:
    trigger, run_id = "manual", None
    if in_prefect_run():
        from prefect.context import FlowRunContext

        fr = FlowRunContext.get().flow_run
        run_id = str(fr.id)
        trigger = "schedule" if getattr(fr, "auto_scheduled", False) else (
            "deployment" if fr.deployment_id else "manual")
    res = incremental_scan(watch, state, config, kind, webhook, db, settle_seconds, engine, trigger, run_id,
                           beam_options, run_stage=prefect_stage)
    if res["scan_id"]:
        print(f"scan {res['scan_id']}: {res['new']} new shard(s), verdicts {res['verdicts']}"
              + (f", webhook {res['notified']}" if res["notified"] else ""))
        if in_prefect_run():
            from prefect.artifacts import create_markdown_artifact

            rows = "\n".join(f"| {s['name']} | {s['rows']} | {s['content_hash'][:12]} | **{s['verdict']}** |"
                             for s in res["shards"][:200])
            create_markdown_artifact(
                key="shardguard-incremental", description="shardguard incremental scan",
                markdown=f"### shardguard scan {res['scan_id']}\n| shard | rows | hash | verdict |\n"
                         f"|---|---|---|---|\n{rows}\n\nOutputs: `{res['out']}`")
    else:
        print(f"nothing new in {watch}" + (f" ({len(res['waiting'])} file(s) still settling)"
                                           if res["waiting"] else ""))
    return res


def serve(watch, state, every: str | float | None = "10m", cron: str | None = None, name: str = "shardguard-watch",
          **params: Any) -> None:
    """Register the scheduled deployment with the Prefect server at PREFECT_API_URL and run it (blocks).

    One run at a time (`limit=1`); the schedule is paused when this process stops."""
    parameters = deployment_parameters(watch, state, **params)
    Path(parameters["state"]).mkdir(parents=True, exist_ok=True)
    sched: dict[str, Any] = {"cron": cron} if cron else {"interval": parse_every(every or "10m")}
    incremental_scan_flow.serve(name=name, parameters=parameters, limit=1, pause_on_shutdown=True,
                                description=f"shardguard: scan new shards in {parameters['watch']}",
                                tags=["shardguard"], **sched)
