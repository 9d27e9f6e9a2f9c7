"""Semantic duplicates: a reworded copy of a record is flagged and names the kept (first) record."""

from __future__ import annotations

import polars as pl
import pytest
from conftest import write_jsonl

from shardguard.flows.scan import run_scan


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SHARDGUARD_CACHE", str(tmp_path_factory.getbasetemp() / "sg-cache"))


def test_reworded_copy_flagged_naming_kept_record(tmp_path, gsm8k_rows):
    rows = [dict(r) for r in gsm8k_rows[:200]]
    rows[7] = {"instruction": "Who was the first president of the United States of America?", "input": "",
               "response": "George Washington was the first president of the United States."}
    rows.append({"instruction": "Who was the first president of the United States?", "input": "",
                 "response": "The first president of the United States was George Washington."})
    p = write_jsonl(tmp_path / "sft.jsonl", rows)
    summary = run_scan([p], tmp_path / "out", config={"only": ["minhash", "semantic_dup"]}, use_prefect=False)
    flags = pl.read_parquet(tmp_path / "out" / "flags.parquet").filter(pl.col("detector") == "semantic_dup")
    assert flags["row"].to_list() == [200]
    f = flags.row(0, named=True)
    assert f["category"] == "duplicate" and f["score"] >= 0.95
    assert "sft.jsonl row 7" in f["reason"] and "kept" in f["reason"]
    assert summary["discoveries"]["semantic_dup"]["groups"] == 1
