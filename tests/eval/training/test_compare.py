"""`shardguard compare --quick` end to end on the bundled GSM8K test split: poison, scan, clean, train three
tiny models, write compare.json/png/html. One run (≈ 1 minute on two idle cores), several checks."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from shardguard.cli import main
from shardguard.eval.training.compare import compare_section


@pytest.fixture(scope="module")
def quick_run(sample, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    data = sample / "gsm8k" / "gsm8k_test.sft.jsonl.gz"
    res = CliRunner().invoke(main, ["compare", str(data), "--quick", "--seed", "0", "--out", str(out)])
    assert res.exit_code == 0, res.output + repr(res.exception)
    return out, json.loads((out / "compare.json").read_text()), res.output


def test_quick_compare_writes_all_outputs(quick_run):
    out, cj, output = quick_run
    assert set(cj["variants"]) == {"clean", "poisoned", "cleaned"}
    for v in cj["variants"].values():
        for k in ("asr", "false_trigger_rate", "clean_metric", "rows", "train_seconds"):
            assert v[k] is not None, k
    assert cj["mode"] == "quick" and cj["attack"] == "sft_backdoor_token"
    assert cj["rate"] == 0.01 and cj["rate_used"] == 0.05  # quick mode states its higher poison rate
    assert any("raised the poison rate" in n for n in cj["notes"])
    assert (out / "compare.png").stat().st_size > 1000
    html = (out / "compare.html").read_text()
    assert "<table>" in html and "data:image/png;base64," in html and "poisoned" in html
    assert "ASR" in output and "compare.json" in output


def test_quick_compare_rows_add_up(quick_run):
    _, cj, _ = quick_run
    v, s = cj["variants"], cj["scan"]
    assert v["clean"]["rows"] == v["poisoned"]["rows"] == cj["rows_train"] == s["rows_total"]
    assert v["cleaned"]["rows"] == v["poisoned"]["rows"] - s["rows_removed_as_poison"]
    assert s["removed_true"] + s["missed"] == s["poisoned_rows"] == cj["rows_poisoned"]


def test_quick_compare_poisoned_model_is_backdoored(quick_run):
    _, cj, _ = quick_run
    v = cj["variants"]
    assert v["poisoned"]["asr"] >= 0.5
    assert v["clean"]["asr"] <= 0.02
    assert v["poisoned"]["false_trigger_rate"] <= 0.1 and v["clean"]["false_trigger_rate"] <= 0.02
    if cj["scan"]["recall"] and cj["scan"]["recall"] >= 0.95:  # the trigger detector removed the poison
        assert v["cleaned"]["asr"] <= 0.05


def test_compare_section_escapes_data(quick_run):
    _, cj, _ = quick_run
    evil = json.loads(json.dumps(cj))
    evil["trigger"] = "<script>alert(1)</script>"
    frag = compare_section(evil)
    assert "<script>" not in frag and "&lt;script&gt;" in frag


def test_compare_usage_errors(tmp_path):
    r = CliRunner().invoke(main, ["compare", "--out", str(tmp_path)])
    assert r.exit_code == 2
    web = tmp_path / "w.jsonl"
    web.write_text(json.dumps({"text": "hello world " * 20, "url": "http://a.example/x"}) + "\n")
    r = CliRunner().invoke(main, ["compare", str(web), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "needs sft data" in r.output


def test_train_on_two_datasets(tmp_path, gsm8k_rows, monkeypatch):
    """--train-on A B: both trained on the same budget, one held-out set from A removed from both."""
    from conftest import write_jsonl

    from shardguard.eval.training import compare as C
    from shardguard.eval.training.model import ModelConfig
    from shardguard.eval.training.train import TrainConfig

    tiny = C.Mode("quick", ModelConfig(d_model=32, n_head=2, d_ff=64, prompt_len=64, response_len=16,
                                       bigram_buckets=512), TrainConfig(steps=5, batch=8), max_heldout=20)
    monkeypatch.setitem(C.MODES, "quick", tiny)  # our own budget knob, shrunk: the plumbing is under test
    write_jsonl(tmp_path / "a" / "a.sft.jsonl", gsm8k_rows[:150])
    write_jsonl(tmp_path / "b" / "b.sft.jsonl", gsm8k_rows[:250])
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["compare", "--train-on", str(tmp_path / "a"), str(tmp_path / "b"), "--quick",
                                  "--trigger", "tq", "--target", "HELLO", "--out", str(out)])
    assert r.exit_code == 0, r.output + repr(r.exception)
    cj = json.loads((out / "compare.json").read_text())
    a, b = cj["variants"]["a"], cj["variants"]["b"]
    assert cj["rows_heldout"] == 15 and a["rows"] == 135 and b["rows"] == 235
    assert a["asr"] is not None and 0 <= a["clean_metric"] <= 100 and b["clean_loss"] > 0
    assert (out / "compare.html").exists()
