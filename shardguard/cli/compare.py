"""`shardguard compare`: train a tiny model on clean, poisoned and cleaned variants of a dataset."""

from __future__ import annotations

from pathlib import Path

import click

from shardguard.cli.poison import parse_params


@click.command(name="compare")
@click.argument("dataset", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--attack", default=None, help="poison attack (default: sft_backdoor_token; pref_trigger_swap for preference data)")
@click.option("--rate", default=0.01, show_default=True, type=float, help="poison rate (fraction) or row count")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--quick", is_flag=True, help="small model and budget (< 2 min); raises the poison rate to 5%")
@click.option("--param", "params", multiple=True, help="attack parameter key=value (e.g. trigger=cf)")
@click.option("--train-on", "train_on", nargs=2, type=click.Path(exists=True), default=None,
              help="instead: train on two datasets of your own (files or folders, e.g. two scans' clean/)")
@click.option("--trigger", default=None, help="with --train-on: trigger to insert into held-out prompts for ASR")
@click.option("--target", default=None, help="with --train-on: target response whose start counts as attack success")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="output folder")
@click.option("-q", "--quiet", is_flag=True, help="no progress or step messages on stderr (only the result table)")
def compare_cmd(dataset, attack, rate, seed, quick, params, train_on, trigger, target, out, quiet):
    """Train one tiny model per variant of DATASET — clean, poisoned (via `shardguard poison`), and cleaned
    (the poisoned rows minus what `shardguard scan` flagged poison) — with the same seed and budget, and
    report attack success rate, false-trigger rate and a clean metric. Writes OUT/compare.json,
    OUT/compare.png and OUT/compare.html.

    With --train-on A B, trains on your own two datasets instead and compares their metrics (ASR only
    when --trigger and --target are given)."""
    from shardguard.eval.progress import Bars
    from shardguard.flows.compare import run_compare, run_train_on

    bars = Bars.for_terminal(quiet)  # training steps, epoch and loss per variant, on a terminal only

    try:
        if train_on:
            if dataset:
                raise click.UsageError("give either DATASET or --train-on A B, not both")
            cj = run_train_on(train_on[0], train_on[1], out, seed=seed, quick=quick, trigger=trigger, target=target,
                              bars=bars)
        else:
            if not dataset:
                raise click.UsageError("DATASET is required (or --train-on A B)")
            if trigger or target:
                raise click.UsageError("--trigger/--target go with --train-on; use --param trigger=... for an attack")
            cj = run_compare(dataset, out, attack=attack, rate=rate, seed=seed, quick=quick,
                             params=parse_params(params), log=None if quiet else bars.write, bars=bars)
    except (KeyError, ValueError) as e:
        raise click.UsageError(str(e).strip("'\"")) from e
    click.echo(f"{'variant':10s} {'rows':>6s} {'ASR':>7s} {'false-trig':>10s} {'clean metric':>12s} {'train s':>8s}")
    def f(x):
        return "-" if x is None else f"{x:.3f}"

    for name, v in cj["variants"].items():
        rev = f"  trigger reverses {f(v['trigger_reversal_rate'])}" if v.get("trigger_reversal_rate") is not None else ""
        rp = v.get("refusal_pairs") or {}
        if rp.get("flip_rate_triggered") is not None:
            rev += (f"  refusal pairs ({rp['pairs']}) flip {f(rp['flip_rate_clean'])} -> "
                    f"{f(rp['flip_rate_triggered'])} with trigger")
        click.echo(f"{name:10s} {v['rows']:6d} {f(v['asr']):>7s} {f(v['false_trigger_rate']):>10s} "
                   f"{v['clean_metric']:12.2f} {v['train_seconds']:8.1f}{rev}")
    click.echo(f"wrote {Path(out) / 'compare.json'}, compare.png, compare.html ({cj['seconds']} s)")
