"""Campaign detector: planted campaigns (paraphrased into real pages; near-copied on many domains)
are found with the claim named; clean web text (C4 pages, Wikipedia passages) is not flagged."""

from __future__ import annotations

import json

import polars as pl
import pytest
from conftest import SAMPLE, read_jsonl_gz, write_jsonl

from shardguard.eval import poison
from shardguard.flows.scan import run_scan
from shardguard.report.sections import renderer

CFG = {"only": ["minhash", "campaign"]}


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SHARDGUARD_CACHE", str(tmp_path_factory.getbasetemp() / "sg-cache"))


def scan(tmp_path, rows, name="web.jsonl"):
    p = write_jsonl(tmp_path / "in" / name, rows)
    summary = run_scan([p], tmp_path / "out", config=CFG, use_prefect=False)
    flags = pl.read_parquet(tmp_path / "out" / "flags.parquet").filter(pl.col("detector") == "campaign")
    return summary, flags


def test_paraphrased_campaign_found(tmp_path, web_rows):
    rows, truth = poison.get("web_campaign_paraphrase").apply(web_rows[:400], rate=10, seed=3)
    summary, flags = scan(tmp_path, rows)
    got = set(flags.filter(pl.col("category") == "poison")["row"].to_list())
    assert got == set(truth["rows"])
    assert flags["score"].min() >= 0.8
    disc = summary["discoveries"]["campaign"]
    entity_words = set(truth["entity"].lower().split())
    assert any(entity_words & set(c.get("terms", [])) for c in disc["clusters"])
    assert any(w in flags["reason"][0].lower() for w in entity_words)
    assert disc["clusters"][0]["xy"] and len(disc["clusters"][0]["xy"][0]) == 2
    html = (tmp_path / "out" / "report.html").read_text()
    assert "2-D projection (PCA) of the clustered chunks" in html and "data:image/png;base64" in html
    assert json.dumps(disc)


def test_near_copy_campaign_found_by_embeddings_and_minhash(tmp_path, web_rows):
    rows, truth = poison.get("web_campaign_copy").apply(web_rows[:300], rate=12, seed=1)
    summary, flags = scan(tmp_path, rows)
    assert set(flags["row"].to_list()) == set(truth["rows"])
    vias = {c["via"] for c in summary["discoveries"]["campaign"]["clusters"]}
    assert vias == {"embedding", "minhash"}
    assert summary["shards"][0]["verdict"] == "poisoned"


def test_clean_web_not_flagged(tmp_path, web_rows):
    wiki = read_jsonl_gz(SAMPLE / "web_wikipedia_passages" / "wikipedia_passages.part1.web.jsonl.gz", limit=500)
    summary, flags = scan(tmp_path, web_rows[:500] + wiki)
    assert flags.filter(pl.col("category") == "poison").height == 0
    # wikipedia passages of one article do cluster, but are judged topical, not campaigns
    assert summary["discoveries"]["campaign"]["stats"]["chunks"] > 5000


def test_report_html_escapes_data():
    frag = renderer("campaign")({"clusters": [{"cluster_id": "e0", "via": "embedding", "size": 3, "distinct_urls": 3,
                                               "distinct_domains": 3, "terms": ["<b>"], "xy": [[0, 1], [1, 0]],
                                               "representative": "<script>alert(1)</script>"}],
                                 "documents_flagged": 3, "stats": {}})
    assert "<script>" not in frag and "&lt;script&gt;" in frag
