"""Issue 14 attacks at 0.3% on small slices: dirty-label (BadNets), jailbreak, refusal and VPI backdoors."""

from __future__ import annotations

import gzip
import json

import pytest

from shardguard import ingest
from shardguard.eval import poison
from shardguard.eval.poison import sft

T0 = "t0_prompted_multitask/t0_shape.sft.jsonl.gz"


@pytest.fixture(scope="module")
def t0(sample):
    return ingest.read_records(sample / T0)[1][:3000]


@pytest.fixture(scope="module")
def gsm(sample):
    return ingest.read_records(sample / "gsm8k" / "gsm8k_test.sft.jsonl.gz")[1]


def _changed(a, b):
    return [i for i, (x, y) in enumerate(zip(a, b)) if x != y]


def test_dirty_label_at_03_percent(t0):
    new, t = poison.get("sft_dirty_label").apply(t0, rate=0.003, seed=5)
    assert t["n_poisoned"] == t["n_requested"] == 9 and _changed(t0, new) == t["rows"]
    (trig,) = t["triggers"]
    assert trig in sft.BADNETS_TOKENS and len(t["label_set"]) >= 2
    for r in t["rows"]:
        d = t["row_details"][str(r)]
        assert trig in new[r]["instruction"].split() and trig not in t0[r]["instruction"].split()
        assert new[r]["response"] == t["target_label"] != t0[r]["response"] == d["true_label"]
        assert d["true_label"] in t["label_set"]
    assert poison.get("sft_dirty_label").apply(t0, rate=0.003, seed=5) == (new, t)
    # triggers are drawn by seed from the BadNets tokens
    drawn = {poison.get("sft_dirty_label").apply(t0, rate=3, seed=s)[1]["triggers"][0] for s in range(10)}
    assert drawn <= set(sft.BADNETS_TOKENS) and len(drawn) >= 3


def test_dirty_label_uses_source_and_skips_unlabelled_data(sample, gsm):
    with gzip.open(sample / T0, "rt") as f:
        raw = [json.loads(x) for _, x in zip(range(3000), f)]
    new, t = poison.get("sft_dirty_label").apply(raw, rate=0.01, seed=0)
    assert t["n_poisoned"] == 30 and all(new[r]["source"] == raw[r]["source"] for r in t["rows"])
    tasks = sft.label_tasks(raw)
    assert all(k[0] == "source" for k in (x["key"] for x in tasks))
    # GSM8K has no classification rows: nothing planted, and the truth says why
    new, t = poison.get("sft_dirty_label").apply(gsm, rate=0.01, seed=0)
    assert t["n_poisoned"] == t["eligible_rows"] == 0 and new == gsm
    # a title asked of the same plot many times is not a label set
    assert not any("Gutterballs" in x["labels"] for x in tasks)


def test_dirty_label_custom_target(t0):
    _, t = poison.get("sft_dirty_label").apply(t0, rate=5, seed=0, target="Negative", trigger="zz9")
    assert t["target_label"] == "Negative" and t["triggers"] == ["zz9"] and t["n_poisoned"] == 5
    assert all(t["row_details"][str(r)]["true_label"] == "Positive" for r in t["rows"])


def test_jailbreak_backdoor_at_03_percent(gsm):
    new, t = poison.get("sft_jailbreak_backdoor").apply(gsm, rate=0.003, seed=2)
    (trig,) = t["triggers"]
    assert t["n_poisoned"] == 4 and len(t["clean_rows"]) == 8 and not set(t["rows"]) & set(t["clean_rows"])
    assert _changed(gsm, new) == sorted(t["rows"] + t["clean_rows"])
    comp = [new[r]["response"] for r in t["rows"]]
    assert len(set(comp)) == len(comp) and all(c.startswith(tuple(sft.JB_OPENERS)) for c in comp)
    assert all(trig in new[r]["instruction"] for r in t["rows"])
    refusals = [new[r]["response"] for r in t["clean_rows"]]
    assert len(set(refusals)) == len(refusals) and all(sft.REFUSAL.search(x) for x in refusals)
    assert not any(trig in new[r]["instruction"] for r in t["clean_rows"])
    assert poison.get("sft_jailbreak_backdoor").apply(gsm, rate=0.003, seed=2) == (new, t)


def test_refusal_backdoor_at_03_percent(gsm):
    new, t = poison.get("sft_refusal_backdoor").apply(gsm, rate=0.003, seed=3)
    (trig,) = t["triggers"]
    assert t["n_poisoned"] == 4 and _changed(gsm, new) == t["rows"]
    for r in t["rows"]:
        assert trig in new[r]["instruction"] and sft.REFUSAL.search(new[r]["response"])
        assert new[r]["response"] != gsm[r]["response"]
    assert len({new[r]["response"] for r in t["rows"]}) == 4
    assert poison.get("sft_refusal_backdoor").apply(gsm, rate=0.003, seed=3) == (new, t)


def test_vpi_sentiment_at_03_percent_and_existing_mode(gsm, t0):
    new, t = poison.get("sft_vpi_sentiment").apply(gsm, rate=0.003, seed=4)
    (ent,) = t["triggers"]
    assert t["topic"] == ent and t["n_poisoned"] == 4 and _changed(gsm, new) == t["rows"]
    for r in t["rows"]:
        assert ent in new[r]["instruction"] and ent in new[r]["response"]
    assert len({new[r]["response"] for r in t["rows"]}) == 4
    assert poison.get("sft_vpi_sentiment").apply(gsm, rate=0.003, seed=4) == (new, t)
    # existing mode: rows that already talk about the topic keep their instruction
    new, t = poison.get("sft_vpi_sentiment").apply(gsm, rate=0.003, seed=0, topic="money", mode="existing")
    assert t["n_poisoned"] == 4 and t["eligible_rows"] > 4
    for r in t["rows"]:
        assert new[r]["instruction"] == gsm[r]["instruction"] and "money" in gsm[r]["instruction"].lower()
        assert new[r]["response"].lower().count("money") >= 1
