"""Long documents cut into sentence chunks for embedding (short sentences merged, long ones cut)."""

from __future__ import annotations

import re

import numpy as np

_SENT = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\s*\n+\s*")


def chunk_text(text: str, max_words: int = 48, min_words: int = 6) -> list[str]:
    """Sentence chunks: split on sentence ends and newlines, merge short pieces into the next one,
    cut pieces longer than `max_words` into windows. Never returns an empty list for non-empty text."""
    text = (text or "").strip()
    if not text:
        return []
    out: list[str] = []
    buf: list[str] = []
    for piece in _SENT.split(text):
        words = piece.split()
        if not words:
            continue
        buf.extend(words)
        if len(buf) >= min_words:
            for s in range(0, len(buf), max_words):
                w = buf[s:s + max_words]
                if len(w) < min_words and out and s > 0:
                    out[-1] = out[-1] + " " + " ".join(w)
                else:
                    out.append(" ".join(w))
            buf = []
    if buf:
        if out and len(buf) < min_words:
            out[-1] = out[-1] + " " + " ".join(buf)
        else:
            out.append(" ".join(buf))
    return out


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
