"""The Beam engine and the local engine give identical findings on the same input."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
from conftest import SAMPLE, read_jsonl_gz, write_jsonl

from shardguard.flows.scan import run_scan


def test_beam_and_local_flags_identical(tmp_path):
    web = read_jsonl_gz(SAMPLE / "web_c4_commoncrawl_sample" / "c4_cc_docs.web.jsonl.gz", limit=300)
    web += [web[1], {"url": "https://x.example/a", "text": web[2]["text"].replace(" the ", " a ", 2)}]
    sft = read_jsonl_gz(SAMPLE / "gsm8k" / "gsm8k_test.sft.jsonl.gz", limit=200)
    sft += sft[:3]
    pref = read_jsonl_gz(SAMPLE / "llamafactory_dpo_en_demo" / "dpo_en_demo.preference.jsonl.gz", limit=100)
    d = tmp_path / "in"
    write_jsonl(d / "web.jsonl", web)
    write_jsonl(d / "sft.jsonl", sft)
    write_jsonl(d / "pref.jsonl", pref)
    (d / "bad.jsonl").write_text('{"text": "ok doc here"}\n{broken\n')
    cfg = {"batch_size": 64}  # many batches, so merge order matters
    a = run_scan([d], tmp_path / "local", engine="local", config=cfg, use_prefect=False)
    b = run_scan([d], tmp_path / "beam", engine="beam", config=cfg, use_prefect=False)
    fa, fb = pq.read_table(tmp_path / "local" / "flags.parquet"), pq.read_table(tmp_path / "beam" / "flags.parquet")
    assert fa.num_rows >= 8
    assert set(fa.column("detector").to_pylist()) >= {"exact_dup", "minhash", "ingest"}
    assert fa.equals(fb)
    strip = ("timings", "seconds", "engine")
    assert json.dumps({k: v for k, v in a.items() if k not in strip}, sort_keys=True, default=str) == \
        json.dumps({k: v for k, v in b.items() if k not in strip}, sort_keys=True, default=str)


def test_beam_options_parse_for_other_runners():
    from shardguard.engine.beam import make_runner, pipeline_options

    for opts, runner in [(["--runner=FlinkRunner", "--flink_master=localhost:8081"], "FlinkRunner"),
                         (["--runner=SparkRunner", "--spark_master_url=spark://h:7077"], "SparkRunner"),
                         (["--runner=DataflowRunner", "--project=p", "--region=europe-west1",
                           "--temp_location=gs://b/tmp"], "DataflowRunner")]:
        o = pipeline_options(opts)
        assert o.get_all_options()["runner"] == runner
        assert make_runner(o) is None  # resolved by Beam from the options, not our in-process default
    assert type(make_runner(pipeline_options([]))).__name__ == "FnApiRunner"
