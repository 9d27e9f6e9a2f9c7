"""The bench as a Prefect flow, so it can run on a schedule against new detector versions:

    from shardguard.flows.bench import bench_flow
    bench_flow.serve(name="nightly-bench", cron="0 3 * * *", parameters={"out": "/srv/bench"})

`run_bench_flow` is the entry point for the CLI and tests: through Prefect when a server is configured
(PREFECT_API_URL) or asked for, otherwise the flow's code runs directly (no Prefect start-up cost).
"""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.context import FlowRunContext

from shardguard.flows import run_flow


@flow(name="shardguard-bench", log_prints=True, validate_parameters=False)
def bench_flow(
    out: str,
    attacks: list[str] | None = None,
    rates: list[float] | None = None,
    datasets: list[str] | None = None,
    quick: bool = False,
    seed: int = 0,
    limit: int | None = None,
    only: list[str] | None = None,
    echo=None,
    bars=None,
) -> dict:
    from shardguard.eval.bench.run import run_bench

    bench = run_bench(
        out,
        attacks=attacks,
        rates=rates,
        datasets=datasets,
        quick=quick,
        seed=seed,
        limit=limit,
        only=only,
        echo=echo or print,
        bars=bars,
    )
    if FlowRunContext.get() is not None:
        from shardguard.eval.bench.render import markdown

        create_markdown_artifact(
            markdown=markdown(bench),
            key="shardguard-bench",
            description="shardguard bench: recall/precision per attack and rate",
        )
    return bench


def run_bench_flow(
    out,
    attacks=None,
    rates=None,
    datasets=None,
    quick=False,
    seed=0,
    limit=None,
    only=None,
    use_prefect: bool | None = None,
    echo=None,
    bars=None,
) -> dict:
    args = dict(out=str(out), attacks=attacks, rates=rates, datasets=datasets, quick=quick, seed=seed,
                limit=limit, only=only)
    return run_flow(bench_flow, args, use_prefect, echo=echo, bars=bars)
