"""The scan, composed once: `scan()` runs ingest -> detect -> decide -> write and returns a `ScanResult`.

Everything that scans goes through here: the CLI, the Prefect flows (which pass a `run_stage` that
makes each stage a task run), the incremental service (which adds the accepted corpus as context),
the bench, the training comparison and the demo.

    result = scan(["data/"], "audit/")
    result.summary["verdicts"], result.findings.num_rows, result.out / "flags.parquet"
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from shardguard import detectors
from shardguard.pipeline import stages
from shardguard.pipeline.config import ScanConfig
from shardguard.pipeline.outdir import OutDir, check_out
from shardguard.pipeline.progress import Progress

# run_stage(name, fn, *args) -> fn(*args); the flows layer passes one that makes each stage a task run
StageRunner = Callable[..., Any]


def direct(name: str, fn: Callable, *args: Any) -> Any:
    return fn(*args)


@dataclass
class ScanResult:
    summary: dict[str, Any]
    findings: pa.Table  # what flags.parquet holds: detector findings and malformed rows, sorted
    out: Path

    @property
    def files(self) -> dict[str, dict]:
        """shard -> its output files (clean/, quarantine/, malformed, unreadable), relative to `out`."""
        return {e["shard"]: e.get("outputs", {}) for e in self.summary["shards"]}


def write(run: Path, ingested: stages.Ingested, decided: dict, findings: pa.Table, summary: dict,
          cfg: ScanConfig, progress: Progress | None = None) -> tuple[dict, pa.Table]:
    """clean/, quarantine/, flags.parquet, report.html, manifest.parquet, summary.json into the run
    folder that `OutDir.publish` then makes the result in one step."""
    staging = Path(run)
    redactor = None
    if cfg.redact:
        from shardguard.detectors.memorization.pii import make_redactor

        redactor = make_redactor()
    files = stages.stage_write_records(staging, ingested, decided, redactor, progress)
    for e in summary["shards"]:
        e["outputs"] = files.get(e["shard"], {})
    flags = stages.sort_findings(pa.concat_tables([findings, stages.malformed_findings(ingested.malformed)]))
    from shardguard.pipeline.manifest import MANIFEST, write_manifest
    from shardguard.report.html import scan_report
    from shardguard.report.sections import detector_sections

    html = scan_report(summary, flags, detector_sections(summary.get("discoveries", {})),
                       records_path=ingested.records_path, redactor=redactor)
    write_manifest(staging / MANIFEST, ingested.records_path, ingested.shards)  # for `shardguard verify`
    stages.finish_run(staging, flags, summary, html)
    return summary, flags


def scan(paths: list[str | Path], out: str | Path, kind: str = "auto", engine: str = "local",
         config: ScanConfig | dict | None = None, beam_options: list[str] | None = None, *,
         context_paths: list[str | Path] | None = None, inputs_label: list[str] | None = None,
         extra_summary: dict[str, Any] | None = None, run_stage: StageRunner = direct,
         base_state: dict[str, Any] | None = None, base_rows: int = 0,
         base_records: list[Path] | None = None, progress: Progress | None = None) -> ScanResult:
    """Scan `paths` into `out`.

    `context_paths`: shards read alongside (first) so cross-shard detectors see them, then dropped from
    findings, verdicts and outputs (the service's accepted corpus). `inputs_label`: what summary.json
    names as the inputs (default: `paths`). `extra_summary`: keys added to summary.json. `config`: a
    `ScanConfig`, or the same settings as a dict (as in a TOML file). `base_state`: detector states of
    records observed before (the service's stored accepted corpus, `base_rows` of them, with seq
    numbers below zero, in the records files `base_records`), merged in before finalize instead of
    re-observing those records. `progress`: where to show each
    stage's progress (the CLI passes one on a terminal); None shows nothing."""
    t0 = time.time()
    ingest_fn, detect_fn, write_fn = stages.stage_ingest, stages.stage_detect, write
    if progress is not None:  # bound here, so that a stage runner's tasks see the same arguments as before
        ingest_fn, detect_fn, write_fn = (functools.update_wrapper(functools.partial(f, progress=progress), f)
                                          for f in (ingest_fn, detect_fn, write_fn))
    cfg = config if isinstance(config, ScanConfig) else ScanConfig.from_dict(config or {})
    dets = detectors.build(cfg.detectors, cfg.only)
    out_p = Path(out)
    check_out(out_p, [Path(p) for p in paths] + [Path(p) for p in context_paths or []])
    with OutDir(out_p) as od:  # locked: one scan at a time; published whole, in one step
        work, run = od.work, od.new_run()
        ingested = run_stage("ingest", ingest_fn, [str(p) for p in paths], work, kind, cfg,
                             [str(p) for p in context_paths or []])
        findings, discoveries, timings = run_stage("detect", detect_fn, ingested.records_path, cfg,
                                                   engine, beam_options, dets, base_state, base_records)
        context_rows = base_rows + sum(i["rows"] for i in ingested.shards if i["shard"] in set(ingested.context))
        own, own_findings = stages.drop_context(ingested, findings, work)
        decided = run_stage("decide", stages.stage_decide, own_findings, own, cfg, dets)
        summary = stages.scan_meta(inputs_label or [str(p) for p in paths], kind, engine, cfg, dets) \
            | decided["summary"]
        summary["discoveries"] = discoveries
        if extra_summary:
            summary.update({k: (v | {"context_rows": context_rows} if k == "service" else v)
                            for k, v in extra_summary.items()})
        summary["timings"] = {"ingest": round(ingested.seconds, 3), **timings}
        summary["seconds"] = round(time.time() - t0, 3)
        summary, flags = run_stage("write", write_fn, run, own, decided, own_findings, summary, cfg)
        od.publish(run)
    return ScanResult(summary, flags, out_p)
