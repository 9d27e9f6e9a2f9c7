"""Throughput of ingest + exact + MinHash near-duplicates, docs/s per core, with datasketch beside it.

    .venv/bin/python -m bench.minhash_throughput [--docs 20000] [--threads 1]

Corpus: the bundled web sample (C4/Common Crawl + Wikipedia passages), repeated with word-level
edits up to --docs documents, so that near-duplicates exist. Every stage runs single-threaded by
default (POLARS_MAX_THREADS=1, OMP/MKL 1), so the figures are per core.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from shardguard import SAMPLE_DIR  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=20000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-datasketch-loop", action="store_true", help="skip the slow per-shingle update baseline")
    args = ap.parse_args(argv)
    for k in ("POLARS_MAX_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[k] = str(args.threads)

    import gzip
    import json
    import random
    import re
    import tempfile
    from pathlib import Path

    import numpy as np
    from datasketch import MinHash, MinHashLSH

    from shardguard.core.minhash import perm_params, perm_signatures, shingle_hashes
    from shardguard.detectors.dedup.exact_dup import ExactDuplicates
    from shardguard.detectors.dedup.minhash import MinHashNearDuplicates, signatures
    from shardguard.ingest import ShardInfo, ingest_shard

    sample = SAMPLE_DIR
    base = []
    for f in ["web_c4_commoncrawl_sample/c4_cc_docs.web.jsonl.gz", "web_wikipedia_passages/wikipedia_passages.part1.web.jsonl.gz"]:
        with gzip.open(sample / f, "rt", encoding="utf-8") as fh:
            base += [json.loads(x) for x in fh]
    rng = random.Random(0)
    docs = []
    while len(docs) < args.docs:
        d = base[len(docs) % len(base)]
        if len(docs) >= len(base):
            w = d["text"].split()
            for _ in range(rng.randrange(1, 12)):
                w[rng.randrange(len(w))] = f"x{rng.randrange(10**6)}"
            d = {"url": f"https://m{len(docs)}.example/", "text": " ".join(w)}
        docs.append(d)
    words = np.mean([len(d["text"].split()) for d in docs])
    tmp = Path(tempfile.mkdtemp())
    path = tmp / "corpus.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(d) + "\n" for d in docs)
    n = len(docs)
    rows = []

    def rec(stage, seconds, note=""):
        rows.append((stage, n / seconds, seconds, note))

    # ours ---------------------------------------------------------------------------------
    t = time.perf_counter()
    batches = [b for b in ingest_shard(path, "corpus.jsonl", "web", 4096, info=ShardInfo("c", str(path)))]
    rec("shardguard ingest (JSONL -> Arrow, record ids)", time.perf_counter() - t)
    texts = [x for b in batches for x in b.column("text").to_pylist()]
    t = time.perf_counter()
    x, st = shingle_hashes(texts)
    t_sh = time.perf_counter() - t
    rec("shardguard shingling (word 5-grams, vectorised)", t_sh)
    a, b = perm_params(128)
    t = time.perf_counter()
    perm_signatures(x, st, a, b)
    rec("shardguard classic signatures (128 perm, numpy)", time.perf_counter() - t, "sft response_sigs")
    t = time.perf_counter()
    sig = signatures(texts, {"num_perm": 128})
    rec("shardguard MinHash stage (shingle + one-permutation)", time.perf_counter() - t, "the detector's path")
    ex, mh = ExactDuplicates(), MinHashNearDuplicates()
    t = time.perf_counter()
    st_ex = st_mh = None
    for bt in batches:
        st_ex = ex.merge(st_ex, ex.observe(bt))
        st_mh = mh.merge(st_mh, mh.observe(bt))
    m_ex, m_mh = ex.finalize(st_ex, {}), mh.finalize(st_mh, {})
    found = sum(len(ex.flag(bt, m_ex)) + len(mh.flag(bt, m_mh)) for bt in batches)
    rec("shardguard exact + MinHash detectors end to end", time.perf_counter() - t,
        f"{found} duplicate findings, {len(m_mh['clusters'])} clusters")

    # datasketch baselines -------------------------------------------------------------------
    def ds_shingles(text):
        w = re.findall(r"\w+", text.lower())
        return [" ".join(w[i:i + 5]).encode() for i in range(max(len(w) - 4, 1))]

    t = time.perf_counter()
    sh = [ds_shingles(d) for d in texts]
    t_ds_sh = time.perf_counter() - t
    rec("python shingling (re + join)", t_ds_sh)
    if not args.skip_datasketch_loop:
        k = min(n, 2000)
        t = time.perf_counter()
        for s in sh[:k]:
            m = MinHash(num_perm=128)
            for g in s:
                m.update(g)
        el = time.perf_counter() - t
        rows.append(("datasketch MinHash.update per shingle", k / el, el * n / k, f"timed on {k} docs"))
    t = time.perf_counter()
    ms = MinHash.bulk(sh, num_perm=128)
    t_bulk = time.perf_counter() - t
    rec("datasketch MinHash.bulk", t_bulk)
    rec("datasketch shingling + bulk", t_bulk + t_ds_sh)
    t = time.perf_counter()
    lsh = MinHashLSH(threshold=0.8, num_perm=128)
    cand = 0
    for i, m in enumerate(ms):
        cand += bool(lsh.query(m))
        lsh.insert(str(i), m)
    rec("datasketch MinHashLSH insert+query", time.perf_counter() - t, f"{cand} docs with a candidate")
    # agreement of estimates on near-duplicate pairs (each edited copy vs its source)
    pairs = [(i, i + len(base)) for i in range(min(2000, n - len(base)))]
    ours = np.array([(sig[i] == sig[j]).mean() for i, j in pairs])
    theirs = np.array([ms[i].jaccard(ms[j]) for i, j in pairs])
    exact = np.array([len(set(sh[i]) & set(sh[j])) / len(set(sh[i]) | set(sh[j])) for i, j in pairs])

    print(f"\n{n} docs, mean {words:.0f} words; threads={args.threads}; Python {sys.version.split()[0]}\n")
    print(f"| {'stage':<50} | {'docs/s':>9} | {'seconds':>8} | note |")
    print(f"|{'-' * 52}|{'-' * 11}|{'-' * 10}|------|")
    for stage, rate, sec, note in rows:
        print(f"| {stage:<50} | {rate:>9,.0f} | {sec:>8.2f} | {note} |")
    if pairs:
        print(f"\n{len(pairs)} near-duplicate pairs (mean exact Jaccard {exact.mean():.3f}): mean |estimate - exact| "
              f"shardguard {np.abs(ours - exact).mean():.4f}, datasketch {np.abs(theirs - exact).mean():.4f}; "
              f"mean |shardguard - datasketch| {np.abs(ours - theirs).mean():.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
