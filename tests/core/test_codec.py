"""Detector states survive the safe on-disk form (the incremental service stores them between runs)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from conftest import SAMPLE, read_jsonl_gz, write_jsonl

from shardguard.core import codec


def test_plain_data_round_trips_with_types(tmp_path):
    obj = {"a": [1, 2.5, None, True, "x"], ("s", 3): {"t": (1, "b")}, "c": Counter({("w", 1): 2}),
           "set": {1, 2}, "fs": frozenset({"q"}), "arr": np.arange(6, dtype=np.uint32).reshape(2, 3),
           "f16": np.ones(3, np.float16), "big": 2**70, "nan": float("inf"), "np": np.int64(7), "b": b"\x00\xff",
           "strs": np.array(["a", "bb"])}
    codec.dump(obj, tmp_path / "st")
    back = codec.load(tmp_path / "st")
    assert back.keys() == obj.keys()
    assert back[("s", 3)] == {"t": (1, "b")} and back["c"] == obj["c"] and isinstance(back["c"], Counter)
    assert back["set"] == {1, 2} and back["fs"] == frozenset({"q"}) and back["big"] == 2**70
    assert back["arr"].dtype == np.uint32 and (back["arr"] == obj["arr"]).all()
    assert back["f16"].dtype == np.float16 and back["b"] == b"\x00\xff" and back["np"] == 7
    assert list(back["strs"]) == ["a", "bb"]


def test_code_objects_are_refused(tmp_path):
    with pytest.raises(codec.NotPlainData):
        codec.dump({"f": lambda: 1}, tmp_path / "st")


def test_every_default_detectors_state_round_trips(tmp_path):
    """Observe a mixed sample with all default detectors, store and load the merged state, and the
    findings from the loaded state are those from the live one."""
    from shardguard import detectors
    from shardguard.engine.driver import Driver, concat_findings
    from shardguard.ingest import ingest_shard

    web = read_jsonl_gz(SAMPLE / "web_c4_commoncrawl_sample" / "c4_cc_docs.web.jsonl.gz", limit=150)
    sft = read_jsonl_gz(SAMPLE / "gsm8k" / "gsm8k_test.sft.jsonl.gz", limit=150)
    pref = read_jsonl_gz(SAMPLE / "llamafactory_dpo_en_demo" / "dpo_en_demo.preference.jsonl.gz", limit=80)
    batches = []
    for name, kind, rows in (("w.jsonl", "web", web + web[:2]), ("s.jsonl", "sft", sft + sft[:2]),
                             ("p.jsonl", "preference", pref)):
        p = write_jsonl(tmp_path / name, rows)
        batches += list(ingest_shard(p, name, kind, 64))
    seq = 0
    fixed = []
    for b in batches:  # global input order across shards, as the scan's ingest assigns it
        import pyarrow as pa

        i = b.schema.get_field_index("seq")
        fixed.append(b.set_column(i, "seq", pa.array(np.arange(seq, seq + b.num_rows), pa.int64())))
        seq += b.num_rows
    drv = Driver(detectors.build())
    state = None
    for b in fixed:
        state = drv.merge(state, drv.observe(b))
    assert len(state) >= 8
    codec.dump(state, tmp_path / "state")
    loaded = codec.load(tmp_path / "state")

    def findings(st):
        m = Driver(detectors.build()).finalize(st)
        return concat_findings([t for b in fixed for t in drv.flag(b, m)])

    a, b = findings(state), findings(loaded)
    assert a.num_rows > 0
    assert a.equals(b)
