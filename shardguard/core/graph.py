"""Graph and LSH helpers shared by the dedup, campaign and SFT detectors (defined once, here)."""

from __future__ import annotations

import functools

import numpy as np


def components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Connected-component label of each of n nodes given undirected edges (i, j)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if n == 0:
        return np.zeros(0, np.int64)
    g = coo_matrix((np.ones(len(i), np.int8), (np.asarray(i), np.asarray(j))), shape=(n, n))
    return connected_components(g, directed=False)[1]


@functools.lru_cache(maxsize=64)
def lsh_bands(threshold: float, num_perm: int, fp_weight: float, fn_weight: float) -> tuple[int, int]:
    """(bands, rows) minimising fp_weight * P(false positive) + fn_weight * P(false negative) for a
    Jaccard threshold: the classic LSH parameter search (Leskovec et al., Mining of Massive Datasets,
    ch. 3; the same integrals as datasketch's MinHashLSH), written here so no private API is used."""
    from scipy.integrate import quad

    best, opt = float("inf"), (0, 0)
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = quad(lambda s, b=b, r=r: 1 - (1 - s ** float(r)) ** float(b), 0.0, threshold)[0]
            fn = quad(lambda s, b=b, r=r: (1 - s ** float(r)) ** float(b), threshold, 1.0)[0]
            err = fp * fp_weight + fn * fn_weight
            if err < best:
                best, opt = err, (b, r)
    return opt


def bucket_pairs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges (head, member) within groups of equal keys: every record whose key another record shares
    is joined to the first (lowest index) record of its group. Sort-based, O(n log n), no Python per
    record; enough edges for connected components, not all pairs."""
    keys = np.asarray(keys)
    if len(keys) < 2:
        e = np.zeros(0, np.int64)
        return e, e
    order = np.argsort(keys, kind="stable")
    k = keys[order]
    same = k[1:] == k[:-1]
    if not same.any():
        e = np.zeros(0, np.int64)
        return e, e
    heads = np.r_[True, ~same]
    head_pos = np.maximum.accumulate(np.where(heads, np.arange(len(order)), 0))
    member = ~heads
    return order[head_pos[member]].astype(np.int64), order[member].astype(np.int64)
