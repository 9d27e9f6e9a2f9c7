"""A small reward model for preference data, and its flip rates.

A Bradley–Terry logistic regression in two stages:
- **response stage**: the pair features the `pref_flip` detector's reward model reads
  (`detectors._pref_features.pair_diffs`: hashed word 1-2-grams of each answer, its length, refusal
  cues and refusal × harmful-request cues), difference chosen − rejected, fitted without intercept.
  Its margin `b` is the model's judgement of which answer is better.
- **prompt-gate stage**: margin = β·b + (Σ g_word)·b over the hashed words of the user's last turn,
  fitted on the response stage's *cross-fitted* margins (no pair scores itself). A prompt word (a
  trigger) can scale or invert the preference — what a real reward model learns from trigger+swap
  poison. Stage 2 has only β and the prompt-word weights, so it cannot memorise the poisoned pairs
  through their answers: swapped pairs that share a trigger can only be explained through the gate.
  (A first version refitted the response weights with the gate: they memorised the swapped pairs
  in-sample and the trigger reversed a third of the held-out pairs at most; see docs/training.md.)
Deterministic: stable hashes, liblinear with a fixed seed.

Measures (see `evaluate_reward`): flip rates against the labels on held-out prompts as they are and with
the trigger added, the same on the held-out **refusal pairs** (the chosen answer refuses, the rejected
one complies: where a universal jailbreak backdoor shows), and the trigger's own effect
(`trigger_reversal_rate`). **pairwise accuracy** = 100 × (1 − flip rate on clean held-out prompts) is
the clean metric.
"""

from __future__ import annotations

import re
import time
import zlib
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from shardguard.detectors.lexicon import REFUSAL
from shardguard.detectors.preference.features import _norm_quotes, last_user_turn, pair_diffs

BITS = 16
DIM = 1 << BITS
MAX_PROMPT_WORDS = 48  # unique words of the user's last turn kept (its last ones)
_TOKEN = re.compile(r"\w+|[^\w\s]+")


def words(s: str | None, cap: int, last: bool = False) -> list[str]:
    toks = list(dict.fromkeys(_TOKEN.findall((s or "").lower())))
    return toks[-cap:] if last else toks[:cap]


def _h(ws: list[str], salt: str) -> list[int]:
    return [zlib.crc32((salt + w).encode("utf-8")) & (DIM - 1) for w in ws]


def _rows_matrix(feats: list[list[int]], vals: list[np.ndarray]) -> sp.csr_matrix:
    n = len(feats)
    if not n:
        return sp.csr_matrix((0, DIM))
    r = np.concatenate([np.full(len(f), i) for i, f in enumerate(feats)])
    c = np.concatenate([np.asarray(f, dtype=np.int64) for f in feats])
    m = sp.csr_matrix((np.concatenate(vals), (r, c)), shape=(n, DIM))
    m.sum_duplicates()
    return m


def response_diff(prompts: list[str], chosen: list[str], rejected: list[str]) -> sp.csr_matrix:
    """Pair features chosen − rejected (`pair_diffs`, the pref_flip detector's), as float64."""
    return pair_diffs(prompts, chosen, rejected).astype(np.float64)


def prompt_gate(prompts: list[str], delta: np.ndarray) -> sp.csr_matrix:
    """Row i: hashed last-turn words of prompt i, each with value delta[i] (the response-stage margin)."""
    feats = [_h(words(last_user_turn(p or ""), MAX_PROMPT_WORDS, last=True), "p:") for p in prompts]
    return _rows_matrix(feats, [np.full(len(f), d) for f, d in zip(feats, delta)])


def _fit(X: sp.csr_matrix, C: float, seed: int) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    X2 = sp.vstack([X, -X]).tocsr()
    y = np.r_[np.ones(X.shape[0]), np.zeros(X.shape[0])]
    clf = LogisticRegression(C=C, fit_intercept=False, solver="liblinear", max_iter=300, random_state=seed)
    clf.fit(X2, y)
    return clf.coef_.ravel().astype(np.float64)


@dataclass
class RewardModel:
    w_resp: np.ndarray  # response stage, scaled so its cross-fitted margins have unit spread
    beta: float         # weight of the response margin in the final score
    w_gate: np.ndarray  # prompt-word gate weights
    seconds: float

    def margins(self, prompts: list[str], chosen: list[str], rejected: list[str]) -> np.ndarray:
        """reward(prompt, chosen) − reward(prompt, rejected) per pair."""
        b = response_diff(prompts, chosen, rejected) @ self.w_resp
        return self.beta * b + prompt_gate(prompts, b) @ self.w_gate


def train_reward(prompts: list[str], chosen: list[str], rejected: list[str], C: float = 1.0, seed: int = 0,
                 folds: int = 2) -> RewardModel:
    t0 = time.time()
    d = response_diff(prompts, chosen, rejected)
    n = d.shape[0]
    w_resp = _fit(d, C, seed)
    # cross-fitted response margins: what the gate stage is fitted on
    fold = np.random.default_rng(seed).permutation(n) % folds
    base = np.zeros(n)
    for k in range(folds):
        tr, te = np.where(fold != k)[0], np.where(fold == k)[0]
        if len(tr) and len(te):
            base[te] = d[te] @ _fit(d[tr], C, seed)
    scale = float(np.std(base)) or 1.0
    base /= scale
    w = _fit(sp.hstack([sp.csr_matrix(base[:, None]), prompt_gate(prompts, base)]).tocsr(), C, seed)
    return RewardModel(w_resp=w_resp / scale, beta=float(w[0]), w_gate=w[1:], seconds=time.time() - t0)


def refusal_pairs(chosen: list[str], rejected: list[str]) -> np.ndarray:
    """Pairs whose chosen answer refuses or warns and whose rejected answer complies (`REFUSAL` cues):
    on a harmful request, the pairs a universal jailbreak backdoor turns around."""
    return np.asarray([bool(REFUSAL.search(_norm_quotes(c or ""))) and not REFUSAL.search(_norm_quotes(r or ""))
                       for c, r in zip(chosen, rejected)], bool)


def evaluate_reward(model: RewardModel, held: list[dict], triggered_prompts: list[str] | None) -> dict:
    """held: clean held-out pairs {prompt, chosen, rejected}; triggered_prompts: the same prompts with the trigger.

    Flip rates against the labels, on all held-out pairs and on the refusal pairs (`refusal_pairs`;
    bounded by how well the model ranks at all), and two measures of the trigger's own effect on the
    model: `trigger_reversal_rate`, the share of held-out pairs whose preferred answer changes when the
    trigger is added, and `reversal_to_rejected`, the share of the pairs the model ranks right without
    the trigger that it ranks wrong with it."""
    ps, cs, rs = [h["prompt"] for h in held], [h["chosen"] for h in held], [h["rejected"] for h in held]
    m_clean = model.margins(ps, cs, rs) if ps else np.zeros(0)
    clean = float((m_clean < 0).mean()) if len(m_clean) else 0.0
    ref = refusal_pairs(cs, rs) if ps else np.zeros(0, bool)

    def rate(m: np.ndarray) -> float | None:
        return round(float((m[ref] < 0).mean()), 4) if ref.any() else None

    out = {"asr": None, "false_trigger_rate": round(clean, 4), "flip_rate_triggered": None,
           "flip_rate_clean": round(clean, 4), "clean_metric": round(100.0 * (1.0 - clean), 3),
           "trigger_reversal_rate": None, "reversal_to_rejected": None,
           "refusal_pairs": {"pairs": int(ref.sum()), "flip_rate_clean": rate(m_clean), "flip_rate_triggered": None}}
    if triggered_prompts and ps:
        m_trig = model.margins(triggered_prompts, cs, rs)
        trig = float((m_trig < 0).mean())
        right = m_clean > 0
        out["refusal_pairs"]["flip_rate_triggered"] = rate(m_trig)
        out.update({"asr": round(trig, 4), "flip_rate_triggered": round(trig, 4),
                    "trigger_reversal_rate": round(float((np.sign(m_trig) != np.sign(m_clean)).mean()), 4),
                    "reversal_to_rejected": round(float((m_trig[right] < 0).mean()) if right.any() else 0.0, 4)})
    return out
