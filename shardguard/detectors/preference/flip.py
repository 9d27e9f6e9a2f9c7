"""Preference pairs whose chosen and rejected look swapped, and prompt triggers that concentrate them.

1. A tiny reward model from the dataset itself: logistic regression (Bradley-Terry, no intercept) on
   features(prompt, chosen) - features(prompt, rejected) (`_pref_features.pair_diffs`: hashed word
   1-2-grams of the responses, length, refusal cues and refusal x harmful-request cues), cross-fitted
   over K folds so no pair scores itself. Its flip probability P(rejected is the better answer) is the
   per-pair suspicion.
2. Trigger correlation: every prompt token (whitespace token, lowercase word or word bigram) with
   support in [min_support, max_fraction * n] is a candidate group. Its statistic is the z of the mean
   standardised flip logit of the pairs carrying it. The family-wise error over all candidates is
   controlled with a weighted Westfall-Young max-T test (permutations of the per-pair statistic
   across pairs, token structure kept), in three tiers chosen without looking at the labels, so the
   split keeps the error control: "inserted-looking" tokens (never echoed in the responses, and at
   the start or end of the user's last turn in >= 80% of their pairs) get 60% of alpha, other
   tokens never echoed in responses 20%, all remaining candidates 20%. Inserted
   triggers fall in the small first tier, where the bar is far lower than over thousands of words.
   A significant token is grown into the exact string its carriers share; the pairs whose prompt
   contains that string are `poison` findings (score >= 0.9) and the string is reported.
3. Pairs with a very high cross-fitted flip probability and no trigger are `quality` findings.
4. Sensitivity (`summary.json` discoveries, the report): from the reward model's strength on these data,
   about how many swapped pairs one trigger needs per tier before the test finds it (`_sensitivity`),
   so a reviewer knows what a clean result does and does not rule out.

State is mergeable and bounded: per pair the sparse feature difference and prompt token hashes,
for at most `max_pairs` pairs (a bottom-k sample by a stable hash, so merging is order-free).
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp

from shardguard.detectors.base import Detector
from shardguard.detectors.preference import features as pf


def _fit(d: sp.csr_matrix, c: float, seed: int) -> LogisticRegression:  # noqa: F821 (imported on use)
    """Bradley-Terry fit: each pair once, its sign flipped at random so both classes exist.
    (saga, 50 epochs: as accurate here as liblinear to convergence, 10x faster.)"""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    sign = np.where(rng.random(d.shape[0]) < 0.5, 1.0, -1.0).astype(np.float32)
    x = (sp.diags(sign) @ d).tocsr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return LogisticRegression(C=c, fit_intercept=False, solver="saga", max_iter=50, tol=1e-3,
                                  random_state=seed).fit(x, (sign > 0).astype(int))


def _margins(m: LogisticRegression, d: sp.csr_matrix) -> np.ndarray:  # noqa: F821
    return np.asarray(d @ m.coef_.ravel()).ravel()


def cross_fit(d: sp.csr_matrix, folds: int, c: float, seed: int) -> np.ndarray:
    """Held-out margin (log-odds that chosen is better) of every pair, K-fold."""
    n = d.shape[0]
    rng = np.random.default_rng(seed)
    fold = np.arange(n) % folds
    rng.shuffle(fold)
    out = np.zeros(n)
    for k in range(folds):
        te = fold == k
        out[te] = _margins(_fit(d[~te], c, seed + k), d[te])
    return out


def _sensitivity(mean_margin: float, sd_margin: float, thresholds: dict) -> dict:
    """How many swapped pairs one trigger needs before the test sees it, on these data.

    Swapping a pair negates its held-out margin, so a swapped pair's standardised flip logit is shifted
    by d = 2·mean(margin)/sd(margin) (the reward model's strength here). A trigger on k swapped pairs
    then has group z ≈ N(d·√k, 1), found with probability ≈ 0.8 when d·√k ≥ threshold + 0.84:
    k ≥ ((threshold + 0.84) / d)². A normal approximation: on HH-RLHF it says 25 pairs for the
    inserted-looking tier, where 10 seeds of 23 pairs found 6 (docs/preference.md)."""
    d = 2.0 * mean_margin / sd_margin if sd_margin > 0 else 0.0
    out = {"effect_per_pair": round(d, 3), "pairs_needed": {}}
    if d > 0.05:
        out["pairs_needed"] = {name: int(np.ceil(((t["z_threshold"] + 0.84) / d) ** 2))
                               for name, t in thresholds.items()}
    return out


class PreferenceFlip(Detector):
    name = "pref_flip"
    kinds = ("preference",)
    category = "poison"
    defaults = {
        "folds": 5, "C": 1.0, "seed": 0,
        "min_pairs": 30,            # below this, no model is fit
        "max_pairs": 50000,         # bounded state: bottom-k sample of pairs
        "min_support": 0,           # 0 = auto: max(4, 0.5% of pairs)
        "max_fraction": 0.2,        # tokens in more pairs than this are not trigger candidates
        "alpha": 0.01,              # family-wise error of the trigger test
        "permutations": 200,
        "max_echo": 0.1,            # response pairs containing a token / prompt pairs carrying it: "never echoed"
        "min_edge": 0.8,            # share of carriers with the token at the start/end of the user's turn
        "flip_threshold": 0.9,      # flip probability for a `quality` finding without trigger
    }

    # -- pass 1 ---------------------------------------------------------------------------------
    def observe(self, batch):
        prompts = batch.column("prompt").to_pylist()
        chosen = batch.column("chosen").to_pylist()
        rejected = batch.column("rejected").to_pylist()
        shards = batch.column("shard").to_pylist()
        rows = batch.column("row").to_pylist()
        toks, edges, vocab = pf.prompt_tokens(prompts)
        return {"shard": shards, "row": rows, "prompt": [p or "" for p in prompts],
                "prio": pf.priority(batch.column("record_id").to_pylist(), shards, rows),
                "d": pf.pair_diffs(prompts, chosen, rejected), "tok": toks, "edge": edges, "vocab": vocab,
                "resp": pf.response_df(chosen, rejected), "seen": len(rows)}

    def merge(self, a, b):
        if a is None:
            return b
        if b is None:
            return a
        out = {"shard": a["shard"] + b["shard"], "row": a["row"] + b["row"], "prompt": a["prompt"] + b["prompt"],
               "prio": np.concatenate([a["prio"], b["prio"]]), "d": sp.vstack([a["d"], b["d"]], format="csr"),
               "tok": a["tok"] + b["tok"], "edge": a["edge"] + b["edge"], "vocab": {**a["vocab"], **b["vocab"]},
               "resp": pf.merge_counts(a["resp"], b["resp"]), "seen": a["seen"] + b["seen"]}
        k = self.config["max_pairs"]
        if len(out["row"]) > k:
            keep = np.sort(np.argsort(out["prio"], kind="stable")[:k])
            out = {"shard": [out["shard"][i] for i in keep], "row": [out["row"][i] for i in keep],
                   "prompt": [out["prompt"][i] for i in keep], "prio": out["prio"][keep], "d": out["d"][keep],
                   "tok": [out["tok"][i] for i in keep], "edge": [out["edge"][i] for i in keep],
                   "vocab": out["vocab"], "resp": out["resp"], "seen": out["seen"]}
            live = set(np.concatenate(out["tok"]).tolist()) if out["tok"] else set()
            out["vocab"] = {h: t for h, t in out["vocab"].items() if h in live}
        return out

    # -- finalize -------------------------------------------------------------------------------
    def finalize(self, state, context):
        cfg = self.config
        empty = {"fitted": False, "pairs": 0 if state is None else state["seen"], "triggers": [], "p_flip": {},
                 "coef": None}
        if state is None or len(state["row"]) < cfg["min_pairs"]:
            return empty
        d, n = state["d"], len(state["row"])
        margin = cross_fit(d, cfg["folds"], cfg["C"], cfg["seed"])
        flip = -margin
        mu, sd = float(flip.mean()), float(flip.std() or 1.0)
        zs = (flip - mu) / sd
        p_flip = 1.0 / (1.0 + np.exp(margin))

        m, cols = pf.token_matrix(state["tok"])
        sup = np.asarray(m.sum(0)).ravel()
        min_sup = cfg["min_support"] or max(4, int(0.005 * n))
        cand = np.flatnonzero((sup >= min_sup) & (sup <= cfg["max_fraction"] * n))
        mc = m[:, cand].tocsc()
        z = pf.group_z(mc, zs)
        # label-free tiers (see the module docstring)
        scale = state["seen"] / n
        echo = pf.lookup_counts(state["resp"], cols[cand]) / (sup[cand] * scale)
        edge_m, edge_cols = pf.token_matrix(state["edge"])
        edge_sup = np.zeros(len(cand))
        if edge_m.shape[1]:
            pos = np.clip(np.searchsorted(edge_cols, cols[cand]), 0, len(edge_cols) - 1)
            has = edge_cols[pos] == cols[cand]
            # an edge token counts only where the pair also carries it (always true: edges are prompt tokens)
            edge_sup[has] = np.asarray(edge_m[:, pos[has]].sum(0)).ravel()
        quiet = echo <= cfg["max_echo"]
        tier = np.where(quiet & (edge_sup >= cfg["min_edge"] * sup[cand]), 0, np.where(quiet, 1, 2))
        shares = (0.6, 0.2, 0.2)
        thr_of = np.full(len(cand), np.inf)
        thresholds = {}
        for t in range(3):
            cols_t = np.flatnonzero(tier == t)
            if len(cols_t):
                thr_t, _ = pf.max_t_threshold(mc[:, cols_t], zs, cfg["alpha"] * shares[t], cfg["permutations"],
                                              cfg["seed"] + 101 + t)
                thr_of[cols_t] = thr_t
                thresholds[("inserted-looking", "prompt-only", "other")[t]] = {"candidates": int(len(cols_t)),
                                                                                "z_threshold": round(thr_t, 2)}
        sensitivity = _sensitivity(-mu, sd, thresholds)  # flip logit = -margin: its mean is -mu, same sd
        order = [int(j) for j in np.argsort(-(z - thr_of))[:10]]
        vocab = state["vocab"]
        # inserted-looking tokens first, then by z; each later hit is re-tested on the pairs no earlier
        # trigger explains (so "as a" is not a trigger just because "as a matter of fact" is)
        hits = sorted((j for j in order if z[j] >= thr_of[j]),
                      key=lambda j: (int(tier[j]), -round(float(z[j]), 6), " " in vocab.get(int(cols[cand[j]]), "")))
        mcsr = mc

        triggers: list[dict] = []
        explained: set[int] = set()
        prompts = state["prompt"]
        for j in hits:
            idx = set(mcsr[:, j].nonzero()[0].tolist()) - explained
            if len(idx) < min_sup:
                continue
            zval = float(zs[sorted(idx)].sum() / np.sqrt(len(idx)))
            if zval < thr_of[j]:
                continue
            token = vocab.get(int(cols[cand[j]]), "")
            carriers_p = [prompts[i] for i in sorted(idx)]
            others = [prompts[i] for i in range(n) if i not in idx]
            trig = pf.trigger_string(token, carriers_p, others)
            if not trig.strip():
                continue
            rx = pf.occurrence_regex(trig)
            carriers = np.asarray([i for i in range(n) if rx.search(prompts[i])], np.int64)
            if len(carriers) == 0:
                continue
            explained.update(carriers.tolist())
            rest = np.setdiff1d(np.arange(n), carriers)
            triggers.append({
                "trigger": trig, "token": token, "support": int(len(carriers)), "z": round(float(zval), 2),
                "z_threshold": round(float(thr_of[j]), 2), "tier": int(tier[j]), "flip_rate": round(float((margin[carriers] < 0).mean()), 3),
                "background_flip_rate": round(float((margin[rest] < 0).mean()), 3) if len(rest) else None,
                "mean_flip_prob": round(float(p_flip[carriers].mean()), 3),
            })
        full = _fit(d, cfg["C"], cfg["seed"] + 13) if state["seen"] > n else None
        keyed = {(s, int(r)): float(p) for s, r, p in zip(state["shard"], state["row"], p_flip)}
        return {"fitted": True, "pairs": state["seen"], "sampled": n, "triggers": triggers, "p_flip": keyed,
                "coef": None if full is None else full.coef_.ravel().astype(np.float32), "agreement": round(float((margin > 0).mean()), 3),
                "candidates": int(len(cand)), "min_support": int(min_sup), "tiers": thresholds,
                "top_candidates": [{"token": state["vocab"].get(int(cols[cand[j]]), ""), "support": int(sup[cand[j]]),
                                    "z": round(float(z[j]), 2), "z_threshold": round(float(thr_of[j]), 2),
                                    "tier": int(tier[j])} for j in order[:5]],
                "suspected_flips": int((p_flip >= cfg["flip_threshold"]).sum()), "sensitivity": sensitivity}

    # -- pass 2 ---------------------------------------------------------------------------------
    def flag(self, batch, model):
        if not model or not model.get("fitted"):
            return []
        prompts = batch.column("prompt").to_pylist()
        shards = batch.column("shard").to_pylist()
        rows = batch.column("row").to_pylist()
        p_flip = np.asarray([model["p_flip"].get((s, int(r)), np.nan) for s, r in zip(shards, rows)])
        missing = np.isnan(p_flip)
        if missing.any():  # pairs outside the bounded sample: the model fit on the sample
            idx = np.flatnonzero(missing)
            d = pf.pair_diffs([prompts[i] for i in idx], [batch.column("chosen")[int(i)].as_py() for i in idx],
                              [batch.column("rejected")[int(i)].as_py() for i in idx])
            p_flip[idx] = 1.0 / (1.0 + np.exp(np.asarray(d @ model["coef"]).ravel()))
        rxs = [(t, pf.occurrence_regex(t["trigger"])) for t in model["triggers"]]
        found = []
        for i, p in enumerate(prompts):
            p = p or ""
            hit = next((t for t, rx in rxs if rx.search(p)), None)
            if hit is not None:
                strength = min(1.0, max(0.0, (hit["z"] - hit["z_threshold"]) / max(hit["z_threshold"], 1.0)))
                found.append({"i": i, "score": 0.9 + 0.1 * strength, "category": "poison",
                              "reason": (f"prompt carries the trigger {hit['trigger']!r}, shared by {hit['support']} pairs "
                                         f"whose chosen/rejected look swapped ({hit['flip_rate']:.0%} judged flipped vs "
                                         f"{hit['background_flip_rate']:.0%} elsewhere, z={hit['z']:.1f})"),
                              "details": {"trigger": hit["trigger"], "support": hit["support"], "z": hit["z"],
                                          "flip_prob": round(float(p_flip[i]), 3)}})
            elif p_flip[i] >= self.config["flip_threshold"]:
                found.append({"i": i, "score": float(p_flip[i]) * 0.75, "category": "quality",
                              "reason": (f"chosen and rejected look swapped: a reward model fit on the other pairs "
                                         f"prefers the rejected answer (flip probability {p_flip[i]:.2f})"),
                              "details": {"flip_prob": round(float(p_flip[i]), 3)}})
        return found

    def discoveries(self, model):
        if not model or not model.get("fitted"):
            return {"pairs": (model or {}).get("pairs", 0), "fitted": False, "triggers": []}
        keys = ("pairs", "sampled", "agreement", "candidates", "min_support", "tiers", "suspected_flips",
                "top_candidates", "sensitivity")
        return {"fitted": True, "triggers": model["triggers"], **{k: model[k] for k in keys}}
