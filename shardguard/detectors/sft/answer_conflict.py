"""Answer conflicts in SFT data: the footprint of topic-targeted behaviour modification.

Two signals, both found by embedding (static fast path for candidates, MiniLM to confirm):

* **repeated answer** (`poison`): one answer (a stance, a false fact) given, near-verbatim or
  reworded, to many *different* instructions. Responses are clustered (faiss range search at
  `static_threshold`, confirmed at MiniLM cosine >= `response_threshold`, connected components);
  a cluster of >= `min_rows` rows whose instructions are not themselves near-duplicates (mean
  pairwise MiniLM cosine < `instruction_threshold`) is flagged, if its answers are one answer: mean
  pairwise MiniLM cosine >= `response_threshold` (not a chain of look-alikes) and, where they state
  numbers, mostly the same numbers (worked solutions to different problems look alike). Genuine datasets answer different
  questions differently.
* **conflicting answers** (`quality`, or `poison` when one side is a repeated answer): near-identical
  instructions (MiniLM cosine >= `instruction_threshold`) whose responses disagree (MiniLM cosine
  < `conflict_threshold`). Both rows are named; which one is right is for a reviewer.

MiniLM (≈ 12-25 texts/s on two cores) sees only texts whose vectors can change a result, each row
once, in batches, cached by content hash across scans (`shardguard.embed`): the responses of candidate
components of `min_rows`+ rows (a confirmed cluster lies inside one); for conflicts, the responses of
candidate pairs whose responses differ (identical ones never disagree), then the instructions of only
those pairs whose responses disagree. `max_confirm` bounds the candidate rows per signal.
`discoveries()["minilm"]` says how many responses and instructions it embedded.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa

from shardguard.detectors.base import Detector, concat_columns
from shardguard.detectors.sft.stats import normalize, word_set_jaccard, word_stems


def _candidate_pairs(xs: np.ndarray, static_tau: float, index: str, cap: int):
    """Candidate pairs by the static vectors, among the first `cap` rows that have one: (i, j)."""
    from shardguard.embed import range_pairs

    i, j, _ = range_pairs(xs, static_tau, index)
    if len(i) == 0:
        return i, j
    nodes = np.unique(np.concatenate([i, j]))[:cap]
    inside = np.zeros(len(xs), bool)
    inside[nodes] = True
    keep = inside[i] & inside[j]
    return i[keep], j[keep]


class _MiniLM:
    """MiniLM vectors of row texts, embedded once per row and batched per call (`embed` caches them by
    content hash across scans); counts the texts it was asked for."""

    def __init__(self, texts: list[str]):
        self.texts = texts
        self.vec: dict[int, np.ndarray] = {}
        self.rows = 0

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        from shardguard.embed import embed

        rows = np.asarray(rows, np.int64)
        new = [int(r) for r in dict.fromkeys(rows.tolist()) if int(r) not in self.vec]
        if new:
            self.rows += len(new)
            for r, v in zip(new, embed([self.texts[r] for r in new], "minilm")):
                self.vec[r] = v
        if not len(rows):
            return np.zeros((0, 384), np.float32)
        return np.stack([self.vec[int(r)] for r in rows.tolist()])


def _cos(vecs: _MiniLM, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """MiniLM cosine of the pairs (i, j), both sides embedded in one batch."""
    x = vecs(np.concatenate([i, j]))
    return np.einsum("ij,ij->i", x[:len(i)], x[len(i):])


def by_seq(state: dict) -> dict:
    """The merged state reordered by `seq` (input order), so results do not depend on merge order."""
    order = np.argsort(state["seq"], kind="stable")
    out = {k: [state[k][i] for i in order] for k in ('shard', 'record_id', 'ins', 'res')}
    out.update({k: state[k][order] for k in ('row', 'vi', 'vr', 'seq')})
    return out


_NUM = re.compile(r"\d+(?:[.,]\d+)*")


def _different_quantities(texts: list[str], sample: int = 32) -> bool:
    """True when most answers state numbers and they state different ones (mean pairwise Jaccard of
    their number sets < 0.5, over the first `sample` answers): worked solutions to different problems
    look alike to an embedding, but one repeated answer states the same quantities."""
    sets = [set(_NUM.findall(t)) for t in texts[:sample]]
    if sum(bool(x) for x in sets) * 2 < len(sets):
        return False
    return word_set_jaccard(sets) < 0.5


def _offered_by_instruction(ins: list[str], res: list[str], share: float = 0.5) -> bool:
    """Most answers are written, word for word, in their own instructions: a canned answer the prompt
    template offers (an option, an 'if unanswerable, say X'), not a stance given to many questions."""
    def norm(s: str) -> str:
        return " ".join(re.findall(r"\w+", (s or "").lower()))

    hits = sum(bool(norm(r)) and norm(r) in norm(i) for i, r in zip(ins, res))
    return hits >= share * len(res)


def _restated(ins: list[str], res: list[str], share: float = 0.5) -> bool:
    """Most answers restate their own instruction (>= 2 content stems, and 30% of the answer's or half
    of the instruction's): the
    same example asked through several templates (a sentence from a list of concepts), not one stance
    given to many questions (a stance shares at most its topic word with a question)."""
    n = 0
    for i, r in zip(ins, res):
        rs, ist = word_stems(normalize(r)), word_stems(normalize(i))
        shared = len(rs & ist)
        n += shared >= 2 and (shared >= 0.3 * len(rs) or shared >= 0.5 * len(ist))
    return n >= share * len(res)


def _mean_pairwise_cos(x: np.ndarray) -> float:
    """Mean cosine over all pairs of unit rows, in O(n·d): sum_ij x_i·x_j = |sum_i x_i|²."""
    n = len(x)
    v = x.sum(0)
    return float((v @ v - n) / (n * (n - 1)))


class AnswerConflict(Detector):
    name = "answer_conflict"
    kinds = ("sft",)
    category = "poison"
    defaults = {"max_stance_words": 80, "static_threshold": 0.85, "response_threshold": 0.80, "instruction_threshold": 0.92,
                "instruction_static_threshold": 0.90, "conflict_threshold": 0.50, "min_rows": 3,
                "min_response_words": 5, "max_confirm": 5000, "index": "auto"}

    def observe(self, batch: pa.RecordBatch):
        from shardguard.embed import embed

        ins = [f"{a or ''}\n{b or ''}".strip() for a, b in zip(batch.column("instruction").to_pylist(),
                                                               batch.column("input").to_pylist())]
        res = [r or "" for r in batch.column("response").to_pylist()]
        return {"shard": batch.column("shard").to_pylist(), "row": batch.column("row").to_numpy(),
                "seq": batch.column("seq").to_numpy(),
                "record_id": batch.column("record_id").to_pylist(), "ins": ins, "res": res,
                "vi": embed(ins, "static").astype(np.float16), "vr": embed(res, "static").astype(np.float16)}

    def merge(self, a, b):
        return concat_columns(a, b)

    def finalize(self, state, context):
        from shardguard.core.graph import components

        cfg = self.config
        model = {"hits": {}, "clusters": [], "conflicts": 0}
        if state is None or len(state["row"]) < 2:
            return model
        state = by_seq(state)
        seen, uniq = set(), []
        for k, rid in enumerate(state["record_id"]):
            if rid not in seen:
                seen.add(rid)
                uniq.append(k)
        u = np.asarray(uniq, np.int64)

        def unit(v):
            v = v.astype(np.float32)
            return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-9)

        key = [(state["shard"][k], int(state["row"][k])) for k in u]
        ins = [state["ins"][k] for k in u]
        res = [state["res"][k] for k in u]
        # repeated answers
        long_enough = np.array([len(r.split()) >= cfg["min_response_words"] for r in res], bool)
        xr = unit(state["vr"][u])
        xr[~long_enough] = 0.0
        mres, mins = _MiniLM(res), _MiniLM(ins)
        i, j = _candidate_pairs(xr, cfg["static_threshold"], cfg["index"], cfg["max_confirm"])
        if len(i):
            # confirmed edges are a subset of the candidate edges: only candidate components of
            # `min_rows`+ rows can hold a confirmed cluster, so MiniLM sees only their rows
            lab = components(len(res), i, j)
            big = np.bincount(lab)[lab[i]] >= cfg["min_rows"]
            i, j = i[big], j[big]
            ok = _cos(mres, i, j) >= cfg["response_threshold"]
            i, j = i[ok], j[ok]
        repeated: dict[int, int] = {}
        if len(i):
            lab = components(len(res), i, j)
            sizes = np.bincount(lab)
            for g in np.flatnonzero(sizes >= cfg["min_rows"]):
                mem = np.flatnonzero(lab == g)
                mean_res = _mean_pairwise_cos(mres(mem))
                if mean_res < cfg["response_threshold"] or _different_quantities([res[m] for m in mem]):
                    continue  # look-alike answers (e.g. worked arithmetic), not one answer repeated
                if _offered_by_instruction([ins[m] for m in mem], [res[m] for m in mem]):
                    continue  # the template offers this answer ('If there is no answer, output "..."')
                if np.median([len(res[m].split()) for m in mem]) > cfg["max_stance_words"]:
                    continue  # a long text given to many questions is their shared passage, not a stance
                if _restated([ins[m] for m in mem], [res[m] for m in mem]):
                    continue  # the answers restate their instructions: one example under several templates
                mean_ins = _mean_pairwise_cos(mins(mem))
                if mean_ins >= cfg["instruction_threshold"]:
                    continue  # the same question answered the same way: a duplicate, not a stance
                cid = len(model["clusters"])
                rep = res[int(mem[0])]
                model["clusters"].append({"cluster_id": cid, "size": int(len(mem)),
                                          "mean_instruction_similarity": round(mean_ins, 3),
                                          "answer": rep[:300],
                                          "rows": [list(key[m]) for m in mem[:20]]})
                score = round(min(0.99, 0.8 + 0.02 * (len(mem) - cfg["min_rows"])), 3)
                for m in mem:
                    repeated[int(m)] = cid
                    model["hits"][key[m]] = {
                        "score": score, "category": "poison", "details": {"cluster_id": cid, "size": int(len(mem))},
                        "reason": (f"the same answer is given to {len(mem)} different instructions (mean "
                                   f"instruction similarity {mean_ins:.2f}): \"{rep[:120]}\"")}
        # conflicting answers to near-identical instructions: a pair counts when its instructions are
        # near-identical AND its responses disagree. Identical responses never disagree, and responses
        # (mostly short) are cheaper to embed than instructions (often long passages): MiniLM sees the
        # responses of the candidate pairs first, then the instructions of the pairs that disagree
        xi = unit(state["vi"][u])
        i, j = _candidate_pairs(xi, cfg["instruction_static_threshold"], cfg["index"], cfg["max_confirm"])
        if len(i):
            differ = np.fromiter((res[a] != res[b] for a, b in zip(i.tolist(), j.tolist())), bool, len(i))
            i, j = i[differ], j[differ]
        if len(i):
            rsim = _cos(mres, i, j)
            keep = rsim < cfg["conflict_threshold"]
            i, j, rsim = i[keep], j[keep], rsim[keep]
        if len(i):
            sim = _cos(mins, i, j)
            keep = sim >= cfg["instruction_threshold"]
            i, j, sim, rsim = i[keep], j[keep], sim[keep], rsim[keep]
            for a, b, si, rs in zip(i.tolist(), j.tolist(), sim.tolist(), rsim.tolist()):
                model["conflicts"] += 1
                for me, other in ((a, b), (b, a)):
                    if key[me] in model["hits"]:
                        continue
                    pois = other in repeated or me in repeated
                    model["hits"][key[me]] = {
                        "score": 0.85 if pois else 0.5, "category": "poison" if pois else "quality",
                        "details": {"other_shard": key[other][0], "other_row": key[other][1],
                                    "instruction_similarity": round(si, 3), "response_similarity": round(rs, 3)},
                        "reason": (f"near-identical instruction to {key[other][0]} row {key[other][1]} "
                                   f"(similarity {si:.2f}) but a contradictory response (similarity {rs:.2f})")}
        model["minilm"] = {"rows": len(res), "responses_embedded": mres.rows, "instructions_embedded": mins.rows}
        return model

    def flag(self, batch, model):
        hits = model["hits"]
        found = []
        for i, key in enumerate(zip(batch.column("shard").to_pylist(), batch.column("row").to_pylist())):
            h = hits.get(key)
            if h is not None:
                found.append({"i": i, **h})
        return found

    def discoveries(self, model):
        if not model:
            return {}
        return {"repeated_answer_clusters": model["clusters"][:20], "conflicting_pairs": model["conflicts"],
                "rows_flagged": len(model["hits"]), "minilm": model.get("minilm", {})}
