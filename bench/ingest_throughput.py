"""Ingest throughput (the scan's ingest stage alone) beside a baseline checkout, measured in the same run.

    .venv/bin/python -m bench.ingest_throughput [--docs 10000,100000] [--formats web.jsonl,sft.jsonl,...]
        [--baseline /path/to/another/checkout]

Corpora are built from the bundled sample: web documents of about 300 words (C4 text, words shuffled
so that no two are alike), GSM8K SFT rows and HH-RLHF preference pairs, repeated up to --docs rows;
written as JSONL, gzip'd JSONL and Parquet. Each (checkout, format, size) runs `stage_ingest` in a fresh
process, so peak RSS is that run's own. Printed: rows/s by wall clock and by CPU time (the CPU figure
is the per-core rate and is less disturbed by other jobs on a shared machine), and peak RSS.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORMATS = ("web.jsonl", "web.jsonl.gz", "web.parquet", "sft.jsonl", "preference.jsonl")

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from shardguard.pipeline.config import ScanConfig
from shardguard.pipeline.stages import stage_ingest
path, work = sys.argv[1], Path(sys.argv[2])
work.mkdir(parents=True, exist_ok=True)
w0, c0 = time.perf_counter(), time.process_time()
ing = stage_ingest([path], work, "auto", ScanConfig())
wall, cpu = time.perf_counter() - w0, time.process_time() - c0
rows = sum(i["rows"] for i in ing.shards)
hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM:")]  # this process's own peak
rss = int(hwm[0].split()[1]) / 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"rows": rows, "wall": wall, "cpu": cpu, "rss_mb": rss}))
"""


def _sample_rows(rel: str) -> list[dict]:
    with gzip.open(ROOT / "shardguard" / "sample" / rel, "rt", encoding="utf-8") as f:
        return [json.loads(x) for x in f if x.strip()]


def build(kind: str, n: int, out: Path, fmt: str) -> Path:
    rnd = random.Random(0)
    if kind == "web":
        src = _sample_rows("web_c4_commoncrawl_sample/c4_cc_docs.web.jsonl.gz")
        words = [w for r in src for w in r["text"].split(" ")]

        def row(i):
            r = dict(src[i % len(src)])
            r["text"] = " ".join(rnd.choice(words) for _ in range(300))
            return r
    elif kind == "sft":
        src = _sample_rows("gsm8k/gsm8k_test.sft.jsonl.gz")

        def row(i):
            return src[i % len(src)]
    else:
        src = _sample_rows("hh_rlhf_harmless_base_test/harmless_base_test.preference.jsonl.gz")

        def row(i):
            return src[i % len(src)]
    path = out / f"bench-{n}.{fmt}"
    if path.exists():
        return path
    if fmt.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        with pq.ParquetWriter(str(path), pa.Table.from_pylist([row(0)]).schema) as w:
            for start in range(0, n, 10_000):
                w.write_table(pa.Table.from_pylist([row(i) for i in range(start, min(n, start + 10_000))]))
        return path
    opener = gzip.open if fmt.endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps(row(i)) + "\n")
    return path


def run(checkout: Path, path: Path, work: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), str(work)], env=env, capture_output=True,
                         text=True, cwd=str(checkout), check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", default="10000", help="comma-separated corpus sizes")
    ap.add_argument("--formats", default=",".join(FORMATS), help=f"comma-separated, of {', '.join(FORMATS)}")
    ap.add_argument("--baseline", type=Path, help="another shardguard checkout to measure beside this one")
    ap.add_argument("--data", type=Path, help="where to keep the corpora (default: a temporary folder)")
    args = ap.parse_args(argv)
    sizes = [int(x) for x in args.docs.split(",")]
    formats = [f for f in args.formats.split(",") if f]
    checkouts = [("this", ROOT)] + ([("baseline", args.baseline.resolve())] if args.baseline else [])
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or Path(tmp)
        data.mkdir(parents=True, exist_ok=True)
        print(f"{'format':<18} {'rows':>8} {'checkout':<9} {'wall s':>7} {'rows/s wall':>12} {'rows/s CPU':>11} "
              f"{'peak RSS MB':>12}")
        for fmt in formats:
            kind = fmt.split(".")[0]
            for n in sizes:
                path = build(kind, n, data, fmt)
                for name, checkout in reversed(checkouts):  # the baseline first, this checkout after
                    r = run(checkout, path, Path(tmp) / f"work-{name}")
                    print(f"{fmt:<18} {r['rows']:>8} {name:<9} {r['wall']:>7.2f} {r['rows'] / r['wall']:>12,.0f} "
                          f"{r['rows'] / r['cpu']:>11,.0f} {r['rss_mb']:>12,.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
