"""Nearest-neighbour search over embeddings (exact or faiss IVF) and a 2-D projection for plots."""

from __future__ import annotations

import numpy as np


def range_pairs(x: np.ndarray, tau: float, index: str = "auto", nlist: int | None = None,
                nprobe: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs (i < j) with cosine >= tau among the L2-normalised rows of x.

    `index`: "flat" (exact IndexFlatIP range search), "ivf" (IndexIVFFlat, approximate, for scale) or
    "auto" (flat below 50,000 rows)."""
    import faiss

    x = np.ascontiguousarray(x, np.float32)
    n, d = x.shape
    e = np.zeros(0, np.int64)
    if n < 2:
        return e, e, np.zeros(0, np.float32)
    kind = ("flat" if n < 50_000 else "ivf") if index == "auto" else index
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
