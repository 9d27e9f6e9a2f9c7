"""The training comparison as a Prefect flow: prepare (split + poison), scan-and-clean, one training task
per variant, write. Like flows/scan.py, it runs as plain functions (`compare_flow.fn`) when no Prefect
server is configured, so a one-off comparison pays no Prefect start-up; with `PREFECT_API_URL` set it is
a recorded flow run."""

from __future__ import annotations

import time
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from shardguard.eval.training import compare as C
from shardguard.flows import run_flow, stage


@task(name="prepare", cache_policy=NO_CACHE)
def prepare_task(dataset, attack, rate, seed, mode, params):
    return C.prepare(dataset, attack, rate, seed, mode, params)


@task(name="scan-and-clean", cache_policy=NO_CACHE)
def scan_task(prep, out):
    return C.scan_and_clean(prep, Path(out))


@task(name="train-variant", cache_policy=NO_CACHE)
def train_task(prep, name, rows, mode, bars=None):
    return C.train_variant(prep, name, rows, mode, bars)


@task(name="write", cache_policy=NO_CACHE)
def write_task(out, cj):
    return C.write_outputs(Path(out), cj)


@flow(name="shardguard-compare", log_prints=True, validate_parameters=False)
def compare_flow(dataset: str, out: str, attack: str = C.DEFAULT_ATTACK, rate: float = 0.01, seed: int = 0,
                 mode: str = "full", params: dict | None = None, log=None, bars=None) -> dict:
    log = log or (lambda m: None)
    t0 = time.time()
    prep = stage(prepare_task, dataset, attack, rate, seed, mode, params)
    log(f"{len(prep.train)} training rows ({prep.truth['n_poisoned']} poisoned at rate {prep.rate_used}), "
        f"{len(prep.held)} held out; trigger {prep.trigger!r}")
    cleaned, scan_info = stage(scan_task, prep, out)
    log(f"scan: {scan_info['rows_removed_as_poison']} rows flagged poison "
        f"(recall {scan_info['recall']}, precision {scan_info['precision']}) in {scan_info['seconds']} s")
    variants = {}
    for name, rows in (("clean", prep.train), ("poisoned", prep.poisoned), ("cleaned", cleaned)):
        variants[name] = stage(train_task, prep, name, rows, mode, bars)
        v = variants[name]
        log(f"{name:9s} rows {v['rows']:5d}  ASR {v['asr']}  false-trigger {v['false_trigger_rate']}  "
            f"clean metric {v['clean_metric']}  ({v['train_seconds']} s)")
    cj = C.build_result(prep, scan_info, variants, time.time() - t0)
    return stage(write_task, out, cj)


@flow(name="shardguard-compare-train-on", log_prints=True, validate_parameters=False)
def train_on_flow(dir_a: str, dir_b: str, out: str, seed: int = 0, mode: str = "full", trigger: str | None = None,
                  target: str | None = None, bars=None) -> dict:
    cj = C.train_on(dir_a, dir_b, seed, mode, trigger, target, bars)
    return stage(write_task, out, cj)


def run_compare(dataset, out, attack: str | None = None, rate: float = 0.01, seed: int = 0, quick: bool = False,
                params: dict | None = None, use_prefect: bool | None = None, log=None, bars=None) -> dict:
    """Entry point for the CLI, the demo and tests. `attack` defaults to the SFT rare-token backdoor, or
    to the trigger+swap attack when the dataset holds preference pairs. `log` (messages) and `bars`
    (`shardguard.eval.progress.Bars`, training progress) apply when the flow runs without Prefect."""
    if attack is None:
        from shardguard import ingest

        kind, _, _ = ingest.read_records(dataset)
        attack = C.DEFAULT_PREF_ATTACK if kind == "preference" else C.DEFAULT_ATTACK
    args = dict(dataset=str(dataset), out=str(out), attack=attack, rate=rate, seed=seed,
                mode="quick" if quick else "full", params=params)
    return run_flow(compare_flow, args, use_prefect, log=log, bars=bars)


def run_train_on(dir_a, dir_b, out, seed: int = 0, quick: bool = False, trigger: str | None = None,
                 target: str | None = None, use_prefect: bool | None = None, bars=None) -> dict:
    args = dict(dir_a=str(dir_a), dir_b=str(dir_b), out=str(out), seed=seed, mode="quick" if quick else "full",
                trigger=trigger, target=target)
    return run_flow(train_on_flow, args, use_prefect, bars=bars)
