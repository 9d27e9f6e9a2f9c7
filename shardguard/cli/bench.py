"""`shardguard bench [--quick] [--attacks a,b] [--rates 0.01,0.05] [--datasets c4,gsm8k] --out DIR`."""

from __future__ import annotations

import click


def _csv(v: str | None) -> list[str] | None:
    return [x.strip() for x in v.split(",") if x.strip()] if v else None


def _rates(v: str | None) -> list[float] | None:
    items = _csv(v)
    if not items:
        return None
    try:
        return [int(x) if x.isdigit() else float(x) for x in items]
    except ValueError as e:
        raise click.BadParameter(
            f"{v!r}: rates are fractions like 0.01 or row counts", param_hint="--rates"
        ) from e


@click.command(name="bench", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option(
    "--quick", is_flag=True, help="A small subset (4 attacks, 1 rate, 100-300-row slices) for tests: < 40 s."
)
@click.option(
    "--attacks", help="Comma-separated attack names (default: all; see `shardguard poison --list`)."
)
@click.option("--rates", help="Comma-separated rates (default 0.001,0.003,0.005,0.01,0.03,0.05).")
@click.option(
    "--datasets",
    help="Comma-separated datasets: c4, wikipedia, gsm8k, gsm8k_train, dolly, self_instruct, t0_shape, "
    "t0_check, mixture (every bundled SFT set shuffled together), hh_rlhf, dpo_demo (default: all). SFT sets "
    "are reported in the shape / check groups of bench/splits.toml, plus the mixture.",
)
@click.option("--detectors", "only", help="Comma-separated detectors to run (default: all enabled).")
@click.option(
    "--limit",
    type=int,
    help="Use only the first N rows of each dataset (default: datasets over 6,000 rows, T0 and the "
    "mixture, are cut to their first 6,000 rows).",
)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--prefect/--no-prefect",
    "use_prefect",
    default=None,
    help="Run as a Prefect flow (default: only when PREFECT_API_URL is set).",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress or per-run lines on stderr (only the result table).")
def bench_cmd(out, quick, attacks, rates, datasets, only, limit, seed, use_prefect, quiet):
    """Inject every attack at every rate into the bundled real data, scan, and score the detectors.

    Writes bench.json, bench.md and bench.html into --out and prints the table."""
    from shardguard import detectors
    from shardguard.eval.bench.render import terminal
    from shardguard.eval.bench.run import plan
    from shardguard.eval.progress import Bars
    from shardguard.flows.bench import run_bench_flow

    try:  # names are checked before anything runs; errors while running are not usage errors
        plan(_csv(attacks), _rates(rates), _csv(datasets), quick)
        detectors.build({}, _csv(only))
    except (KeyError, ValueError) as e:
        raise click.UsageError(str(e.args[0] if isinstance(e, KeyError) else e)) from e
    bars = Bars.for_terminal(quiet)  # runs done, the current one, rate and ETA; on a terminal only
    bench = run_bench_flow(
        out,
        attacks=_csv(attacks),
        rates=_rates(rates),
        datasets=_csv(datasets),
        quick=quick,
        seed=seed,
        limit=limit,
        only=_csv(only),
        use_prefect=use_prefect,
        echo=(lambda s: None) if quiet else bars.write,
        bars=bars,
    )
    click.echo(terminal(bench))
    click.echo(f"\nwrote {out}/bench.json, bench.md, bench.html")
