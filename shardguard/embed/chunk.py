"""Long documents cut into sentence chunks for embedding (short sentences merged, long ones cut)."""

from __future__ import annotations

import numpy as np

from shardguard.embed.fast import chunk_text  # word spans: the same chunks as the fast path


def chunk_many(texts: list[str], max_words: int = 48, min_words: int = 6) -> tuple[list[str], np.ndarray]:
    """(chunks, owner) where owner[k] is the index in `texts` of chunk k."""
    chunks: list[str] = []
    owner: list[int] = []
    for i, t in enumerate(texts):
        cs = chunk_text(t, max_words, min_words)
        chunks.extend(cs)
        owner.extend([i] * len(cs))
    return chunks, np.asarray(owner, np.int64)


# -- neighbours and clusters ------------------------------------------------------------------------
