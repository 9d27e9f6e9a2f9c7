"""A safe, typed on-disk form for detector states: JSON for structure, one `.npz` for arrays.

Detector states are plain data (dicts, lists, tuples, sets, Counters, strings, numbers, numpy
arrays, Arrow tables). The incremental service stores the accepted corpus's merged states between runs; pickle
would run code from a file on load, so states are written as JSON with type tags, and arrays go into
an `.npz` read back with `allow_pickle=False`. Anything else is refused when writing (a detector whose
state is not plain data cannot be stored, and the service rescans instead).

    dump(obj, folder / "state")      # writes state.json and state.npz atomically
    obj = load(folder / "state")
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa


class NotPlainData(TypeError):
    pass


def _enc(x: Any, arrays: dict[str, np.ndarray]) -> Any:
    if x is None or isinstance(x, bool | str):
        return x
    if isinstance(x, int):
        return x if abs(x) < 2**53 else {"t": "int", "v": str(x)}
    if isinstance(x, float):
        if x != x or x in (float("inf"), float("-inf")):
            return {"t": "float", "v": repr(x)}
        return x
    if isinstance(x, np.ndarray):
        if x.dtype.hasobject:
            return {"t": "objarr", "v": [_enc(v, arrays) for v in x.tolist()], "shape": list(x.shape)}
        key = f"a{len(arrays)}"
        arrays[key] = x
        return {"t": "nd", "k": key}
    if isinstance(x, pa.Table | pa.RecordBatch):
        sink = pa.BufferOutputStream()
        table = x if isinstance(x, pa.Table) else pa.Table.from_batches([x])
        with pa.ipc.new_stream(sink, table.schema) as w:
            w.write_table(table)
        key = f"a{len(arrays)}"
        arrays[key] = np.frombuffer(sink.getvalue(), np.uint8)
        return {"t": "arrow", "k": key, "batch": isinstance(x, pa.RecordBatch)}
    if type(x).__module__.startswith("scipy.sparse"):
        fmt = x.format
        m = x.tocsr()
        return {"t": "sparse", "format": fmt, "shape": list(m.shape), "data": _enc(m.data, arrays),
                "indices": _enc(m.indices, arrays), "indptr": _enc(m.indptr, arrays)}
    if isinstance(x, np.generic):
        return {"t": "np", "dtype": x.dtype.str, "v": _enc(x.item(), arrays)}
    if isinstance(x, bytes):
        return {"t": "bytes", "v": x.hex()}
    if isinstance(x, Counter):
        return {"t": "counter", "v": [[_enc(k, arrays), _enc(v, arrays)] for k, v in x.items()]}
    if isinstance(x, dict):
        if all(type(k) is str for k in x):
            return {"t": "sdict", "v": {k: _enc(v, arrays) for k, v in x.items()}}
        return {"t": "dict", "v": [[_enc(k, arrays), _enc(v, arrays)] for k, v in x.items()]}
    if isinstance(x, list):
        return [_enc(v, arrays) for v in x]
    if isinstance(x, tuple):
        return {"t": "tuple", "v": [_enc(v, arrays) for v in x]}
    if isinstance(x, set | frozenset):
        return {"t": "frozenset" if isinstance(x, frozenset) else "set",
                "v": sorted((_enc(v, arrays) for v in x), key=lambda v: json.dumps(v, sort_keys=True))}
    raise NotPlainData(f"cannot store a {type(x).__module__}.{type(x).__name__} (not plain data)")


def _dec(x: Any, arrays) -> Any:
    if isinstance(x, list):
        return [_dec(v, arrays) for v in x]
    if not isinstance(x, dict):
        return x
    t = x.get("t")
    v = x.get("v")
    if t == "nd":
        return arrays[x["k"]]
    if t == "arrow":
        table = pa.ipc.open_stream(pa.py_buffer(arrays[x["k"]].tobytes())).read_all()
        return table.combine_chunks().to_batches()[0] if x.get("batch") and table.num_rows else table
    if t == "sparse":
        import scipy.sparse as sp

        m = sp.csr_matrix((_dec(x["data"], arrays), _dec(x["indices"], arrays), _dec(x["indptr"], arrays)),
                          shape=tuple(x["shape"]))
        return m.asformat(x["format"])
    if t == "sdict":
        return {k: _dec(e, arrays) for k, e in v.items()}
    if t == "dict":
        return {_hashable(_dec(k, arrays)): _dec(e, arrays) for k, e in v}
    if t == "counter":
        return Counter({_hashable(_dec(k, arrays)): _dec(e, arrays) for k, e in v})
    if t == "tuple":
        return tuple(_dec(e, arrays) for e in v)
    if t == "set":
        return {_hashable(_dec(e, arrays)) for e in v}
    if t == "frozenset":
        return frozenset(_hashable(_dec(e, arrays)) for e in v)
    if t == "int":
        return int(v)
    if t == "float":
        return float(v)
    if t == "bytes":
        return bytes.fromhex(v)
    if t == "np":
        return np.dtype(x["dtype"]).type(_dec(v, arrays))
    if t == "objarr":
        out = np.empty(len(v), dtype=object)
        for i, e in enumerate(v):
            out[i] = _dec(e, arrays)
        return out.reshape(x["shape"])
    raise ValueError(f"unknown tag {t!r} in a stored state")


def _hashable(x: Any) -> Any:
    return tuple(_hashable(v) for v in x) if isinstance(x, list) else x


def dump(obj: Any, stem: Path) -> None:
    """Write `stem`.json and `stem`.npz (each via a temporary file and a rename)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    doc = _enc(obj, arrays)
    npz, js = stem.with_suffix(".npz"), stem.with_suffix(".json")
    tmp_npz = stem.with_name(f".{stem.name}.{os.getpid()}.npz")
    with open(tmp_npz, "wb") as f:
        np.savez(f, **arrays)
    tmp_js = stem.with_name(f".{stem.name}.{os.getpid()}.json")
    tmp_js.write_text(json.dumps({"format": "shardguard-state-1", "arrays": len(arrays), "state": doc}),
                      encoding="utf-8")
    os.replace(tmp_npz, npz)
    os.replace(tmp_js, js)  # the .json names the arrays: written last, so it never points at missing ones


def load(stem: Path) -> Any:
    stem = Path(stem)
    doc = json.loads(stem.with_suffix(".json").read_text(encoding="utf-8"))
    if doc.get("format") != "shardguard-state-1":
        raise ValueError(f"{stem.with_suffix('.json')} is not a shardguard state file")
    with np.load(stem.with_suffix(".npz"), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return _dec(doc["state"], arrays)
