"""The service's stored accepted corpus: a scheduled run observes only the new shards, and its
findings and verdicts are those of a full rescan that re-reads the whole accepted corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
from conftest import SAMPLE, read_jsonl_gz, write_jsonl

from shardguard.eval import poison
from shardguard.pipeline.scan import scan
from shardguard.service.incremental import incremental_scan

CONFIG = {"only": ["exact_dup", "minhash", "trigger", "response_cluster", "secrets", "semantic_dup"]}


def test_stored_states_give_the_verdicts_of_a_full_rescan(tmp_path, gsm8k_rows):
    watch, state = tmp_path / "watch", tmp_path / "state"
    web = read_jsonl_gz(SAMPLE / "web_c4_commoncrawl_sample" / "c4_cc_docs.web.jsonl.gz", limit=120)
    write_jsonl(watch / "a.sft.jsonl", gsm8k_rows[:300])
    write_jsonl(watch / "w.web.jsonl", web[:100])
    r1 = incremental_scan(watch, state, config=CONFIG, settle_seconds=0)
    assert r1["verdicts"]["clean"] == 2
    # run 2: copies of accepted rows, near-copies of accepted pages, and a backdoor whose trigger
    # is only significant together with the accepted rows' statistics
    bad, truth = poison.get("sft_backdoor_token").apply(gsm8k_rows[300:700], rate=0.03, seed=2)
    write_jsonl(watch / "b.sft.jsonl", bad + gsm8k_rows[:25])
    write_jsonl(watch / "v.web.jsonl", [dict(d, text=d["text"].replace(" the ", " a ", 1)) for d in web[:10]]
                + web[100:120])
    corpus_records = sorted((state / "corpus").glob("records-*.arrow"))
    assert corpus_records == []  # built lazily, on the first run that has an accepted corpus
    r2 = incremental_scan(watch, state, config=CONFIG, settle_seconds=0)
    s2 = json.loads((Path(r2["out"]) / "summary.json").read_text())
    assert s2["service"]["corpus"]["mode"] == "stored states"
    assert s2["service"]["corpus"]["added"] == 2 and s2["service"]["context_rows"] == 400
    first = {p: p.stat().st_mtime_ns for p in (state / "corpus").glob("records-*.arrow")}
    assert len(first) == 2

    # the same judgement by a full rescan that reads the accepted corpus again
    new = tmp_path / "new"
    new.mkdir()
    for n in ("b.sft.jsonl", "v.web.jsonl"):
        (new / n).write_bytes((watch / n).read_bytes())
    full = scan([new], tmp_path / "full", config=CONFIG, context_paths=[state / "accepted"])
    fa = pq.read_table(Path(r2["out"]) / "flags.parquet").select(["shard", "row", "detector", "category", "score"])
    fb = full.findings.select(["shard", "row", "detector", "category", "score"])
    got = {(r["shard"], r["category"]) for r in fa.to_pylist()}
    assert {("b.sft.jsonl", "poison"), ("b.sft.jsonl", "duplicate"), ("v.web.jsonl", "duplicate")} <= got
    assert sum(r["category"] == "poison" for r in fa.to_pylist()) >= truth["n_poisoned"]
    assert sum(r["shard"] == "v.web.jsonl" for r in fa.to_pylist()) >= 9  # 10 edited copies of accepted pages
    assert fa.equals(fb)
    assert {s["shard"]: s["verdict"] for s in s2["shards"]} == \
        {s["shard"]: s["verdict"] for s in full.summary["shards"]} == {"b.sft.jsonl": "review", "v.web.jsonl": "review"}

    # run 3: nothing of the corpus is read again; only the new shard joins (none were accepted in run 2)
    write_jsonl(watch / "c.sft.jsonl", gsm8k_rows[800:850])
    r3 = incremental_scan(watch, state, config=CONFIG, settle_seconds=0)
    s3 = json.loads((Path(r3["out"]) / "summary.json").read_text())
    assert s3["service"]["corpus"] == {"added": 0, "rebuilt": 0, "rows": 400, "mode": "stored states"}
    assert {p: p.stat().st_mtime_ns for p in (state / "corpus").glob("records-*.arrow")} == first
    # a changed configuration rebuilds the store once from the accepted folder
    write_jsonl(watch / "d.sft.jsonl", gsm8k_rows[850:900])
    r4 = incremental_scan(watch, state, config={"only": ["exact_dup", "minhash"]}, settle_seconds=0)
    s4 = json.loads((Path(r4["out"]) / "summary.json").read_text())
    assert s4["service"]["corpus"]["rebuilt"] == 1 and s4["service"]["corpus"]["added"] == 3
