"""MinHash near-duplicates: quality against exact Jaccard, agreement with datasketch."""

from __future__ import annotations

import random
import re

import numpy as np
from conftest import SAMPLE, read_jsonl_gz
from datasketch import MinHash
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from shardguard.detectors.dedup.minhash import (
    band_keys,
    candidate_pairs,
    confirm_edges,
    signatures,
)


def shingles(text: str, n: int = 5) -> set:
    w = re.findall(r"\w+", text.lower())
    return {tuple(w[i:i + n]) for i in range(max(len(w) - n + 1, 1))}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b)


def edit(text: str, rng: random.Random, n_edits: int) -> str:
    words = text.split()
    for _ in range(n_edits):
        op = rng.random()
        i = rng.randrange(len(words))
        if op < 0.4:
            words[i] = f"w{rng.randrange(10**6)}"
        elif op < 0.7:
            del words[i]
        else:
            words.insert(i, f"ins{rng.randrange(10**6)}")
    return " ".join(words)


def test_near_duplicate_recall_precision_vs_exact_jaccard():
    rng = random.Random(7)
    base = [d["text"] for d in read_jsonl_gz(SAMPLE / "web_c4_commoncrawl_sample" / "c4_cc_docs.web.jsonl.gz")
            if len(d["text"].split()) > 150][:600]
    corpus = list(base)
    for i in range(300):  # planted near-duplicates: copies with 0-25 word edits
        corpus.append(edit(base[i], rng, rng.randrange(0, 26)))
    cfg = {"threshold": 0.8, "num_perm": 128}
    sigs = signatures(corpus, cfg)
    lo, hi, _ = confirm_edges(sigs, *candidate_pairs(band_keys(sigs, cfg)), cfg)
    # what a user sees is clusters: a pair is found when both records land in one cluster
    n = len(corpus)
    _, labels = connected_components(coo_matrix((np.ones(len(lo)), (lo, hi)), shape=(n, n)), directed=False)
    found = {(i, j) for i in range(n) for j in range(i + 1, n) if labels[i] == labels[j]} if len(lo) else set()
    sh = [shingles(t) for t in corpus]
    # truth: every pair at exact Jaccard >= 0.85 (all pairs among planted copies and their sources,
    # plus any naturally near-identical pairs found by brute force over shingle overlaps)
    truth = set()
    for i in range(len(corpus)):
        for j in range(i + 1, len(corpus)):
            if abs(len(sh[i]) - len(sh[j])) > 0.2 * max(len(sh[i]), len(sh[j])):
                continue
            if jaccard(sh[i], sh[j]) >= 0.85:
                truth.add((i, j))
    assert len(truth) > 100
    recall = len(truth & found) / len(truth)
    # precision at the scale users read it: found pairs that are truly near-duplicates (J >= 0.7)
    prec = np.mean([jaccard(sh[i], sh[j]) >= 0.7 for i, j in found])
    assert recall >= 0.95, recall
    assert prec >= 0.95, prec


def test_estimates_agree_with_datasketch():
    docs = [d["text"] for d in read_jsonl_gz(SAMPLE / "web_wikipedia_passages" / "wikipedia_passages.part1.web.jsonl.gz",
                                             limit=120)]
    rng = random.Random(1)
    pairs = [(t, edit(t, rng, rng.randrange(1, 60))) for t in docs]
    ours, theirs, exact = [], [], []
    for t1, t2 in pairs:
        s = signatures([t1, t2], {"num_perm": 128})
        ours.append((s[0] == s[1]).mean())
        m1, m2 = MinHash(num_perm=128), MinHash(num_perm=128)
        s1, s2 = shingles(t1), shingles(t2)
        m1.update_batch([" ".join(g).encode() for g in s1])
        m2.update_batch([" ".join(g).encode() for g in s2])
        theirs.append(m1.jaccard(m2))
        exact.append(jaccard(s1, s2))
    ours, theirs, exact = map(np.array, (ours, theirs, exact))
    assert np.abs(ours - exact).mean() < 0.04
    assert np.abs(ours - theirs).mean() < 0.05
    assert abs(np.abs(ours - exact).mean() - np.abs(theirs - exact).mean()) < 0.02
