"""MinHash LSH near-duplicates, vectorised: word 5-gram shingles, 128 permutations, banded LSH.

Readable end to end (text-dedup style):

1. `shingle_hashes(texts)`  lowercase, split into words, hash each word once (polars, native), and
   combine 5 consecutive word hashes into one 64-bit shingle hash with numpy (no Python per word).
   Texts shorter than 5 words become one shingle of all their words.
2. `signatures(...)`        for each permutation i, h_i(x) = ((a_i * x + b_i) mod 2^64) >> 32 over the
   32-bit shingle hash x (multiply-add-shift, a 2-independent family); the signature is the
   per-document minimum (numpy `minimum.reduceat`). Estimated Jaccard = share of equal slots,
   which agrees with datasketch's estimates (tests and `bench/` check this).
3. `lsh_pairs(sigs)`        b bands of r rows chosen for the threshold (datasketch's optimiser, recall-weighted);
   documents sharing a band bucket are candidates; each candidate edge is verified by its
   estimated Jaccard >= threshold, so precision does not hinge on the banding.
4. `clusters(...)`          connected components of the verified edges (scipy). In each cluster the
   first record (shard order, row) is kept; the others are `duplicate` findings naming it.

The model publishes, per cluster, its size and distinct URL/domain counts, so the campaign
detector can call a mass near-duplicate cluster across many domains `poison`.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import numpy as np
import polars as pl
import pyarrow as pa

from shardguard.core.graph import components, lsh_bands
from shardguard.detectors.base import Detector, concat_columns

_M61 = np.uint64((1 << 61) - 1)
_WORD = r"\w+"


def perm_params(num_perm: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(1, np.iinfo(np.uint64).max, size=num_perm, dtype=np.uint64) | np.uint64(1)
    b = rng.integers(0, np.iinfo(np.uint64).max, size=num_perm, dtype=np.uint64)
    return a, b


def shingle_hashes(texts: list[str] | pa.Array, ngram: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Returns (x, starts): 32-bit shingle hashes of all docs concatenated, and each doc's start.

    Every doc has at least one shingle (an empty doc hashes the empty string)."""
    s = pl.Series("t", texts, dtype=pl.String).fill_null("")
    words = s.str.to_lowercase().str.extract_all(_WORD)
    lens = words.list.len().fill_null(0).to_numpy().astype(np.int64)
    flat = words.explode().drop_nulls()
    wh = flat.hash(seed=42).to_numpy().astype(np.uint64) if len(flat) else np.zeros(0, np.uint64)
    n_docs = len(lens)
    word_start = np.zeros(n_docs, np.int64)
    np.cumsum(lens[:-1], out=word_start[1:])
    # number of shingles per doc: max(len - ngram + 1, 1)
    n_sh = np.maximum(lens - ngram + 1, 1)
    total = int(n_sh.sum())
    sh_start = np.zeros(n_docs, np.int64)
    np.cumsum(n_sh[:-1], out=sh_start[1:])
    # position of each shingle's first word in `wh`
    doc_of = np.repeat(np.arange(n_docs), n_sh)
    first = np.arange(total, dtype=np.int64) - sh_start[doc_of] + word_start[doc_of]
    mult = np.uint64(0x9E3779B97F4A7C15)
    n_w = len(wh)
    with np.errstate(over="ignore"):
        # rolling combination of `ngram` consecutive word hashes over the whole flat word array
        # (windows that cross a document boundary are computed and never selected)
        if n_w >= ngram:
            roll = np.zeros(n_w - ngram + 1, np.uint64)
            for k in range(ngram):
                roll ^= wh[k:n_w - ngram + 1 + k]
                roll *= mult
                roll += np.uint64(k + 1)
        else:
            roll = np.zeros(0, np.uint64)
        h = np.zeros(total, np.uint64)
        full = lens[doc_of] >= ngram
        h[full] = roll[first[full]]
        short_docs = np.flatnonzero(lens < ngram)  # documents shorter than one shingle: all their words
        for d in short_docs:
            acc = np.uint64(0)
            for k in range(int(lens[d])):
                acc = (acc ^ wh[word_start[d] + k]) * mult + np.uint64(k + 1)
            h[sh_start[d]] = acc
        h ^= h >> np.uint64(29)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(32)
    x = (h & np.uint64(0xFFFFFFFF)).astype(np.uint64)
    return x, sh_start


def signatures(x: np.ndarray, starts: np.ndarray, a: np.ndarray, b: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """(n_docs, num_perm) uint32 MinHash signatures of docs whose shingles are x[starts[i]:starts[i+1]]."""
    n_docs, num_perm = len(starts), len(a)
    out = np.empty((n_docs, num_perm), np.uint32)
    if n_docs == 0:
        return out
    ends = np.append(starts[1:], len(x))
    a_col, b_col = a[:, None], b[:, None]
    d0 = 0
    while d0 < n_docs:
        # take whole docs until ~chunk shingles
        d1 = int(np.searchsorted(starts, starts[d0] + chunk, side="right"))
        d1 = max(d1, d0 + 1)
        d1 = min(d1, n_docs)
        s0, s1 = int(starts[d0]), int(ends[d1 - 1])
        with np.errstate(over="ignore"):
            m = a_col * x[None, s0:s1]
            m += b_col
        m >>= np.uint64(32)
        mins = np.minimum.reduceat(m, starts[d0:d1] - s0, axis=1)
        out[d0:d1] = mins.T.astype(np.uint32)
        d0 = d1
    return out


def optimal_bands(threshold: float, num_perm: int, fn_weight: float = 0.95) -> tuple[int, int]:
    """Bands x rows from datasketch's optimiser, weighted towards recall: every candidate is verified
    by its estimated Jaccard afterwards, so a false candidate costs a comparison, a missed one a miss.
    (0.8, 128) -> 16 bands of 8 rows: P(candidate) 0.95 at Jaccard 0.8, 0.99 at 0.85, 0.06 at 0.5."""
    return lsh_bands(threshold, num_perm, 1.0 - fn_weight, fn_weight)


def lsh_pairs(sigs: np.ndarray, bands: int, rows: int, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Verified candidate edges (i, j, est_jaccard) with i < j."""
    n = len(sigs)
    src, dst = [], []
    for band in range(bands):
        block = np.ascontiguousarray(sigs[:, band * rows:(band + 1) * rows])
        keys = block.view(np.dtype((np.void, block.dtype.itemsize * rows))).ravel()
        _, inv, counts = np.unique(keys, return_inverse=True, return_counts=True)
        shared = counts[inv] > 1
        if not shared.any():
            continue
        idx = np.flatnonzero(shared)
        order = idx[np.argsort(inv[idx], kind="stable")]
        buckets = inv[order]
        heads = np.r_[True, buckets[1:] != buckets[:-1]]
        head_of = order[np.maximum.accumulate(np.where(heads, np.arange(len(order)), 0))]
        keep = ~heads
        src.append(head_of[keep])
        dst.append(order[keep])
    if not src:
        e = np.zeros(0, np.int64)
        return e, e, np.zeros(0)
    i = np.concatenate(src)
    j = np.concatenate(dst)
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    pairs = np.unique(np.stack([lo, hi], 1), axis=0)
    lo, hi = pairs[:, 0], pairs[:, 1]
    est = np.empty(len(lo))
    for s in range(0, len(lo), 65536):
        est[s:s + 65536] = (sigs[lo[s:s + 65536]] == sigs[hi[s:s + 65536]]).mean(1)
    ok = est >= threshold
    _ = n
    return lo[ok], hi[ok], est[ok]


def domain(url: str) -> str:
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return ""
    return host[4:] if host.startswith("www.") else host


class MinHashNearDuplicates(Detector):
    name = "minhash"
    category = "duplicate"
    defaults = {"threshold": 0.8, "num_perm": 128, "ngram": 5, "seed": 1, "lsh_fn_weight": 0.95}

    def __init__(self, **config):
        super().__init__(**config)
        self._a, self._b = perm_params(self.config["num_perm"], self.config["seed"])

    def observe(self, batch: pa.RecordBatch):
        x, starts = shingle_hashes(batch.column("text"), self.config["ngram"])
        sigs = signatures(x, starts, self._a, self._b)
        return {"shard": batch.column("shard").to_pylist(), "row": batch.column("row").to_numpy(),
                "seq": batch.column("seq").to_numpy(),
                "record_id": batch.column("record_id").to_pylist(),
                "url": batch.column("url").to_pylist(), "sig": sigs}

    def merge(self, a, b):
        return concat_columns(a, b)

    def finalize(self, state, context):
        empty = {"members": {}, "clusters": {}}
        if state is None or len(state["row"]) == 0:
            return empty
        # exact copies are the exact detector's business: cluster unique contents only, in input order
        # (partial states may merge in any order; `seq` restores the input order)
        seen: dict[str, int] = {}
        uniq = []
        for i in np.argsort(state["seq"], kind="stable").tolist():
            rid = state["record_id"][i]
            if rid not in seen:
                seen[rid] = i
                uniq.append(i)
        uidx = np.asarray(uniq, np.int64)
        sigs = state["sig"][uidx]
        bands, rows = optimal_bands(self.config["threshold"], self.config["num_perm"], self.config["lsh_fn_weight"])
        lo, hi, est = lsh_pairs(sigs, bands, rows, self.config["threshold"])
        if len(lo) == 0:
            return empty
        n = len(uidx)
        labels = components(n, lo, hi)
        sizes = np.bincount(labels)
        best = {}
        for a_, b_, e in zip(lo.tolist(), hi.tolist(), est.tolist()):
            best[a_] = max(best.get(a_, 0.0), e)
            best[b_] = max(best.get(b_, 0.0), e)
        members: dict[tuple[str, int], dict] = {}
        clusters: dict[int, dict] = {}
        in_cluster = np.flatnonzero(sizes[labels] > 1)
        # number clusters by their kept (first) member
        for u in in_cluster:  # ascending = input order, so the first seen member is the kept one
            lab = int(labels[u])
            i = int(uidx[u])
            key = (state["shard"][i], int(state["row"][i]))
            c = clusters.get(lab)
            if c is None:
                c = clusters[lab] = {"cluster_id": len(clusters), "size": int(sizes[lab]), "kept_shard": key[0],
                                     "kept_row": key[1], "urls": set(), "domains": set()}
            url = state["url"][i] or ""
            if url:
                c["urls"].add(url)
                c["domains"].add(domain(url))
            members[key] = {"cluster": lab, "jaccard": round(best.get(int(u), 0.0), 3)}
        out_clusters = {}
        for lab, c in clusters.items():
            out_clusters[lab] = {"cluster_id": c["cluster_id"], "size": c["size"], "kept_shard": c["kept_shard"],
                                 "kept_row": c["kept_row"], "distinct_urls": len(c["urls"]),
                                 "distinct_domains": len(c["domains"])}
        return {"members": members, "clusters": out_clusters}

    def flag(self, batch, model):
        members = model["members"]
        if not members:
            return []
        found = []
        for i, (s, r) in enumerate(zip(batch.column("shard").to_pylist(), batch.column("row").to_pylist())):
            m = members.get((s, r))
            if m is None:
                continue
            c = model["clusters"][m["cluster"]]
            if (c["kept_shard"], c["kept_row"]) == (s, r):
                continue
            found.append({
                "i": i, "score": m["jaccard"],
                "reason": (f"near-duplicate (estimated Jaccard {m['jaccard']:.2f}) of {c['kept_shard']} row "
                           f"{c['kept_row']}, which is kept as the first of cluster {c['cluster_id']} "
                           f"({c['size']} records, {c['distinct_urls']} distinct URLs)"),
                "details": {"cluster_id": c["cluster_id"], "cluster_size": c["size"],
                            "distinct_urls": c["distinct_urls"], "distinct_domains": c["distinct_domains"],
                            "kept_shard": c["kept_shard"], "kept_row": c["kept_row"], "jaccard": m["jaccard"]},
            })
        return found

    def discoveries(self, model):
        cl = sorted(model["clusters"].values(), key=lambda c: -c["size"])
        return {"near_duplicate_clusters": len(cl), "largest_clusters": cl[:10]}
