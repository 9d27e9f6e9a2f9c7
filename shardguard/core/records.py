"""Reading records back by `seq` during `finalize`, so detectors keep compact arrays in their state
(seq numbers, vectors) instead of texts, and fetch the texts of their few candidates at the end.

The engine puts a reader in the finalize context under `RECORDS_KEY` (the local engine: the scan's
memory-mapped Arrow IPC records file, whose rows are in `seq` order). Both readers answer:

    take(seqs, columns) -> {column: [values in the order of seqs]}
    batches(columns)    -> iterator of (seq int64 array, {column: pyarrow Array}) over all records

A detector that runs without one (`Detector.records_in_context` is False, e.g. under an engine that
does not pass a reader) keeps the columns it needs in its state and reads them with `ColumnRecords`.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa

RECORDS_KEY = "_records"


def _as_seqs(seqs) -> np.ndarray:
    return np.asarray(seqs, np.int64).reshape(-1)


class IpcRecords:
    """Records of an Arrow IPC file by seq (read a batch at a time; pickles as its path)."""

    def __init__(self, path):
        self.path = str(path)
        self._open()

    def _open(self) -> None:
        self._src = pa.OSFile(self.path)  # read per batch, not mapped (mapped pages count as resident)
        self._reader = pa.ipc.open_file(self._src)
        nb = self._reader.num_record_batches
        seqs = [self._reader.get_batch(i).column("seq").to_numpy() for i in range(nb)]
        self._sizes = np.array([len(s) for s in seqs], np.int64)
        self._starts = np.zeros(nb + 1, np.int64)
        np.cumsum(self._sizes, out=self._starts[1:])
        allseq = np.concatenate(seqs) if seqs else np.zeros(0, np.int64)
        self._order = None if np.all(allseq[1:] > allseq[:-1]) else np.argsort(allseq, kind="stable")
        self._seq = allseq if self._order is None else allseq[self._order]

    def __getstate__(self):
        return {"path": self.path}

    def __setstate__(self, st):
        self.path = st["path"]
        self._open()

    def take(self, seqs, columns: list[str]) -> dict[str, list]:
        seqs = _as_seqs(seqs)
        out: dict[str, list] = {c: [None] * len(seqs) for c in columns}
        if not len(seqs):
            return out
        pos = np.searchsorted(self._seq, seqs)
        if (pos >= len(self._seq)).any() or (self._seq[np.minimum(pos, len(self._seq) - 1)] != seqs).any():
            raise KeyError("seq not in the records file")
        if self._order is not None:
            pos = self._order[pos]
        b = np.searchsorted(self._starts, pos, side="right") - 1
        for bi in np.unique(b).tolist():
            where = np.flatnonzero(b == bi)
            batch = self._reader.get_batch(bi)
            idx = pa.array(pos[where] - self._starts[bi], pa.int64())
            for c in columns:
                vals = batch.column(c).take(idx).to_pylist()
                col = out[c]
                for w, v in zip(where.tolist(), vals):
                    col[w] = v
        return out

    def batches(self, columns: list[str]) -> Iterator[tuple[np.ndarray, dict[str, pa.Array]]]:
        for i in range(self._reader.num_record_batches):
            batch = self._reader.get_batch(i)
            yield batch.column("seq").to_numpy(), {c: batch.column(c) for c in columns}


class ManyRecords:
    """Several records files read as one (the service's stored accepted corpus and the new shards);
    their seq ranges do not overlap."""

    def __init__(self, readers: list[IpcRecords]):
        self.readers = list(readers)

    def take(self, seqs, columns: list[str]) -> dict[str, list]:
        seqs = _as_seqs(seqs)
        out: dict[str, list] = {c: [None] * len(seqs) for c in columns}
        found = np.zeros(len(seqs), bool)
        for r in self.readers:
            if not len(r._seq) or found.all():
                continue
            pos = np.minimum(np.searchsorted(r._seq, seqs), len(r._seq) - 1)
            idx = np.flatnonzero((r._seq[pos] == seqs) & ~found)
            if len(idx):
                got = r.take(seqs[idx], columns)
                for c in columns:
                    col = out[c]
                    for w, v in zip(idx.tolist(), got[c]):
                        col[w] = v
                found[idx] = True
        if not found.all():
            raise KeyError("seq not in the records files")
        return out

    def batches(self, columns: list[str]) -> Iterator[tuple[np.ndarray, dict[str, pa.Array]]]:
        for r in self.readers:
            yield from r.batches(columns)


class ColumnRecords:
    """The same interface over columns a detector kept in its own state: {"seq": array, col: list}."""

    def __init__(self, cols: dict):
        self.cols = cols
        seq = np.asarray(cols["seq"], np.int64)
        self._order = np.argsort(seq, kind="stable")
        self._seq = seq[self._order]

    def take(self, seqs, columns: list[str]) -> dict[str, list]:
        seqs = _as_seqs(seqs)
        pos = self._order[np.searchsorted(self._seq, seqs)] if len(seqs) else np.zeros(0, np.int64)
        return {c: [self.cols[c][p] for p in pos.tolist()] for c in columns}

    def batches(self, columns: list[str]) -> Iterator[tuple[np.ndarray, dict[str, pa.Array]]]:
        yield self._seq, {c: pa.array([self.cols[c][p] for p in self._order.tolist()]) for c in columns}
