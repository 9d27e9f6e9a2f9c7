"""Embedding throughput and fast-path agreement: MiniLM vs the static model distilled from it.

    python -m bench.embed_throughput [--n 200] [--chunks 600] [--threads 2] [--json out.json]

On `n` web documents (the bundled C4/Common Crawl sample) and on `chunks` sentence chunks of them:
texts/s of each model (MiniLM without the cache), and the fast path's agreement with MiniLM:
recall@10 = share of each text's 10 nearest MiniLM neighbours found among its 10 nearest static
neighbours (averaged), the Spearman correlation of the pairwise similarities, and, for candidate
generation, the share of pairs MiniLM calls close (cosine >= 0.7) that the fast path also puts at
>= 0.8 (the detectors' candidate threshold), next to the share of all pairs it puts there.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import time
from pathlib import Path

import numpy as np

from shardguard import SAMPLE_DIR  # noqa: E402

SAMPLE = SAMPLE_DIR


def web_docs(n: int) -> list[str]:
    out = []
    with gzip.open(SAMPLE / "web_c4_commoncrawl_sample" / "c4_cc_docs.web.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                out.append(json.loads(line)["text"])
    rng = np.random.default_rng(0)
    return [out[i] for i in rng.permutation(len(out))[:n]]


def topk(x: np.ndarray, k: int) -> np.ndarray:
    s = x @ x.T
    np.fill_diagonal(s, -np.inf)
    return np.argsort(-s, axis=1)[:, :k]


def recall_at(ref: np.ndarray, got: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(a) for a, b in zip(ref, got)]))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    iu = np.triu_indices(len(a), 1)
    from scipy.stats import spearmanr

    return float(spearmanr((a @ a.T)[iu], (b @ b.T)[iu]).statistic)


def measure(texts: list[str], label: str, k: int = 10) -> dict:
    from shardguard.embed import embed_minilm, load_static

    st = load_static()
    st.encode(texts[:8])  # warm the tokenizer
    t0 = time.perf_counter()
    xs = st.encode(texts)
    t_static = time.perf_counter() - t0
    embed_minilm(texts[:4])  # warm
    t0 = time.perf_counter()
    xm = embed_minilm(texts)
    t_mini = time.perf_counter() - t0
    words = float(np.mean([len(t.split()) for t in texts]))
    iu = np.triu_indices(len(texts), 1)
    sm, ss = (xm @ xm.T)[iu], (xs @ xs.T)[iu]
    close = sm >= 0.7  # pairs MiniLM calls close (the campaign detector's confirm threshold)
    return {"set": label, "texts": len(texts), "mean_words": round(words, 1),
            "minilm_texts_per_s": round(len(texts) / t_mini, 1),
            "static_texts_per_s": round(len(texts) / t_static, 1),
            "speedup": round(t_mini / t_static, 1),
            f"recall@{k}": round(recall_at(topk(xm, k), topk(xs, k)), 3),
            "spearman_pairwise": round(spearman(xm, xs), 3),
            "minilm_pairs>=0.7": int(close.sum()),
            "of_them_static>=0.8": round(float((ss[close] >= 0.8).mean()), 3) if close.any() else None,
            "static_pairs>=0.8_share": round(float((ss >= 0.8).mean()), 4)}


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="web documents (MiniLM truncates at 256 tokens)")
    ap.add_argument("--chunks", type=int, default=600, help="sentence chunks of those documents")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    os.environ["SHARDGUARD_TORCH_THREADS"] = str(a.threads)
    from shardguard.embed import chunk_many, load_minilm

    t0 = time.perf_counter()
    load_minilm()
    print(f"MiniLM loaded in {time.perf_counter() - t0:.1f} s (import included); torch threads {a.threads}")
    # MiniLM reads at most 256 tokens: give both models the same first ~180 words of each document
    docs = [" ".join(d.split()[:180]) for d in web_docs(a.n)]
    chunks, _ = chunk_many(web_docs(max(a.n, 400)))
    chunks = [chunks[i] for i in np.random.default_rng(1).permutation(len(chunks))[:a.chunks]]
    rows = [measure(docs, "web documents"), measure(chunks, "sentence chunks")]
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
