"""End to end: `shardguard scan` writes the contract's files, accounts for every row, and fails well."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from conftest import SAMPLE, read_jsonl_gz, write_jsonl

from shardguard.cli import main

FLAG_TYPES = {"shard": pa.string(), "row": pa.int64(), "record_id": pa.string(), "detector": pa.string(),
              "category": pa.string(), "score": pa.float64(), "reason": pa.string()}


def scan(args, code=0):
    res = CliRunner().invoke(main, ["scan", *map(str, args)], catch_exceptions=False)
    assert res.exit_code == code, res.output
    return res


def count_lines(path):
    with open(path, encoding="utf-8") as f:
        return sum(1 for ln in f if ln.strip())


def check_contract(out):
    summary = json.loads((out / "summary.json").read_text())
    flags = pq.read_table(out / "flags.parquet")
    for col, typ in FLAG_TYPES.items():
        assert flags.schema.field(col).type == typ, col
    assert set(flags.column("category").to_pylist()) <= {"poison", "duplicate", "pii", "secret", "quality", "malformed"}
    assert summary["rows_kept"] + summary["rows_held_back"] + summary["rows_malformed"] == summary["rows_total"]
    assert summary["accounting_ok"] is True
    kept = held = 0
    for s in summary["shards"]:
        assert {"shard", "rows", "flagged", "verdict"} <= set(s) and s["verdict"] in ("clean", "review", "poisoned")
        if s.get("error"):
            continue
        outs = s["outputs"]
        if outs.get("clean", "").endswith(".jsonl"):
            kept += count_lines(out / outs["clean"])
            if (out / outs["quarantine"]).exists():
                held += count_lines(out / outs["quarantine"])
        else:
            kept += pq.read_metadata(out / outs["clean"]).num_rows
            if (out / outs["quarantine"]).exists():
                held += pq.read_metadata(out / outs["quarantine"]).num_rows
    assert (kept, held) == (summary["rows_kept"], summary["rows_held_back"])
    assert (out / "report.html").read_text().startswith("<!doctype html>")
    return summary, flags


def test_scan_real_datasets_each_shape(tmp_path, shared_data):
    cases = [(SAMPLE / "gsm8k" / "gsm8k_test.sft.jsonl.gz", 1319, "sft"),
             (SAMPLE / "hh_rlhf_harmless_base_test", 2312, "preference"),
             (SAMPLE / "web_c4_commoncrawl_sample", 1360, "web")]
    orig = shared_data / "hh_rlhf_harmless_base_test" / "original"
    if orig.exists():
        cases.append((orig, 2312, "preference"))
        cases.append((shared_data / "gsm8k" / "original" / "test.jsonl.gz", 1319, "sft"))
    for i, (path, rows, kind) in enumerate(cases):
        out = tmp_path / f"o{i}"
        scan([path, "--out", out])
        summary, _ = check_contract(out)
        assert summary["rows_total"] == rows and summary["rows_malformed"] == 0, path
        assert {s["kind"] for s in summary["shards"]} == {kind}


def test_hostile_shard_three_malformed_rows(tmp_path):
    good = [json.dumps(r) for r in read_jsonl_gz(SAMPLE / "gsm8k" / "gsm8k_test.sft.jsonl.gz", limit=100)]
    lines = good[:10] + ['{"instruction": "broken'] + good[10:50] + ['["a", "list"]'] + good[50:90] \
        + ['{"instruction": null, "response": 5}'] + good[90:]
    p = tmp_path / "in" / "hostile.jsonl"
    p.parent.mkdir()
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    scan([p.parent, "--out", out])
    summary, flags = check_contract(out)
    assert summary["rows_total"] == 103 and summary["rows_malformed"] == 3
    mal = flags.filter(pa.compute.equal(flags.column("category"), "malformed")).to_pylist()
    assert [m["row"] for m in mal] == [10, 51, 92]
    assert all(m["shard"] == "hostile.jsonl" for m in mal)
    assert "invalid JSON" in mal[0]["reason"] and "expected an object" in mal[1]["reason"]
    assert "missing field 'instruction'" in mal[2]["reason"]
    quarantined = [json.loads(x) for x in (out / "quarantine" / "hostile.malformed.jsonl").read_text().splitlines()]
    assert [q["row"] for q in quarantined] == [10, 51, 92] and quarantined[0]["raw"] == '{"instruction": "broken'
    assert summary["shards"][0]["verdict"] == "review"


def test_duplicates_held_back_and_named(tmp_path):
    docs = read_jsonl_gz(SAMPLE / "web_c4_commoncrawl_sample" / "c4_cc_docs.web.jsonl.gz", limit=200)
    rows = [dict(d) for d in docs]
    rows.append(dict(docs[3]))  # exact copy -> row 200
    words = docs[5]["text"].split()
    words[len(words) // 2] = "EDITED"
    rows.append({"url": "https://copy.example/x", "text": " ".join(words)})  # near copy -> row 201
    write_jsonl(tmp_path / "web.jsonl", rows)
    out = tmp_path / "out"
    scan([tmp_path / "web.jsonl", "--out", out, "--fail-on", "poison"])
    summary, flags = check_contract(out)
    by_row = {(r["row"], r["detector"]): r for r in flags.to_pylist()}
    assert (200, "exact_dup") in by_row and "row 3" in by_row[(200, "exact_dup")]["reason"]
    assert (201, "minhash") in by_row and "row 5" in by_row[(201, "minhash")]["reason"]
    d = json.loads(by_row[(201, "minhash")]["details"])
    assert d["kept_row"] == 5 and d["cluster_size"] == 2 and d["distinct_urls"] == 2
    assert summary["rows_held_back"] >= 2 and summary["rows_by_category"]["duplicate"] >= 2
    # exit 3 only when --fail-on names a flagged category
    scan([tmp_path / "web.jsonl", "--out", out, "--fail-on", "duplicate"], code=3)


def test_usage_errors_exit_2_and_unreadable_shard_is_not_fatal(tmp_path):
    scan(["--out", tmp_path / "o"], code=2)  # no path
    scan([tmp_path / "missing.jsonl", "--out", tmp_path / "o"], code=2)
    (tmp_path / "in").mkdir()
    write_jsonl(tmp_path / "in" / "ok.jsonl", [{"text": "hello there general kenobi", "url": "u"}])
    (tmp_path / "in" / "bad.parquet").write_bytes(b"garbage")
    scan([tmp_path / "in", "--out", tmp_path / "o", "--kind", "nope"], code=2)
    cfg = tmp_path / "c.toml"
    cfg.write_text("[detectors.nosuch]\nx = 1\n")
    scan([tmp_path / "in", "--out", tmp_path / "o", "--config", cfg], code=2)
    out = tmp_path / "o"
    scan([tmp_path / "in", "--out", out])
    summary, _ = check_contract(out)
    bad = [s for s in summary["shards"] if s["shard"] == "bad.parquet"][0]
    assert "Parquet" in bad["error"] and bad["verdict"] == "review"
    assert summary["rows_total"] == 1 and summary["rows_kept"] == 1
    assert (out / "quarantine" / "_unreadable" / "bad.parquet").read_bytes() == b"garbage"


def test_rerun_same_out_and_html_is_escaped(tmp_path):
    evil = "<img src=x onerror=alert(1)>"
    rows = [{"instruction": evil, "input": "", "response": "ok"}] * 2 + [{"instruction": "fine", "input": "", "response": "ok"}]
    (tmp_path / "in").mkdir()
    write_jsonl(tmp_path / "in" / f"{evil}.jsonl", rows)  # hostile text in the shard name, which findings quote
    out = tmp_path / "out"
    for _ in range(2):  # a second run into the same folder replaces the first cleanly
        scan([tmp_path / "in", "--out", out])
        check_contract(out)
    html = (out / "report.html").read_text()
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;.jsonl" in html
    # no leftovers: only the folder's marker and the one published result
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [".shardguard", ".shardguard-out"]
    assert len(list((out / ".shardguard" / "runs").iterdir())) == 1
    assert not list((out / ".shardguard").glob("work-*"))


def test_parquet_input_writes_parquet_outputs(tmp_path):
    rows = read_jsonl_gz(SAMPLE / "gsm8k" / "gsm8k_test.sft.jsonl.gz", limit=30)
    rows = rows + rows[:2]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    out = tmp_path / "out"
    scan([tmp_path / "d.parquet", "--out", out])
    summary, _ = check_contract(out)
    assert summary["rows_kept"] == 30 and summary["rows_held_back"] == 2
    assert pq.read_table(out / "clean" / "d.parquet").column_names == pq.read_table(tmp_path / "d.parquet").column_names


@pytest.mark.parametrize("kind", ["auto", "web"])
def test_kind_override(tmp_path, kind):
    write_jsonl(tmp_path / "x.jsonl", [{"text": "a b c d e f", "instruction": "i", "response": "r"}])
    out = tmp_path / "o"
    scan([tmp_path / "x.jsonl", "--out", out, "--kind", kind])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["shards"][0]["kind"] == ("sft" if kind == "auto" else "web")
