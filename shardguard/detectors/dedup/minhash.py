"""MinHash LSH near-duplicates, vectorised and compact: word 5-gram shingles, one-permutation
MinHash (128 slots), banded LSH, verified edges, connected clusters.

Readable end to end (text-dedup style); each step is a pure function that the keyed Beam stages
use as well:

1. `signatures(texts, cfg)`   lowercase, `\\w+` words hashed once (polars, native), 5 consecutive word
   hashes combined into one 64-bit shingle hash (numpy), then one-permutation hashing with optimal
   densification: each shingle's hash picks one of num_perm slots and a 32-bit value, a slot keeps its
   minimum, an empty slot copies the slot a fixed probe sequence finds (`core.minhash`). One hash per
   shingle instead of num_perm; the share of equal slots estimates Jaccard like classic MinHash
   (tests check it against exact Jaccard and datasketch). Texts shorter than 5 words are one shingle.
2. `band_keys(sigs, cfg)`     b bands of r slots (datasketch's optimiser, recall-weighted); each band's
   slots hashed to one uint64, salted by the band index, so equal keys mean a shared LSH bucket.
3. `candidate_pairs(keys)`    per bucket, an edge from its first record to each other one (sort-based).
4. `confirm_edges(...)`       an edge is kept when its estimated Jaccard >= threshold, so precision does
   not hinge on the banding.
5. connected components of the kept edges (`core.graph.components`). In each cluster the first record
   (input order) is kept; the others are `duplicate` findings naming it.

State per record is compact: `seq`, a 64-bit prefix of the record id, the row, the uint32 signature
(numpy chunks) and shard/url as Arrow tables (no Python object per record); partial states merge by
appending chunks, and are plain data for `core.codec`. The model publishes, per cluster, its size and distinct URL/domain counts (the
campaign detector calls a mass near-duplicate cluster across many domains `poison`), and `members`
keyed by (shard, row) for the clustered records only.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa

from shardguard.core.graph import bucket_pairs, components, lsh_bands
from shardguard.core.minhash import id_prefix, oph_signatures, perm_params, shingle_hashes, shingle_hashes64
from shardguard.detectors.base import Detector, concat_columns

__all__ = ["MinHashNearDuplicates", "band_keys", "candidate_pairs", "confirm_edges", "domain", "id_prefix",
           "model_from_edges",
           "optimal_bands", "perm_params", "shingle_hashes", "signatures"]

DEFAULTS = {"threshold": 0.8, "num_perm": 128, "ngram": 5, "seed": 1, "lsh_fn_weight": 0.95}


def _cfg(cfg: dict | None) -> dict:
    return {**DEFAULTS, **(cfg or {})}


def signatures(texts: list[str] | pa.Array, cfg: dict | None = None) -> np.ndarray:
    """(n, num_perm) uint32 MinHash signatures of texts (word `ngram`-shingles, one-permutation
    hashing with optimal densification). Deterministic for a given cfg (num_perm, ngram, seed)."""
    c = _cfg(cfg)
    h, starts = shingle_hashes64(texts, c["ngram"])
    return oph_signatures(h, starts, c["num_perm"], c["seed"])


def optimal_bands(threshold: float, num_perm: int, fn_weight: float = 0.95) -> tuple[int, int]:
    """Bands x rows from datasketch's optimiser, weighted towards recall: every candidate is verified
    by its estimated Jaccard afterwards, so a false candidate costs a comparison, a missed one a miss.
    (0.8, 128) -> 16 bands of 8 rows: P(candidate) 0.95 at Jaccard 0.8, 0.99 at 0.85, 0.06 at 0.5."""
    return lsh_bands(threshold, num_perm, 1.0 - fn_weight, fn_weight)


def _bands(c: dict) -> tuple[int, int]:
    if c.get("bands") and c.get("rows"):  # explicit banding (benchmarks, tests)
        return int(c["bands"]), int(c["rows"])
    return optimal_bands(float(c["threshold"]), int(c["num_perm"]), float(c["lsh_fn_weight"]))


def band_keys(sigs: np.ndarray, cfg: dict | None = None) -> np.ndarray:
    """(n, bands) uint64 LSH bucket keys: band b's `rows` slots hashed into one 64-bit key, salted by b,
    so two records share a bucket exactly when a band's slots are equal (up to 2^-64 collisions), and
    keys of different bands never meet. Bands x rows come from the threshold (`optimal_bands`), or
    from cfg["bands"] and cfg["rows"] when both are given."""
    c = _cfg(cfg)
    bands, rows = _bands(c)
    sigs = np.asarray(sigs)
    n = len(sigs)
    out = np.empty((n, bands), np.uint64)
    mult = np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        for b in range(bands):
            h = np.full(n, np.uint64((0xB5AD4ECEDA1CE2A9 * (b + 1)) & 0xFFFFFFFFFFFFFFFF), np.uint64)
            for r in range(b * rows, (b + 1) * rows):
                h ^= sigs[:, r].astype(np.uint64)
                h *= mult
                h ^= h >> np.uint64(29)
            h *= np.uint64(0xBF58476D1CE4E5B9)
            h ^= h >> np.uint64(32)
            out[:, b] = h
    return out


def candidate_pairs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct candidate edges (i < j) from (n, bands) bucket keys: in every bucket, the first record
    to each other one (enough for connected components)."""
    keys = np.asarray(keys)
    if keys.ndim == 1:
        keys = keys[:, None]
    n = len(keys)
    src, dst = [], []
    for b in range(keys.shape[1]):
        i, j = bucket_pairs(keys[:, b])
        src.append(i)
        dst.append(j)
    if not src:
        e = np.zeros(0, np.int64)
        return e, e
    i, j = np.concatenate(src), np.concatenate(dst)
    code = np.unique(np.minimum(i, j) * np.int64(n) + np.maximum(i, j))
    return code // n, code % n


def confirm_edges(sigs: np.ndarray, i: np.ndarray, j: np.ndarray, cfg: dict | None = None,
                  block: int = 65536) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The edges (i, j) whose estimated Jaccard (share of equal signature slots) is >= threshold,
    with that estimate (float64), in the given order."""
    c = _cfg(cfg)
    i, j = np.asarray(i, np.int64), np.asarray(j, np.int64)
    est = np.empty(len(i))
    for s in range(0, len(i), block):
        est[s:s + block] = (sigs[i[s:s + block]] == sigs[j[s:s + block]]).mean(1)
    ok = est >= float(c["threshold"])
    return i[ok], j[ok], est[ok]


def domain(url: str) -> str:
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return ""
    return host[4:] if host.startswith("www.") else host


def _cat(chunks: list, dtype=None) -> np.ndarray:
    if not chunks:
        return np.zeros(0, dtype)
    return np.concatenate(chunks)


class MinHashNearDuplicates(Detector):
    name = "minhash"
    category = "duplicate"
    defaults = dict(DEFAULTS)

    def observe(self, batch: pa.RecordBatch):
        sigs = signatures(batch.column("text"), self.config)
        return {"seq": [batch.column("seq").to_numpy().astype(np.int64, copy=False)],
                "id": [id_prefix(batch.column("record_id"))],
                "row": [batch.column("row").to_numpy().astype(np.int64, copy=False)],
                "meta": [pa.table({"shard": batch.column("shard"), "url": batch.column("url")})], "sig": [sigs]}

    def merge(self, a, b):
        return concat_columns(a, b)  # lists of chunks: appended, never copied

    def finalize(self, state, context):
        empty = {"members": {}, "clusters": {}, "member_seqs": np.zeros(0, np.int64)}
        if not state or not state["seq"]:
            return empty
        cfg = self.config
        seq, ids = _cat(state["seq"], np.int64), _cat(state["id"], np.uint64)
        # exact copies are the exact detector's business: cluster unique contents only, in input order
        # (partial states may merge in any order; `seq` restores the input order)
        order = np.argsort(seq, kind="stable")
        _, first = np.unique(ids[order], return_index=True)
        uidx = np.sort(order[first])  # global positions of each content's first copy...
        uidx = uidx[np.argsort(seq[uidx], kind="stable")]  # ...in input order
        n = len(uidx)
        # signatures stay in their chunks: gather rows by global position
        offs = np.cumsum([0] + [len(s) for s in state["sig"]])

        def rows_of(pos: np.ndarray) -> np.ndarray:
            out = np.empty((len(pos), cfg["num_perm"]), np.uint32)
            ck = np.searchsorted(offs, pos, side="right") - 1
            for c in np.unique(ck):
                m = ck == c
                out[m] = state["sig"][c][pos[m] - offs[c]]
            return out

        keys = np.empty((n, _bands(cfg)[0]), np.uint64)
        blk = 1 << 16
        for s in range(0, n, blk):
            keys[s:s + blk] = band_keys(rows_of(uidx[s:s + blk]), cfg)
        ci, cj = candidate_pairs(keys)
        del keys
        if len(ci) == 0:
            return empty
        nodes, inv = np.unique(np.concatenate([ci, cj]), return_inverse=True)
        sub = rows_of(uidx[nodes])
        li, lj, est = confirm_edges(sub, inv[:len(ci)], inv[len(ci):], cfg)
        if len(li) == 0:
            return empty
        lo, hi = nodes[li], nodes[lj]
        labels = components(n, lo, hi)
        sizes = np.bincount(labels)
        best = np.zeros(n)
        np.maximum.at(best, lo, est)
        np.maximum.at(best, hi, est)
        in_cluster = np.flatnonzero(sizes[labels] > 1)  # ascending = input order: the first is kept
        meta = pa.concat_tables(state["meta"]).take(pa.array(uidx[in_cluster]))
        shards, urls = meta.column("shard").to_pylist(), meta.column("url").to_pylist()
        rows = _cat(state["row"], np.int64)[uidx[in_cluster]].tolist()
        # seqs of clustered records, so `flag` looks up only the rows that are members
        return cluster_model(zip(in_cluster.tolist(), shards, rows, urls), labels, sizes, best,
                             np.sort(seq[uidx[in_cluster]]))

    def flag(self, batch, model):
        members = model["members"]
        if not members:
            return []
        ms = model.get("member_seqs")
        if ms is not None:
            hit = np.flatnonzero(np.isin(batch.column("seq").to_numpy(), ms))
        else:
            hit = np.arange(batch.num_rows)
        if not len(hit):
            return []
        idx = pa.array(hit)
        shards = batch.column("shard").take(idx).to_pylist()
        rows = batch.column("row").take(idx).to_pylist()
        found = []
        for i, s, r in zip(hit.tolist(), shards, rows):
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


def model_from_edges(lo: np.ndarray, hi: np.ndarray, est: np.ndarray, meta: dict[int, tuple]) -> dict:
    """The detector's model from confirmed edges between nodes numbered in input order (`seq`), with
    `meta[node] = (shard, row, url)` for every node on an edge: the same clusters, kept records,
    numbering and `member_seqs` as `MinHashNearDuplicates.finalize`, which sees all records; this sees
    only the edges (the keyed Beam stages gather nothing else)."""
    if len(lo) == 0:
        return {"members": {}, "clusters": {}, "member_seqs": np.zeros(0, np.int64)}
    lo, hi = np.asarray(lo, np.int64), np.asarray(hi, np.int64)
    nodes = np.unique(np.concatenate([lo, hi]))
    li, hj = np.searchsorted(nodes, lo), np.searchsorted(nodes, hi)
    labels = components(len(nodes), li, hj)
    sizes = np.bincount(labels)
    best = np.zeros(len(nodes))
    np.maximum.at(best, li, np.asarray(est, float))
    np.maximum.at(best, hj, np.asarray(est, float))
    items = ((u, *meta[int(nodes[u])]) for u in range(len(nodes)))
    return cluster_model(items, labels, sizes, best, nodes)


def cluster_model(items, labels: np.ndarray, sizes: np.ndarray, best: np.ndarray, member_seqs: np.ndarray) -> dict:
    """The model from clustered nodes `items` = (node, shard, row, url) in input order (the first
    member of a cluster is the kept record): members by (shard, row), clusters with their spread."""
    members: dict[tuple[str, int], dict] = {}
    clusters: dict[int, dict] = {}
    for u, shard, row, url in items:
        lab = int(labels[u])
        key = (shard, int(row))
        c = clusters.get(lab)
        if c is None:
            c = clusters[lab] = {"cluster_id": len(clusters), "size": int(sizes[lab]), "kept_shard": key[0],
                                 "kept_row": key[1], "urls": set(), "domains": set()}
        if url:
            c["urls"].add(url)
            c["domains"].add(domain(url))
        members[key] = {"cluster": lab, "jaccard": round(float(best[u]), 3)}
    out_clusters = {lab: {"cluster_id": c["cluster_id"], "size": c["size"], "kept_shard": c["kept_shard"],
                          "kept_row": c["kept_row"], "distinct_urls": len(c["urls"]),
                          "distinct_domains": len(c["domains"])} for lab, c in clusters.items()}
    return {"members": members, "clusters": out_clusters, "member_seqs": member_seqs}
