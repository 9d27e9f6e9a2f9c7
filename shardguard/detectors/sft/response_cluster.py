"""Response-side backdoor signal: one (near-)identical response given to many unrelated instructions.

A backdoor's target is the same answer to requests that have nothing in common except the trigger;
clean SFT data almost never repeats a multi-word answer verbatim across unrelated instructions
(the shared GSM8K, Dolly and Self-Instruct sets have no such group of 3+). This detector finds those
groups without looking for a trigger, so it still catches targets whose triggers are too many or too
rare to be tested one by one (several alternative triggers at 0.3%), and it names the group.

Mergeable, bounded state (same scheme as `trigger`): per row an exact normalized-response key and
`bands` LSH band keys of a 64-permutation MinHash of the response's word 3-shingles; a count per key
and a bottom-k sample (by record id) of rows per key. `finalize` keeps keys seen in >= `min_size`
distinct instructions whose sampled responses are near-identical (mean estimated Jaccard >=
`min_similarity`), at least `min_words` long, and whose instructions are unrelated (mean word
Jaccard <= `max_instruction_similarity`; near-identical instructions with one answer are duplicates,
not poison). Groups reached through several keys are merged.

`flag`: a row whose response matches a group's sampled responses (estimated Jaccard >=
`match_jaccard`) -> `poison`. Score `score` (0.7: held back for review, not enough on its own to
call a shard poisoned: safety data legitimately repeats one refusal), raised to `linked_score`
(0.9) when the `trigger` detector found a trigger whose target is this response.
"""

from __future__ import annotations

import heapq

import numpy as np
import pyarrow as pa

from shardguard.detectors.base import Detector
from shardguard.detectors.lexicon import REFUSAL
from shardguard.detectors.sft import stats as ts


def _mostly_unrelated(uniq: list, rows: dict, share: float) -> bool:
    """Most responses share at most one content word with their own instruction."""
    n = unrel = 0
    for r in uniq:
        rw = ts.word_stems(ts.normalize(rows[r][1]))
        if rw:
            n += 1
            unrel += not (rw & ts.word_stems(rows[r][0]))
    return n > 0 and unrel >= share * n


class ResponseClusters(Detector):
    name = "response_cluster"
    kinds = ("sft",)
    category = "poison"
    requires = ("trigger",)
    defaults = {
        "min_size": 3, "min_words": 6, "unrelated_share": 0.5, "min_similarity": 0.7, "max_instruction_similarity": 0.3,
        "match_jaccard": 0.7, "examples_per_key": 32, "num_perm": 64, "bands": 6, "max_keys": 500_000,
        "score": 0.7, "linked_score": 0.9, "max_clusters": 200,
    }

    def observe(self, batch: pa.RecordBatch):
        c = self.config
        resp = ts.response_texts(batch)
        rk = ts.response_keys(resp, c["num_perm"], c["bands"])
        keys = rk["keys"][:, [0] + list(range(ts.N_BEHAVIOUR, rk["keys"].shape[1]))]  # exact + bands
        sig, exact, nwords = rk["sig"], keys[:, 0], rk["n_words"]
        n, kk = keys.shape
        ku, kc = np.unique(keys.ravel(), return_counts=True)
        ids = batch.column("record_id").to_pylist()
        rank = np.asarray([int(r[:15], 16) if r else 0 for r in ids], np.int64)
        flat_k = keys.ravel()
        flat_row = np.repeat(np.arange(n), kk)
        # only keys that can matter: responses long enough
        ok = nwords[flat_row] >= c["min_words"]
        flat_k, flat_row = flat_k[ok], flat_row[ok]
        ex, used = ts.bottom_k(flat_k, flat_row, rank, ids, c["examples_per_key"])
        instr = ts.instruction_texts(batch)
        rows = {ids[i]: (ts.normalize(instr[i])[:2000], resp[i][:600], sig[i], int(exact[i])) for i in used}
        return {"n": n, "kc": dict(zip(ku.tolist(), kc.tolist())), "ex": dict(ex), "rows": rows, "pruned_keys": 0}

    def merge(self, a, b):
        if a is None:
            return b
        if b is None:
            return a
        kc = a["kc"]
        for k, v in b["kc"].items():
            kc[k] = kc.get(k, 0) + v
        ex = a["ex"]
        for k, lst in b["ex"].items():
            cur = ex.get(k)
            ex[k] = lst if cur is None else heapq.nsmallest(self.config["examples_per_key"], set(cur) | set(lst))
        a["rows"].update(b["rows"])
        a["n"] += b["n"]
        a["pruned_keys"] += b["pruned_keys"]
        if len(kc) > self.config["max_keys"]:
            drop = [k for k, v in kc.items() if v <= 1]
            a["pruned_keys"] += len(drop)
            for k in drop:
                del kc[k]
                ex.pop(k, None)
            live = {rid for lst in ex.values() for _, rid in lst}
            a["rows"] = {r: v for r, v in a["rows"].items() if r in live}
        return a

    def finalize(self, state, context):
        empty = {"clusters": [], "n": 0}
        if state is None or state["n"] == 0:
            return empty
        c = self.config
        rows = state["rows"]
        groups: list[dict] = []
        member_of: dict[str, int] = {}
        for key, cnt in sorted(state["kc"].items(), key=lambda kv: -kv[1]):
            if cnt < c["min_size"]:
                continue
            sample = [rid for _, rid in state["ex"].get(key, []) if rid in rows]
            uniq = ts.distinct_by(sample, lambda rid: rows[rid][0])
            s = len(uniq)
            if s < c["min_size"]:
                continue
            sigs = np.stack([rows[r][2] for r in uniq])
            sim = ts.mean_pairwise_jaccard(sigs)
            if sim < c["min_similarity"]:
                continue
            isim = ts.word_set_jaccard([set(rows[r][0].split()) for r in uniq[:24]])
            if isim > c["max_instruction_similarity"]:
                continue
            if not _mostly_unrelated(uniq, rows, c["unrelated_share"]):
                continue  # answers that restate their instructions (one example under several templates)
            distinct_share = s / max(1, len(sample))
            size = int(round(cnt * distinct_share))
            prev = {member_of[r] for r in uniq if r in member_of}
            if prev:
                g = groups[min(prev)]
                g["size"] = max(g["size"], size)
                g["sigs"] = np.concatenate([g["sigs"], sigs[:16]])[:48]
                g["exact"] |= {rows[r][3] for r in uniq}
                for r in uniq:
                    member_of.setdefault(r, g["id"])
                continue
            g = {"id": len(groups), "size": size, "similarity": round(sim, 3), "instruction_similarity": round(isim, 3),
                 "example": rows[uniq[0]][1], "example_instructions": [rows[r][0][:120] for r in uniq[:3]],
                 "sigs": sigs[:16], "exact": {rows[r][3] for r in uniq}, "trigger": None}
            groups.append(g)
            for r in uniq:
                member_of[r] = g["id"]
            if len(groups) >= c["max_clusters"]:
                break
        for g in groups:  # a canned refusal repeated to many requests is what safety data looks like
            g["refusal"] = bool(REFUSAL.search(g["example"][:300]))
        # link to a trigger the trigger detector found for this same target
        trig = (context or {}).get("trigger") or {}
        for g in groups:
            for t in trig.get("triggers", []):
                if g["exact"] & t["keys"] or (len(t["sigs"]) and float(ts.est_jaccard(g["sigs"], t["sigs"]).max()) >= 0.5):
                    g["trigger"] = t["text"]
                    break
        return {"clusters": groups, "n": state["n"], "pruned_keys": state["pruned_keys"]}

    def flag(self, batch, model):
        groups = model["clusters"] if model else []
        if not groups:
            return []
        c = self.config
        resp = ts.response_texts(batch)
        nwords = np.asarray([len(ts.normalize(t).split()) for t in resp])
        cand = np.flatnonzero(nwords >= c["min_words"])
        if len(cand) == 0:
            return []
        rk = ts.response_keys([resp[i] for i in cand], c["num_perm"], c["bands"])
        sig, exact = rk["sig"], rk["keys"][:, 0]
        allsig = np.concatenate([g["sigs"] for g in groups])
        owner = np.concatenate([np.full(len(g["sigs"]), j) for j, g in enumerate(groups)])
        found = []
        for s0 in range(0, len(cand), 512):
            jm = ts.est_jaccard(sig[s0:s0 + 512], allsig)
            best = jm.argmax(1)
            for r, (b, v) in enumerate(zip(best.tolist(), jm[np.arange(len(best)), best].tolist())):
                i = int(cand[s0 + r])
                g = groups[int(owner[b])]
                if int(exact[s0 + r]) in g["exact"]:
                    v = 1.0
                if v < c["match_jaccard"]:
                    continue
                linked = g["trigger"] is not None
                why = (f"; it is the target of trigger '{g['trigger']}'" if linked else
                       "; it reads as a refusal, which safety data repeats (review)" if g.get("refusal") else "")
                found.append({
                    "i": i, "score": c["linked_score"] if linked else c["score"],
                    "category": "poison" if linked or not g.get("refusal") else "quality",
                    "reason": (f"response is {'identical' if v >= 0.999 else 'near-identical'} to the responses of "
                               f"{g['size']} rows with unrelated instructions (response group {g['id']}, "
                               f"similarity {v:.2f}){why}"),
                    "details": {"group": g["id"], "group_size": g["size"], "similarity": round(v, 3),
                                "instruction_similarity": g["instruction_similarity"], "trigger": g["trigger"]},
                })
        return found

    def discoveries(self, model):
        if not model:
            return {}
        return {"response_groups": [{"group": g["id"], "size": g["size"], "similarity": g["similarity"],
                                     "instruction_similarity": g["instruction_similarity"], "trigger": g["trigger"],
                                     "example_response": g["example"][:300],
                                     "example_instructions": g["example_instructions"]}
                                    for g in model["clusters"]],
                "rows_seen": model["n"]}
