"""Exact duplicates: records whose normalized content hash (`record_id`) is equal.

The first occurrence (input order) is kept; every later copy is a `duplicate` finding that names the
kept record and the number of copies.

State per record is compact: `seq`, the record id's first 64 bits (`core.minhash.id_prefix`; record
ids are blake2b digests, so a 64-bit prefix collides with probability ~n^2/2^65) and the row as numpy
chunks, the shard as an Arrow table; partial states merge by appending chunks (plain data for
`core.codec`). The model holds the duplicate groups only.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from shardguard.core.minhash import id_prefix
from shardguard.detectors.base import Detector, concat_columns


class ExactDuplicates(Detector):
    name = "exact_dup"
    category = "duplicate"
    defaults = {}

    def observe(self, batch: pa.RecordBatch):
        return {"seq": [batch.column("seq").to_numpy().astype(np.int64, copy=False)],
                "id": [id_prefix(batch.column("record_id"))],
                "row": [batch.column("row").to_numpy().astype(np.int64, copy=False)],
                "shard": [pa.table({"shard": batch.column("shard")})]}

    def merge(self, a, b):
        return concat_columns(a, b)  # lists of chunks: appended, never copied

    def finalize(self, state, context):
        """{"ids": sorted uint64 keys of duplicated contents, "groups": {key: (kept shard, kept row,
        copies, kept seq)}}."""
        model = {"ids": np.zeros(0, np.uint64), "groups": {}}
        if not state or not state["seq"]:
            return model
        seq, ids = np.concatenate(state["seq"]), np.concatenate(state["id"])
        order = np.argsort(seq, kind="stable")  # input order, whatever order the partials merged in
        uniq, first, counts = np.unique(ids[order], return_index=True, return_counts=True)
        dup = counts > 1
        if not dup.any():
            return model
        kept = order[first[dup]]  # np.unique's first index is the first occurrence in input order
        shards = pa.concat_tables(state["shard"]).column("shard").take(pa.array(kept)).to_pylist()
        rows = np.concatenate(state["row"])[kept].tolist()
        model["ids"] = uniq[dup]
        model["groups"] = {int(u): (s, int(r), int(c), int(q)) for u, s, r, c, q in
                           zip(uniq[dup].tolist(), shards, rows, counts[dup].tolist(), seq[kept].tolist())}
        return model

    def flag(self, batch, model):
        if not model or not model["groups"]:
            return []
        ids = id_prefix(batch.column("record_id"))
        hit = np.flatnonzero(np.isin(ids, model["ids"]))
        seqs = batch.column("seq").to_numpy()
        found = []
        for i in hit.tolist():
            ks, kr, n, kseq = model["groups"][int(ids[i])]
            if int(seqs[i]) == kseq:
                continue
            found.append({"i": int(i), "score": 1.0,
                          "reason": f"exact duplicate of {ks} row {kr} ({n} copies; the first is kept)",
                          "details": {"kept_shard": ks, "kept_row": kr, "copies": n}})
        return found

    def discoveries(self, model):
        groups = (model or {}).get("groups", {})
        return {"duplicate_groups": len(groups), "extra_copies": sum(g[2] - 1 for g in groups.values())}
