"""Malformed rows of a scan, held compactly: a shard of a million bad lines must not cost a dict a row.

Rows, shard and reason ids live in `array`s (reasons repeat: each distinct text is stored once), the
raw previews in a spill file next to the records. Iterating yields `{"shard", "row", "reason", "raw"}`
dicts one at a time, in the order the rows were added (shard by shard)."""

from __future__ import annotations

import json
from array import array
from collections.abc import Iterable, Iterator
from pathlib import Path


class MalformedLog:
    def __init__(self, spill: str | Path | None = None):
        self.spill = str(spill) if spill is not None else None
        self.shards: list[str] = []
        self.reasons: list[str] = []
        self._shard_id: dict[str, int] = {}
        self._reason_id: dict[str, int] = {}
        self.shard_ix = array("l")
        self.rows = array("q")
        self.reason_ix = array("l")
        self.raw_at = array("q")  # offset of the preview in the spill file; -1: none
        self._raws: list[str | None] = []  # previews, when there is no spill file
        self._f = open(self.spill, "wb") if self.spill else None  # noqa: SIM115 - closed by close()
        self._pos = 0

    def append(self, shard: str, row: int, reason: str, raw: str | None = None) -> None:
        si = self._shard_id.get(shard)
        if si is None:
            si = self._shard_id[shard] = len(self.shards)
            self.shards.append(shard)
        ri = self._reason_id.get(reason)
        if ri is None:
            ri = self._reason_id[reason] = len(self.reasons)
            self.reasons.append(reason)
        self.shard_ix.append(si)
        self.rows.append(row)
        self.reason_ix.append(ri)
        if self._f is None:
            self._raws.append(raw)
            self.raw_at.append(-1)
        elif raw is None:
            self.raw_at.append(-1)
        else:
            line = (json.dumps(raw) + "\n").encode("ascii")
            self._f.write(line)
            self.raw_at.append(self._pos)
            self._pos += len(line)

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def __getstate__(self):  # picklable once written (the spill file stays where it is)
        self.close()
        return {k: v for k, v in self.__dict__.items() if k != "_f"} | {"_f": None}

    def __len__(self) -> int:
        return len(self.rows)

    def __bool__(self) -> bool:
        return len(self.rows) > 0

    def __iter__(self) -> Iterator[dict]:
        self.close()
        f = open(self.spill, "rb") if self.spill else None  # noqa: SIM115
        try:
            for i in range(len(self.rows)):
                if f is None:
                    raw = self._raws[i]
                elif self.raw_at[i] < 0:
                    raw = None
                else:  # previews were written in order: the next line is this row's
                    raw = json.loads(f.readline())
                yield {"shard": self.shards[self.shard_ix[i]], "row": self.rows[i],
                       "reason": self.reasons[self.reason_ix[i]], "raw": raw}
        finally:
            if f is not None:
                f.close()

    def without(self, shards: Iterable[str], spill: str | Path | None = None) -> MalformedLog:
        """A copy without the rows of `shards` (the service's context shards)."""
        drop = set(shards)
        out = MalformedLog(spill)
        for m in self:
            if m["shard"] not in drop:
                out.append(m["shard"], m["row"], m["reason"], m["raw"])
        out.close()
        return out
