"""Detection throughput of the local engine beside the Apache Beam engine (FnApiRunner), same input.

    .venv/bin/python -m bench.engine_throughput [--docs 6000] [--detectors a,b] [--threads 2]
        [--beam-workers 2]

Corpus: the bundled sample's SFT (GSM8K), web (C4/Common Crawl) and preference (HH-RLHF) shards,
repeated round-robin up to --docs records, with a backdoor planted into the SFT part so the
cross-record detectors have something to find. Ingest runs once; each engine then runs the same
detectors over the same records file (`shardguard.scan.stage_detect`), and the findings are checked
to be identical. Printed: seconds and records/s per engine (the detect stage only, which is what the
engines differ in), and whether findings match the local engine's.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from shardguard import SAMPLE_DIR  # noqa: E402


def build_corpus(n: int, out_dir, seed: int = 0) -> list:
    import gzip
    import json
    from pathlib import Path

    from shardguard.core.atomic import write_jsonl
    from shardguard.eval import poison

    sample = SAMPLE_DIR

    def read(rel):
        with gzip.open(sample / rel, "rt", encoding="utf-8") as f:
            return [json.loads(x) for x in f if x.strip()]

    parts = {"sft": read("gsm8k/gsm8k_test.sft.jsonl.gz"),
             "web": read("web_c4_commoncrawl_sample/c4_cc_docs.web.jsonl.gz"),
             "preference": read("hh_rlhf_harmless_base_test/harmless_base_test.preference.jsonl.gz")}
    share = {"sft": n // 2, "web": n // 3, "preference": n - n // 2 - n // 3}
    paths = []
    for kind, rows in parts.items():
        k = share[kind]
        recs = [rows[i % len(rows)] for i in range(k)]
        if kind == "sft":
            recs, _ = poison.get("sft_backdoor_token").apply(recs, rate=0.02, seed=seed)
        p = Path(out_dir) / f"bench.{kind}.jsonl"
        paths.append(write_jsonl(p, recs))
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=6000)
    ap.add_argument("--detectors", default=None, help="comma-separated detector names (default: all enabled)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--beam-workers", type=int, default=2,
                    help="also run FnApiRunner with this many worker processes (0: skip)")
    args = ap.parse_args(argv)
    for k in ("POLARS_MAX_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[k] = str(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import logging
    import tempfile
    from pathlib import Path

    import torch

    torch.set_num_threads(args.threads)
    logging.getLogger("apache_beam").setLevel(logging.ERROR)

    from shardguard.pipeline import stages as scan
    from shardguard.pipeline.config import ScanConfig

    cfg = ScanConfig()
    if args.detectors:
        cfg.only = [x.strip() for x in args.detectors.split(",") if x.strip()]
    tmp = Path(tempfile.mkdtemp(prefix="sg-engine-bench-"))
    paths = build_corpus(args.docs, tmp)
    t0 = time.perf_counter()
    ingested = scan.stage_ingest([str(p) for p in paths], tmp, "auto", cfg)
    t_ingest = time.perf_counter() - t0
    n = sum(i["rows"] for i in ingested.shards)
    runs = [("local", "local", [])]
    runs.append(("beam FnApiRunner (in-process)", "beam", []))
    if args.beam_workers:
        runs.append((f"beam FnApiRunner ({args.beam_workers} processes)", "beam",
                     [f"--direct_num_workers={args.beam_workers}", "--direct_running_mode=multi_processing"]))
    results = []
    ref = None
    per_detector: dict = {}
    for label, engine, opts in runs:
        t0 = time.perf_counter()
        try:
            findings, _, timings = scan.stage_detect(ingested.records_path, cfg, engine, opts)
        except Exception as e:  # noqa: BLE001 - a runner that cannot run here is reported, not fatal
            results.append((label, None, None, f"failed: {type(e).__name__}: {str(e)[:80]}"))
            continue
        dt = time.perf_counter() - t0
        cols = ["shard", "row", "detector", "category", "score", "reason"]
        rows = sorted(map(tuple, zip(*[findings.column(c).to_pylist() for c in cols])))
        if ref is None:
            ref = rows
            per_detector = timings["detectors"]
        results.append((label, dt, findings.num_rows, "yes" if rows == ref else "NO"))
    dets = [d.name for d in __import__("detectors").build(cfg.detectors, cfg.only)]
    print(f"{n} records ({', '.join(str(i['kind']) + ' ' + str(i['rows']) for i in ingested.shards)}); "
          f"ingest {t_ingest:.2f} s; detectors: {', '.join(dets)}; {args.threads} thread(s)")
    print(f"| {'engine':<34} | {'detect s':>8} | {'records/s':>9} | {'findings':>8} | same as local |")
    print(f"|{'-' * 36}|{'-' * 10}|{'-' * 11}|{'-' * 10}|---------------|")
    for label, dt, nf, same in results:
        if dt is None:
            print(f"| {label:<34} | {'-':>8} | {'-':>9} | {'-':>8} | {same} |")
        else:
            print(f"| {label:<34} | {dt:>8.2f} | {n / dt:>9.0f} | {nf:>8} | {same} |")
    print("local engine, seconds per detector: "
          + ", ".join(f"{k} {v:.2f}" for k, v in sorted(per_detector.items(), key=lambda kv: -kv[1])))
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if all(r[3] == "yes" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
