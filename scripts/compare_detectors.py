"""Record one set of detectors' findings and discoveries, and compare two recordings.

    python scripts/compare_detectors.py record REPO DATA OUT [--detectors a,b] [--cache DIR]
        runs `shardguard scan DATA --out OUT` with the code of REPO (PYTHONPATH), --detectors given
    python scripts/compare_detectors.py compare OUT_A OUT_B [--ignore KEY ...]
        flags.parquet (shard, row, detector, category, score to 1e-6) and the detectors' discoveries
        (minus keys named by --ignore, e.g. counts added after A was recorded); exit 1 on differences
    python scripts/compare_detectors.py timings OUT ...
        per-detector seconds from summary.json

Used to show that a speed-up of a detector changed none of its results (record with main's code
first, then with the branch's, on the same inputs and with the same embedding cache)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

DEFAULT = "trigger,response_cluster,label_flip,answer_conflict,safety_bypass,pref_flip,pref_bias"


def record(repo: str, data: str, out: str, detectors: str, cache: str | None) -> int:
    env = dict(os.environ, PYTHONPATH=repo)
    if cache:
        env["SHARDGUARD_CACHE"] = cache
    cmd = [sys.executable, "-c", "from shardguard.cli import main; main()", "scan", data, "--out", out,
           "--detectors", detectors, "-q", "--no-prefect"]
    return subprocess.call(cmd, env=env)


def _findings(out: Path) -> list[tuple]:
    t = pq.read_table(out / "flags.parquet").to_pylist()
    return sorted((r["shard"], r["row"], r["detector"], r["category"], round(r["score"], 6)) for r in t)


def _strip(obj, ignore: set[str]):
    if isinstance(obj, dict):
        return {k: _strip(v, ignore) for k, v in obj.items() if k not in ignore}
    if isinstance(obj, list):
        return [_strip(v, ignore) for v in obj]
    if isinstance(obj, float):
        return round(obj, 6)
    return obj


def compare(a: Path, b: Path, ignore: set[str]) -> list[str]:
    fa, fb = _findings(a), _findings(b)
    diffs = []
    sa, sb = set(fa), set(fb)
    for r in sorted(sa - sb)[:20]:
        diffs.append(f"only in A: {r}")
    for r in sorted(sb - sa)[:20]:
        diffs.append(f"only in B: {r}")
    if len(sa - sb) or len(sb - sa):
        diffs.append(f"findings: {len(sa - sb)} only in A, {len(sb - sa)} only in B (of {len(fa)} / {len(fb)})")
    da = _strip(json.loads((a / "summary.json").read_text())["discoveries"], ignore)
    db = _strip(json.loads((b / "summary.json").read_text())["discoveries"], ignore)
    for k in sorted(set(da) | set(db)):
        if da.get(k) != db.get(k):
            diffs.append(f"discoveries[{k}] differ:\n  A {json.dumps(da.get(k))[:600]}\n  B {json.dumps(db.get(k))[:600]}")
    return diffs


def timings(outs: list[str]) -> None:
    for o in outs:
        s = json.loads((Path(o) / "summary.json").read_text())
        det = s.get("timings", {}).get("detectors", {})
        print(o, s.get("rows_total"), " ".join(f"{k}={v:.1f}" for k, v in sorted(det.items())),
              f"total={sum(det.values()):.1f}")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("repo")
    r.add_argument("data")
    r.add_argument("out")
    r.add_argument("--detectors", default=DEFAULT)
    r.add_argument("--cache")
    c = sub.add_parser("compare")
    c.add_argument("a")
    c.add_argument("b")
    c.add_argument("--ignore", nargs="*", default=[])
    t = sub.add_parser("timings")
    t.add_argument("outs", nargs="+")
    args = ap.parse_args(argv)
    if args.cmd == "record":
        return record(args.repo, args.data, args.out, args.detectors, args.cache)
    if args.cmd == "timings":
        timings(args.outs)
        return 0
    diffs = compare(Path(args.a), Path(args.b), set(args.ignore))
    n = len(_findings(Path(args.a)))
    print("\n".join(diffs) if diffs else f"identical ({n} findings)")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
