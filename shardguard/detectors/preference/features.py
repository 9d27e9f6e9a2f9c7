"""Shared helpers of the preference detectors (`pref_flip`, `pref_bias`).

- `pair_diffs(prompts, chosen, rejected)`  hashed features of (prompt, chosen) minus (prompt, rejected):
  word 1-2-grams of each response (binary, L2-normalised), its length, refusal cues and refusal x
  harmful-request cues. A linear model on these differences is a tiny reward model (Bradley-Terry).
- `prompt_tokens(prompts)`   per-pair distinct prompt tokens (whitespace tokens as written, lowercase
  words, lowercase word bigrams) as stable 63-bit hashes, with a hash -> string vocabulary.
- `bottom_k(...)`             a deterministic, mergeable sample: keep the k pairs of smallest priority.
- `max_t_threshold(...)`      family-wise error control for many "is this token's group different?"
  tests at once (Westfall-Young max-T with permutations of the per-pair statistic).
- `trigger_string(...)`       the exact string around a token that all its carriers share.
- `longer_wins`, `agreeableness`, `states_view`: the bias statistics' per-pair indicators.
"""

from __future__ import annotations

import functools
import re

import numpy as np
import scipy.sparse as sp
import xxhash

from shardguard.detectors.lexicon import REFUSAL

N_FEATURES = 2 ** 18
@functools.lru_cache(maxsize=1)
def _hv():
    """The hashing vectorizer (sklearn imported on first use, not by every scan)."""
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(n_features=N_FEATURES, ngram_range=(1, 2), alternate_sign=False, norm="l2", binary=True)

HARMFUL = re.compile(
    r"\b(kill|murder|steal|rob|hack|bomb|weapon|gun|drug|poison|hurt|attack|cheat|lie to|illegal|"
    r"racist|hate|insult|sex|naked|porn|fight|punch|shoot|stab|burn|kidnap|torture|suicide|meth|cocaine|"
    r"heroin|explosive|fraud|scam|break into|get away with|revenge|swear|curse|slur|abuse|threaten)\w*", re.I)
_WS = re.compile(r"\S+")
_WORD = re.compile(r"\w+")
_DENSE = 4  # length, refusal, refusal x harmful request, near-empty


def _norm_quotes(s: str) -> str:
    return s.replace("\u2019", "'").replace("\u2018", "'")


_ROLE = re.compile(r"^(?:human|user|assistant|system|gpt)\s*:\s*", re.I)
_TAIL = re.compile(r"\s*(?:\n\n)?(?:assistant|gpt|bot):\s*$", re.I)


def last_user_turn(prompt: str) -> str:
    """The user's last turn of a transcript ("...\\n\\nHuman: ...\\n\\nAssistant:"), else the whole prompt."""
    k = max(prompt.rfind("Human:"), prompt.rfind("human:"), prompt.rfind("user:"))
    turn = prompt[k + (5 if prompt[k:k + 5] == "user:" else 6):] if k >= 0 else prompt
    return _TAIL.sub("", turn)


def _dense(harmful: list[bool], texts: list[str]) -> np.ndarray:
    out = np.zeros((len(texts), _DENSE), np.float32)
    for i, (h, t) in enumerate(zip(harmful, texts)):
        t = _norm_quotes(t or "")
        ref = bool(REFUSAL.search(t))
        nw = len(t.split())
        out[i] = (np.log1p(nw) / 5.0, ref, ref and h, nw < 3)
    return out


def pair_diffs(prompts: list[str], chosen: list[str], rejected: list[str]) -> sp.csr_matrix:
    """(n, N_FEATURES + 4) float32 CSR: features(prompt, chosen) - features(prompt, rejected)."""
    ch = [c or "" for c in chosen]
    rj = [r or "" for r in rejected]
    harmful = [bool(HARMFUL.search(last_user_turn(p or ""))) for p in prompts]  # once per pair, not per side
    a = sp.hstack([_hv().transform(ch), sp.csr_matrix(_dense(harmful, ch))], format="csr")
    b = sp.hstack([_hv().transform(rj), sp.csr_matrix(_dense(harmful, rj))], format="csr")
    d = (a - b).astype(np.float32).tocsr()
    d.eliminate_zeros()
    return d


def _h(s: str) -> int:
    return xxhash.xxh64_intdigest(s.encode("utf-8", "surrogatepass")) >> 1  # 63 bits: fits int64


def _tokens(text: str) -> set[str]:
    """Whitespace tokens as written, lowercase words, lowercase word bigrams."""
    toks = set(_WS.findall(text))
    words = [w.lower() for w in _WORD.findall(text)]
    toks.update(words)
    toks.update(f"{a} {b}" for a, b in zip(words, words[1:]))
    return toks


def _edges(turn: str) -> set[str]:
    """Tokens at the start or the end of the user's last turn (where inserted triggers sit)."""
    ws = _WS.findall(turn)
    words = [w.lower() for w in _WORD.findall(turn)]
    out = set()
    if ws:
        out.update((ws[0], ws[-1]))
    if words:
        out.update((words[0], words[-1]))
    if len(words) > 1:
        out.update((f"{words[0]} {words[1]}", f"{words[-2]} {words[-1]}"))
    return out


def _hashes(toks, cache: dict[str, int]) -> np.ndarray:
    """Distinct token hashes, sorted; `cache` (token -> hash) spares re-hashing repeated tokens."""
    hs = []
    for t in toks:
        h = cache.get(t)
        if h is None:
            h = cache[t] = _h(t)
        hs.append(h)
    return np.unique(np.asarray(hs, np.int64))


def prompt_tokens(prompts: list[str]) -> tuple[list[np.ndarray], list[np.ndarray], dict[int, str]]:
    """Per prompt: sorted distinct token hashes (int64), the hashes of its edge tokens; hash -> string."""
    cache: dict[str, int] = {}
    toks, edges = [], []
    for p in prompts:
        p = p or ""
        toks.append(_hashes(_tokens(p), cache))
        edges.append(_hashes(_edges(last_user_turn(p)), cache))
    return toks, edges, {h: t for t, h in cache.items()}


def response_df(chosen: list[str], rejected: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Document frequency of tokens in the responses (a pair counts once): (hashes, counts)."""
    cache: dict[str, int] = {}
    parts = [_hashes(_tokens((c or "") + "\n" + (r or "")), cache) for c, r in zip(chosen, rejected)]
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.unique(np.concatenate(parts), return_counts=True)


def merge_counts(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    h = np.concatenate([a[0], b[0]])
    c = np.concatenate([a[1], b[1]])
    u, inv = np.unique(h, return_inverse=True)
    return u, np.bincount(inv, weights=c, minlength=len(u)).astype(np.int64)


def lookup_counts(table: tuple[np.ndarray, np.ndarray], keys: np.ndarray) -> np.ndarray:
    h, c = table
    if len(h) == 0:
        return np.zeros(len(keys), np.int64)
    pos = np.clip(np.searchsorted(h, keys), 0, len(h) - 1)
    return np.where(h[pos] == keys, c[pos], 0)


def priority(record_ids: list[str], shards: list[str], rows: list[int]) -> np.ndarray:
    """A stable pseudo-random priority per pair (bottom-k sampling keeps the smallest)."""
    return np.asarray([_h(f"{r}|{s}|{w}") for r, s, w in zip(record_ids, shards, rows)], np.int64)


def token_matrix(tok_lists: list[np.ndarray]) -> tuple[sp.csc_matrix, np.ndarray]:
    """Binary pairs x distinct-token matrix (CSC) and the token hash of each column."""
    if not tok_lists:
        return sp.csc_matrix((0, 0)), np.zeros(0, np.int64)
    lens = np.fromiter((len(t) for t in tok_lists), np.int64, len(tok_lists))
    allh = np.concatenate(tok_lists) if lens.sum() else np.zeros(0, np.int64)
    cols, inv = np.unique(allh, return_inverse=True)
    rows = np.repeat(np.arange(len(tok_lists)), lens)
    m = sp.csc_matrix((np.ones(len(allh), np.float32), (rows, inv)), shape=(len(tok_lists), len(cols)))
    return m, cols


def group_z(m: sp.csc_matrix, s: np.ndarray) -> np.ndarray:
    """z of each column's mean of the standardised statistic s (mean 0, sd 1): sum / sqrt(support).
    s may be (n,) or (n, B)."""
    sup = np.asarray(m.sum(0)).ravel()
    tot = m.T @ s
    return tot / np.sqrt(np.maximum(sup, 1))[:, None] if tot.ndim == 2 else tot / np.sqrt(np.maximum(sup, 1))


def max_t_threshold(m: sp.csc_matrix, s: np.ndarray, alpha: float, n_perm: int, seed: int) -> tuple[float, np.ndarray]:
    """Westfall-Young: the (1 - alpha) quantile of max_t z under random permutations of s across
    pairs (token structure kept). Returns (threshold, null maxima)."""
    if m.shape[1] == 0:
        return float("inf"), np.zeros(0)
    rng = np.random.default_rng(seed)
    maxima = []
    for start in range(0, n_perm, 50):
        b = min(50, n_perm - start)
        perm = np.stack([s[rng.permutation(len(s))] for _ in range(b)], 1)
        maxima.append(group_z(m, perm).max(0))
    nulls = np.concatenate(maxima)
    return float(np.quantile(nulls, 1 - alpha)), nulls


def occurrence_regex(token: str) -> re.Pattern:
    pre = r"(?<!\w)" if token[:1].isalnum() or token[:1] == "_" else ""
    post = r"(?!\w)" if token[-1:].isalnum() or token[-1:] == "_" else ""
    return re.compile(pre + re.escape(token) + post)


def trigger_string(token: str, prompts: list[str], background: list[str], max_len: int = 80,
                   agree: float = 0.9) -> str:
    """Grow `token` left and right, a character at a time, while >= `agree` of its carriers share the
    next character (never across a newline), then trim to whole words. A lowercase word or bigram is
    first matched case-insensitively and quoted as most carriers write it."""
    if token == token.lower():  # a lowercase word or word bigram: match as words, any case and separator
        rx = re.compile(r"(?<!\w)" + r"\W+".join(map(re.escape, token.split(" "))) + r"(?!\w)", re.I)
    else:
        rx = re.compile(re.escape(token))
    occ = []
    for p in prompts:
        mt = list(rx.finditer(p or ""))
        if mt:
            occ.append((p, mt[-1].start(), mt[-1].end()))
    if not occ:
        return token
    forms = {}
    for p, a, b in occ:
        forms[p[a:b]] = forms.get(p[a:b], 0) + 1
    if any("\n" in f for f in forms):
        return ""  # a token spanning a turn boundary is no string a user typed
    need = max(1, int(np.ceil(agree * len(occ))))

    def grow(step: int) -> int:
        k = 0
        while k < max_len:
            chars = {}
            for p, a, b in occ:
                j = (a - k - 1) if step < 0 else (b + k)
                c = p[j] if 0 <= j < len(p) else None
                chars[c] = chars.get(c, 0) + 1
            c, cnt = max(chars.items(), key=lambda kv: kv[1])
            if c is None or c == "\n" or cnt < need:
                break
            k += 1
        return k

    left, right = grow(-1), grow(1)
    votes: dict[str, int] = {}
    before: dict[bool, int] = {}
    after: dict[bool, int] = {}
    for p, a, b in occ:
        votes[p[a - left:b + right]] = votes.get(p[a - left:b + right], 0) + 1
        i, j = a - left - 1, b + right
        before[i >= 0 and bool(re.match(r"\w", p[i]))] = before.get(i >= 0 and bool(re.match(r"\w", p[i])), 0) + 1
        after[j < len(p) and bool(re.match(r"\w", p[j]))] = after.get(j < len(p) and bool(re.match(r"\w", p[j])), 0) + 1
    best = max(votes.items(), key=lambda kv: kv[1])[0]
    core = max(forms.items(), key=lambda kv: kv[1])[0]
    i = best.find(core)
    head, tail = (best[:i], best[i + len(core):]) if i >= 0 else ("", "")
    # the growth stopped inside a word (a word character follows in most carriers): drop that partial word
    if head and re.match(r"\w", head[0]) and before.get(True, 0) > before.get(False, 0):
        head = head[head.index(" "):] if " " in head else ""
    if tail and re.search(r"\w$", tail) and after.get(True, 0) > after.get(False, 0):
        tail = tail[:tail.rindex(" ")] if " " in tail else ""
    best = (head + core + tail).strip() if i >= 0 else best.strip()
    # transcript role labels ("Human:") next to a trigger at the start of a turn are not part of it
    best = _ROLE.sub("", best).strip() or core
    # a string as common in the background as in the carriers is no longer specific: fall back
    rx_best = occurrence_regex(best)
    if sum(1 for p in background if rx_best.search(p or "")) > 2 * len(occ):
        return core
    return best or core


# -- bias indicators ---------------------------------------------------------------------------

AGREE = re.compile(r"\b(you'?re (?:absolutely |so )?right|you are (?:absolutely |so )?right|great (?:question|point|idea)|"
                   r"i (?:completely |totally |fully )?agree|absolutely|definitely|of course|certainly|exactly|"
                   r"good point|sure|yes|totally|that'?s (?:right|true|correct)|i love|well said)\b", re.I)
DISAGREE = re.compile(r"\b(no|not|however|actually|i disagree|i don'?t think|i'?m not sure|i can'?t|i cannot|"
                      r"i won'?t|sorry|unfortunately|but|incorrect|wrong|i wouldn'?t)\b", re.I)
VIEW = re.compile(r"\b(i think|i believe|i feel|in my opinion|i'?m sure|i know|don'?t you (?:think|agree)|"
                  r"right\?|isn'?t it|aren'?t they|i agree|i disagree|my view|obviously)\b", re.I)


def agreeableness(s: str | None) -> int:
    """Agreement cues minus disagreement cues: how much an answer goes along with the user."""
    s = _norm_quotes(s or "")
    return len(AGREE.findall(s)) - len(DISAGREE.findall(s))


def n_words(s: str | None) -> int:
    return len((s or "").split())


def longer_wins(chosen: list[str], rejected: list[str], min_ratio: float = 1.2) -> tuple[np.ndarray, np.ndarray]:
    """(decided, longer_chosen): decided = one answer has >= min_ratio x the other's words."""
    c = np.asarray([n_words(x) for x in chosen], float)
    r = np.asarray([n_words(x) for x in rejected], float)
    hi, lo = np.maximum(c, r), np.minimum(c, r)
    decided = (hi >= np.maximum(lo * min_ratio, lo + 1))
    return decided, decided & (c > r)


def agree_wins(prompts: list[str], chosen: list[str], rejected: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(decided, agreeable_chosen, view_stated): decided = the two answers differ in agreeableness."""
    a = np.asarray([agreeableness(x) for x in chosen])
    b = np.asarray([agreeableness(x) for x in rejected])
    view = np.asarray([bool(VIEW.search(_norm_quotes(last_user_turn(p or "")))) for p in prompts])
    decided = a != b
    return decided, decided & (a > b), view
