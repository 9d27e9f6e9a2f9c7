"""Detectors that read records back by seq in finalize (campaign, semantic_dup) give the same findings
with the local engine's reader of the records file and without one (the Beam engine: they keep the
texts in their state)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import write_jsonl

from shardguard.core.records import ColumnRecords, IpcRecords
from shardguard.eval import poison
from shardguard.flows.scan import run_scan


def test_readers_return_columns_in_the_order_asked(tmp_path):
    path = tmp_path / "records.arrow"
    schema = pa.schema([("seq", pa.int64()), ("text", pa.string())])
    with pa.ipc.new_file(str(path), schema) as w:
        w.write_batch(pa.record_batch([pa.array([0, 1, 2]), pa.array(["a", "b", "c"])], schema=schema))
        w.write_batch(pa.record_batch([pa.array([3, 4]), pa.array(["d", None])], schema=schema))
    cols = {"seq": np.array([3, 0, 4, 1, 2]), "text": ["d", "a", None, "b", "c"]}
    for reader in (IpcRecords(path), ColumnRecords(cols)):
        assert reader.take([4, 0, 3, 3], ["text"]) == {"text": [None, "a", "d", "d"]}
        seen = {int(s): t for seqs, c in reader.batches(["text"]) for s, t in zip(seqs, c["text"].to_pylist())}
        assert seen == {0: "a", 1: "b", 2: "c", 3: "d", 4: None}
    with pytest.raises(KeyError):
        IpcRecords(path).take([7], ["text"])


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SHARDGUARD_CACHE", str(tmp_path_factory.getbasetemp() / "sg-cache"))


def test_local_reader_and_beam_state_fallback_flag_the_same(tmp_path, web_rows):
    rows, truth = poison.get("web_campaign_paraphrase").apply(web_rows[:250], rate=8, seed=5)
    rows.append({"url": "https://copy.example/x", "text": " ".join(
        w for w in rows[3]["text"].split() if w.lower() not in ("the", "a", "an"))})
    write_jsonl(tmp_path / "in" / "web.jsonl", rows)
    cfg = {"only": ["minhash", "campaign", "semantic_dup"], "batch_size": 64}
    a = run_scan([tmp_path / "in"], tmp_path / "local", engine="local", config=cfg, use_prefect=False)
    b = run_scan([tmp_path / "in"], tmp_path / "beam", engine="beam", config=cfg, use_prefect=False)
    fa, fb = pq.read_table(tmp_path / "local" / "flags.parquet"), pq.read_table(tmp_path / "beam" / "flags.parquet")
    camp = {r for r, d in zip(fa.column("row").to_pylist(), fa.column("detector").to_pylist()) if d == "campaign"}
    assert camp == set(truth["rows"])
    assert fa.sort_by([("row", "ascending"), ("detector", "ascending")]).equals(
        fb.sort_by([("row", "ascending"), ("detector", "ascending")]))
    assert a["discoveries"]["campaign"] == b["discoveries"]["campaign"]
