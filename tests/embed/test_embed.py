"""The embedding module: chunking, the static fast path, the MiniLM cache, faiss range pairs."""

from __future__ import annotations

import numpy as np

from shardguard import embed as E
from shardguard.core.graph import components


def test_chunk_text_splits_sentences_merges_short_and_cuts_long():
    text = "Hi. " + "The quick brown fox jumps over the lazy dog today. " * 2 + " ".join(["word"] * 100)
    chunks = E.chunk_text(text, max_words=48, min_words=6)
    assert chunks[0].startswith("Hi. The quick")  # a 1-word sentence is merged into the next
    assert all(len(c.split()) <= 48 + 6 for c in chunks)
    assert " ".join(chunks).split() == text.split()  # nothing lost, nothing added
    assert E.chunk_text("") == []
    chunks, owner = E.chunk_many(["One two three four five six.", "", "Seven eight nine ten eleven twelve."])
    assert owner.tolist() == [0, 2]


def test_static_model_is_small_normalised_and_semantic():
    assert E.STATIC_PATH.stat().st_size < 5 * 2**20
    x = E.embed(["The Eiffel Tower is located in Paris, France.",
                 "Paris, France is where the Eiffel Tower stands.",
                 "Add two cups of flour and bake for twenty minutes.", ""], "static")
    assert x.shape == (4, 128) and x.dtype == np.float32
    assert np.allclose(np.linalg.norm(x[:3], axis=1), 1.0, atol=1e-5) and not x[3].any()
    assert x[0] @ x[1] > x[0] @ x[2] + 0.2


def test_minilm_cache_avoids_re_embedding(tmp_path, monkeypatch):
    monkeypatch.setenv("SHARDGUARD_CACHE", str(tmp_path))
    texts = ["a first sentence about cats", "a second one about dogs", "a first sentence about cats"]
    before = E.STATS["minilm_embedded"]
    x1 = E.embed(texts, "minilm")
    assert E.STATS["minilm_embedded"] - before == 2  # duplicates embedded once
    assert (tmp_path / "embeddings" / f"{E.MINILM_ID}.sqlite").exists()
    hits = E.STATS["minilm_cache_hits"]
    x2 = E.embed(texts, "minilm")
    assert E.STATS["minilm_embedded"] - before == 2  # nothing new embedded on the rescan
    assert E.STATS["minilm_cache_hits"] - hits == 3
    assert np.array_equal(x1, x2) and x1.shape == (3, 384)
    assert np.allclose(x1, E.embed_minilm(texts[:2] + texts[:1]), atol=1e-5)
    assert abs(float(x1[0] @ x1[2]) - 1.0) < 1e-5


def test_range_pairs_and_components_flat_and_ivf():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(3, 32))
    x = np.concatenate([base[k] + 0.01 * rng.normal(size=(4, 32)) for k in range(3)] + [rng.normal(size=(40, 32))])
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    i, j, s = E.range_pairs(x, 0.95, "flat")
    assert (i < j).all() and (s >= 0.95).all() and len(i) == 3 * 6
    lab = components(len(x), i, j)
    assert len(set(lab[:12].tolist())) == 3 and len(set(lab.tolist())) == 3 + 40
    i2, j2, _ = E.range_pairs(x, 0.95, "ivf", nlist=2, nprobe=2)
    assert set(zip(i2.tolist(), j2.tolist())) == set(zip(i.tolist(), j.tolist()))


def test_fast_pass_equals_static_embedding_and_never_reuses_another_batch():
    import pyarrow as pa

    from shardguard.embed.fast import analyse, batch_key

    texts = ["The Eiffel Tower is in Paris. It was built in 1889!\nTickets cost \"20 euros.\" Visit soon",
             "", "Add two cups of flour, then bake for twenty minutes at 180 degrees."]
    a = analyse(texts, max_words=48, min_words=2)
    assert np.allclose(a.doc_vec, E.embed(texts, "static"), atol=1e-5)
    chunks = [c for t in texts for c in E.chunk_text(t, 48, 2)]
    assert np.allclose(a.chunk_vec, E.embed(chunks, "static"), atol=1e-5)
    assert a.chunk_owner.tolist() == [0] * (len(chunks) - 1) + [2]
    one = pa.record_batch({"seq": pa.array([0, 1]), "text": pa.array(["cats purr softly at night", "x"])})
    other = pa.record_batch({"seq": pa.array([0, 1]), "text": pa.array(["stock markets fell sharply", "x"])})
    assert batch_key(one) != batch_key(other)
    v1 = analyse(one.column("text").to_pylist(), key=batch_key(one)).doc_vec
    v2 = analyse(other.column("text").to_pylist(), key=batch_key(other)).doc_vec
    assert not np.allclose(v1[0], v2[0]) and np.allclose(v1[1], v2[1])
