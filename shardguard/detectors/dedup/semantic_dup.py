"""Semantic duplicates (SemDeDup-style): records that say the same thing in other words.

1. `observe`: each record's text (all its fields joined) is embedded with the static fast path
   (`shardguard.embed.fast`); the state is per record only its seq, a 64-bit record-id key and the
   vector quantised to int8 (128 bytes): no texts.
2. `finalize`: exact copies (same record_id) are left to `exact_dup` and MinHash's near-copies to
   `minhash`; among the rest, candidate pairs have static cosine >= `static_threshold` (range search,
   no fixed k: exact below 20,000 records, k-means cells above). A pair at static cosine >=
   `clear_threshold` whose texts share most of their words (Jaccard of word sets >=
   `clear_word_overlap`) is a duplicate without MiniLM; the ambiguous ones
   (those sharing the most words first, then the most similar) are re-embedded with MiniLM
   (windows of 200 words, batched, cached by text hash across scans)
   within a budget of `max_confirm` MiniLM windows per scan, their texts read back by seq from the
   records file, and confirmed at MiniLM cosine >= `threshold`. Connected components of duplicate
   pairs are groups; the first record of a group (input order) is kept. How many texts MiniLM saw
   and how many ambiguous pairs the budget left unchecked is in the discoveries.
3. `flag`: every other member is a `duplicate` finding naming the kept record and the similarity.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from shardguard.core.records import RECORDS_KEY, ColumnRecords
from shardguard.detectors.base import Detector, concat_columns


def rid_key(rid: str) -> int:
    try:
        return int(rid[:16], 16)
    except (TypeError, ValueError):
        import hashlib

        return int.from_bytes(hashlib.blake2b(str(rid).encode(), digest_size=8).digest(), "little")


def quantise(x: np.ndarray) -> np.ndarray:
    """int8 rows with the same direction as x (cosines are taken after re-normalising)."""
    m = np.abs(x).max(1, keepdims=True)
    return np.round(x * (127.0 / np.maximum(m, 1e-12))).astype(np.int8)


class SemanticDuplicates(Detector):
    name = "semantic_dup"
    category = "duplicate"
    requires = ("minhash",)
    defaults = {"threshold": 0.95, "static_threshold": 0.93, "clear_threshold": 0.99,
                "clear_word_overlap": 0.6, "max_confirm": 160,
                "index": "auto"}

    def observe(self, batch: pa.RecordBatch):
        from shardguard.embed.fast import analyse, batch_key

        texts = [t or "" for t in batch.column("text").to_pylist()]
        seq = batch.column("seq").to_numpy()
        a = analyse(texts, key=batch_key(batch), chunks=False)
        out = {"seq": seq.astype(np.int64),
               "rid": np.fromiter((rid_key(r) for r in batch.column("record_id").to_pylist()), np.uint64, len(seq)),
               "vec": quantise(a.doc_vec)}
        if not self.records_in_context:  # no reader in finalize: keep what it would read
            out.update(text=texts, shard=batch.column("shard").to_pylist(), row=batch.column("row").to_pylist())
        return out

    def merge(self, a, b):
        return concat_columns(a, b)

    def finalize(self, state, context):
        from shardguard.core.graph import components
        from shardguard.embed import embed_docs_minilm, range_pairs

        model = {"members": {}, "groups": 0, "candidates": 0, "minilm_texts": 0, "static_pairs": 0,
                 "clear_pairs": 0, "unconfirmed_pairs": 0}
        if state is None or len(state["seq"]) < 2:
            return model
        cfg = self.config
        reader = context.get(RECORDS_KEY) or ColumnRecords(state)
        order = np.argsort(state["seq"], kind="stable")
        seq, rid = state["seq"][order], state["rid"][order]
        _, first = np.unique(rid, return_index=True)  # exact copies: exact_dup's
        u = np.sort(first)
        i, j, s = range_pairs(state["vec"], cfg["static_threshold"], cfg["index"], rows=order[u])
        if len(i) == 0:
            return model
        # MinHash's near-copies are minhash's
        nodes = np.unique(np.concatenate([i, j]))
        near = set((context.get("minhash") or {}).get("members", {}))
        if near:
            got = reader.take(seq[u[nodes]], ["shard", "row"])
            bad = nodes[[(sh, r) in near for sh, r in zip(got["shard"], got["row"])]]
            keep = ~(np.isin(i, bad) | np.isin(j, bad))
            i, j, s = i[keep], j[keep], s[keep]
        model["static_pairs"] = int(len(i))
        # clear: nearly the same vector *and* mostly the same words (reordered, lightly edited); other
        # pairs are ambiguous, for MiniLM
        clear = s >= cfg["clear_threshold"]
        if clear.any():
            cn = np.unique(np.concatenate([i[clear], j[clear]]))
            wset = {n: set((t or "").lower().split()) for n, t in
                    zip(cn.tolist(), reader.take(seq[u[cn]], ["text"])["text"])}
            for p in np.flatnonzero(clear).tolist():
                a, b = wset[int(i[p])], wset[int(j[p])]
                if len(a & b) < cfg["clear_word_overlap"] * max(1, len(a | b)):
                    clear[p] = False
        model["clear_pairs"] = int(clear.sum())
        # the ambiguous pairs get MiniLM while the budget lasts: those sharing the most words first
        # (a reworded or revised copy keeps most of its words), then the most similar
        amb = np.flatnonzero(~clear)
        chosen: dict[int, int] = {}
        words: dict[int, int] = {}
        spent = 0
        need_text = np.unique(np.concatenate([i[amb], j[amb]])) if len(amb) else np.zeros(0, np.int64)
        text_of: dict[int, str] = {}
        if len(need_text):
            got = reader.take(seq[u[need_text]], ["text"])
            text_of = dict(zip(need_text.tolist(), got["text"]))
            words = {n: len((t or "").split()) for n, t in text_of.items()}
            ws = {n: set((t or "").lower().split()) for n, t in text_of.items()}
            overlap = np.array([len(ws[int(i[p])] & ws[int(j[p])]) / max(1, len(ws[int(i[p])] | ws[int(j[p])]))
                                for p in amb.tolist()])
            amb = amb[np.lexsort((j[amb], i[amb], -s[amb], -np.round(overlap, 2)))]
        confirmable = []
        for p in amb.tolist():
            new = [n for n in (int(i[p]), int(j[p])) if n not in chosen]
            cost = sum(min(8, max(1, -(-words[n] // 200))) for n in new)
            if spent + cost > cfg["max_confirm"]:
                continue
            for n in new:
                chosen[n] = len(chosen)
            spent += cost
            confirmable.append(p)
        model["unconfirmed_pairs"] = int(len(amb) - len(confirmable))
        model["candidates"] = len(chosen)
        sim = s.astype(np.float64).copy()
        ok = clear.copy()
        if chosen:
            nodes_c = sorted(chosen, key=chosen.get)
            xm = embed_docs_minilm([text_of[n] for n in nodes_c])
            model["minilm_texts"] = spent  # windows sent to MiniLM (its cache may have had some)
            cp = np.asarray(confirmable, np.int64)
            pi = np.array([chosen[int(a)] for a in i[cp]], np.int64)
            pj = np.array([chosen[int(b)] for b in j[cp]], np.int64)
            ms = np.einsum("ij,ij->i", xm[pi], xm[pj])
            sim[cp] = ms
            ok[cp] = ms >= cfg["threshold"]
        if not ok.any():
            return model
        pi, pj, ps = i[ok], j[ok], sim[ok]
        lab = components(len(u), pi, pj)
        best: dict[int, float] = {}
        for a, b, v in zip(pi.tolist(), pj.tolist(), ps.tolist()):
            best[a] = max(best.get(a, 0.0), v)
            best[b] = max(best.get(b, 0.0), v)
        groups: dict[int, list[int]] = {}
        for p in sorted(best):  # ascending = input order: the first is kept
            groups.setdefault(int(lab[p]), []).append(p)
        pair_sim = {(int(a), int(b)): float(v) for a, b, v in zip(pi, pj, ps)}
        kept_of = {}
        gl = sorted(groups.values(), key=lambda m: m[0])
        heads = reader.take(seq[u[[m[0] for m in gl]]], ["shard", "row"])
        for gid, members in enumerate(gl):
            kept_of[gid] = (heads["shard"][gid], int(heads["row"][gid]))
            for p in members[1:]:
                # similarity to the kept record (the pair's, else the member's best in the group)
                v = pair_sim.get((members[0], p), best[p])
                model["members"][int(seq[u[p]])] = {
                    "group": gid, "kept_shard": kept_of[gid][0], "kept_row": kept_of[gid][1], "size": len(members),
                    "similarity": round(v, 3)}
        model["groups"] = len(groups)
        return model

    def flag(self, batch, model):
        members = model["members"]
        if not members:
            return []
        found = []
        for i, sq in enumerate(batch.column("seq").to_pylist()):
            m = members.get(sq)
            if m is None:
                continue
            found.append({"i": i, "score": m["similarity"],
                          "reason": (f"says the same as {m['kept_shard']} row {m['kept_row']} in other words "
                                     f"(cosine {m['similarity']:.2f}); that record is kept, "
                                     f"semantic duplicate group {m['group']} of {m['size']}"),
                          "details": {"group": m["group"], "kept_shard": m["kept_shard"], "kept_row": m["kept_row"],
                                      "similarity": m["similarity"], "group_size": m["size"]}})
        return found

    def discoveries(self, model):
        if not model:
            return {}
        return {"groups": model["groups"], "records_flagged": len(model["members"]),
                "candidates_confirmed_with_minilm": model["candidates"],
                "minilm": {"windows": model.get("minilm_texts", 0), "static_pairs": model.get("static_pairs", 0),
                           "clear_pairs_without_minilm": model.get("clear_pairs", 0),
                           "ambiguous_pairs_over_budget": model.get("unconfirmed_pairs", 0)}}
