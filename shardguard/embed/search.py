"""Nearest-neighbour search over embeddings (exact, faiss IVF, or k-means cells) and a 2-D projection
for plots."""

from __future__ import annotations

import numpy as np


def unit_rows(x: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """float32 L2-normalised copies of x[rows] (x may be int8: a quantised direction)."""
    v = (x if rows is None else x[rows]).astype(np.float32)
    v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-9)
    return v


def range_pairs(x: np.ndarray, tau: float, index: str = "auto", nlist: int | None = None,
                nprobe: int = 16, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs (i < j) with cosine >= tau among the rows of x (or of x[rows]: then i, j are positions
    in `rows`). Rows are normalised here; x may be float or int8 (quantised directions).

    `index`: "flat" (exact IndexFlatIP range search), "ivf" (IndexIVFFlat, approximate), "cells"
    (k-means cells, each row in its 2 nearest; exact products inside each cell as matrix products,
    converting a cell's rows at a time: linear in n for a fixed cell size, approximate at cell
    borders) or "auto" (flat below 20,000 rows, else cells)."""
    import faiss

    n = len(x) if rows is None else len(rows)
    e = np.zeros(0, np.int64)
    if n < 2:
        return e, e, np.zeros(0, np.float32)
    kind = ("flat" if n < 20_000 else "cells") if index == "auto" else index
    if kind == "cells":
        return _cell_pairs(x, float(tau), rows)
    x = unit_rows(x, rows)
    d = x.shape[1]
    if kind == "flat":
        idx = faiss.IndexFlatIP(d)
    elif kind == "ivf":
        nl = nlist or max(1, min(int(4 * np.sqrt(n)), n // 39))
        idx = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nl, faiss.METRIC_INNER_PRODUCT)
        idx.train(x)
        idx.nprobe = min(nprobe, nl)
    else:
        raise ValueError(f"unknown index {index!r}: use flat, ivf, cells or auto")
    idx.add(x)
    src, dst, sim = [], [], []
    for s in range(0, n, 4096):
        lims, dist, nb = idx.range_search(x[s:s + 4096], float(tau))
        r = np.repeat(np.arange(s, s + len(lims) - 1), np.diff(lims.astype(np.int64)))
        keep = nb > r
        src.append(r[keep])
        dst.append(nb[keep])
        sim.append(dist[keep])
    return np.concatenate(src), np.concatenate(dst).astype(np.int64), np.concatenate(sim)


def _cell_pairs(x: np.ndarray, tau: float, rows: np.ndarray | None = None, cell: int = 1024, probe: int = 2,
                block: int = 65536) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import faiss

    rows = np.arange(len(x), dtype=np.int64) if rows is None else np.asarray(rows, np.int64)
    n = len(rows)
    d = x.shape[1]
    k = max(1, n // cell)
    sample = rows[np.random.default_rng(1234).permutation(n)[:min(n, 64 * k)]]
    km = faiss.Kmeans(d, k, niter=10, seed=1234, spherical=True, max_points_per_centroid=64, verbose=False)
    km.train(unit_rows(x, np.sort(sample)))
    assign = np.zeros((n, min(probe, k)), np.int64)
    for s in range(0, n, block):
        _, a = km.index.search(unit_rows(x, rows[s:s + block]), assign.shape[1])
        assign[s:s + block] = a
    pos = np.repeat(np.arange(n, dtype=np.int64), assign.shape[1])
    cells = assign.reshape(-1)
    order = np.lexsort((pos, cells))
    pos, cells = pos[order], cells[order]
    bounds = np.flatnonzero(np.diff(cells)) + 1
    keys = []
    sims = []
    for m in np.split(pos, bounds):
        if len(m) < 2:
            continue
        xm = unit_rows(x, rows[m])
        s = xm @ xm.T
        a, b = np.nonzero(s >= tau)
        keep = a < b
        a, b = a[keep], b[keep]
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
