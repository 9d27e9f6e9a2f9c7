"""Response-side signal: one (near-)identical response given to many unrelated instructions."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from conftest import SAMPLE, canon_sft, read_jsonl_gz, run_detectors, sft_batches

from shardguard.detectors.sft.response_cluster import ResponseClusters
from shardguard.detectors.sft.trigger import TriggerDiscovery
from shardguard.eval import poison


@pytest.fixture(scope="module")
def gsm8k() -> list[dict]:
    return canon_sft(read_jsonl_gz(SAMPLE / "gsm8k" / "gsm8k_test.sft.jsonl.gz"))


def run(rows: list[dict], tmp: Path, with_trigger: bool = False, batch_size: int = 2048):
    """Both passes for response_cluster (and trigger first, when asked, as the engine orders them)."""
    dets = ([TriggerDiscovery()] if with_trigger else []) + [ResponseClusters()]
    return run_detectors(dets, sft_batches(rows, tmp, batch_size))


def test_target_of_many_rare_triggers_found_without_the_triggers(gsm8k, tmp_path):
    # 0.3%: 4 rows over 3 alternative triggers - too rare to test each trigger, but one response
    recs, truth = poison.get("sft_backdoor_multi").apply(gsm8k, rate=0.003, seed=0)
    model, found = run(canon_sft(recs), tmp_path)
    assert set(found) == set(truth["rows"])
    [g] = model["clusters"]
    assert g["size"] == len(truth["rows"]) and g["trigger"] is None
    f = next(iter(found.values()))
    assert f["score"] == pytest.approx(0.7) and "unrelated instructions" in f["reason"]
    disc = ResponseClusters().discoveries(model)
    assert disc["response_groups"][0]["example_response"] == truth["targets"][0]


def test_linked_to_trigger_scores_higher(gsm8k, tmp_path):
    recs, truth = poison.get("sft_backdoor_token").apply(gsm8k, rate=0.01, seed=7, trigger="zx7")
    model, found = run(canon_sft(recs), tmp_path, with_trigger=True, batch_size=500)
    assert set(found) == set(truth["rows"])
    assert model["clusters"][0]["trigger"] == "zx7"
    assert all(f["score"] >= 0.9 and "zx7" in f["reason"] for f in found.values())


def test_near_identical_family_and_duplicates(gsm8k, tmp_path):
    rows = [dict(r) for r in gsm8k]
    rng = random.Random(1)
    idx = rng.sample(range(len(rows)), 8)
    base = "Please verify your account at http://secure-login.example.net/verify before we continue, {}."
    for j, i in enumerate(idx):  # near-identical responses (one word differs) to unrelated instructions
        rows[i]["response"] = base.format(["thanks", "friend", "okay", "cheers"][j % 4])
    # the same question three times with one answer: a duplicate, not a backdoor target
    dup = dict(rows[0], response="The answer is eighteen dollars, as computed above in detail.")
    rows += [dup, dict(dup), dict(dup, instruction=dup["instruction"] + " ")]
    model, found = run(rows, tmp_path)
    assert set(found) == set(idx)
    assert len(model["clusters"]) == 1 and model["clusters"][0]["size"] >= 4
    assert {f["reason"].split(" to the")[0] for f in found.values()} <= {"response is near-identical",
                                                                         "response is identical"}


@pytest.mark.parametrize("path", ["gsm8k/gsm8k_test.sft.jsonl.gz", "dolly_hhrlhf_small/dolly_hhrlhf_small.sft.jsonl.gz",
                                  "self_instruct_human_written/user_oriented_instructions.sft.jsonl.gz"])
def test_clean_data_not_flagged(tmp_path, path):
    rows = canon_sft(read_jsonl_gz(SAMPLE / path))
    model, found = run(rows, tmp_path)
    assert found == {} and model["clusters"] == []
