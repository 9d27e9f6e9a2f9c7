"""The MiniLM embedding cache: vectors stored under the hash of (model, text) in a small SQLite file."""

from __future__ import annotations

import functools
import hashlib
import os
import re
import sqlite3
from pathlib import Path

import numpy as np

from shardguard.embed.models import MINILM_ID


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


@functools.lru_cache(maxsize=4)
def _cache_for(path: str) -> EmbeddingCache:
    return EmbeddingCache(Path(path))


def _default_cache() -> EmbeddingCache:
    return _cache_for(str(cache_dir() / f"{MINILM_ID}.sqlite"))
