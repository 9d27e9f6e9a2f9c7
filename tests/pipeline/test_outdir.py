"""The --out folder: the user's files are never touched, inputs and outputs never overlap, two scans
never interleave, and a scan killed at any moment leaves the previous whole result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import SAMPLE, read_jsonl_gz, write_jsonl

from shardguard.ingest.readers import read_shard
from shardguard.pipeline.outdir import OutDir, OutputBusy, OutputError
from shardguard.pipeline.scan import scan

SHARDGUARD = str(Path(sys.executable).with_name("shardguard"))
CONFIG = {"only": ["exact_dup", "minhash"]}


@pytest.fixture(scope="module")
def rows():
    return read_jsonl_gz(SAMPLE / "web_c4_commoncrawl_sample" / "c4_cc_docs.web.jsonl.gz", limit=300)


def consistent(out: Path) -> dict:
    """out/ shows one whole result: summary, flags and the clean/quarantine files agree."""
    s = json.loads((out / "summary.json").read_text())
    flags = pq.read_table(out / "flags.parquet")
    kept = sum(1 for e in s["shards"] for k in ("clean", "quarantine") if (e.get("outputs") or {}).get(k)
               if (out / e["outputs"][k]).exists()  # nothing held back: no quarantine file
               for r in read_shard(out / e["outputs"][k]) if r.obj is not None)
    assert kept == s["rows_kept"] + s["rows_held_back"], (kept, s["rows_kept"], s["rows_held_back"])
    assert set(flags.column("shard").to_pylist()) <= {e["shard"] for e in s["shards"]}
    assert sorted(p.name for p in (out / "clean").iterdir()) == sorted(
        Path(e["outputs"]["clean"]).name for e in s["shards"] if e["outputs"].get("clean"))
    return s


def test_user_files_in_out_are_refused_and_untouched(tmp_path, rows):
    write_jsonl(tmp_path / "in" / "a.jsonl", rows[:20])
    out = tmp_path / "out"
    (out / "clean").mkdir(parents=True)
    (out / "clean" / "user_file.txt").write_text("mine")
    (out / "quarantine").mkdir()
    (out / "quarantine" / "user_q.txt").write_text("mine too")
    with pytest.raises(OutputError, match="did not write"):
        scan([tmp_path / "in"], out, config=CONFIG)
    assert (out / "clean" / "user_file.txt").read_text() == "mine"
    assert (out / "quarantine" / "user_q.txt").read_text() == "mine too"
    r = subprocess.run([SHARDGUARD, "scan", str(tmp_path / "in"), "--out", str(out), "-q"], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "did not write" in r.stderr
    assert sorted(p.name for p in out.rglob("*")) == ["clean", "quarantine", "user_file.txt", "user_q.txt"]


def test_out_overlapping_the_inputs_is_refused(tmp_path, rows):
    inp = tmp_path / "in"
    write_jsonl(inp / "clean" / "part.jsonl", rows[:20])
    for out in (inp, inp / "out", tmp_path):
        with pytest.raises(OutputError):
            scan([inp], out, config=CONFIG)
    assert (inp / "clean" / "part.jsonl").is_file() and not (inp / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_rerun_keeps_the_users_own_files_and_replaces_its_own(tmp_path, rows):
    write_jsonl(tmp_path / "in" / "a.jsonl", rows[:30])
    out = tmp_path / "out"
    scan([tmp_path / "in"], out, config=CONFIG)
    (out / "notes.txt").write_text("reviewer notes")
    write_jsonl(tmp_path / "in" / "a.jsonl", rows[:40])
    s = scan([tmp_path / "in"], out, config=CONFIG).summary
    assert s["rows_total"] == 40 and consistent(out)["rows_total"] == 40
    assert (out / "notes.txt").read_text() == "reviewer notes"
    assert len(list((out / ".shardguard" / "runs").iterdir())) == 1  # the previous result is gone
    # the outputs are never read back as input: scanning the folder that holds both reads the input only
    s2 = scan([tmp_path], tmp_path.parent / f"{tmp_path.name}-out2", config=CONFIG).summary
    assert [e["shard"] for e in s2["shards"]] == ["in/a.jsonl"]


def test_a_second_scan_into_the_same_out_is_refused_while_one_runs(tmp_path, rows):
    write_jsonl(tmp_path / "in" / "a.jsonl", rows[:20])
    out = tmp_path / "out"
    with OutDir(out):  # a scan holding the folder
        with pytest.raises(OutputBusy, match="another scan"):
            scan([tmp_path / "in"], out, config=CONFIG)
        r = subprocess.run([SHARDGUARD, "scan", str(tmp_path / "in"), "--out", str(out), "-q"],
                           capture_output=True, text=True)
        assert r.returncode == 2 and "another scan is writing" in r.stderr
    assert scan([tmp_path / "in"], out, config=CONFIG).summary["rows_total"] == 20


def test_kill_at_any_moment_leaves_the_previous_whole_result(tmp_path, rows):
    write_jsonl(tmp_path / "a" / "a.jsonl", rows[:50])
    write_jsonl(tmp_path / "b" / "b.jsonl", rows[50:300] + rows[50:60])
    out = tmp_path / "out"
    first = scan([tmp_path / "a"], out, config=CONFIG).summary
    env = dict(os.environ)
    seen_new = False
    for delay in (0.3, 0.8, 1.5, 2.5, 3.5, 5.0, 7.0):
        p = subprocess.Popen([SHARDGUARD, "scan", str(tmp_path / "b"), "--out", str(out), "-q", "--detectors",
                              "exact_dup,minhash"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        s = consistent(out)  # whatever the moment: one whole result, the old one or the new one
        assert s["rows_total"] in (first["rows_total"], 260)
        seen_new |= s["rows_total"] == 260
        if seen_new:
            break
    # a rerun after the kills gives what an uninterrupted scan gives
    again = scan([tmp_path / "b"], out, config=CONFIG)
    clean = scan([tmp_path / "b"], tmp_path / "fresh", config=CONFIG)
    assert again.findings.equals(clean.findings)
    assert consistent(out)["rows_total"] == 260
    assert len(list((out / ".shardguard" / "runs").iterdir())) == 1
    assert not list((out / ".shardguard").glob("work-*"))
