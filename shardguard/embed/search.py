"""Nearest-neighbour search over embeddings (exact or faiss IVF) and a 2-D projection for plots."""

from __future__ import annotations

import numpy as np


def range_pairs(x: np.ndarray, tau: float, index: str = "auto", nlist: int | None = None,
                nprobe: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs (i < j) with cosine >= tau among the L2-normalised rows of x.

    `index`: "flat" (exact IndexFlatIP range search), "ivf" (IndexIVFFlat, approximate), "cells"
    (k-means cells, each row in its 2 nearest; exact products inside each cell as matrix products:
    linear in n for a fixed cell size, approximate at cell borders) or "auto" (flat below 20,000
    rows, else cells)."""
    import faiss

    x = np.ascontiguousarray(x, np.float32)
    n, d = x.shape
    e = np.zeros(0, np.int64)
    if n < 2:
        return e, e, np.zeros(0, np.float32)
    kind = ("flat" if n < 20_000 else "cells") if index == "auto" else index
    if kind == "cells":
        return _cell_pairs(x, float(tau))
    if kind == "flat":
        idx = faiss.IndexFlatIP(d)
    elif kind == "ivf":
        nl = nlist or max(1, min(int(4 * np.sqrt(n)), n // 39))
        idx = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nl, faiss.METRIC_INNER_PRODUCT)
        idx.train(x)
        idx.nprobe = min(nprobe, nl)
    else:
        raise ValueError(f"unknown index {index!r}: use flat, ivf or auto")
    idx.add(x)
    src, dst, sim = [], [], []
    for s in range(0, n, 4096):
        lims, dist, nb = idx.range_search(x[s:s + 4096], float(tau))
        rows = np.repeat(np.arange(s, s + len(lims) - 1), np.diff(lims.astype(np.int64)))
        keep = nb > rows
        src.append(rows[keep])
        dst.append(nb[keep])
        sim.append(dist[keep])
    return np.concatenate(src), np.concatenate(dst).astype(np.int64), np.concatenate(sim)



def _cell_pairs(x: np.ndarray, tau: float, cell: int = 1024, probe: int = 2
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import faiss

    n, d = x.shape
    k = max(1, n // cell)
    km = faiss.Kmeans(d, k, niter=10, seed=1234, spherical=True, max_points_per_centroid=64, verbose=False)
    km.train(x)
    _, assign = km.index.search(x, min(probe, k))
    rows = np.repeat(np.arange(n, dtype=np.int64), assign.shape[1])
    cells = assign.reshape(-1).astype(np.int64)
    order = np.lexsort((rows, cells))
    rows, cells = rows[order], cells[order]
    bounds = np.flatnonzero(np.diff(cells)) + 1
    keys = []
    sims = []
    for m in np.split(rows, bounds):
        if len(m) < 2:
            continue
        xm = x[m]
        s = xm @ xm.T
        a, b = np.nonzero(np.triu(s >= tau, 1))
        if len(a):
            keys.append(m[a] * n + m[b])
            sims.append(s[a, b])
    if not keys:
        e = np.zeros(0, np.int64)
        return e, e, np.zeros(0, np.float32)
    key = np.concatenate(keys)
    sim = np.concatenate(sims).astype(np.float32)
    key, first = np.unique(key, return_index=True)
    return key // n, key % n, sim[first]


def pca2(x: np.ndarray) -> np.ndarray:
    """2-D PCA projection of the rows of x (for plots)."""
    if len(x) == 0:
        return np.zeros((0, 2))
    c = x - x.mean(0)
    if len(x) < 2:
        return np.zeros((len(x), 2))
    _, _, vt = np.linalg.svd(c, full_matrices=False)
    p = c @ vt[:2].T
    if p.shape[1] < 2:
        p = np.pad(p, ((0, 0), (0, 2 - p.shape[1])))
    return p
