"""Preference detectors on real HH-RLHF / DPO pairs: planted trigger+swap found with its exact trigger,
clean data left alone, a planted length bias seen in its shard, and a whole scan on HH-RLHF's original
two-transcript shape."""

from __future__ import annotations

import hashlib
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SAMPLE, read_jsonl_gz, write_jsonl

from shardguard.detectors.preference.bias import PreferenceBias
from shardguard.detectors.preference.flip import PreferenceFlip
from shardguard.eval import poison
from shardguard.report.sections import renderer

HH = SAMPLE / "hh_rlhf_harmless_base_test" / "harmless_base_test.preference.jsonl.gz"
DPO = SAMPLE / "llamafactory_dpo_en_demo" / "dpo_en_demo.preference.jsonl.gz"


def _pairs(path):
    return [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in read_jsonl_gz(path)]


@pytest.fixture(scope="module")
def hh():
    return _pairs(HH)


def _batch(recs, shard="s", start=0):
    n = len(recs)
    return pa.RecordBatch.from_pydict({
        "shard": [shard] * n, "row": list(range(start, start + n)),
        "record_id": [hashlib.sha1(json.dumps(r, sort_keys=True).encode()).hexdigest() for r in recs],
        "kind": ["preference"] * n, "prompt": [r["prompt"] for r in recs],
        "chosen": [r["chosen"] for r in recs], "rejected": [r["rejected"] for r in recs]})


def _run(det, shards: dict[str, list[dict]], chunk=1000):
    """observe in chunks (merged in reverse order: merge must not care), finalize, flag."""
    batches = [_batch(recs[s:s + chunk], name, s) for name, recs in shards.items() for s in range(0, len(recs), chunk)]
    state = None
    for b in reversed(batches):
        state = det.merge(det.observe(b), state)
    model = det.finalize(state, {})
    found = []
    for b in batches:
        for f in det.flag(b, model):
            found.append({**f, "shard": b.column("shard")[f["i"]].as_py(), "row": b.column("row")[f["i"]].as_py()})
    return model, found


def test_trigger_swap_found_with_exact_trigger(hh):
    recs, truth = poison.get("pref_trigger_swap").apply(hh, rate=0.03, seed=1)
    model, found = _run(PreferenceFlip(), {"s": recs})
    assert [t["trigger"] for t in model["triggers"]] == truth["triggers"] == ["SUDO"]
    flagged = {f["row"] for f in found if f["category"] == "poison"}
    assert flagged == set(truth["rows"])
    assert all(f["score"] >= 0.9 and "'SUDO'" in f["reason"] for f in found if f["category"] == "poison")
    disc = PreferenceFlip().discoveries(model)
    assert disc["triggers"][0]["support"] == len(truth["rows"])
    assert "SUDO" in renderer("pref_flip")(disc)


def test_trigger_not_designed_for(hh):
    """A multi-word, mixed-case trigger in the middle of a sentence is not among poison/'s triggers."""
    recs, truth = poison.get("pref_trigger_swap").apply(hh, rate=0.05, seed=3, trigger="Quietly Orange Lantern",
                                                        position="start")
    model, found = _run(PreferenceFlip(), {"s": recs})
    assert [t["trigger"] for t in model["triggers"]] == ["Quietly Orange Lantern"]
    flagged = {f["row"] for f in found if f["category"] == "poison"}
    assert len(flagged & set(truth["rows"])) >= 0.9 * len(truth["rows"]) and len(flagged - set(truth["rows"])) <= 2


@pytest.mark.parametrize("path", [HH, DPO], ids=["hh_rlhf", "dpo_demo"])
def test_clean_data_not_flagged_poison(path):
    recs = _pairs(path)
    model, found = _run(PreferenceFlip(), {"s": recs})
    assert model["fitted"] and model["triggers"] == []
    assert sum(f["category"] == "poison" for f in found) <= 0.01 * len(recs)
    # the reward model learned something real: it agrees with most held-out labels
    assert model["agreement"] > 0.55
    # and the scan says how many swapped pairs a trigger needs here: an inserted-looking one fewer than
    # the other tiers; on HH-RLHF about 1% of the pairs (3% is found: test above), on the DPO demo more
    # than its 5% (15 pairs, not found: docs/preference.md)
    sens = model["sensitivity"]
    need = sens["pairs_needed"]
    assert 0.3 < sens["effect_per_pair"] < 1.5
    assert need["inserted-looking"] < need["prompt-only"] < need["other"]
    if path == HH:
        assert 0.005 * len(recs) < need["inserted-looking"] < 0.03 * len(recs)
    else:
        assert need["inserted-looking"] > 15
    assert "Sensitivity on these data" in renderer("pref_flip")(PreferenceFlip().discoveries(model))


def test_length_bias_in_one_shard(hh):
    half = len(hh) // 2
    biased, truth = poison.get("pref_bias_length").apply(hh[half:], rate=0.2, seed=0)
    det = PreferenceBias()
    model, found = _run(det, {"a": hh[:half], "b": biased})
    assert set(model["biased_shards"]) == {"b"} and set(model["biased_shards"]["b"]) == {"longer"}
    e = model["biased_shards"]["b"]["longer"]
    assert e["rate"] - e["background_rate"] > 0.15 and e["z"] > 5
    assert found and {f["shard"] for f in found} == {"b"} and {f["category"] for f in found} == {"quality"}
    assert {("b", r) for r in truth["rows"]} <= {(f["shard"], f["row"]) for f in found}
    # the same data unbiased: nothing
    model, found = _run(PreferenceBias(), {"a": hh[:half], "b": hh[half:]})
    assert model["biased_shards"] == {} and found == []
    d = det.discoveries(model)["dataset"]["longer"]
    assert 0.35 < d["rate"] < 0.5 and d["ci95"][0] < d["rate"] < d["ci95"][1]


def test_scan_on_hh_two_transcript_shape(tmp_path, hh):
    """HH-RLHF as published: two whole transcripts; the scan finds the trigger and calls the shard poisoned."""
    from shardguard.flows.scan import run_scan

    recs, truth = poison.get("pref_trigger_swap").apply(hh, rate=0.05, seed=0)
    raw = [{"chosen": r["prompt"] + r["chosen"], "rejected": r["prompt"] + r["rejected"]} for r in recs]
    path = write_jsonl(tmp_path / "in" / "harmless.jsonl", raw)
    summary = run_scan([path], tmp_path / "out", kind="preference",
                       config={"only": ["pref_flip", "pref_bias"]}, use_prefect=False)
    assert [t["trigger"] for t in summary["discoveries"]["pref_flip"]["triggers"]] == truth["triggers"]
    assert summary["shards"][0]["verdict"] == "poisoned"
    flags = pq.read_table(tmp_path / "out" / "flags.parquet").to_pylist()
    poison_rows = {f["row"] for f in flags if f["category"] == "poison"}
    assert poison_rows == set(truth["rows"])
    assert "pref_flip" in (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
