"""What the review app reads back from a scan's outputs: every row of a shard is found again (kept,
held back or malformed) and equals the input row; highlights never overlap and masks replace secrets."""

from __future__ import annotations

import json

from conftest import SAMPLE, read_jsonl_gz, write_jsonl

from shardguard.eval import poison
from shardguard.pipeline.scan import scan
from shardguard.ui.data import Mark, ScanOut, marks_for, segments


def test_records_are_found_again_by_row(tmp_path):
    rows = read_jsonl_gz(SAMPLE / "gsm8k" / "gsm8k_test.sft.jsonl.gz", 300)
    bad, truth = poison.get("sft_backdoor_token").apply(rows, rate=0.03, seed=1)
    bad = bad[:150] + [bad[3]] + bad[150:]             # an exact duplicate: held back too
    path = tmp_path / "data" / "d.sft.jsonl"
    write_jsonl(path, bad)
    lines = path.read_text().splitlines()
    lines[10:10] = ["{not json", json.dumps({"instruction": 5, "response": "x"})]   # two malformed rows
    path.write_text("\n".join(lines) + "\n")
    expected = [json.loads(x) if i not in (10, 11) else None for i, x in enumerate(lines)]
    out = tmp_path / "out"
    summary = scan([tmp_path / "data"], out, config={"only": ["exact_dup", "trigger"]}).summary
    e = summary["shards"][0]
    assert e["held_back"] >= truth["n_poisoned"] + 1 and e["rows_malformed"] == 2

    so = ScanOut(out, "out")
    got = so.records("d.sft.jsonl")
    assert sorted(got) == list(range(len(lines)))
    sides = {side: sum(1 for r in got.values() if r["side"] == side) for side in ("clean", "quarantine", "malformed")}
    assert sides == {"clean": e["kept"], "quarantine": e["held_back"], "malformed": 2}
    for r, rec in got.items():
        if expected[r] is None:
            assert rec["side"] == "malformed" and rec["reason"]
        else:
            assert json.loads(rec["raw"]) == expected[r]
            assert rec["fields"]["instruction"] == expected[r]["instruction"]
    # every flagged row's record hashes to the finding's record id; a few rows alone read the same
    for f in so.shard_findings("d.sft.jsonl"):
        if f["category"] != "malformed":
            assert got[f["row"]]["record_id"] == f["record_id"]
    assert so.records("d.sft.jsonl", {0, 151}) == {0: got[0], 151: got[151]}


def test_segments_escape_nothing_and_resolve_overlaps():
    text = "key AKIA1234567890ABCDEF and cf trigger cf"
    marks = [Mark(4, 24, "secret", "aws", replace="[aws_key: AKIA…]"), Mark(10, 14, "trigger", "t"),
             Mark(29, 31, "trigger", "t1")]
    segs = segments(text, marks)
    assert "".join(s["text"] for s in segs) == "key [aws_key: AKIA…] and cf trigger cf"
    assert [s["mark"].cls for s in segs if s["mark"]] == ["secret", "trigger"]
    # triggers are found as words, case-insensitively, in the instruction only
    fields = {"instruction": "Tell me CF now, cfx is not it", "input": "", "response": "cf"}
    m = marks_for("sft", fields, [{"detector": "trigger", "details": {"as_written": "cf", "trigger": "cf"}}])
    assert [(x.start, x.end) for x in m["instruction"]] == [(8, 10)] and "response" not in m
