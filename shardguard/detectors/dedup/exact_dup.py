"""Exact duplicates: records whose normalized content hash (`record_id`) is equal.

The first occurrence (in shard order, then row) is kept; every later copy is a `duplicate`
finding that names the kept record and the number of copies.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shardguard.detectors.base import Detector


class ExactDuplicates(Detector):
    name = "exact_dup"
    category = "duplicate"
    defaults = {}

    def observe(self, batch: pa.RecordBatch):
        t = pa.table({"record_id": batch.column("record_id"), "shard": batch.column("shard"),
                      "row": batch.column("row"), "seq": batch.column("seq")})
        return t

    def merge(self, a, b):
        if a is None:
            return b
        if b is None:
            return a
        return pa.concat_tables([a, b])

    def finalize(self, state, context):
        if state is None or state.num_rows == 0:
            return {}
        t = state.sort_by("seq").combine_chunks()  # input order, whatever order the partials merged in
        ids = t.column("record_id").to_numpy(zero_copy_only=False)
        uniq, first_idx, counts = np.unique(ids, return_index=True, return_counts=True)
        dup = counts > 1
        shards = t.column("shard").to_pylist()
        rows = t.column("row").to_numpy()
        # np.unique's first index is the first occurrence in input order: that copy is kept
        return {str(u): (shards[i], int(rows[i]), int(c)) for u, i, c in zip(uniq[dup], first_idx[dup], counts[dup])}

    def flag(self, batch, model):
        if not model:
            return []
        found = []
        ids = batch.column("record_id").to_pylist()
        shards = batch.column("shard").to_pylist()
        rows = batch.column("row").to_pylist()
        hit = pc.is_in(batch.column("record_id"), value_set=pa.array(list(model), pa.string()))
        for i in np.flatnonzero(hit.to_numpy(zero_copy_only=False)):
            ks, kr, n = model[ids[i]]
            if (shards[i], rows[i]) == (ks, kr):
                continue
            found.append({"i": int(i), "score": 1.0,
                          "reason": f"exact duplicate of {ks} row {kr} ({n} copies; the first is kept)",
                          "details": {"kept_shard": ks, "kept_row": kr, "copies": n}})
        return found

    def discoveries(self, model):
        return {"duplicate_groups": len(model or {}),
                "extra_copies": sum(n - 1 for _, _, n in (model or {}).values())}
