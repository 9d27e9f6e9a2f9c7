"""MinHash building blocks shared by the dedup and SFT detectors (defined once, here).

- `shingle_hashes64(texts, ngram)`  64-bit hashes of lowercased `\\w+` word n-grams, all documents
  concatenated, with each document's start (polars for the words, numpy for the n-grams: no Python
  per word). A text shorter than `ngram` words is one shingle of all its words; an empty text hashes
  the empty word sequence, so every document has at least one shingle.
- `shingle_hashes(texts, ngram)`    the same, truncated to 32 bits (the classic permutation input).
- `perm_params` / `perm_signatures`  classic MinHash: num_perm multiply-add-shift permutations of each
  32-bit shingle hash, per-document minimum. Used by the SFT helpers (`response_sigs`).
- `oph_signatures(h, starts, num_perm, seed)`  one-permutation hashing with optimal densification
  (Shrivastava 2017): one hash per shingle picks a bin (= a signature slot) and a value, each slot
  keeps its minimum, and an empty slot copies the slot found by a fixed probe sequence. Equal slots
  estimate Jaccard like num_perm independent permutations, at the cost of one hash per shingle.
- `id_prefix(record_ids)`  a record id's first 64 bits as uint64: the compact exact-copy key.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

_WORD = r"\w+"
_MULT = np.uint64(0x9E3779B97F4A7C15)
_EMPTY = np.uint32(0xFFFFFFFF)


def perm_params(num_perm: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(1, np.iinfo(np.uint64).max, size=num_perm, dtype=np.uint64) | np.uint64(1)
    b = rng.integers(0, np.iinfo(np.uint64).max, size=num_perm, dtype=np.uint64)
    return a, b


def shingle_hashes64(texts: list[str] | pa.Array, ngram: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """(h, starts): uint64 shingle hashes of all documents concatenated, and each document's start."""
    s = pl.Series("t", texts, dtype=pl.String).fill_null("")
    words = s.str.to_lowercase().str.extract_all(_WORD)
    lens = words.list.len().fill_null(0).to_numpy().astype(np.int64)
    flat = words.explode().drop_nulls()
    wh = flat.hash(seed=42).to_numpy().astype(np.uint64, copy=False) if len(flat) else np.zeros(0, np.uint64)
    n_docs = len(lens)
    word_end = np.cumsum(lens)
    n_sh = np.maximum(lens - ngram + 1, 1)
    starts = np.zeros(n_docs, np.int64)
    np.cumsum(n_sh[:-1], out=starts[1:])
    n_w = len(wh)
    with np.errstate(over="ignore"):
        # rolling combination of `ngram` consecutive word hashes over the flat word array; windows
        # that cross a document boundary are dropped by the mask below
        if n_w >= ngram:
            m = n_w - ngram + 1
            roll = np.zeros(m, np.uint64)
            for k in range(ngram):
                roll ^= wh[k:m + k]
                roll *= _MULT
                roll += np.uint64(k + 1)
            valid = np.ones(m, bool)
            # the last ngram-1 window starts of every document run into the next one
            ends = word_end[lens > 0]
            bad = (ends[:, None] - np.arange(1, ngram, dtype=np.int64)[None, :]).ravel()
            valid[bad[(bad >= 0) & (bad < m)]] = False
            # ...unless the document is shorter than a shingle: then none of its starts is valid
            # either (handled below), and the mask above already removed them
            h = roll[valid]
        else:
            h = np.zeros(0, np.uint64)
        short = np.flatnonzero(lens < ngram)
        if len(short):
            word_start = word_end - lens
            vals = np.empty(len(short), np.uint64)
            for p, d in enumerate(short.tolist()):
                acc = np.uint64(0)
                for k in range(int(lens[d])):
                    acc = (acc ^ wh[word_start[d] + k]) * _MULT + np.uint64(k + 1)
                vals[p] = acc
            # position of each short document's one shingle among the long documents' shingles
            h = np.insert(h, starts[short] - np.arange(len(short)), vals)
        h ^= h >> np.uint64(29)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(32)
    return h, starts


def shingle_hashes(texts: list[str] | pa.Array, ngram: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """(x, starts): 32-bit shingle hashes (as uint64) of all documents concatenated, and each start."""
    h, starts = shingle_hashes64(texts, ngram)
    return h & np.uint64(0xFFFFFFFF), starts


def perm_signatures(x: np.ndarray, starts: np.ndarray, a: np.ndarray, b: np.ndarray,
                    chunk: int = 8192) -> np.ndarray:
    """(n_docs, num_perm) uint32 MinHash signatures of docs whose shingles are x[starts[i]:starts[i+1]],
    h_i(x) = ((a_i * x + b_i) mod 2^64) >> 32."""
    n_docs, num_perm = len(starts), len(a)
    out = np.empty((n_docs, num_perm), np.uint32)
    if n_docs == 0:
        return out
    ends = np.append(starts[1:], len(x))
    a_col, b_col = a[:, None], b[:, None]
    d0 = 0
    while d0 < n_docs:
        d1 = int(np.searchsorted(starts, starts[d0] + chunk, side="right"))
        d1 = min(max(d1, d0 + 1), n_docs)
        s0, s1 = int(starts[d0]), int(ends[d1 - 1])
        with np.errstate(over="ignore"):
            m = a_col * x[None, s0:s1]
            m += b_col
        m >>= np.uint64(32)
        mins = np.minimum.reduceat(m, starts[d0:d1] - s0, axis=1)
        out[d0:d1] = mins.T.astype(np.uint32)
        d0 = d1
    return out


def _mix64(h: np.ndarray, salt: int) -> np.ndarray:
    """splitmix64 finaliser of h ^ salt (vectorised, wrapping)."""
    with np.errstate(over="ignore"):
        h = h ^ np.uint64(salt & 0xFFFFFFFFFFFFFFFF)
        h ^= h >> np.uint64(30)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(27)
        h *= np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(31)
    return h


_PROBES: dict[tuple[int, int], np.ndarray] = {}
_N_PROBES = 24


def _probes(num_perm: int, seed: int) -> np.ndarray:
    key = (num_perm, seed)
    if key not in _PROBES:
        _PROBES[key] = np.random.default_rng([seed, 0x0D]).integers(0, num_perm, size=(_N_PROBES, num_perm))
    return _PROBES[key]


def oph_signatures(h: np.ndarray, starts: np.ndarray, num_perm: int = 128, seed: int = 1) -> np.ndarray:
    """(n_docs, num_perm) uint32 one-permutation MinHash signatures with optimal densification."""
    n_docs = len(starts)
    if n_docs == 0:
        return np.empty((0, num_perm), np.uint32)
    g = _mix64(h, 0x5EED0000 + seed * 0x9E3779B97F4A7C15)
    n_sh = np.diff(np.append(starts, len(g)))
    with np.errstate(over="ignore"):
        slot = ((g >> np.uint64(32)) * np.uint64(num_perm)) >> np.uint64(32)  # top bits pick the slot
        key = np.repeat(np.arange(n_docs, dtype=np.uint64) * np.uint64(num_perm), n_sh) + slot
    val = (g & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    sig = np.full(n_docs * num_perm, _EMPTY, np.uint32)
    np.minimum.at(sig, key.astype(np.intp), val)
    sig = sig.reshape(n_docs, num_perm)
    empty = sig == _EMPTY
    if empty.any():
        d, j = np.nonzero(empty)
        probes = _probes(num_perm, seed)
        for t in range(_N_PROBES):
            c = probes[t, j]
            ok = ~empty[d, c]
            sig[d[ok], j[ok]] = sig[d[ok], c[ok]]
            d, j = d[~ok], j[~ok]
            if not len(d):
                break
        # rare (documents with a handful of shingles): the next non-empty slot to the right
        for o in range(1, num_perm):
            if not len(d):
                break
            c = (j + o) % num_perm
            ok = ~empty[d, c]
            sig[d[ok], j[ok]] = sig[d[ok], c[ok]]
            d, j = d[~ok], j[~ok]
    return sig


def id_prefix(record_ids: pa.Array | pa.ChunkedArray | list) -> np.ndarray:
    """uint64 of each record id's first 16 hex digits (record ids are blake2b hex digests; anything
    else is hashed), the compact key under which exact copies are recognised."""
    import polars as pl

    s = pl.Series("id", record_ids, dtype=pl.String) if isinstance(record_ids, list) else pl.Series(
        "id", pa.chunked_array([record_ids]) if isinstance(record_ids, pa.Array) else record_ids)
    s = s.fill_null("")
    v = s.str.slice(0, 16).str.to_integer(base=16, dtype=pl.UInt64, strict=False)
    if v.null_count():  # not hex: a hash of the whole id
        v = v.fill_null(s.hash(seed=3))
    return v.to_numpy()
