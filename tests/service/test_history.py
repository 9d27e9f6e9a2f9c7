"""The audit history and the review queue: incremental scans recorded per shard (by content hash),
history listing and a diff of two scans, review decisions that survive a restart, and the webhook."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from conftest import REPO, webhook_server, write_jsonl

from shardguard.cli.service import history_cmd, review_cmd
from shardguard.eval import poison
from shardguard.service.history import History
from shardguard.service.incremental import incremental_scan, parse_every

CONFIG = {"only": ["exact_dup", "minhash", "trigger"]}


def test_incremental_history_diff_and_review(tmp_path, gsm8k_rows):
    watch, state = tmp_path / "watch", tmp_path / "state"
    hook, hook_url, received = webhook_server()
    try:
        # scan 1: one clean shard -> clean, accepted automatically
        write_jsonl(watch / "a.sft.jsonl", gsm8k_rows[:200])
        r1 = incremental_scan(watch, state, config=CONFIG, settle_seconds=0, webhook=hook_url)
        assert r1["new"] == 1 and r1["verdicts"] == {"clean": 1, "review": 0, "poisoned": 0}
        assert received == []
        # nothing new: no scan recorded
        assert incremental_scan(watch, state, config=CONFIG, settle_seconds=0)["scan_id"] is None

        # scan 2: a.sft.jsonl is replaced by a copy of what was accepted plus new rows (same name, new
        # content), and a backdoored shard arrives; both are judged against the accepted corpus
        write_jsonl(watch / "a.sft.jsonl", gsm8k_rows[:200] + gsm8k_rows[200:220])
        bad, truth = poison.get("sft_backdoor_token").apply(gsm8k_rows[300:600], rate=0.03, seed=1)
        write_jsonl(watch / "sub" / "b.sft.jsonl", bad)
        r2 = incremental_scan(watch, state, config=CONFIG, settle_seconds=0, webhook=hook_url)
    finally:
        hook.shutdown()
    assert r2["new"] == 2
    v = {s["name"]: s for s in r2["shards"]}
    assert v["a.sft.jsonl"]["verdict"] == "review"                # 200 of 220 rows already accepted
    assert v["a.sft.jsonl"]["by_category"] == {"duplicate": 200}
    assert v["sub/b.sft.jsonl"]["verdict"] == "poisoned"
    assert v["sub/b.sft.jsonl"]["by_category"]["poison"] >= truth["n_poisoned"]
    assert r2["notified"].startswith("ok") and len(received) == 1
    assert [s["name"] for s in received[0]["shards"]] == ["sub/b.sft.jsonl"]
    summary = json.loads((Path(r2["out"]) / "summary.json").read_text())
    assert [s["shard"] for s in summary["shards"]] == ["a.sft.jsonl", "sub/b.sft.jsonl"]  # the context is not
    assert summary["service"]["context_rows"] == 200 and summary["accounting_ok"]  # re-reported

    runner = CliRunner()
    out = runner.invoke(history_cmd, ["--state", str(state), "--diff", r1["scan_id"], r2["scan_id"]])
    assert out.exit_code == 0, out.output
    assert "changed: a.sft.jsonl" in out.output and "verdict clean -> review" in out.output
    assert "duplicate 0 -> 200" in out.output and "only in B: sub/b.sft.jsonl  poisoned" in out.output
    # a unique prefix of the id (timestamp + 5 of its 6 random hex digits; [:18] was ambiguous 1 run in 16)
    d = History.open(state=state).diff(r1["scan_id"][:-1], r2["scan_id"])
    assert d["verdicts_delta"] == {"clean": -1, "review": 1, "poisoned": 1}

    q = runner.invoke(review_cmd, ["list", "--state", str(state)])
    assert q.exit_code == 0 and "sub/b.sft.jsonl" in q.output and "a.sft.jsonl" in q.output
    show = runner.invoke(review_cmd, ["show", "sub/b.sft.jsonl", "--state", str(state)])
    assert show.exit_code == 0 and "trigger:poison" in show.output and f"'{truth['triggers'][0]}'" in show.output

    acc = runner.invoke(review_cmd, ["accept", "a.sft.jsonl", "--state", str(state), "--by", "alice",
                                     "--reason", "20 new rows are fine"])
    assert acc.exit_code == 0, acc.output
    rej = runner.invoke(review_cmd, ["reject", v["sub/b.sft.jsonl"]["content_hash"][:10], "--state", str(state),
                                     "--by", "bob", "--reason", "backdoor trigger confirmed"])
    assert rej.exit_code == 0, rej.output
    accepted = sorted(p.name for p in (state / "accepted").iterdir())
    assert len(accepted) == 2 and not any("b.sft" in n for n in accepted)
    # the accepted copy of the replaced shard holds only its kept rows (the 200 duplicates stay quarantined)
    new_a = [p for p in (state / "accepted").iterdir() if p.name.startswith(v["a.sft.jsonl"]["content_hash"][:12])]
    assert len(new_a) == 1 and len(new_a[0].read_text().splitlines()) == 20
    bad_q = state / History.open(state=state).shard("sub/b.sft.jsonl")["quarantine_path"]
    assert bad_q.is_file()

    # a restart: a new process reads the same database
    hist = subprocess.run([str(Path(sys.executable).with_name("shardguard")), "history", "--state", str(state)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert hist.returncode == 0, hist.stderr
    assert "accept a.sft.jsonl  by alice: 20 new rows are fine" in hist.stdout
    assert "reject sub/b.sft.jsonl  by bob: backdoor trigger confirmed" in hist.stdout
    assert "accept a.sft.jsonl  by shardguard (auto): verdict clean" in hist.stdout
    assert "2 accepted, 0 pending review, 1 rejected" in hist.stdout
    h = History.open(state=state)
    decs = [(d["name"], d["decision"], d["by"]) for d in h.decisions()]
    assert decs == [("a.sft.jsonl", "accept", "shardguard (auto)"), ("a.sft.jsonl", "accept", "alice"),
                    ("sub/b.sft.jsonl", "reject", "bob")]
    assert runner.invoke(review_cmd, ["list", "--state", str(state)]).output.strip() == "review queue is empty"

    # a changed mind is recorded too: accepting the rejected shard adds its clean rows to the corpus
    runner.invoke(review_cmd, ["accept", "sub/b.sft.jsonl", "--state", str(state), "--by", "carol"])
    sh = History.open(state=state).shard("sub/b.sft.jsonl")
    assert sh["status"] == "accepted" and (state / sh["accepted_path"]).is_file()
    assert len((state / sh["accepted_path"]).read_text().splitlines()) == 300 - sh["held_back"]


def test_unknown_shard_and_intervals(tmp_path):
    runner = CliRunner()
    r = runner.invoke(review_cmd, ["show", "x", "--state", str(tmp_path)])
    assert r.exit_code == 2 and "no history database" in r.output
    History.open(state=tmp_path).close()
    r = runner.invoke(review_cmd, ["accept", "nope.jsonl", "--state", str(tmp_path)])
    assert r.exit_code == 2 and "no shard 'nope.jsonl'" in r.output
    assert [parse_every(x) for x in ("30s", "10m", "1h30m", "90", 2)] == [30, 600, 5400, 90, 2]
    for bad in ("10 minutes", "0s", "m"):
        try:
            parse_every(bad)
        except ValueError:
            continue
        raise AssertionError(bad)
