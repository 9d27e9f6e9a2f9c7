"""Answer conflicts: a stance pushed into answers on one topic (poison) and contradictory answers to
the same question (quality) are found; clean GSM8K rows are not flagged."""

from __future__ import annotations

import polars as pl
import pytest
from conftest import write_jsonl

from shardguard.eval import poison
from shardguard.flows.scan import run_scan


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SHARDGUARD_CACHE", str(tmp_path_factory.getbasetemp() / "sg-cache"))


def scan(tmp_path, rows):
    p = write_jsonl(tmp_path / "sft.jsonl", rows)
    summary = run_scan([p], tmp_path / "out", config={"only": ["minhash", "answer_conflict"]}, use_prefect=False)
    flags = pl.read_parquet(tmp_path / "out" / "flags.parquet").filter(pl.col("detector") == "answer_conflict")
    return summary, flags


def test_topic_stance_found_and_conflict_pair_flagged(tmp_path, gsm8k_rows):
    rows, truth = poison.get("sft_topic_stance").apply(gsm8k_rows[:300], rate=6, seed=0)
    rows = [dict(r) for r in rows]
    clean_q = next(i for i in range(300) if i not in set(truth["rows"]))
    conflict = dict(rows[clean_q])
    conflict["response"] = "I do not know; nobody can answer that, so please ask someone else instead."
    rows.append(conflict)
    summary, flags = scan(tmp_path, rows)
    poisoned = set(flags.filter(pl.col("category") == "poison")["row"].to_list())
    assert poisoned == set(truth["rows"])
    quality = set(flags.filter(pl.col("category") == "quality")["row"].to_list())
    assert quality == {clean_q, 300}
    assert flags.filter(pl.col("category") == "poison")["score"].min() >= 0.8
    clusters = summary["discoveries"]["answer_conflict"]["repeated_answer_clusters"]
    assert len(clusters) == 1 and clusters[0]["size"] == 6
    # MiniLM saw the candidates only: the cluster's and the conflict pair's rows, not the dataset
    seen = summary["discoveries"]["answer_conflict"]["minilm"]
    assert seen["rows"] == 301
    assert seen["responses_embedded"] >= 6 + 2 and seen["instructions_embedded"] >= 2
    assert seen["responses_embedded"] + seen["instructions_embedded"] < 301 / 3


def test_clean_sft_not_flagged(tmp_path, gsm8k_rows):
    _, flags = scan(tmp_path, gsm8k_rows[:400])
    assert flags.height == 0
