"""Generated malformed input, many cases per scan: whatever a shard holds, the scan finishes, every
row is accounted for, nothing readable is lost, and the output files match the summary.

Each case is one shard whose content we know line by line: `good` rows (must end up in clean/ or
quarantine/), `bad` rows (must be malformed findings naming their row) and `either` rows (repaired
and kept, or malformed; never lost, never a crash). Compressed cases are damaged (cut short, or
followed by garbage) and every line complete before the damage must be kept.
"""

from __future__ import annotations

import bz2
import collections
import gzip
import json
import random
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from shardguard.ingest.readers import read_shard
from shardguard.pipeline.scan import scan

MAX_LINE = 8192
CONFIG = {"only": ["exact_dup"], "batch_size": 64, "limits": {"max_line_bytes": MAX_LINE}}
WORDS = "alpha beta gamma delta river stone cloud paper light music garden window".split()


def _text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) + f" {rng.random():.6f}"


def _head(rid: str, text: str) -> str:
    """The start of a JSON object, its string values written as they are (escapes and all)."""
    return '{"id": "' + rid + '", "text": "' + text + '"'


def line_kinds(rng: random.Random, cid: str, k: int) -> tuple[bytes, str, str]:
    """(line without newline, expected outcome good|bad|either, record id)."""
    rid = f"{cid}-{k}"
    good = {"id": rid, "text": _text(rng)}
    kind = rng.choices(
        ["good", "broken", "wrong_type", "array", "scalar", "null", "surrogate_value", "surrogate_key",
         "deep", "huge_int", "bad_utf8", "latin1", "nul", "long", "nested_text", "odd_keys", "unicode"],
        weights=[30, 4, 3, 2, 2, 2, 3, 2, 2, 2, 3, 2, 2, 2, 2, 2, 3])[0]
    dumps = json.dumps
    if kind == "good":
        return dumps(good).encode(), "good", rid
    if kind == "unicode":
        return dumps({"id": rid, "text": "naïve café 東京 😀 " + _text(rng)}, ensure_ascii=rng.random() < 0.5
                     ).encode(), "good", rid
    if kind == "odd_keys":
        return dumps({"id": rid, "text": _text(rng), "": 1, "a.b": [None], "\u202e": {"x": []}}).encode(), "good", rid
    if kind == "broken":
        return dumps(good).encode()[: rng.randint(1, 20)], "bad", rid
    if kind == "wrong_type":
        return dumps({"id": rid, "text": rng.choice([123, 4.5, True, ["a"], {"b": 1}])}).encode(), "either", rid
    if kind == "array":
        return b"[1, 2, 3]", "bad", rid
    if kind == "scalar":
        return rng.choice([b'"just a string"', b"42", b"true"]), "bad", rid
    if kind == "null":
        return b"null", "bad", rid
    if kind == "surrogate_value":
        return (_head(rid, "abc\\ud800def " + _text(rng)) + "}").encode(), "either", rid
    if kind == "surrogate_key":
        return (_head(rid, _text(rng)) + ', "k\\udc80": 1}').encode(), "either", rid
    if kind == "deep":
        d = rng.choice([200, 5000, 10000])
        return (_head(rid, _text(rng)) + ', "x": ' + "[" * d + "]" * d + "}").encode(), "either", rid
    if kind == "huge_int":
        return (_head(rid, _text(rng)) + ', "n": ' + "9" * rng.choice([30, 5000]) + "}").encode(), "either", rid
    if kind == "bad_utf8":
        return b'{"id": "' + rid.encode() + b'", "text": "bad \xff\xfe bytes"}', "either", rid
    if kind == "latin1":
        return (_head(rid, "caf\xe9 " + _text(rng)) + "}").encode("latin-1"), "either", rid
    if kind == "nul":
        return dumps({"id": rid, "text": "nul\x00inside " + _text(rng)}).encode(), "either", rid
    if kind == "long":
        return dumps({"id": rid, "text": "x" * (MAX_LINE + rng.randint(1, 3000))}).encode(), "bad", rid
    return dumps({"id": rid, "text": {"nested": _text(rng)}}).encode(), "either", rid


def make_lines(rng: random.Random, cid: str, n: int):
    lines = [line_kinds(rng, cid, k) for k in range(n)]
    out = []
    for ln, exp, rid in lines:
        out.append((ln, exp, rid))
        if rng.random() < 0.05:
            out.append((b"   ", "blank", ""))
    return out


def _join(lines, rng: random.Random) -> bytes:
    eol = b"\r\n" if rng.random() < 0.2 else b"\n"
    body = eol.join(ln for ln, _, _ in lines) + (eol if rng.random() < 0.8 else b"")
    if rng.random() < 0.1:
        body = b"\xef\xbb\xbf" + body
    return body


def complete_prefix(data: bytes, comp: str) -> bytes:
    """What any careful reader can decompress from `data` (damaged): the longest decodable prefix."""
    if comp == "gz":
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out = b""
        for i in range(0, len(data), 1024):
            try:
                out += d.decompress(data[i:i + 1024])
            except zlib.error:
                break
            if d.eof:
                break
        return out
    if comp == "zst":
        d = zstandard.ZstdDecompressor().decompressobj()
        out = b""
        for i in range(0, len(data), 1024):
            try:
                out += d.decompress(data[i:i + 1024])
            except zstandard.ZstdError:
                break
        return out
    d = bz2.BZ2Decompressor()
    out = b""
    for i in range(0, len(data), 1024):
        try:
            out += d.decompress(data[i:i + 1024])
        except (OSError, EOFError):
            break
        if d.eof:
            break
    return out


def compress(body: bytes, comp: str) -> bytes:
    if comp == "gz":
        return gzip.compress(body)
    if comp == "zst":
        return zstandard.ZstdCompressor().compress(body)
    return bz2.compress(body)


def build_jsonl_cases(root: Path, n_cases: int, seed: int) -> dict[str, dict]:
    rng = random.Random(seed)
    cases = {}
    for c in range(n_cases):
        cid = f"j{seed}-{c}"
        lines = make_lines(rng, cid, rng.randint(0, 12))
        body = _join(lines, rng)
        name = f"{cid}.web.jsonl"
        (root / name).write_bytes(body)
        cases[name] = {"lines": lines, "complete": None}
    return cases


def build_compressed_cases(root: Path, n_cases: int, seed: int) -> dict[str, dict]:
    rng = random.Random(seed)
    cases = {}
    for c in range(n_cases):
        cid = f"z{seed}-{c}"
        lines = [x for x in make_lines(rng, cid, rng.randint(1, 40)) if x[1] in ("good", "blank")]
        body = b"\n".join(ln for ln, _, _ in lines) + b"\n"
        comp = rng.choice(["gz", "zst", "bz2"])
        data = compress(body, comp)
        damage = rng.choice(["cut", "cut_line", "garbage", "none"])
        if damage == "cut":
            data = data[: rng.randint(1, max(1, len(data) - 1))]
        elif damage == "cut_line" and comp == "zst":
            # a whole frame of complete lines, then the start of another frame with no end
            k = rng.randint(1, len(lines))
            head = b"\n".join(ln for ln, _, _ in lines[:k]) + b"\n"
            data = compress(head, comp) + compress(b"\n".join(ln for ln, _, _ in lines[k:]) + b"\n", comp)[:9]
        elif damage == "cut_line":
            data = data[: max(1, len(data) - rng.randint(1, 8))]
        elif damage == "garbage":
            data = data + bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
        name = f"{cid}.web.jsonl.{comp}"
        (root / name).write_bytes(data)
        text = complete_prefix(data, comp) if damage != "none" else body
        complete = {json.loads(x)["id"] for x in text.split(b"\n")[:-1] if x.strip()} if text else set()
        cases[name] = {"lines": lines, "complete": complete, "damaged": damage != "none"}
    return cases


def build_table_cases(root: Path, n_cases: int, seed: int) -> dict[str, dict]:
    """CSV with bad bytes in some rows, JSON arrays, Parquet with columns drifting across row groups."""
    rng = random.Random(seed)
    cases = {}
    for c in range(n_cases):
        cid = f"t{seed}-{c}"
        fmt = rng.choice(["csv", "json", "parquet"])
        n = rng.randint(1, 30)
        ids = [f"{cid}-{k}" for k in range(n)]
        if fmt == "csv":
            rows, lines = [], []
            for rid in ids:
                bad = rng.random() < 0.2
                txt = (_text(rng).encode() + (b" caf\xe9" if bad else b""))
                rows.append(b'"' + rid.encode() + b'","' + txt + b'"')
                lines.append((b"", "either" if bad else "good", rid))
            (root / f"{cid}.web.csv").write_bytes(b"id,text\n" + b"\n".join(rows) + b"\n")
            cases[f"{cid}.web.csv"] = {"lines": lines, "complete": None}
        elif fmt == "json":
            recs = [{"id": rid, "text": _text(rng)} for rid in ids]
            (root / f"{cid}.web.json").write_text(json.dumps(recs))
            cases[f"{cid}.web.json"] = {"lines": [(b"", "good", r) for r in ids], "complete": None}
        else:
            # an extra column null for the first rows (a whole batch or more) and strings after
            n = rng.choice([n, 2100, 2600])
            ids = [f"{cid}-{k}" for k in range(n)]
            first = rng.randint(1, n)
            extra = [None] * first + [f"v{k}" for k in range(n - first)]
            t = pa.table({"id": ids, "text": [_text(rng) for _ in ids], "extra": pa.array(extra, pa.string())})
            path = root / f"{cid}.web.parquet"
            pq.write_table(t, str(path), row_group_size=rng.choice([7, 1000, 2048]))
            cases[path.name] = {"lines": [(b"", "good", r) for r in ids], "complete": None}
    return cases


def _ids(path: Path) -> list[str]:
    out = []
    for raw in read_shard(path):
        if raw.obj is not None:
            out.append(str(raw.obj.get("id")))
    return out


def check(out: Path, summary: dict, flags, cases: dict[str, dict]) -> collections.Counter:
    stats = collections.Counter()
    by_shard = {e["shard"]: e for e in summary["shards"]}
    mal = collections.defaultdict(list)
    for f in flags.to_pylist():
        if f["category"] == "malformed":
            mal[f["shard"]].append(f)
    for name, case in cases.items():
        stats["cases"] += 1
        e = by_shard.get(name)
        assert e is not None, f"{name}: not in the summary"
        assert e["rows"] == e["kept"] + e["held_back"] + e["rows_malformed"], (name, e)
        kept_ids = []
        for key in ("clean", "quarantine"):
            rel = (e.get("outputs") or {}).get(key)
            if rel and (out / rel).exists():  # quarantine/<name> is written only when rows are held back
                kept_ids += _ids(out / rel)
        assert len(kept_ids) == e["kept"] + e["held_back"], f"{name}: files hold {len(kept_ids)} rows, summary {e}"
        assert len(mal[name]) == e["rows_malformed"], (name, mal[name], e)
        assert all(isinstance(f["row"], int) and f["reason"] for f in mal[name])
        lines = [x for x in case["lines"] if x[1] != "blank"]
        good = {rid for _, exp, rid in lines if exp == "good"}
        if case["complete"] is not None:
            good &= case["complete"]
            if case.get("damaged"):
                stats["damaged"] += 1
        assert good <= set(kept_ids), f"{name}: lost {sorted(good - set(kept_ids))[:5]}"
        assert len(set(kept_ids)) == len(kept_ids), f"{name}: a row written twice"
        if case["complete"] is None:
            bad = sum(exp == "bad" for _, exp, _ in lines)
            assert e["rows"] == len(lines), (name, e["rows"], len(lines))
            assert e["rows_malformed"] >= bad, (name, e)
            stats["rows"] += len(lines)
    return stats


@pytest.mark.parametrize("family,n,seed", [("jsonl", 500, 1), ("compressed", 300, 2), ("table", 240, 3)])
def test_generated_damage_never_loses_a_readable_row(tmp_path, family, n, seed):
    src = tmp_path / "in"
    src.mkdir()
    build = {"jsonl": build_jsonl_cases, "compressed": build_compressed_cases, "table": build_table_cases}[family]
    cases = build(src, n, seed)
    res = scan([src], tmp_path / "out", config=CONFIG)
    assert res.summary["accounting_ok"]
    assert res.summary["rows_total"] == sum(e["rows"] for e in res.summary["shards"])
    stats = check(tmp_path / "out", res.summary, res.findings, cases)
    assert stats["cases"] == n
    print(f"{family}: {dict(stats)}")
