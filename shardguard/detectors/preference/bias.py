"""Systematic bias in preference labels: does the longer answer, or the answer that goes along with
the user, win more often than the dataset's own background?

Per pair (`_pref_features`):
- length: the pair is *decided* when one answer has >= `min_ratio` x the other's words; the
  statistic is whether the longer one was chosen;
- agreement: decided when the two answers differ in agreeableness (agreement cues minus
  disagreement cues); the statistic is whether the more agreeable one was chosen (also reported
  separately for prompts where the user states a view).

Test: each shard against the rest of the dataset (one-sided two-proportion z, Bonferroni over
shards x statistics). A shard significantly and materially (>= `min_excess`) more biased gets
`quality` findings (score 0.5) on its bias-conforming pairs; when the excess is concentrated
(>= `concentrated_excess`) they are `poison` (score 0.6: held back and reviewed, not enough alone
for a `poisoned` verdict). State is a few counters per shard.
The dataset rates (with 95% Wilson intervals) go to discoveries; a single-shard dataset has no
background of its own, so its overall rate is reported, not flagged. (A bias tied to a prompt
token was tried and dropped: on clean HH-RLHF ordinary words such as "why you" already correlate
with the agreeable answer winning, so it flagged clean data.)
"""

from __future__ import annotations

import math

import numpy as np

from shardguard.detectors.base import Detector
from shardguard.detectors.preference import features as pf

STATS = ("longer", "agreeable")
_LABEL = {"longer": "the longer answer", "agreeable": "the more agreeable answer"}


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (round(mid - half, 3), round(mid + half, 3))


def two_prop_z(k1: int, n1: int, k2: int, n2: int) -> float:
    if n1 == 0 or n2 == 0:
        return 0.0
    p = (k1 + k2) / (n1 + n2)
    se = math.sqrt(max(p * (1 - p), 1e-12) * (1 / n1 + 1 / n2))
    return (k1 / n1 - k2 / n2) / se


def _zcrit(alpha: float) -> float:
    from scipy.stats import norm

    return float(norm.isf(alpha))


class PreferenceBias(Detector):
    name = "pref_bias"
    kinds = ("preference",)
    category = "quality"
    defaults = {
        "min_ratio": 1.2,      # length: one answer has >= this x the other's words
        "alpha": 0.01,
        "min_excess": 0.1,     # a shard must be at least this much more biased than the rest
        "min_decided": 20,     # decided pairs a shard needs to be tested
        "concentrated_excess": 0.3,  # a shard this much more biased than the rest: `poison` (score 0.6)
    }

    def observe(self, batch):
        prompts = batch.column("prompt").to_pylist()
        chosen = batch.column("chosen").to_pylist()
        rejected = batch.column("rejected").to_pylist()
        shards = batch.column("shard").to_pylist()
        ld, lw = pf.longer_wins(chosen, rejected, self.config["min_ratio"])
        ad, aw, view = pf.agree_wins(prompts, chosen, rejected)
        counts: dict[str, np.ndarray] = {}
        for s in set(shards):
            m = np.asarray([x == s for x in shards])
            counts[s] = np.array([m.sum(), (ld & m).sum(), (lw & m).sum(), (ad & m).sum(), (aw & m).sum(),
                                  (ad & view & m).sum(), (aw & view & m).sum()], np.int64)
        return {"counts": counts}

    def merge(self, a, b):
        if a is None:
            return b
        if b is None:
            return a
        counts = dict(a["counts"])
        for s, c in b["counts"].items():
            counts[s] = counts.get(s, 0) + c
        return {"counts": counts}

    def finalize(self, state, context):
        cfg = self.config
        if state is None:
            return {"pairs": 0, "dataset": {}, "shards": {}, "biased_shards": {}}
        total = sum(state["counts"].values())
        dataset = {}
        for si, st in enumerate(STATS):
            dn, k = int(total[1 + 2 * si]), int(total[2 + 2 * si])
            dataset[st] = {"decided": dn, "wins": k, "rate": round(k / dn, 3) if dn else None, "ci95": wilson(k, dn)}
        vd, vk = int(total[5]), int(total[6])
        dataset["agreeable_when_view_stated"] = {"decided": vd, "wins": vk, "rate": round(vk / vd, 3) if vd else None,
                                                 "ci95": wilson(vk, vd)}
        # shards vs the rest
        shards = state["counts"]
        zc = _zcrit(cfg["alpha"] / max(1, 2 * len(shards)))
        per_shard, biased = {}, {}
        for s, c in shards.items():
            per_shard[s] = {}
            for si, st in enumerate(STATS):
                dn, k = int(c[1 + 2 * si]), int(c[2 + 2 * si])
                rn, rk = int(total[1 + 2 * si]) - dn, int(total[2 + 2 * si]) - k
                z = two_prop_z(k, dn, rk, rn) if len(shards) > 1 else 0.0
                e = {"decided": dn, "rate": round(k / dn, 3) if dn else None,
                     "background_rate": round(rk / rn, 3) if rn else None, "z": round(z, 2)}
                per_shard[s][st] = e
                if len(shards) > 1 and dn >= cfg["min_decided"] and rn and z >= zc \
                        and k / dn - rk / rn >= cfg["min_excess"]:
                    e["concentrated"] = bool(k / dn - rk / rn >= cfg["concentrated_excess"])
                    biased.setdefault(s, {})[st] = e
        return {"pairs": int(total[0]), "dataset": dataset, "shards": per_shard, "biased_shards": biased}

    def flag(self, batch, model):
        if not model or not model["biased_shards"]:
            return []
        shards = batch.column("shard").to_pylist()
        chosen = batch.column("chosen").to_pylist()
        rejected = batch.column("rejected").to_pylist()
        _, lw = pf.longer_wins(chosen, rejected, self.config["min_ratio"])
        _, aw, _ = pf.agree_wins(batch.column("prompt").to_pylist(), chosen, rejected)
        wins = {"longer": lw, "agreeable": aw}
        found = []
        for i, s in enumerate(shards):
            for st, e in model["biased_shards"].get(s, {}).items():
                if wins[st][i]:
                    conc = e["concentrated"]
                    found.append({"i": i, "score": 0.6 if conc else 0.5, "category": "poison" if conc else "quality",
                                  "reason": (f"{_LABEL[st]} was chosen; in this shard {_LABEL[st]} wins {e['rate']:.0%} "
                                             f"of {e['decided']} decided pairs vs {e['background_rate']:.0%} in the rest "
                                             f"of the dataset (z={e['z']:.1f})"),
                                  "details": {"stat": st, **e}})
                    break
        return found

    def discoveries(self, model):
        if not model:
            return {}
        return {"pairs": model["pairs"], "dataset": model["dataset"], "biased_shards": model["biased_shards"],
                "shards": dict(list(model["shards"].items())[:200])}
