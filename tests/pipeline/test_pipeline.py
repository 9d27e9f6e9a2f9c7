"""`pipeline.scan`: the one composition of ingest -> detect -> decide -> write, returning its results."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
from conftest import SAMPLE, read_jsonl_gz, write_jsonl

from shardguard.pipeline.config import ScanConfig
from shardguard.pipeline.scan import ScanResult, scan


def test_scan_returns_findings_summary_and_files(tmp_path):
    rows = read_jsonl_gz(SAMPLE / "web_c4_commoncrawl_sample" / "c4_cc_docs.web.jsonl.gz", limit=60)
    write_jsonl(tmp_path / "in" / "a.jsonl", rows + [rows[3]])
    res = scan([tmp_path / "in"], tmp_path / "out", config={"only": ["exact_dup"]})
    assert isinstance(res, ScanResult)
    # what the caller gets is what was written
    assert res.findings.equals(pq.read_table(tmp_path / "out" / "flags.parquet"))
    assert res.summary == json.loads((tmp_path / "out" / "summary.json").read_text())
    assert res.findings.select(["row", "detector"]).to_pylist() == [{"row": 60, "detector": "exact_dup"}]
    assert res.files == {"a.jsonl": {"clean": "clean/a.jsonl", "quarantine": "quarantine/a.jsonl"}}
    assert res.summary["rows_kept"] == 60 and res.summary["rows_held_back"] == 1


def test_context_shards_are_judged_against_but_not_reported(tmp_path):
    """The service's accepted corpus: read first, so a copy of an accepted record in a new shard is a
    duplicate; the context itself gets no findings, verdict, accounting or outputs."""
    rows = read_jsonl_gz(SAMPLE / "web_c4_commoncrawl_sample" / "c4_cc_docs.web.jsonl.gz", limit=40)
    write_jsonl(tmp_path / "accepted" / "old.jsonl", rows[:30])
    write_jsonl(tmp_path / "new" / "new.jsonl", rows[30:] + [rows[5]])
    res = scan([tmp_path / "new"], tmp_path / "out", config=ScanConfig(only=["exact_dup"]),
               context_paths=[tmp_path / "accepted"], extra_summary={"service": {"scan_id": "x"}})
    assert [e["shard"] for e in res.summary["shards"]] == ["new.jsonl"]
    assert res.summary["rows_total"] == 11 and res.summary["rows_held_back"] == 1
    assert res.findings.select(["shard", "row"]).to_pylist() == [{"shard": "new.jsonl", "row": 10}]
    assert res.summary["service"] == {"scan_id": "x", "context_rows": 30}
    assert sorted(p.name for p in (tmp_path / "out" / "clean").iterdir()) == ["new.jsonl"]


def test_progress_reports_every_stage_with_all_rows_and_changes_nothing(tmp_path):
    """A scan given a Progress shows ingest, each detect pass and write, each with the row count it
    reached; the outputs are the same as without it."""
    import io

    from shardguard.pipeline.progress import Progress

    rows = read_jsonl_gz(SAMPLE / "web_c4_commoncrawl_sample" / "c4_cc_docs.web.jsonl.gz", limit=50)
    write_jsonl(tmp_path / "in" / "a.jsonl", rows + [rows[3]])
    write_jsonl(tmp_path / "in" / "b.jsonl", rows[:20])
    cfg = {"only": ["exact_dup"], "batch_size": 16}
    buf = io.StringIO()
    with_progress = scan([tmp_path / "in"], tmp_path / "out1", config=cfg, progress=Progress(stream=buf, delay=0))
    plain = scan([tmp_path / "in"], tmp_path / "out2", config=cfg)
    assert with_progress.findings.equals(plain.findings)
    final = {}
    for line in buf.getvalue().replace("\r", "\n").splitlines():
        if ":" in line and "rows" in line:
            name = line.split(":", 1)[0].strip() if not line.startswith("detect") else ":".join(
                p.strip() for p in line.split(":")[:2])
            final[name] = line
    assert set(final) == {"ingest", "detect:observe", "detect:finalize", "detect:flag", "write"}, final
    assert "71.0 rows" in final["ingest"] and "shard 2/2" in final["ingest"]
    for name in ("detect:observe", "detect:flag", "write"):
        assert "71.0/71.0" in final[name] and "100%" in final[name], final[name]
