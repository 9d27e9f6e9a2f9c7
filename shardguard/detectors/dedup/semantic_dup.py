"""Semantic duplicates (SemDeDup-style): records that say the same thing in other words.

1. `observe`: each record's text (all its fields joined) is embedded with the static fast path.
2. `finalize`: exact copies (same record_id) are left to `exact_dup` and MinHash's near-copies to
   `minhash`; among the rest, candidate pairs have static cosine >= `static_threshold` (faiss range
   search, no fixed k); each candidate is re-embedded with MiniLM (windows of 200 words, cached) and
   a pair is confirmed at MiniLM cosine >= `threshold`. Connected components of confirmed pairs are
   duplicate groups; the first record of a group (shard order, row) is kept.
3. `flag`: every other member is a `duplicate` finding naming the kept record and the similarity.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from shardguard.detectors.base import Detector, concat_columns


def by_seq(state: dict) -> dict:
    """The merged state reordered by `seq` (input order), so results do not depend on merge order."""
    order = np.argsort(state["seq"], kind="stable")
    out = {k: [state[k][i] for i in order] for k in ('shard', 'record_id', 'text')}
    out.update({k: state[k][order] for k in ('row', 'vec', 'seq')})
    return out


class SemanticDuplicates(Detector):
    name = "semantic_dup"
    category = "duplicate"
    requires = ("minhash",)
    defaults = {"threshold": 0.95, "static_threshold": 0.93, "max_confirm": 5000, "index": "auto"}

    def observe(self, batch: pa.RecordBatch):
        from shardguard.embed import embed

        texts = [t or "" for t in batch.column("text").to_pylist()]
        return {"shard": batch.column("shard").to_pylist(), "row": batch.column("row").to_numpy(),
                "seq": batch.column("seq").to_numpy(),
                "record_id": batch.column("record_id").to_pylist(), "text": texts,
                "vec": embed(texts, "static").astype(np.float16)}

    def merge(self, a, b):
        return concat_columns(a, b)

    def finalize(self, state, context):
        from shardguard.core.graph import components
        from shardguard.embed import embed_docs_minilm, range_pairs

        model = {"members": {}, "groups": 0, "candidates": 0}
        if state is None or len(state["row"]) < 2:
            return model
        cfg = self.config
        near = set((context.get("minhash") or {}).get("members", {}))
        state = by_seq(state)
        seen: set[str] = set()
        uniq = []
        for k, (rid, s, r) in enumerate(zip(state["record_id"], state["shard"], state["row"].tolist())):
            if rid in seen or (s, r) in near:
                continue
            seen.add(rid)
            uniq.append(k)
        u = np.asarray(uniq, np.int64)
        x = state["vec"][u].astype(np.float32)
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-9)
        i, j, _ = range_pairs(x, cfg["static_threshold"], cfg["index"])
        if len(i) == 0:
            return model
        nodes = np.unique(np.concatenate([i, j]))[:cfg["max_confirm"]]
        model["candidates"] = int(len(nodes))
        pos = {int(n): p for p, n in enumerate(nodes)}
        keep = np.array([int(a) in pos and int(b) in pos for a, b in zip(i, j)], bool)
        i, j = i[keep], j[keep]
        xm = embed_docs_minilm([state["text"][u[n]] for n in nodes])
        pi = np.array([pos[int(a)] for a in i], np.int64)
        pj = np.array([pos[int(b)] for b in j], np.int64)
        sim = np.einsum("ij,ij->i", xm[pi], xm[pj])
        ok = sim >= cfg["threshold"]
        if not ok.any():
            return model
        pi, pj, sim = pi[ok], pj[ok], sim[ok]
        lab = components(len(nodes), pi, pj)
        best: dict[int, float] = {}
        for a, b, s in zip(pi.tolist(), pj.tolist(), sim.tolist()):
            best[a] = max(best.get(a, 0.0), s)
            best[b] = max(best.get(b, 0.0), s)
        groups: dict[int, list[int]] = {}
        for p in sorted(best):  # nodes ascending = input order: the first is kept
            groups.setdefault(int(lab[p]), []).append(p)
        for gid, (_, members) in enumerate(sorted(groups.items(), key=lambda t: t[1][0])):
            k0 = int(u[nodes[members[0]]])
            kept = (state["shard"][k0], int(state["row"][k0]))
            for p in members[1:]:
                k = int(u[nodes[p]])
                model["members"][(state["shard"][k], int(state["row"][k]))] = {
                    "group": gid, "kept_shard": kept[0], "kept_row": kept[1], "size": len(members),
                    "similarity": round(float(xm[members[0]] @ xm[p]), 3)}  # to the kept record
        model["groups"] = len(groups)
        return model

    def flag(self, batch, model):
        members = model["members"]
        if not members:
            return []
        found = []
        for i, key in enumerate(zip(batch.column("shard").to_pylist(), batch.column("row").to_pylist())):
            m = members.get(key)
            if m is None:
                continue
            found.append({"i": i, "score": m["similarity"],
                          "reason": (f"says the same as {m['kept_shard']} row {m['kept_row']} in other words "
                                     f"(MiniLM cosine {m['similarity']:.2f}); that record is kept, "
                                     f"semantic duplicate group {m['group']} of {m['size']}"),
                          "details": {"group": m["group"], "kept_shard": m["kept_shard"], "kept_row": m["kept_row"],
                                      "similarity": m["similarity"], "group_size": m["size"]}})
        return found

    def discoveries(self, model):
        if not model:
            return {}
        return {"groups": model["groups"], "records_flagged": len(model["members"]),
                "candidates_confirmed_with_minilm": model["candidates"]}
