"""Shared machinery of the memorization-risk detectors (`pii`, `secrets`) and the redactor.

Models memorize what they see often, so both detectors do three things the same way:

1. find typed values with spans (`find_pii`, `find_secrets`: validated formats, no guesswork);
2. count, per value, how many records (and shards) contain it: `observe` keeps a salted hash of
   each value -> record count (mergeable), `flag` reports "seen in N records" and raises the score
   with N;
3. never show a value in full: findings, discoveries and the report carry a masked form
   (`AKIA…(20 chars)`, `j***@example.com`) and the first 12 hex of a sha256 for correlation.

A fast prefilter (one Rust regex per pattern family, run by polars over the whole batch column)
picks the few texts that can contain anything; only those go through the Python validators.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import polars as pl
import pyarrow as pa

from shardguard.core.schema import TEXT_FIELDS
from shardguard.detectors.base import Detector
from shardguard.detectors.memorization.values import Match, mask, value_hash


def prefilter(texts: pa.Array | list, patterns: list[str]) -> list[int]:
    """Indices of texts that match any of `patterns` (run natively by polars over the column)."""
    s = pl.Series("t", texts, dtype=pl.String).fill_null("")
    mask = None
    for p in patterns:
        hit = s.str.contains(p)
        mask = hit if mask is None else (mask | hit)
    if mask is None:
        return []
    return mask.arg_true().to_list()


# ---------------------------------------------------------------------------------------------
# the shared detector
# ---------------------------------------------------------------------------------------------



class MemoDetector(Detector):
    """Finds typed values per record, counts each value across records and shards, masks everything.

    Subclasses set `name`, `category`, `defaults` (must include `hash_salt`, `max_shards_listed`,
    `top_repeated`) and implement `base_score(match)`, `find(text)` and `prefilter_patterns()`."""

    find: Callable[[MemoDetector, str], list[Match]]

    def prefilter_patterns(self) -> list[str]:
        raise NotImplementedError

    def base_score(self, m: Match) -> float:
        raise NotImplementedError

    def label(self, m: Match) -> str:
        return m.type.replace("_", " ")

    # -- scanning -------------------------------------------------------------------------------
    def scan_batch(self, batch: pa.RecordBatch) -> dict[int, list[tuple[str, Match]]]:
        """{row index in batch: [(field, match), ...]} for records with at least one match."""
        kinds = batch.column("kind")
        kind_list = kinds.to_pylist() if len(set(kinds.unique().to_pylist())) > 1 else None
        fields = sorted({f for k in (kind_list or [kinds[0].as_py()]) for f in TEXT_FIELDS.get(k, ("text",))})
        pats = self.prefilter_patterns()
        found: dict[int, list[tuple[str, Match]]] = {}
        for f in fields:
            col = batch.column(f)
            idx = prefilter(col, pats)
            if not idx:
                continue
            vals = col.take(pa.array(idx, pa.int64())).to_pylist()
            for i, t in zip(idx, vals):
                if not t:
                    continue
                if kind_list is not None and f not in TEXT_FIELDS.get(kind_list[i], ("text",)):
                    continue
                ms = self.find(t)
                if ms:
                    found.setdefault(i, []).extend((f, m) for m in ms)
        return found

    # -- pass 1: value counts -------------------------------------------------------------------
    def observe(self, batch: pa.RecordBatch):
        salt = self.config["hash_salt"]
        cap = self.config["max_shards_listed"]
        shards = batch.column("shard")
        state: dict[str, list] = {}
        for i, ms in self.scan_batch(batch).items():
            shard = shards[i].as_py()
            seen = set()
            for _, m in ms:
                h = value_hash(m.type, m.value, salt)
                if h in seen:
                    continue
                seen.add(h)
                e = state.get(h)
                if e is None:
                    state[h] = [1, {shard}, m.type, mask(m.type, m.value, m.subtype)]
                else:
                    e[0] += 1
                    if len(e[1]) < cap:
                        e[1].add(shard)
        return state

    def merge(self, a, b):
        if not a:
            return b or {}
        if not b:
            return a
        if len(a) < len(b):
            a, b = b, a
        out = dict(a)
        cap = self.config["max_shards_listed"]
        for h, (n, sh, t, mk) in b.items():
            e = out.get(h)
            if e is None:
                out[h] = [n, set(sh), t, mk]
            else:
                out[h] = [e[0] + n, set(list(e[1] | sh)[:cap]) if len(e[1] | sh) > cap else e[1] | sh, e[2], e[3]]
        return out

    def finalize(self, state, context):
        return {h: (n, len(sh), t, mk) for h, (n, sh, t, mk) in (state or {}).items()}

    # -- pass 2 ---------------------------------------------------------------------------------
    def score(self, m: Match, n_records: int) -> float:
        """Base score by type, rising with repetition: +0.1 per doubling of the records holding it."""
        return min(1.0, self.base_score(m) + 0.1 * math.log2(max(1, n_records)))

    def flag(self, batch, model):
        model = model or {}
        salt = self.config["hash_salt"]
        found = []
        for i, ms in sorted(self.scan_batch(batch).items()):
            items = []
            for f, m in ms:
                h = value_hash(m.type, m.value, salt)
                n, n_sh, _, _ = model.get(h, (1, 1, m.type, ""))
                items.append({"type": m.type, "subtype": m.subtype, "field": f, "start": m.start, "end": m.end,
                              "masked": mask(m.type, m.value, m.subtype), "hash": h, "records": n, "shards": n_sh,
                              "score": round(self.score(m, n), 3)})
            items.sort(key=lambda x: (-x["score"], x["field"], x["start"]))
            top = items[0]
            parts = []
            for x in items[:3]:
                where = f"{x['records']} records" if x["records"] > 1 else "1 record"
                if x["shards"] > 1:
                    where += f" across {x['shards']} shards"
                parts.append(f"{self.label(Match(x['type'], 0, 0, '', x['subtype']))} {x['masked']} "
                             f"(#{x['hash']}) seen in {where}")
            more = f"; and {len(items) - 3} more" if len(items) > 3 else ""
            types = sorted({x["type"] for x in items})
            found.append({"i": i, "score": top["score"],
                          "reason": f"{len(items)} {self.noun(len(items))}: " + "; ".join(parts) + more,
                          "details": {"types": types, "max_repeat": max(x["records"] for x in items),
                                      "matches": items[: self.config["max_matches_listed"]],
                                      "n_matches": len(items)}})
        return found

    def noun(self, n: int) -> str:
        return "value" if n == 1 else "values"

    def discoveries(self, model):
        model = model or {}
        by_type: dict[str, list[int]] = {}
        for n, _, t, _ in model.values():
            c = by_type.setdefault(t, [0, 0])
            c[0] += 1
            c[1] += n
        rep = sorted(((n, nsh, t, mk, h) for h, (n, nsh, t, mk) in model.items() if n > 1), key=lambda x: (-x[0], x[4]))
        return {
            "distinct_values": len(model),
            "by_type": {t: {"distinct_values": v[0], "occurrences_in_records": v[1]} for t, v in sorted(by_type.items())},
            "repeated_values": len(rep),
            "most_repeated": [{"type": t, "masked": mk, "hash": h, "records": n, "shards": nsh}
                              for n, nsh, t, mk, h in rep[: self.config["top_repeated"]]],
        }

    def shard_notes(self, details: list[dict], policy) -> dict:
        """Repetition drives memorization: the shard's most repeated value; a value in
        `policy.repeat_review_min` records or more makes the shard a memorization risk (review)."""
        m = max(int(d.get("max_repeat", 1)) for d in details) if details else 0
        if not m:
            return {}
        risk = m >= policy.repeat_review_min
        return {"max_value_repeat": m, "memorization_risk": risk, "review": risk}
