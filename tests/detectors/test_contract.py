"""Every registered detector honours the interface: findings do not depend on the order in which
partial states merge (Beam merges in any order), scores are in 0..1, reasons are sentences, and
categories are the contract's."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from conftest import SAMPLE, read_jsonl_gz

from shardguard import detectors
from shardguard.engine.driver import Driver
from shardguard.ingest import RECORD_SCHEMA, ShardInfo, ingest_shard


def corpus(tmp_path):
    from conftest import write_jsonl

    web = read_jsonl_gz(SAMPLE / "web_c4_commoncrawl_sample" / "c4_cc_docs.web.jsonl.gz", limit=150)
    web += [web[0], {"url": "https://b.example/", "text": web[1]["text"] + " extra words here"}]
    sft = read_jsonl_gz(SAMPLE / "gsm8k" / "gsm8k_test.sft.jsonl.gz", limit=150)
    sft += [sft[2]]
    pref = read_jsonl_gz(SAMPLE / "llamafactory_dpo_en_demo" / "dpo_en_demo.preference.jsonl.gz", limit=60)
    batches, seq = [], 0
    for name, rows in (("web.jsonl", web), ("sft.jsonl", sft), ("pref.jsonl", pref)):
        p = write_jsonl(tmp_path / name, rows)
        info = ShardInfo(name, str(p))
        batches += [b for b in ingest_shard(p, name, "auto", 40, info=info, seq_start=seq)]
        seq += info.rows
    return batches


def run(name, batches, order):
    """The detector `name` (and those it requires) through the engines' one Driver, with the batches'
    partial states merged in the given order (Beam merges in any order)."""
    drv = Driver(detectors.build(only=[name]))
    parts = [drv.observe(b) for b in batches]
    parts = [parts[i] for i in order(len(parts))]
    if order.__name__ == "tree":
        while len(parts) > 1:
            parts = [drv.merge(parts[i], parts[i + 1]) if i + 1 < len(parts) else parts[i]
                     for i in range(0, len(parts), 2)]
        state = parts[0] if parts else None
    else:
        state = None
        for p in parts:
            state = drv.merge(state, p)
    models = drv.finalize(state)
    found = [f for b in batches for t in drv.flag(b, models) for f in t.to_pylist() if f["detector"] == name]
    return sorted(found, key=lambda f: (f["shard"], f["row"], f["category"], f["reason"])), models[name], drv


def forward(n):
    return list(range(n))


def backward(n):
    return list(range(n))[::-1]


def tree(n):
    return [i for i in range(1, n, 2)] + [i for i in range(0, n, 2)]


@pytest.fixture(scope="module")
def batches(tmp_path_factory):
    b = corpus(tmp_path_factory.mktemp("contract"))
    assert all(x.schema == RECORD_SCHEMA for x in b)
    return b


@pytest.mark.parametrize("name", sorted(detectors.registry()))
def test_detector_is_merge_order_free_and_well_formed(name, batches):
    results = [run(name, batches, order)[0] for order in (forward, backward, tree)]
    assert results[0] == results[1] == results[2], f"{name}: findings depend on merge order"
    for f in results[0]:
        assert f["category"] in detectors.categories() and 0.0 <= f["score"] <= 1.0
        assert f["reason"] and len(f["reason"]) < 2000
        json.loads(f["details"])
    _, model, drv = run(name, batches, forward)
    disc = next(d for d in drv.detectors if d.name == name).discoveries(model)
    json.dumps(disc, default=str)
    planted = {"exact_dup": {("web.jsonl", 150), ("sft.jsonl", 150)}, "minhash": {("web.jsonl", 151)}}
    assert {(f["shard"], f["row"]) for f in results[0]} >= planted.get(name, set())


def test_schema_has_provenance():
    assert RECORD_SCHEMA.names[:4] == ["shard", "row", "seq", "record_id"]
    assert isinstance(pa.schema(RECORD_SCHEMA), pa.Schema)
