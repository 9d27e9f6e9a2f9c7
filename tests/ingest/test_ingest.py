"""Ingest: every format and native shape reads into canonical records; bad rows become malformed."""

from __future__ import annotations

import gzip
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from conftest import SAMPLE, read_jsonl_gz, write_jsonl

from shardguard.ingest import (
    Limits,
    Malformed,
    ShardError,
    ShardInfo,
    expand_paths,
    ingest_shard,
    read_records,
)
from shardguard.ingest.schema import SchemaError, to_canonical


def collect(path, kind="auto", limits=None):
    info = ShardInfo(shard=path.name, path=str(path))
    good, bad = [], []
    for item in ingest_shard(path, path.name, kind, batch_size=64, limits=limits, info=info):
        (bad.append(item) if isinstance(item, Malformed) else good.extend(item.to_pylist()))
    return info, good, bad


@pytest.fixture
def sft_rows():
    return read_jsonl_gz(SAMPLE / "gsm8k" / "gsm8k_test.sft.jsonl.gz", limit=50)


def test_jsonl_gz_zst_parquet_csv_arrow_agree(tmp_path, sft_rows):
    rows = [{k: r[k] for k in ("instruction", "input", "response")} for r in sft_rows]
    write_jsonl(tmp_path / "a.jsonl", rows)
    with gzip.open(tmp_path / "b.jsonl.gz", "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    (tmp_path / "c.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress((tmp_path / "a.jsonl").read_bytes()))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    import csv

    with open(tmp_path / "e.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["instruction", "input", "response"])
        w.writeheader()
        w.writerows(rows)
    (tmp_path / "f.json").write_text(json.dumps(rows), encoding="utf-8")
    # a Hugging Face save_to_disk folder: Arrow stream files plus metadata
    hf = tmp_path / "hf"
    hf.mkdir()
    t = pa.Table.from_pylist(rows)
    with pa.OSFile(str(hf / "data-00000-of-00001.arrow"), "wb") as sink, pa.ipc.new_stream(sink, t.schema) as w:
        w.write_table(t)
    (hf / "dataset_info.json").write_text("{}")
    (hf / "state.json").write_text("{}")
    shards, skipped = expand_paths([tmp_path])
    assert skipped == []
    names = [n for _, n in shards]
    assert names == ["a.jsonl", "b.jsonl.gz", "c.jsonl.zst", "d.parquet", "e.csv", "f.json",
                     "hf/data-00000-of-00001.arrow"]
    ids = None
    for path, _ in shards:
        info, good, bad = collect(path)
        assert info.kind == "sft" and not bad and len(good) == 50, path
        these = [g["record_id"] for g in good]
        assert ids is None or these == ids, f"{path}: record ids differ from JSONL's"
        ids = these
        assert [g["row"] for g in good] == list(range(50))


def test_native_shapes_map_to_canonical(shared_data):
    # GSM8K original question/answer
    kind, recs, bad = read_records(SAMPLE / "gsm8k" / "gsm8k_test.sft.jsonl.gz")
    assert kind == "sft" and len(recs) == 1319 and not bad
    # Dolly's templated prompt
    r = to_canonical({"prompt": "Below is an instruction.\n\n### Instruction:\nwhat is kangen water?\n\n### Response:\n",
                      "response": "Alkaline water."}, "sft")
    assert r == {"instruction": "what is kangen water?", "input": "", "response": "Alkaline water."}
    # chat messages
    r = to_canonical({"messages": [{"role": "system", "content": "be nice"}, {"role": "user", "content": "hi"},
                                   {"role": "assistant", "content": "hello"}]}, "sft")
    assert r == {"instruction": "hi", "input": "", "response": "hello"}
    # HH-RLHF two transcripts
    r = to_canonical({"chosen": "\n\nHuman: how?\n\nAssistant: No.", "rejected": "\n\nHuman: how?\n\nAssistant: Sure, do X."},
                     "preference")
    assert r == {"prompt": "\n\nHuman: how?\n\nAssistant:", "chosen": "No.", "rejected": "Sure, do X."}
    # LLaMA-Factory conversations + chosen/rejected messages
    r = to_canonical({"conversations": [{"from": "human", "value": "Q?"}], "chosen": {"from": "gpt", "value": "A"},
                      "rejected": {"from": "gpt", "value": "B"}}, "preference")
    assert r == {"prompt": "Q?", "chosen": "A", "rejected": "B"}
    with pytest.raises(SchemaError, match="field 'instruction' is int"):
        to_canonical({"instruction": 3, "response": "x"}, "sft")


@pytest.mark.parametrize("sub", ["hh_rlhf_harmless_base_test/original/harmless-base/test.jsonl.gz",
                                 "llamafactory_dpo_en_demo/original/dpo_en_demo.json.gz",
                                 "dolly_hhrlhf_small/original/dolly_hhrlhf_train_small.jsonl.gz",
                                 "self_instruct_human_written/original/seed_tasks.jsonl.gz",
                                 "web_c4_commoncrawl_sample/original/dolma/cc_en_head-0091.jsonl.gz"])
def test_shared_originals_read_without_loss(sub, shared_data):
    path = shared_data / sub
    if not path.exists():  # the bundled sample holds converted copies only
        path = next((SAMPLE / sub.split("/")[0]).glob("*.jsonl.gz"))
    info, good, bad = collect(path)
    assert not bad and info.rows == len(good) > 0


def test_hostile_lines_become_malformed_with_rows(tmp_path, sft_rows):
    lines = [json.dumps({k: r[k] for k in ("instruction", "input", "response")}).encode() for r in sft_rows]
    hostile = {7: b'{"instruction": "x", "response": ', 20: b'{"instruction": "\xff\xfe bad", "response": "y"}',
               33: b'{"instruction": 12, "response": "y"}', 40: b'{"text": "' + b"a" * 5000 + b'"}'}
    out = []
    for i, ln in enumerate(lines):
        if i in hostile:
            out.append(hostile[i])
        out.append(ln)
        if i == 10:
            out.append(b"   ")  # blank lines are not rows
    (tmp_path / "h.jsonl").write_bytes(b"\n".join(out) + b"\n")
    info, good, bad = collect(tmp_path / "h.jsonl", "sft", Limits(max_line_bytes=4096))
    assert info.rows == 54 and len(good) == 50 and len(bad) == 4
    reasons = {b.row: b.reason for b in bad}
    assert "invalid JSON" in reasons[7]
    assert "invalid UTF-8" in reasons[21]
    assert "field 'instruction' is int" in reasons[35]
    assert "4096-byte limit" in reasons[43]


def test_truncated_gzip_keeps_what_was_read(tmp_path, sft_rows):
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb") as f:
        for r in sft_rows:
            f.write((json.dumps(r) + "\n").encode())
    data = buf.getvalue()
    (tmp_path / "t.jsonl.gz").write_bytes(data[: len(data) * 2 // 3])
    info, good, bad = collect(tmp_path / "t.jsonl.gz")
    assert 0 < len(good) < 50
    assert len(bad) == 1 and "truncated" in bad[0].reason and bad[0].row == len(good)
    assert info.rows == len(good) + 1


def test_unreadable_and_unsupported_shards_raise_shard_error(tmp_path):
    (tmp_path / "x.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ShardError, match="Parquet"):
        collect(tmp_path / "x.parquet")
    (tmp_path / "x.docx").write_bytes(b"...")
    with pytest.raises(ShardError, match="unsupported format"):
        collect(tmp_path / "x.docx")


def test_warc_and_wet(tmp_path):
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    with open(tmp_path / "a.warc.gz", "wb") as f:
        w = WARCWriter(f, gzip=True)
        html = b"<html><head><script>var x=1;</script></head><body><p>Hello <b>world</b></p><p>Second para</p></body></html>"
        hdr = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.0")
        w.write_record(w.create_warc_record("http://example.com/", "response", payload=io.BytesIO(html), http_headers=hdr))
        w.write_record(w.create_warc_record("http://example.org/x", "conversion", payload=io.BytesIO(b"plain text doc")))
    info, good, bad = collect(tmp_path / "a.warc.gz")
    assert info.kind == "web" and not bad
    assert [(g["url"], g["text"]) for g in good] == [("http://example.com/", "Hello world\nSecond para"),
                                                     ("http://example.org/x", "plain text doc")]


def test_zip_bomb_is_bounded(tmp_path):
    payload = (json.dumps({"text": "a" * 1000}) + "\n").encode() * 2000  # 2 MB of text
    with gzip.open(tmp_path / "bomb.jsonl.gz", "wb") as f:
        f.write(payload)
    # the rows before the limit are kept, the rest of the shard is one malformed row naming the limit
    info, good, bad = collect(tmp_path / "bomb.jsonl.gz", limits=Limits(max_decompressed_bytes=100_000))
    assert len(good) * 1013 <= 100_000
    assert len(bad) == 1 and "decompressed size passed the limit of 100000 bytes" in bad[0].reason
    assert info.rows == len(good) + 1 and info.malformed == 1
