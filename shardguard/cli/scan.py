"""`shardguard scan PATH... --out DIR`"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

import click

from shardguard.core.schema import CATEGORIES


def print_summary(summary: dict, out: Path, stream=None) -> None:
    w = (stream or sys.stdout).write
    shards = summary["shards"]
    width = min(60, max([len(s["shard"]) for s in shards] + [5]))
    w(f"{'shard':<{width}} {'kind':<10} {'rows':>7} {'malf':>5} {'flag':>6} {'held':>6}  verdict\n")
    for s in shards[:50]:
        name = s["shard"] if len(s["shard"]) <= width else "…" + s["shard"][-(width - 1):]
        w(f"{name:<{width}} {str(s['kind']):<10} {s['rows']:>7} {s['rows_malformed']:>5} {s['flagged']:>6} "
          f"{s['held_back']:>6}  {s['verdict']}{'  (' + s['error'] + ')' if s.get('error') else ''}\n")
    if len(shards) > 50:
        w(f"... {len(shards) - 50} more shards in summary.json\n")
    cats = ", ".join(f"{k} {v}" for k, v in summary["rows_by_category"].items() if v)
    w(f"\n{summary['rows_total']} rows: {summary['rows_kept']} kept + {summary['rows_held_back']} held back + "
      f"{summary['rows_malformed']} malformed{'' if summary['accounting_ok'] else '  (ACCOUNTING MISMATCH)'}"
      f"; flagged by category: {cats or 'none'}\n")
    w(f"verdicts: {summary['verdicts']}; {summary['seconds']} s\n")
    w(f"outputs: {out}/flags.parquet, summary.json, report.html, clean/, quarantine/\n")


@click.command("scan")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Output folder (created; safe to reuse).")
@click.option("--kind", type=click.Choice(["auto", "web", "sft", "preference"]), default="auto", show_default=True,
              help="Record kind; auto detects it per shard from the fields.")
@click.option("--engine", type=click.Choice(["local", "beam"]), default="local", show_default=True,
              help="local: in-process; beam: an Apache Beam pipeline (FnApiRunner here; see README for Flink/Spark/Dataflow).")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="TOML or JSON scan settings.")
@click.option("--fail-on", "fail_on", multiple=True, metavar="CATEGORY",
              help=f"Exit 3 when this category was flagged (repeatable): {', '.join(CATEGORIES)}, or one an "
                   "installed detector declares.")
@click.option("--detectors", "only", help="Comma-separated detector names to run (default: all enabled).")
@click.option("--redact", is_flag=True, help="Write clean/ with PII and secrets replaced by typed placeholders.")
@click.option("--batch-size", type=click.IntRange(1, 1_000_000), help="Records per Arrow batch.")
@click.option("--beam-option", "beam_options", multiple=True, help="A Beam pipeline option, e.g. --runner=FlinkRunner.")
@click.option("--prefect/--no-prefect", "use_prefect", default=None,
              help="Record the run in Prefect (default: only when PREFECT_API_URL is set).")
@click.option("--follow-links", is_flag=True, help="Read links that point out of an input folder (default: skipped, reported).")
@click.option("-q", "--quiet", is_flag=True, help="Print only the output folder (and no progress on stderr).")
def scan_cmd(paths, out, kind, engine, config_path, fail_on, only, redact, batch_size, beam_options, use_prefect, follow_links,
             quiet):
    """Scan files or folders of shards (JSONL[.gz|.zst], JSON, Parquet, CSV, Arrow/HF save_to_disk, WARC/WET).

    Writes flags.parquet, summary.json, report.html, clean/ and quarantine/ into --out."""
    from shardguard.pipeline.config import ScanConfig

    try:
        cfg = ScanConfig.load(config_path)
    except (ValueError, TypeError, OSError) as e:
        raise click.UsageError(f"--config {config_path}: {e}") from e
    if only:
        cfg.only = [x.strip() for x in only.split(",") if x.strip()]
    if redact:
        cfg.redact = True
    if batch_size:
        cfg.batch_size = batch_size
    from shardguard import detectors

    try:
        detectors.build(cfg.detectors, cfg.only)
    except ValueError as e:
        raise click.UsageError(str(e)) from e
    bad = [c for c in fail_on if c not in detectors.categories()]
    if bad:
        raise click.BadParameter(f"{', '.join(map(repr, bad))} is not a category; choose from "
                                 f"{', '.join(detectors.categories())}", param_hint="'--fail-on'")
    if use_prefect is None:
        use_prefect = bool(os.environ.get("PREFECT_API_URL"))
    if follow_links:
        from dataclasses import replace

        cfg.limits = replace(cfg.limits, follow_links=True)
    from shardguard.ingest import expand_paths

    shards, skipped = expand_paths(list(paths), cfg.limits.follow_links)
    if not shards:  # nothing to read: a usage error (exit 2)
        from shardguard.pipeline.stages import no_shards_message

        raise click.UsageError(no_shards_message(list(paths), skipped))
    from shardguard.pipeline.outdir import OutputError, check_out

    out_p = Path(out)
    try:
        check_out(out_p, [Path(p) for p in paths])  # before any work
        if use_prefect:  # a recorded flow run
            from shardguard.flows.scan import run_scan

            summary = run_scan(list(paths), out_p, kind=kind, engine=engine, config=cfg,
                               beam_options=list(beam_options), use_prefect=True)
        else:  # the flow's code without Prefect: importing Prefect alone costs ≈ 1 s (`flows.run_flow`)
            from shardguard.pipeline.scan import scan

            progress = None
            if not quiet and sys.stderr.isatty():  # not in logs, pipes or tests
                from shardguard.pipeline.progress import Progress

                progress = Progress()
            summary = scan([str(p) for p in paths], str(out_p), kind, engine, cfg, list(beam_options),
                           progress=progress).summary
    except OutputError as e:  # --out overlaps the inputs, holds the user's files, or is in use
        raise click.UsageError(str(e)) from e
    except Exception as e:  # the scan itself failed: say what, exit 1
        traceback.print_exc(file=sys.stderr)
        click.echo(f"shardguard scan failed: {type(e).__name__}: {e}", err=True)
        sys.exit(1)
    if quiet:
        click.echo(str(out_p))
    else:
        print_summary(summary, out_p)
    hit = [c for c in fail_on if summary["rows_by_category"].get(c, 0) > 0]
    if hit:
        click.echo(f"--fail-on: flagged {', '.join(hit)}", err=True)
        sys.exit(3)
