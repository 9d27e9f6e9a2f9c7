"""Is the data about to be trained on still the data that was scanned? And did two crawls of the same
URLs serve the same content? (The split-view and frontrunning poisoning patterns, Carlini et al. 2023.)

    report = verify_data(["data/"], "audit/manifest.parquet")
    report["identical"], report["changes"]      # each change: shard, change, row, url, reason

    report = compare_snapshots(["crawl-a/"], ["crawl-b/"])
    report["changed"]                            # each URL whose content differs, with the reason

A shard whose file hash equals the manifest's is not read again. Any other shard is re-read and
compared record by record: records whose content hash is still in the shard are unchanged (even when
they moved); the rest are paired by URL (a web page whose content changed: the URL re-pointed or the
page edited), then by row (a record edited in place), and what is left is added or removed.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from pathlib import Path, PurePath
from typing import Any

from shardguard.ingest import Malformed, ShardError, expand_paths, ingest_shard
from shardguard.pipeline.manifest import file_sha256, raw_hash, read_manifest

CHANGES = ("added", "removed", "changed")


def _read(path: Path, name: str, kind: str) -> tuple[list[dict], dict[int, str], str | None]:
    """One shard's records as (row, record_id, content_hash, url, text hash), its malformed rows, its error."""
    recs: list[dict] = []
    malformed: dict[int, str] = {}
    try:
        for item in ingest_shard(path, name, kind or "auto"):
            if isinstance(item, Malformed):
                malformed[item.row] = item.reason
                continue
            d = item.select(["row", "record_id", "url", "raw"]).to_pydict()
            for r, rid, url, raw in zip(d["row"], d["record_id"], d["url"], d["raw"]):
                recs.append({"row": r, "record_id": rid, "content_hash": raw_hash(raw), "url": url or None})
    except ShardError as e:
        return recs, malformed, str(e)
    except OSError as e:
        return recs, malformed, f"cannot read file: {e}"
    return recs, malformed, None


def _short(h: str | None) -> str:
    return (h or "")[:12]


def diff_records(shard: str, old: list[dict], new: list[dict], malformed: dict[int, str] | None = None
                 ) -> list[dict]:
    """The changes from `old` to `new` (lists of {row, record_id, content_hash, url}), each with a reason."""
    malformed = malformed or {}
    new_by_hash: dict[str, list[dict]] = defaultdict(list)
    for r in new:
        new_by_hash[r["content_hash"]].append(r)
    # same content at the same row first, then the same content anywhere (a record that moved)
    left_old = []
    for o in old:
        cands = new_by_hash.get(o["content_hash"])
        if cands:
            same_row = next((i for i, c in enumerate(cands) if c["row"] == o["row"]), 0)
            cands.pop(same_row)
        else:
            left_old.append(o)
    left_new = sorted((r for rs in new_by_hash.values() for r in rs), key=lambda r: r["row"])
    changes: list[dict] = []

    def changed(o: dict, n: dict, why: str):
        parts = [why, f"content hash {_short(o['content_hash'])} -> {_short(n['content_hash'])}"]
        if (o.get("url") or None) != (n.get("url") or None):
            parts.append(f"url {o.get('url') or '(none)'} -> {n.get('url') or '(none)'}")
        if o.get("record_id") and o.get("record_id") == n.get("record_id"):
            parts.append("canonical fields unchanged, other fields differ")
        changes.append({"shard": shard, "change": "changed", "row": n["row"], "old_row": o["row"],
                        "record_id": n.get("record_id"), "old_record_id": o.get("record_id"),
                        "url": n.get("url") or o.get("url"), "reason": "; ".join(parts)})

    # pair by URL (unique on both sides among the unmatched): the page behind the URL changed
    url_old = Counter(o["url"] for o in left_old if o.get("url"))
    url_new = Counter(n["url"] for n in left_new if n.get("url"))
    by_url_new = {n["url"]: n for n in left_new if n.get("url") and url_new[n["url"]] == 1}
    rest_old, matched = [], set()
    for o in left_old:
        u = o.get("url")
        if u and url_old[u] == 1 and u in by_url_new:
            n = by_url_new.pop(u)
            matched.add(id(n))
            changed(o, n, "content at this URL changed (URL re-pointed or page edited)")
        else:
            rest_old.append(o)
    rest_new = [n for n in left_new if id(n) not in matched]
    # pair by row: the record at that row was edited in place
    new_at = {n["row"]: n for n in rest_new}
    leftover_old = []
    for o in rest_old:
        n = new_at.pop(o["row"], None)
        if n is not None:
            changed(o, n, f"record at row {o['row']} edited")
        else:
            leftover_old.append(o)
    for o in leftover_old:
        why = (f"row {o['row']} is now malformed: {malformed[o['row']]}" if o["row"] in malformed
               else "record no longer in the shard")
        changes.append({"shard": shard, "change": "removed", "row": None, "old_row": o["row"],
                        "record_id": None, "old_record_id": o.get("record_id"), "url": o.get("url"),
                        "reason": f"{why} (content hash {_short(o['content_hash'])})"})
    for n in sorted(new_at.values(), key=lambda r: r["row"]):
        changes.append({"shard": shard, "change": "added", "row": n["row"], "old_row": None,
                        "record_id": n.get("record_id"), "old_record_id": None, "url": n.get("url"),
                        "reason": f"record not in the manifest (content hash {_short(n['content_hash'])})"})
    return sorted(changes, key=lambda c: (c["row"] if c["row"] is not None else c["old_row"], c["change"]))


def _match_names(manifest_names: list[str], data_names: list[str]) -> dict[str, str]:
    """data shard name -> manifest shard name: equal names, then a unique match on the trailing path parts
    (a scan given files names shards by the path as given; a folder names them relative to it)."""
    out = {d: d for d in data_names if d in set(manifest_names)}
    free_m = [m for m in manifest_names if m not in set(out.values())]

    def tail_match(a: str, b: str) -> bool:
        pa_, pb = PurePath(a).parts, PurePath(b).parts
        n = min(len(pa_), len(pb))
        return n > 0 and pa_[-n:] == pb[-n:]

    for d in data_names:
        if d in out:
            continue
        cands = [m for m in free_m if tail_match(m, d)]
        if len(cands) == 1:
            out[d] = cands[0]
            free_m.remove(cands[0])
    return out


def verify_data(paths: list[str | Path], manifest: str | Path, reread: bool = False) -> dict[str, Any]:
    """Compare the shards under `paths` with a scan's manifest.parquet. See the module docstring.
    `reread`: compare every shard record by record, even one whose file hash is unchanged."""
    table, entries = read_manifest(manifest)
    shards, _skipped = expand_paths([str(p) for p in paths])
    rows_of: dict[str, list[dict]] = defaultdict(list)
    d = table.to_pydict()
    for i, s in enumerate(d["shard"]):
        if d["row"][i] is not None:
            rows_of[s].append({"row": d["row"][i], "record_id": d.get("record_id", [None] * len(d["shard"]))[i],
                               "content_hash": d["content_hash"][i], "url": d.get("url", [None] * len(d["shard"]))[i]})
    entry_of = {e["shard"]: e for e in entries}
    name_map = _match_names(list(entry_of), [n for _, n in shards])
    changes: list[dict] = []
    per_shard: list[dict] = []
    seen: set[str] = set()
    for path, name in shards:
        mname = name_map.get(name)
        sha = file_sha256(path)
        if mname is None:
            recs, mal, err = _read(path, name, "auto")
            ch = [{"shard": name, "change": "added", "row": r["row"], "old_row": None, "record_id": r["record_id"],
                   "old_record_id": None, "url": r["url"], "reason": "shard not in the manifest"} for r in recs]
            per_shard.append(_shard_line(name, None, "new shard", sha, None, ch, err))
            changes += ch
            continue
        seen.add(mname)
        e = entry_of[mname]
        if not reread and sha is not None and sha == e.get("sha256"):
            per_shard.append(_shard_line(mname, name, "unchanged (file hash equal)", sha, e.get("sha256"), [], None))
            continue
        recs, mal, err = _read(path, mname, e.get("kind") or "auto")
        ch = diff_records(mname, rows_of.get(mname, []), recs, mal)
        status = "changed" if ch else ("records identical" if sha == e.get("sha256")
                                        else "file differs, records identical")
        per_shard.append(_shard_line(mname, name, status, sha, e.get("sha256"), ch, err))
        changes += ch
    for mname, e in entry_of.items():
        if mname in seen:
            continue
        ch = [{"shard": mname, "change": "removed", "row": None, "old_row": r["row"], "record_id": None,
               "old_record_id": r["record_id"], "url": r["url"], "reason": "shard file missing from the data"}
              for r in rows_of.get(mname, [])]
        per_shard.append(_shard_line(mname, None, "missing", None, e.get("sha256"), ch, None))
        changes += ch
    counts = Counter(c["change"] for c in changes)
    return {"mode": "manifest", "manifest": str(manifest), "data": [str(p) for p in paths],
            "identical": not changes and all(s["status"] != "missing" and s["status"] != "new shard"
                                             for s in per_shard),
            "counts": {k: counts.get(k, 0) for k in CHANGES}, "shards": per_shard, "changes": changes}


def _shard_line(shard, data_name, status, sha, old_sha, ch, err) -> dict:
    c = Counter(x["change"] for x in ch)
    out = {"shard": shard, "data_shard": data_name, "status": status, "sha256": sha, "manifest_sha256": old_sha,
           **{k: c.get(k, 0) for k in CHANGES}}
    if err:
        out["error"] = err
    return out


# -- two snapshots of the same URLs -----------------------------------------------------------------

def _text_hash(text: str | None) -> str:
    return hashlib.sha256((text or "").encode("utf-8", "surrogatepass")).hexdigest()


def _url_index(paths: list[str | Path], kind: str) -> tuple[dict[str, list[tuple]], int, int]:
    """url -> [(text hash, length, shard, row)], records without a URL, records read."""
    idx: dict[str, list[tuple]] = defaultdict(list)
    no_url = total = 0
    shards, _ = expand_paths([str(p) for p in paths])
    for path, name in shards:
        try:
            for item in ingest_shard(path, name, kind):
                if isinstance(item, Malformed):
                    continue
                d = item.select(["row", "url", "text"]).to_pydict()
                for r, url, text in zip(d["row"], d["url"], d["text"]):
                    total += 1
                    if not url:
                        no_url += 1
                        continue
                    idx[url].append((_text_hash(text), len(text or ""), name, r))
        except (ShardError, OSError):
            continue
    return idx, no_url, total


def _texts(paths: list[str | Path], kind: str, wanted: set[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    if not wanted:
        return out
    shards, _ = expand_paths([str(p) for p in paths])
    for path, name in shards:
        try:
            for item in ingest_shard(path, name, kind):
                if isinstance(item, Malformed):
                    continue
                d = item.select(["url", "text"]).to_pydict()
                for url, text in zip(d["url"], d["text"]):
                    if url in wanted and url not in out:
                        out[url] = text or ""
        except (ShardError, OSError):
            continue
    return out


def _first_difference(a: str, b: str, width: int = 80) -> dict[str, Any]:
    i = 0
    n = min(len(a), len(b))
    while i < n and a[i] == b[i]:
        i += 1
    lo = max(0, i - 20)
    return {"offset": i, "a_excerpt": a[lo:i + width], "b_excerpt": b[lo:i + width]}


def compare_snapshots(a: list[str | Path], b: list[str | Path], kind: str = "auto", examples: int = 20,
                      excerpts: int = 1000) -> dict[str, Any]:
    """URLs whose content differs between two snapshots (crawls) of web shards, each with the reason;
    URLs only in one of them summarised with a few examples."""
    ia, no_a, tot_a = _url_index(a, kind)
    ib, no_b, tot_b = _url_index(b, kind)
    changed = []
    for url in sorted(set(ia) & set(ib)):
        ha = sorted({h for h, *_ in ia[url]})
        hb = sorted({h for h, *_ in ib[url]})
        if ha == hb:
            continue
        ra, rb = ia[url][0], ib[url][0]
        why = [f"content hash differs: {', '.join(map(_short, ha))} -> {', '.join(map(_short, hb))}",
               f"length {ra[1]} -> {rb[1]} characters"]
        if len(ha) > 1 or len(hb) > 1:
            why.append("the URL serves several contents within one snapshot")
        changed.append({"url": url, "reason": "; ".join(why), "a_hash": ha, "b_hash": hb,
                        "a_shard": ra[2], "a_row": ra[3], "b_shard": rb[2], "b_row": rb[3]})
    want = {c["url"] for c in changed[:excerpts]}
    ta, tb = _texts(a, kind, want), _texts(b, kind, want)
    for c in changed[:excerpts]:
        if c["url"] in ta and c["url"] in tb:
            c["first_difference"] = _first_difference(ta[c["url"]], tb[c["url"]])
    only_a = sorted(set(ia) - set(ib))
    only_b = sorted(set(ib) - set(ia))
    return {"mode": "compare", "a": [str(p) for p in a], "b": [str(p) for p in b],
            "records": {"a": tot_a, "b": tot_b}, "records_without_url": {"a": no_a, "b": no_b},
            "urls": {"a": len(ia), "b": len(ib), "both": len(set(ia) & set(ib))},
            "identical": not changed, "changed": changed,
            "removed": {"count": len(only_a), "examples": only_a[:examples]},
            "added": {"count": len(only_b), "examples": only_b[:examples]}}
