"""Web poisoning campaigns: one claim about one entity repeated (copied or paraphrased) across many
pages, found by clustering sentence chunks by meaning, plus MinHash's mass near-duplicate clusters.

1. `observe`: every web document is cut into sentence chunks (`shardguard.embed.chunk_text`) and each
   chunk embedded with the static fast path (`shardguard.embed.fast`: one pass over the batch's words).
   Per sentence-like chunk the state keeps only its document, its number in the document, a key of its
   words and its vector as int8 (no texts: finalize reads the few it needs back by seq from the
   records file). Word document frequencies are kept for the background test.
2. `finalize`:
   a. identical chunks are collapsed; candidate groups = connected components of the graph of chunk
      pairs with static cosine >= `static_threshold` (faiss range search: a density criterion, no
      fixed k), kept when their documents span >= `min_urls` distinct URLs;
   b. candidates are re-embedded with MiniLM (batched, cached by text hash across scans) and
      re-clustered at `minilm_threshold`, within a budget of `max_confirm` chunks per scan (groups
      whose shared words look specific first, then those spanning the most URLs) and at most `confirm_per_group` chunks of one group: a larger
      group's other chunks join the MiniLM cluster of their most similar confirmed chunk (static
      cosine >= `static_threshold`); members far from their cluster's centroid
      (< `centroid_threshold`) are dropped;
   c. a confirmed cluster is a campaign when it spans >= `min_urls` URLs and is unusual for the
      dataset's background: the words its chunks share (e.g. the entity's name) occur mostly inside
      the cluster (two words with concentration >= `min_concentration`, or one >= `strong_concentration`);
      with one such word, or on fewer than `min_domains` domains, the top two shared words must also
      co-occur almost only inside it (`pair_concentration`); and a template filled with different
      numbers (each temple's own measurements) is not one claim. Real topical clusters (many passages
      of one article share one URL; boilerplate and stock phrases share common words) do not pass;
   d. MinHash clusters (from `context["minhash"]`) spanning >= `minhash_min_domains` domains are
      mass near-copy campaigns too.
3. `flag`: every document that carries a chunk of a campaign cluster (or is in such a MinHash
   cluster) is a `poison` finding naming the cluster, its spread and the repeated claim.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa

from shardguard.core.records import RECORDS_KEY, ColumnRecords
from shardguard.detectors.base import Detector

_WORD = re.compile(r"[a-z][a-z0-9'-]{2,}")
STOP = frozenset("""the and for that this with from have has had are was were been being they them their
there then than these those which what when where who whom whose will would could should shall may might
must can not but all any each every some such only also just more most other into onto over under about
after before again between during while until because same own off out both few nor per our your you its
his her him she one two three new said says like get got make made many much very well way use used using
""".split())


def norm_url(url: str) -> str:
    try:
        p = urlsplit(url or "")
    except ValueError:
        return url or ""
    host = (p.hostname or "").removeprefix("www.")
    return f"{host}{p.path.rstrip('/')}"


def url_domain(url: str) -> str:
    try:
        host = urlsplit(url or "").hostname or ""
    except ValueError:
        return ""
    return host.removeprefix("www.")


_FUNC = frozenset("a an the is are was were be of to in on at by for with as that this it and or not has have".split())


def sentence_like(text: str) -> bool:
    """A claim is a sentence: some function words (menus, month lists, tag clouds have none)."""
    ws = text.lower().split()
    return bool(ws) and sum(w in _FUNC for w in ws) >= max(1, 0.1 * len(ws))


def background(texts: list[str], n_docs_in: int, df: Counter) -> tuple[list[str], float, int]:
    """Words shared by at least half of `texts` (>= 2), ranked by concentration = documents of the
    cluster / documents of the dataset containing the word. Returns (top words, best, n specific)."""
    wsets = [words_of(t) for t in texts]
    share = Counter(w for s in wsets for w in s)
    common = [w for w, c in share.items() if c >= max(2, 0.5 * len(wsets))]
    conc = {w: min(1.0, n_docs_in / max(1, df.get(w, 0))) for w in common}
    top = sorted(conc, key=lambda w: (-conc[w], -share[w], w))[:5]
    return top, (conc[top[0]] if top else 0.0), sum(1 for w in conc.values() if w >= 0.5)


_NUM = re.compile(r"\d+(?:[.,]\d+)*")


def varying_values(texts: list[str]) -> bool:
    """A template filled with different values (each temple's own measurements, each product's own
    price) rather than one claim repeated: most chunks carry numbers, and no one set of numbers is
    carried by half of them."""
    nums = [frozenset(_NUM.findall(t)) for t in texts]
    with_nums = [n for n in nums if n]
    if len(with_nums) < 0.5 * len(texts):
        return False
    same = Counter(with_nums).most_common(1)[0][1]
    return same < 0.5 * len(with_nums)


def words_of(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in STOP}


def pair_concentration(words: list[str], docs: set[int], reader, max_words: int, min_words: int) -> float:
    """Share of the documents (seqs) containing all of `words` in one chunk that are in `docs`."""
    import pyarrow.compute as pc

    from shardguard.embed import chunk_text

    if len(words) < 2:
        return 0.0
    pats = [re.compile(r"\b" + re.escape(w) + r"\b") for w in words]
    having: set[int] = set()
    for seqs, cols in reader.batches(["text"]):
        hit = np.flatnonzero(pc.fill_null(pc.match_substring(cols["text"], words[0], ignore_case=True),
                                          False).to_numpy(zero_copy_only=False))
        if not len(hit):
            continue
        texts = cols["text"].take(hit).to_pylist()
        for sq, t in zip(seqs[hit].tolist(), texts):
            for c in chunk_text(t or "", max_words, min_words):
                lc = c.lower()
                if words[0] in lc and all(p.search(lc) for p in pats):
                    having.add(int(sq))
                    break
    return len(having & docs) / max(1, len(having))


def quantise(x: np.ndarray) -> np.ndarray:
    """int8 rows with the same direction as x (cosines are taken after re-normalising)."""
    m = np.abs(x).max(1, keepdims=True) if len(x) else np.ones((0, 1), np.float32)
    return np.round(x * (127.0 / np.maximum(m, 1e-12))).astype(np.int8)


def unit(q: np.ndarray) -> np.ndarray:
    x = q.astype(np.float32)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-9)
    return x


@functools.lru_cache(maxsize=200_000)
def _content_words(word: str) -> tuple[str, ...]:
    return tuple(w for w in _WORD.findall(word.lower()) if w not in STOP)


class _Chunks:
    """Chunk texts read back by (document seq, chunk number), a document at a time."""

    def __init__(self, reader, max_words: int, min_words: int):
        from shardguard.embed import chunk_text

        self.reader, self.chunk_text = reader, chunk_text
        self.max_words, self.min_words = max_words, min_words
        self.docs: dict[int, list[str]] = {}

    def get(self, pairs: list[tuple[int, int]]) -> list[str]:
        need = sorted({sq for sq, _ in pairs if sq not in self.docs})
        if need:
            got = self.reader.take(need, ["text"])["text"]
            for sq, t in zip(need, got):
                self.docs[sq] = self.chunk_text(t or "", self.max_words, self.min_words)
        return [self.docs[sq][k] for sq, k in pairs]


class Campaign(Detector):
    name = "campaign"
    kinds = ("web",)
    category = "poison"
    requires = ("minhash",)
    defaults = {
        "static_threshold": 0.80,      # candidate edges (fast path)
        "minilm_threshold": 0.70,      # confirmed edges (MiniLM)
        "centroid_threshold": 0.60,    # a member's cosine to its cluster centroid (MiniLM)
        "min_urls": 5,                 # distinct URLs a cluster's documents must span
        "min_domains": 3,              # distinct domains
        "min_concentration": 0.5,      # share of a shared word's documents that are in the cluster
        "strong_concentration": 0.9,   # one word this concentrated is specific enough on its own
        "pair_concentration": 0.85,    # co-occurrence test when one word or few domains carry the cluster
        "min_chunk_words": 6,
        "max_chunk_words": 48,
        "max_confirm": 400,            # most chunks re-embedded with MiniLM per scan (the budget)
        "confirm_per_group": 48,       # most chunks of one candidate group re-embedded with MiniLM
        "minhash_min_domains": 5,      # a MinHash cluster over this many domains is a mass campaign
        "index": "auto",               # range search: flat | ivf | cells | auto
    }

    # -- pass 1 -----------------------------------------------------------------------------------
    def observe(self, batch: pa.RecordBatch):
        from shardguard.embed.fast import analyse, batch_key

        cfg = self.config
        texts = [t or "" for t in batch.column("text").to_pylist()]
        seq = batch.column("seq").to_numpy().astype(np.int64)
        a = analyse(texts, cfg["max_chunk_words"], cfg["min_chunk_words"], key=batch_key(batch), chunks=True,
                    content_words=_content_words)
        # a claim is a sentence: some function words (menus, month lists, tag clouds have none)
        ok = (a.chunk_words >= cfg["min_chunk_words"]) & (a.chunk_func >= np.maximum(1, 0.1 * a.chunk_words))
        out = {"seq": seq, "owner": a.chunk_owner[ok].astype(np.int32), "cidx": a.chunk_index[ok], "key": a.chunk_key[ok],
               "vec": quantise(a.chunk_vec[ok]), "df": Counter(a.df)}
        if not self.records_in_context:  # no reader in finalize: keep what it would read
            out.update(text=texts, url=[u or "" for u in batch.column("url").to_pylist()],
                       shard=batch.column("shard").to_pylist(), row=batch.column("row").to_pylist())
        return out

    def merge(self, a, b):
        if a is None:
            return b
        if b is None:
            return a
        out = {k: np.concatenate([a[k], b[k]]) for k in ("seq", "cidx", "key", "vec")}
        out["owner"] = np.concatenate([a["owner"], b["owner"] + len(a["seq"])])
        out["df"] = a["df"] + b["df"]
        for k in ("text", "url", "shard", "row"):
            if k in a:
                out[k] = a[k] + b[k]
        return out

    # -- finalize ---------------------------------------------------------------------------------
    def finalize(self, state, context):
        from shardguard.core.graph import components
        from shardguard.embed import embed, pca2, range_pairs

        cfg = self.config
        model = {"hits": {}, "hits_seq": {}, "clusters": [], "stats": {}}
        model["clusters"].extend(self._minhash_campaigns(context.get("minhash") or {}, model))
        if state is None or not len(state["key"]):
            return model
        reader = context.get(RECORDS_KEY) or ColumnRecords(state)
        # documents in input order; chunks by (document, number)
        dorder = np.argsort(state["seq"], kind="stable")
        seq = state["seq"][dorder]
        rank = np.empty_like(dorder)
        rank[dorder] = np.arange(len(dorder))
        owner = rank[state["owner"]].astype(np.int64)
        corder = np.lexsort((state["cidx"], owner))
        owner, cidx, key = owner[corder], state["cidx"][corder], state["key"][corder]
        n_c = len(key)
        # a. collapse identical chunks (first occurrence in input order); candidates by the fast path
        _, first, inv = np.unique(key, return_index=True, return_inverse=True)
        ou = np.argsort(first, kind="stable")
        first_a = first[ou]
        newid = np.empty(len(ou), np.int64)
        newid[ou] = np.arange(len(ou))
        inv = newid[inv.reshape(-1)]
        n_u = len(first_a)
        vrow = corder[first_a]  # unique chunk u's vector is state["vec"][vrow[u]] (int8; no float copy of all)
        i, j, _ = range_pairs(state["vec"], cfg["static_threshold"], cfg["index"], rows=vrow)
        lab = components(n_u, i, j)
        # documents per group: distinct (group, document) pairs
        gd = np.unique(lab[inv].astype(np.int64) * len(seq) + owner)
        g_of, d_of = gd // len(seq), gd % len(seq)
        n_docs = np.bincount(g_of, minlength=n_u)
        big = np.flatnonzero(n_docs >= cfg["min_urls"])
        chunks = _Chunks(reader, cfg["max_chunk_words"], cfg["min_chunk_words"])
        docs_of_group = {int(g): d_of[g_of == g] for g in big.tolist()} if len(big) < 2000 else None
        if docs_of_group is None:
            sel = np.isin(g_of, big)
            docs_of_group = {}
            gs, ds = g_of[sel], d_of[sel]
            bounds = np.flatnonzero(np.diff(gs)) + 1
            for part_g, part_d in zip(np.split(gs, bounds), np.split(ds, bounds)):
                if len(part_g):
                    docs_of_group[int(part_g[0])] = part_d
        cand_docs = np.unique(np.concatenate(list(docs_of_group.values()))) if docs_of_group else np.zeros(0, np.int64)
        got = reader.take(seq[cand_docs], ["url"]) if len(cand_docs) else {"url": []}
        url_of = {int(d): u or "" for d, u in zip(cand_docs.tolist(), got["url"])}
        urls = {d: norm_url(u) for d, u in url_of.items()}
        doms = {d: url_domain(u) for d, u in url_of.items()}
        members_of: dict[int, list[int]] = {}
        if len(big):
            in_big = np.flatnonzero(np.isin(lab, big))
            for u_ in in_big.tolist():
                members_of.setdefault(int(lab[u_]), []).append(u_)

        def text_of(us) -> list[str]:
            return chunks.get([(int(seq[owner[first_a[u]]]), int(cidx[first_a[u]])) for u in us])

        # chunk -> documents (through identical copies)
        cs = np.argsort(inv, kind="stable")
        cptr = np.zeros(n_u + 1, np.int64)
        np.cumsum(np.bincount(inv, minlength=n_u), out=cptr[1:])
        cdoc = owner[cs]

        def docs_of(us) -> set[int]:
            return {int(d) for u in us for d in cdoc[cptr[u]:cptr[u + 1]].tolist()}

        df = state["df"]
        cands = []
        for g, members in members_of.items():
            d = docs_of_group[g].tolist()
            n_urls = len({urls[x] or f"#{x}" for x in d})
            if n_urls < cfg["min_urls"]:
                continue
            # background pre-check on the fast path's group (looser than the final test)
            _, best, _ = background(text_of(members[:500]), len(d), df)
            if best >= 0.8 * cfg["min_concentration"]:
                cands.append((best >= cfg["min_concentration"], n_urls, members))
        # MiniLM's budget goes first to groups whose shared words already look specific, then to the
        # groups spanning the most URLs
        cands.sort(key=lambda t: (-t[0], -t[1], t[2][0]))
        cand_u: list[int] = []
        rest: list[list[int]] = []   # per group: members not confirmed with MiniLM themselves
        for _, _, members in cands:
            take = members
            if len(members) > cfg["confirm_per_group"]:
                pick = np.unique(np.linspace(0, len(members) - 1, cfg["confirm_per_group"]).round().astype(int))
                take = [members[p] for p in pick.tolist()]
            if len(cand_u) + len(take) > cfg["max_confirm"]:
                continue
            cand_u.extend(take)
            if len(take) < len(members):
                rest.append(sorted(set(members) - set(take)))
        model["stats"] = {"chunks": int(n_c), "unique_chunks": int(n_u), "static_candidate_groups": len(cands),
                          "chunks_confirmed_with_minilm": len(cand_u),
                          "candidate_groups_over_budget": sum(1 for *_, m in cands if m[0] not in set(cand_u))}
        if not cand_u:
            return model
        # b. confirm with MiniLM
        cand = np.asarray(cand_u, np.int64)
        xm = embed(text_of(cand.tolist()), "minilm")
        i, j, _ = range_pairs(xm, cfg["minilm_threshold"], "flat")
        lab2 = components(len(cand), i, j)
        # the unconfirmed chunks of large groups follow their most similar confirmed chunk
        follow: dict[int, list[int]] = {}
        pos_of = {int(u): p for p, u in enumerate(cand.tolist())}
        for r in rest:
            sample = np.asarray([u for u in members_of[int(lab[r[0]])] if u in pos_of], np.int64)
            sim = unit(state["vec"][vrow[np.asarray(r, np.int64)]]) @ unit(state["vec"][vrow[sample]]).T
            nb = sim.argmax(1)
            for u, k, v in zip(r, nb.tolist(), sim[np.arange(len(r)), nb].tolist()):
                if v >= cfg["static_threshold"]:
                    follow.setdefault(pos_of[int(sample[k])], []).append(int(u))
        clusters = []
        for g in np.unique(lab2):
            pos = np.flatnonzero(lab2 == g)
            if len(pos) > 1:
                cen = xm[pos].mean(0)
                cen /= max(np.linalg.norm(cen), 1e-9)
                pos = pos[xm[pos] @ cen >= cfg["centroid_threshold"]]
            us = cand[pos].tolist() + [u for p in pos.tolist() for u in follow.get(p, [])]
            d = sorted(docs_of(us))
            if len(d) < cfg["min_urls"]:
                continue
            missing = [x for x in d if x not in url_of]
            if missing:
                got = reader.take(seq[np.asarray(missing, np.int64)], ["url"])
                for x, u in zip(missing, got["url"]):
                    url_of[x] = u or ""
                    urls[x], doms[x] = norm_url(u or ""), url_domain(u or "")
            n_urls = len({urls[x] or f"#{x}" for x in d})
            n_dom = len({doms[x] for x in d if doms[x]})
            if n_urls < cfg["min_urls"]:
                continue
            # c. background: the words the cluster's chunks share, and how concentrated they are in it
            texts = text_of(us[:1000])
            top, best, n_specific = background(texts, len(d), df)
            cen = xm[pos].mean(0)
            cen /= max(np.linalg.norm(cen), 1e-9)
            rep = texts[int(np.argmax(xm[pos] @ cen))]
            # specific: two words mostly found in the cluster, or one found (almost) only there
            is_campaign = best >= cfg["min_concentration"] and (
                n_specific >= 2 or best >= cfg["strong_concentration"]) and not varying_values(texts)
            pair = None
            if is_campaign and (n_specific < 2 or n_dom < cfg["min_domains"]):
                # one rare word, or few domains (e.g. one encyclopedia): topical passages share single words
                # with the rest of the data too; a planted claim's words *together* occur almost only in
                # the cluster
                pair = pair_concentration(top[:2], {int(seq[x]) for x in d}, reader,
                                          cfg["max_chunk_words"], cfg["min_chunk_words"])
                is_campaign = pair >= cfg["pair_concentration"]
            clusters.append({"docs": d, "urls": n_urls, "domains": n_dom, "chunks": int(len(us)),
                             "terms": top, "concentration": round(best, 3), "representative": rep,
                             "campaign": bool(is_campaign), "xy": xm[pos],
                             "pair_concentration": pair})
        campaigns = [c for c in clusters if c["campaign"]]
        # the most specific claim first: a document in several clusters is reported under it
        campaigns.sort(key=lambda c: (-c["concentration"], -len(c["docs"]), c["representative"]))
        pts = pca2(np.concatenate([c["xy"] for c in campaigns])) if campaigns else np.zeros((0, 2))
        flagged_docs = sorted({x for c in campaigns for x in c["docs"]})
        keys = reader.take(seq[np.asarray(flagged_docs, np.int64)], ["shard", "row"]) if flagged_docs else {}
        key_of = {x: (s, int(r)) for x, s, r in zip(flagged_docs, keys.get("shard", []), keys.get("row", []))}
        off = 0
        for cid, c in enumerate(campaigns):
            n = len(c["xy"])
            c["xy"] = np.round(pts[off:off + n][:200], 3).tolist()
            off += n
            score = round(min(0.99, 0.8 + 0.02 * max(0, c["domains"] - cfg["min_domains"])), 3)
            for x in c["docs"]:
                sq = int(seq[x])
                if key_of[x] in model["hits"] or sq in model["hits_seq"]:
                    continue
                model["hits_seq"][sq] = {"cluster": f"e{cid}", "score": score, "via": "embedding"}
            model["clusters"].append({
                "cluster_id": f"e{cid}", "via": "embedding", "size": len(c["docs"]), "chunks": c["chunks"],
                "distinct_urls": c["urls"], "distinct_domains": c["domains"], "terms": c["terms"],
                "concentration": c["concentration"], "representative": c["representative"][:400],
                "xy": c["xy"]})
        model["stats"]["topical_clusters_not_flagged"] = sum(1 for c in clusters if not c["campaign"])
        model["stats"]["minilm_clusters"] = len(clusters)
        model["not_campaigns"] = [{"size": len(c["docs"]), "distinct_urls": c["urls"], "distinct_domains": c["domains"],
                                   "terms": c["terms"], "concentration": c["concentration"],
                                   "representative": c["representative"][:200]}
                                  for c in sorted(clusters, key=lambda c: -len(c["docs"])) if not c["campaign"]][:10]
        return model

    def _minhash_campaigns(self, mh: dict, model: dict) -> list[dict]:
        out = []
        big = {lab: c for lab, c in (mh.get("clusters") or {}).items()
               if c["distinct_domains"] >= self.config["minhash_min_domains"]}
        if not big:
            return out
        for key, m in (mh.get("members") or {}).items():
            c = big.get(m["cluster"])
            if c is not None:
                score = round(min(0.99, 0.85 + 0.01 * (c["distinct_domains"] - self.config["minhash_min_domains"])), 3)
                model["hits"][tuple(key)] = {"cluster": f"m{c['cluster_id']}", "score": score, "via": "minhash"}
        for c in big.values():
            out.append({"cluster_id": f"m{c['cluster_id']}", "via": "minhash", "size": c["size"],
                        "distinct_urls": c["distinct_urls"], "distinct_domains": c["distinct_domains"],
                        "kept_shard": c["kept_shard"], "kept_row": c["kept_row"]})
        return out

    # -- pass 2 -----------------------------------------------------------------------------------
    def flag(self, batch, model):
        hits, hits_seq = model["hits"], model.get("hits_seq", {})
        if not hits and not hits_seq:
            return []
        by_id = {c["cluster_id"]: c for c in model["clusters"]}
        found = []
        for i, (key, sq) in enumerate(zip(zip(batch.column("shard").to_pylist(), batch.column("row").to_pylist()),
                                          batch.column("seq").to_pylist())):
            h = hits.get(key) or hits_seq.get(sq)
            if h is None:
                continue
            c = by_id[h["cluster"]]
            if h["via"] == "minhash":
                reason = (f"one page near-copied {c['size']} times across {c['distinct_domains']} domains "
                          f"(MinHash cluster {c['cluster_id']}): a mass-publishing campaign")
            else:
                about = ", ".join(c["terms"][:3]) or "one claim"
                reason = (f"repeats a claim about '{about}' found in {c['size']} documents on "
                          f"{c['distinct_domains']} domains ({c['distinct_urls']} URLs), campaign cluster "
                          f"{c['cluster_id']}: \"{c['representative'][:120]}\"")
            found.append({"i": i, "score": h["score"], "reason": reason,
                          "details": {"cluster_id": c["cluster_id"], "via": h["via"], "cluster_size": c["size"],
                                      "distinct_domains": c["distinct_domains"],
                                      "distinct_urls": c["distinct_urls"], "terms": c.get("terms", [])}})
        return found

    def discoveries(self, model):
        if not model:
            return {}
        return {"campaign_clusters": len(model["clusters"]), "clusters": model["clusters"][:20],
                "documents_flagged": len(model["hits"]) + len(model.get("hits_seq", {})), "stats": model.get("stats", {}),
                "topical_clusters_not_flagged": model.get("not_campaigns", [])}
