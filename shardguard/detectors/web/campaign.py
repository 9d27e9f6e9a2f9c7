"""Web poisoning campaigns: one claim about one entity repeated (copied or paraphrased) across many
pages, found by clustering sentence chunks by meaning, plus MinHash's mass near-duplicate clusters.

1. `observe`: every web document is cut into sentence chunks (`shardguard.embed.chunk_text`) and each
   chunk embedded with the static fast path (128-d, thousands/s). Word document frequencies are kept
   for the background test.
2. `finalize`:
   a. identical chunks are collapsed; candidate groups = connected components of the graph of chunk
      pairs with static cosine >= `static_threshold` (faiss range search: a density criterion, no
      fixed k), kept when their documents span >= `min_urls` distinct URLs;
   b. candidates are re-embedded with MiniLM (cached) and re-clustered at `minilm_threshold`;
      members far from their cluster's centroid (< `centroid_threshold`) are dropped;
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

import re
from collections import Counter
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa

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


def pair_concentration(words: list[str], docs: set[int], chunks: list[str], owner: np.ndarray) -> float:
    """Share of the documents containing all of `words` (in one chunk) that are in `docs`."""
    if len(words) < 2:
        return 0.0
    pats = [re.compile(r"\b" + re.escape(w) + r"\b") for w in words]
    having = {int(owner[k]) for k, c in enumerate(chunks) if words[0] in c.lower()
              and all(p.search(c.lower()) for p in pats)}
    return len(having & docs) / max(1, len(having))


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


def in_input_order(state: dict) -> dict:
    """The merged state reordered by `seq`, so results do not depend on the order of merges."""
    order = np.argsort(state["seq"], kind="stable")
    if np.array_equal(order, np.arange(len(order))):
        return state
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    new_owner = rank[state["owner"]]
    corder = np.argsort(new_owner, kind="stable")
    return {"shard": [state["shard"][k] for k in order], "row": state["row"][order], "seq": state["seq"][order],
            "url": [state["url"][k] for k in order], "chunks": [state["chunks"][k] for k in corder],
            "owner": new_owner[corder], "vec": state["vec"][corder], "df": state["df"]}


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
        "max_confirm": 4000,           # most chunks re-embedded with MiniLM per scan
        "minhash_min_domains": 5,      # a MinHash cluster over this many domains is a mass campaign
        "index": "auto",               # faiss index for the range search: flat | ivf | auto
    }

    # -- pass 1 -----------------------------------------------------------------------------------
    def observe(self, batch: pa.RecordBatch):
        from shardguard.embed import chunk_many, embed

        texts = [t or "" for t in batch.column("text").to_pylist()]
        chunks, owner = chunk_many(texts, self.config["max_chunk_words"], self.config["min_chunk_words"])
        vec = embed(chunks, "static").astype(np.float16) if chunks else np.zeros((0, 128), np.float16)
        df = Counter()
        for t in texts:
            df.update(words_of(t))
        return {"shard": batch.column("shard").to_pylist(), "row": batch.column("row").to_numpy(),
                "seq": batch.column("seq").to_numpy(),
                "url": [u or "" for u in batch.column("url").to_pylist()], "chunks": chunks,
                "owner": owner, "vec": vec, "df": df}

    def merge(self, a, b):
        if a is None:
            return b
        if b is None:
            return a
        return {"shard": a["shard"] + b["shard"], "row": np.concatenate([a["row"], b["row"]]),
                "seq": np.concatenate([a["seq"], b["seq"]]),
                "url": a["url"] + b["url"], "chunks": a["chunks"] + b["chunks"],
                "owner": np.concatenate([a["owner"], b["owner"] + len(a["row"])]),
                "vec": np.concatenate([a["vec"], b["vec"]]), "df": a["df"] + b["df"]}

    # -- finalize ---------------------------------------------------------------------------------
    def finalize(self, state, context):
        from shardguard.core.graph import components
        from shardguard.embed import embed, pca2, range_pairs

        cfg = self.config
        model = {"hits": {}, "clusters": [], "stats": {}}
        model["clusters"].extend(self._minhash_campaigns(context.get("minhash") or {}, model))
        if state is None or not state["chunks"]:
            return model
        state = in_input_order(state)
        chunks, owner = state["chunks"], state["owner"]
        urls = [norm_url(u) for u in state["url"]]
        doms = [url_domain(u) for u in state["url"]]
        # a. collapse identical chunks; candidates by the fast path
        key_of: dict[str, int] = {}
        inv = np.empty(len(chunks), np.int64)
        first: list[int] = []
        for k, c in enumerate(chunks):
            key = " ".join(c.lower().split())
            u = key_of.get(key)
            if u is None:
                u = key_of[key] = len(first)
                first.append(k)
            inv[k] = u
        first_a = np.asarray(first, np.int64)
        n_u = len(first_a)
        nwords = np.fromiter((len(chunks[k].split()) for k in first_a), np.int64, n_u)
        ok = np.flatnonzero((nwords >= cfg["min_chunk_words"])
                            & np.fromiter((sentence_like(chunks[k]) for k in first_a), bool, n_u))
        docs_of_u: list[list[int]] = [[] for _ in range(n_u)]
        for k, u in enumerate(inv.tolist()):
            docs_of_u[u].append(int(owner[k]))
        xs = state["vec"][first_a[ok]].astype(np.float32)
        xs /= np.maximum(np.linalg.norm(xs, axis=1, keepdims=True), 1e-9)
        i, j, _ = range_pairs(xs, cfg["static_threshold"], cfg["index"])
        lab = components(len(ok), i, j)
        groups: dict[int, list[int]] = {}
        for pos, g in enumerate(lab.tolist()):
            groups.setdefault(g, []).append(int(ok[pos]))
        cands = []
        for members in groups.values():
            d = {dd for u in members for dd in docs_of_u[u]}
            n_urls = len({urls[x] or f"#{x}" for x in d})
            if n_urls < cfg["min_urls"]:
                continue
            # background pre-check on the fast path's group (looser than the final test)
            _, best, _ = background([chunks[first_a[u]] for u in members[:500]], len(d), state["df"])
            if best >= 0.8 * cfg["min_concentration"]:
                cands.append((n_urls, members))
        cands.sort(key=lambda t: -t[0])
        cand_u: list[int] = []
        for _, members in cands:
            if len(cand_u) + len(members) > cfg["max_confirm"]:
                continue
            cand_u.extend(members)
        model["stats"] = {"chunks": len(chunks), "unique_chunks": n_u, "static_candidate_groups": len(cands),
                          "chunks_confirmed_with_minilm": len(cand_u)}
        if not cand_u:
            return model
        # b. confirm with MiniLM
        cand = np.asarray(cand_u, np.int64)
        xm = embed([chunks[first_a[u]] for u in cand], "minilm")
        i, j, _ = range_pairs(xm, cfg["minilm_threshold"], "flat")
        lab = components(len(cand), i, j)
        df = state["df"]
        clusters = []
        for g in np.unique(lab):
            pos = np.flatnonzero(lab == g)
            if len(pos) > 1:
                cen = xm[pos].mean(0)
                cen /= max(np.linalg.norm(cen), 1e-9)
                pos = pos[xm[pos] @ cen >= cfg["centroid_threshold"]]
            us = cand[pos]
            d = sorted({dd for u in us for dd in docs_of_u[u]})
            n_urls = len({urls[x] or f"#{x}" for x in d})
            n_dom = len({doms[x] for x in d if doms[x]})
            if n_urls < cfg["min_urls"]:
                continue
            # c. background: the words the cluster's chunks share, and how concentrated they are in it
            texts = [chunks[first_a[u]] for u in us]
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
                pair = pair_concentration(top[:2], set(d), chunks, owner)
                is_campaign = pair >= cfg["pair_concentration"]
            clusters.append({"docs": d, "urls": n_urls, "domains": n_dom, "chunks": int(len(us)),
                             "terms": top, "concentration": round(best, 3), "representative": rep,
                             "campaign": bool(is_campaign), "xy": xm[pos],
                             "pair_concentration": pair})
        campaigns = [c for c in clusters if c["campaign"]]
        # the most specific claim first: a document in several clusters is reported under it
        campaigns.sort(key=lambda c: (-c["concentration"], -len(c["docs"]), c["representative"]))
        pts = pca2(np.concatenate([c["xy"] for c in campaigns])) if campaigns else np.zeros((0, 2))
        off = 0
        for cid, c in enumerate(campaigns):
            n = len(c["xy"])
            c["xy"] = np.round(pts[off:off + n][:200], 3).tolist()
            off += n
            score = round(min(0.99, 0.8 + 0.02 * max(0, c["domains"] - cfg["min_domains"])), 3)
            for x in c["docs"]:
                key = (state["shard"][x], int(state["row"][x]))
                if key in model["hits"]:
                    continue
                model["hits"][key] = {"cluster": f"e{cid}", "score": score, "via": "embedding"}
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
        hits = model["hits"]
        if not hits:
            return []
        by_id = {c["cluster_id"]: c for c in model["clusters"]}
        found = []
        for i, key in enumerate(zip(batch.column("shard").to_pylist(), batch.column("row").to_pylist())):
            h = hits.get(key)
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
                "documents_flagged": len(model["hits"]), "stats": model.get("stats", {}),
                "topical_clusters_not_flagged": model.get("not_campaigns", [])}
