"""The static model at corpus speed: documents and their sentence chunks embedded in one pass.

The static embedding of a text is the sum of its WordPiece tokens' vectors (then L2-normalised), and
BERT tokenization never crosses whitespace. So a batch is split into whitespace words once, each
*distinct* word is tokenized and summed once (`word_vectors`), and a document's or a chunk's vector
is a segment sum over its words: the same vector `embed(text, "static")` gives (up to float
rounding), at a fraction of the cost. Chunks are word spans (`chunk_spans`), so their texts can be
rebuilt later from the record's text alone (`chunk_text` uses the very same spans).

`analyse(texts, ...)` keeps its last result: the detectors that see the same batch (`semantic_dup`
wants document vectors, `campaign` chunk vectors) share one pass.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np

_END = re.compile(r"[.!?][\"')\]]*$")
_FUNC = frozenset("a an the is are was were be of to in on at by for with as that this it and or not has have".split())


def chunk_lengths(sentence_lengths: list[int], max_words: int, min_words: int) -> list[int]:
    """Chunk sizes (in words) from sentence sizes: short sentences merged into the next, long ones cut
    into windows of `max_words`, a short tail merged into the chunk before it."""
    out: list[int] = []
    buf = 0
    for n in sentence_lengths:
        buf += n
        if buf >= min_words:
            s = 0
            while s < buf:
                w = min(max_words, buf - s)
                if w < min_words and out and s > 0:
                    out[-1] += w
                else:
                    out.append(w)
                s += w
            buf = 0
    if buf:
        if out and buf < min_words:
            out[-1] += buf
        else:
            out.append(buf)
    return out


def _words_and_ends(text: str) -> tuple[list[str], list[int]]:
    """Whitespace words of `text` and the sentence lengths (a sentence ends at . ! ? — optionally
    followed by closing quotes or brackets — or at a line break)."""
    words: list[str] = []
    sents: list[int] = []
    for line in (text or "").split("\n"):
        ws = line.split()
        if not ws:
            continue
        last = 0
        for k, w in enumerate(ws):
            if _END.search(w):
                sents.append(k + 1 - last)
                last = k + 1
        if last < len(ws):
            sents.append(len(ws) - last)
        words.extend(ws)
    return words, sents


def chunk_spans(text: str, max_words: int = 48, min_words: int = 6) -> tuple[list[str], list[int]]:
    """(words, chunk sizes in words) of one text."""
    words, sents = _words_and_ends(text)
    return words, chunk_lengths(sents, max_words, min_words)


def chunk_text(text: str, max_words: int = 48, min_words: int = 6) -> list[str]:
    """Sentence chunks: split on sentence ends and newlines, merge short pieces into the next one,
    cut pieces longer than `max_words` into windows. Never returns an empty list for non-empty text."""
    words, sizes = chunk_spans(text, max_words, min_words)
    out, s = [], 0
    for n in sizes:
        out.append(" ".join(words[s:s + n]))
        s += n
    return out


def chunk_hash(words: list[str]) -> int:
    """A stable 64-bit key of a chunk's lowercased words (identical chunks collapse on it)."""
    return int.from_bytes(hashlib.blake2b(" ".join(words).lower().encode("utf-8", "surrogatepass"),
                                          digest_size=8).digest(), "little")


_WV_CACHE: dict[str, int] = {}
_WV_ROWS: list[np.ndarray] = []
_WV_MAX = 200_000  # distinct words whose vectors are kept across batches (~100 MB)


def word_vectors(words: list[str]) -> np.ndarray:
    """(len(words), dim) float32: the sum of each word's static token vectors (not normalised).
    Frequent words are remembered across batches (bounded)."""
    from scipy.sparse import csr_matrix

    from shardguard.embed.models import load_static

    st = load_static()
    out = np.zeros((len(words), st.dim), np.float32)
    if not words:
        return out
    hit = np.fromiter((_WV_CACHE.get(w, -1) for w in words), np.int64, len(words))
    if _WV_ROWS and (hit >= 0).any():
        table = _WV_ROWS[0]
        out[hit >= 0] = table[hit[hit >= 0]]
    miss = np.flatnonzero(hit < 0)
    if len(miss):
        new = [words[k] for k in miss.tolist()]
        ids, lens = st.token_ids(new)
        indptr = np.zeros(len(new) + 1, np.int64)
        np.cumsum(lens, out=indptr[1:])
        m = csr_matrix((np.ones(len(ids), np.float32), ids, indptr), shape=(len(new), len(st.vectors)))
        vec = np.asarray(m @ st.vectors, np.float32)
        out[miss] = vec
        room = _WV_MAX - len(_WV_CACHE)
        if room > 0:
            take = min(room, len(new))
            base = len(_WV_CACHE)
            table = _WV_ROWS[0] if _WV_ROWS else np.zeros((0, st.dim), np.float32)
            if len(table) < base + take:
                grown = np.zeros((min(_WV_MAX, max(2 * len(table), base + take)), st.dim), np.float32)
                grown[:base] = table[:base]
                _WV_ROWS[:] = [grown]
                table = grown
            table[base:base + take] = vec[:take]
            for k in range(take):
                _WV_CACHE[new[k]] = base + k
    return out


def _normalise(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    np.divide(x, n, out=x, where=n > 0)
    return x


def _segment_sum(x: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    out = np.zeros((len(sizes), x.shape[1]), np.float32)
    nz = sizes > 0
    if nz.any():
        starts = np.zeros(len(sizes), np.int64)
        np.cumsum(sizes[:-1], out=starts[1:])
        out[nz] = np.add.reduceat(x, starts[nz], axis=0)
    return out


@dataclass
class Analysis:
    doc_vec: np.ndarray        # (docs, dim) float32, L2-normalised (zero for empty texts)
    chunk_owner: np.ndarray    # (chunks,) int64: the document (index in the batch) of each chunk
    chunk_index: np.ndarray    # (chunks,) int32: the chunk's number within its document
    chunk_words: np.ndarray    # (chunks,) int32: words in the chunk
    chunk_func: np.ndarray     # (chunks,) int32: function words in the chunk (a sentence has some)
    chunk_vec: np.ndarray      # (chunks, dim) float32, L2-normalised
    chunk_key: np.ndarray      # (chunks,) uint64: identical chunks (lowercased words) share it
    df: dict[str, int] | None  # documents containing each content word (when `content_words` given)


_LAST: dict = {}


def batch_key(batch) -> bytes:
    """A key of a record batch's content (its seq and text columns' bytes): `analyse` results are
    reused only for the very same batch, never for another scan's batch with the same seq numbers."""
    h = hashlib.blake2b(digest_size=16)
    for name in ("seq", "text"):
        col = batch.column(name)
        h.update(str((col.offset, len(col))).encode())
        for buf in col.buffers():
            if buf is not None:
                h.update(memoryview(buf))
    return h.digest()


def analyse(texts: list[str], max_words: int = 48, min_words: int = 6, key: bytes | None = None,
            chunks: bool = True, content_words=None) -> Analysis:
    """Document and chunk vectors of a batch of texts in one pass. `key` (e.g. the batch's `seq`
    bytes) lets a second detector on the same batch reuse the result. `content_words(word) -> list`
    (optional) gives a whitespace word's content words; their document frequencies are returned."""
    memo = (key, max_words, min_words, chunks, content_words) if key is not None else None
    last = _LAST.get("memo")
    if memo is not None and last is not None and last[0] == key and (not chunks or last[1:4] == memo[1:4]) \
            and (content_words is None or last[4] is content_words):
        return _LAST["result"]  # the same batch, already analysed (with at least what is asked)
    import pyarrow as pa
    import pyarrow.compute as pc
    from scipy.sparse import csr_matrix

    from shardguard.embed.models import STATS

    words: list[str] = []
    line_ends: list[int] = []
    doc_len = np.zeros(len(texts), np.int64)
    for d, t in enumerate(texts):
        n0 = len(words)
        for line in (t or "").split("\n"):
            ws = line.split()
            if ws:
                words.extend(ws)
                line_ends.append(len(words) - 1)
        doc_len[d] = len(words) - n0
    arr = pa.array(words, pa.string())
    # the tokenizer lowercases, so a word and its lowercase have one vector (and one chunk-key hash)
    enc = pc.dictionary_encode(pc.utf8_lower(arr))
    wid = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    vocab = enc.dictionary.to_pylist()
    wv = word_vectors(vocab)
    doc_start = np.zeros(len(texts), np.int64)
    if len(texts):
        np.cumsum(doc_len[:-1], out=doc_start[1:])
    if chunks:
        # sentence ends: a word ending in . ! ? (closing quotes/brackets allowed), a line's last word, a doc's last
        end = pc.match_substring_regex(arr, r"[.!?][\"')\]]*$").to_numpy(zero_copy_only=False).astype(bool)
        end[np.asarray(line_ends, np.int64)] = True
        cut = np.flatnonzero(end) + 1
        per_doc = np.searchsorted(cut, doc_start + doc_len, side="right")
        lo = 0
        sizes: list[int] = []
        owner_n: list[int] = []
        prev = 0
        for d, hi in enumerate(per_doc.tolist()):
            c = cut[lo:hi]
            sl = np.diff(c, prepend=int(doc_start[d])).tolist() if len(c) else []
            cl = chunk_lengths(sl, max_words, min_words) if sl else []
            sizes.extend(cl)
            owner_n.append(len(cl))
            lo = hi
            prev += len(cl)
        size_a = np.asarray(sizes, np.int64)
        n_per_doc = np.asarray(owner_n, np.int64)
    else:
        size_a = doc_len.copy()
        n_per_doc = np.ones(len(texts), np.int64)
    indptr = np.zeros(len(size_a) + 1, np.int64)
    np.cumsum(size_a, out=indptr[1:])
    m = csr_matrix((np.ones(len(wid), np.float32), wid, indptr), shape=(len(size_a), max(1, len(vocab))))
    seg = np.asarray(m @ (wv if len(vocab) else np.zeros((1, wv.shape[1]), np.float32)), np.float32)
    doc_vec = _normalise(_segment_sum(seg, n_per_doc))
    chunk_vec = _normalise(seg) if chunks else np.zeros((0, wv.shape[1]), np.float32)
    if not chunks:
        size_a = np.zeros(0, np.int64)
        n_per_doc = np.zeros(len(texts), np.int64)
    owner = np.repeat(np.arange(len(texts), dtype=np.int64), n_per_doc)
    cstart = np.zeros(len(texts), np.int64)
    if len(texts):
        np.cumsum(n_per_doc[:-1], out=cstart[1:])
    index = (np.arange(len(owner), dtype=np.int64) - np.repeat(cstart, n_per_doc)).astype(np.int32)
    STATS["static_embedded"] += len(texts) + len(size_a)
    # function words and identical-chunk keys, per chunk, from per-word values
    is_func = np.fromiter((w in _FUNC for w in vocab), np.int32, len(vocab))
    starts = np.zeros(len(size_a), np.int64)
    if len(size_a):
        np.cumsum(size_a[:-1], out=starts[1:])
    func = np.add.reduceat(is_func[wid], starts).astype(np.int32) if len(size_a) else np.zeros(0, np.int32)
    whash = np.fromiter((int.from_bytes(hashlib.blake2b(w.encode("utf-8", "surrogatepass"),
                                                        digest_size=8).digest(), "little") for w in vocab),
                        np.uint64, len(vocab))
    ckey = np.zeros(len(size_a), np.uint64)
    if len(size_a):
        # polynomial hash over positions within the chunk (uint64 arithmetic wraps)
        pos = np.arange(len(wid), dtype=np.int64) - np.repeat(starts, size_a)
        mult = np.uint64(0x9E3779B97F4A7C15)
        powers = np.ones(int(size_a.max()) + 1, np.uint64)
        with np.errstate(over="ignore"):
            for k in range(1, len(powers)):
                powers[k] = powers[k - 1] * mult
            ckey = np.add.reduceat(whash[wid] * powers[pos], starts)
    df = None
    if content_words is not None:
        # document frequency of content words: distinct (document, word) pairs, counted per word
        cvocab: dict[str, int] = {}
        cw = [[cvocab.setdefault(c, len(cvocab)) for c in content_words(w)] for w in vocab]
        cw_len = np.fromiter((len(c) for c in cw), np.int64, len(cw))
        cw_flat = np.fromiter((c for cs in cw for c in cs), np.int64, int(cw_len.sum()))
        cw_start = np.zeros(len(cw), np.int64)
        if len(cw):
            np.cumsum(cw_len[:-1], out=cw_start[1:])
        df = {}
        if len(wid) and len(cvocab):
            counts = cw_len[wid]
            total = int(counts.sum())
            doc_of = np.repeat(np.arange(len(texts), dtype=np.int64), doc_len)
            first = np.zeros(len(counts), np.int64)
            np.cumsum(counts[:-1], out=first[1:])
            idx = np.repeat(cw_start[wid] - first, counts) + np.arange(total, dtype=np.int64)
            pairs = np.sort(np.repeat(doc_of, counts) * len(cvocab) + cw_flat[idx])
            pairs = pairs[np.concatenate([[True], pairs[1:] != pairs[:-1]])]
            n = np.bincount(pairs % len(cvocab), minlength=len(cvocab))
            names = list(cvocab)
            df = {names[c]: int(n[c]) for c in np.flatnonzero(n).tolist()}
    res = Analysis(doc_vec, owner, index, size_a.astype(np.int32),
                   func, chunk_vec, ckey, df)
    _LAST.clear()
    if memo is not None:
        _LAST.update(memo=memo, result=res)
    return res
