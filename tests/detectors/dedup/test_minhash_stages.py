"""The pure MinHash stages that the detector and the keyed Beam stages share: signatures estimate
Jaccard, band keys are salted per band, confirm_edges applies the threshold."""

from __future__ import annotations

import random
import re

import numpy as np
from conftest import SAMPLE, read_jsonl_gz

from shardguard.detectors.dedup.minhash import (
    band_keys,
    candidate_pairs,
    confirm_edges,
    optimal_bands,
    signatures,
)

CFG = {"threshold": 0.8, "num_perm": 128, "ngram": 5, "seed": 1, "lsh_fn_weight": 0.95}


def shingles(text: str, n: int = 5) -> set:
    w = re.findall(r"\w+", text.lower())
    return {tuple(w[i:i + n]) for i in range(max(len(w) - n + 1, 1))}


def docs(k: int) -> list[str]:
    return [d["text"] for d in read_jsonl_gz(SAMPLE / "web_c4_commoncrawl_sample" / "c4_cc_docs.web.jsonl.gz")
            if len(d["text"].split()) > 120][:k]


def test_signatures_estimate_true_jaccard_on_planted_pairs():
    rng = random.Random(3)
    base = docs(60)
    texts, pairs = [], []
    for t in base:
        w = t.split()
        for _ in range(rng.randrange(0, max(2, len(w) // 8))):  # up to ~12% of words changed
            w[rng.randrange(len(w))] = f"x{rng.randrange(10**6)}"
        pairs.append((len(texts), len(texts) + 1))
        texts += [t, " ".join(w)]
    sigs = signatures(texts, CFG)
    assert sigs.shape == (len(texts), 128) and sigs.dtype == np.uint32
    assert np.array_equal(sigs, signatures(texts, CFG))  # deterministic
    est = np.array([(sigs[i] == sigs[j]).mean() for i, j in pairs])
    true = np.array([len(shingles(texts[i]) & shingles(texts[j])) / len(shingles(texts[i]) | shingles(texts[j]))
                     for i, j in pairs])
    assert true.min() < 0.7 < 0.95 < true.max()  # the pairs span the threshold
    assert np.abs(est - true).mean() < 0.04
    assert np.abs(est - true).max() < 0.15
    # unrelated documents share almost no slots
    assert (sigs[0] == sigs[2]).mean() < 0.1
    # another seed gives other signatures with the same estimates' quality
    other = signatures(texts[:2], {**CFG, "seed": 2})
    assert not np.array_equal(other, sigs[:2])


def test_band_keys_are_salted_per_band_and_follow_band_slots():
    bands, rows = optimal_bands(0.8, 128)
    rng = np.random.default_rng(0)
    sig = rng.integers(0, 2**32, size=(3, 128), dtype=np.uint64).astype(np.uint32)
    sig[1] = sig[0]
    sig[1, :rows] += 1  # differs from record 0 in band 0's slots only
    sig[2, rows:2 * rows] = sig[2, :rows]  # band 1 holds the same values as band 0
    keys = band_keys(sig, CFG)
    assert keys.shape == (3, bands) and keys.dtype == np.uint64
    assert keys[0, 0] != keys[1, 0] and np.array_equal(keys[0, 1:], keys[1, 1:])
    assert keys[2, 0] != keys[2, 1]  # equal slot values in two bands: different keys (salted by band)
    assert len(np.unique(keys)) == keys.size - (bands - 1)  # only records 0 and 1 share buckets
    i, j = candidate_pairs(keys)
    assert list(zip(i.tolist(), j.tolist())) == [(0, 1)]


def test_confirm_edges_keeps_pairs_at_or_over_the_threshold():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 2**32, size=128, dtype=np.uint64).astype(np.uint32)
    sigs = np.stack([a, a.copy(), a.copy(), a.copy()])
    sigs[1, :32] ^= 1  # 96 of 128 slots equal: exactly at a 0.75 threshold
    sigs[2, :33] ^= 1  # 95: below
    sigs[3, :10] ^= 1  # 118: above
    i, j, sim = confirm_edges(sigs, np.array([0, 0, 0]), np.array([1, 2, 3]), {**CFG, "threshold": 0.75})
    assert i.tolist() == [0, 0] and j.tolist() == [1, 3]
    assert np.allclose(sim, [0.75, 118 / 128])
