"""Dedup (exact + MinHash near-duplicates) throughput per core and peak memory, beside datasketch and
rensa measured in the same run, with recall/precision on planted near-duplicates.

    .venv/bin/python -m bench.dedup --docs 10000,100000,1000000 [--baseline-max 100000]
        [--ingest-max 100000] [--threshold 0.8] [--num-perm 128]

Corpus: synthetic web documents of 250-300 words, each a mix of sentences drawn at random from the
bundled C4/Wikipedia sample (`shardguard/sample/web_*`), so unrelated documents share at most a
sentence or two (no accidental near-duplicates). Planted: 1% near-copies of an earlier document with
1-6 words replaced (0.3-2% of the words; true word 5-gram Jaccard 0.8-0.98 -- at ~5% of the words
changed the 5-gram Jaccard falls to ~0.6, below any usual threshold) and 0.1% verbatim copies under
another URL. Truth = the planted copies; a system's answer = the records it marks as duplicates of an
earlier one (shardguard: `exact_dup` + `minhash` findings; baselines: every record of a verified LSH
cluster but its first).

Each system runs in its own child process with one thread (POLARS_MAX_THREADS, RAYON_NUM_THREADS,
OMP/MKL/OPENBLAS = 1, pyarrow cpu count 1). docs/s per core = docs / the child's CPU seconds (user +
sys) for the measured stage; wall seconds are shown too (other jobs on the machine inflate them).
Peak RSS is the child's VmHWM (it counts the pages of the memory-mapped records file that the local
engine reads, and the shared libraries) and peak anonymous memory (RssAnon, sampled every 20 ms: heap,
arrays, Python objects -- what grows with the number of records).

- shardguard: the records file (Arrow IPC, the ingest's output format, built here directly; ingest is
  measured on its own, `ingest` rows) through the local engine's Driver with `exact_dup,minhash`:
  signatures, LSH, candidate confirmation, components, findings.
- datasketch: Python word 5-gram shingles, `MinHash.bulk`, `MinHashLSH(threshold, num_perm)` insert +
  query of every document, candidates verified by `jaccard >= threshold`, connected components.
- rensa: the same shingles, `RMinHash.update`, `RMinHashLSH(threshold, num_perm, bands)` with the
  bands shardguard uses, the same verification and components.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

THREAD_VARS = ("POLARS_MAX_THREADS", "RAYON_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
               "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")
WORD_RE = r"\w+"


# -- corpus ------------------------------------------------------------------------------------------
def sentences() -> list[str]:
    import gzip
    import re

    from shardguard import SAMPLE_DIR

    out: list[str] = []
    for f in sorted(SAMPLE_DIR.glob("web_*/*.jsonl.gz")):
        with gzip.open(f, "rt", encoding="utf-8") as fh:
            for line in fh:
                text = json.loads(line).get("text") or ""
                for s in re.split(r"(?<=[.!?])\s+", text):
                    n = len(s.split())
                    if 4 <= n <= 60:
                        out.append(s.strip())
    return sorted(set(out))


def build_corpus(n: int, folder: Path, seed: int = 0, jsonl: bool = True) -> dict:
    """Writes `records.arrow` (RECORD_SCHEMA) and, when asked, the same documents as `corpus.jsonl`
    (for the ingest row); returns the truth."""
    import hashlib

    import numpy as np
    import pyarrow as pa

    from shardguard.core.schema import RECORD_SCHEMA

    pool = sentences()
    pool_words = np.array([len(s.split()) for s in pool])
    rng = np.random.default_rng(seed)
    n_near, n_exact = max(1, n // 100), max(1, n // 1000)
    kinds = np.zeros(n, np.int8)  # 0 base, 1 near copy, 2 exact copy
    cop = rng.choice(np.arange(max(1, n // 10), n), size=min(n - max(1, n // 10), n_near + n_exact), replace=False)
    kinds[cop[:n_near]] = 1
    kinds[cop[n_near:]] = 2
    texts: list[str] = []
    src = np.full(n, -1, np.int64)
    base_idx: list[int] = []
    edits = np.zeros(n, np.int64)
    draws = rng.integers(0, len(pool), size=(n, 40))
    for i in range(n):
        if kinds[i] == 0 or not base_idx:
            target = int(rng.integers(250, 301))
            parts, words = [], 0
            for k in draws[i]:
                parts.append(pool[k])
                words += int(pool_words[k])
                if words >= target:
                    break
            w = " ".join(parts).split()[:target]
            texts.append(" ".join(w))
            base_idx.append(i)
            kinds[i] = 0
        else:
            s = base_idx[int(rng.integers(0, len(base_idx)))]
            src[i] = s
            if kinds[i] == 2:
                texts.append(texts[s])
            else:
                w = texts[s].split()
                k = int(rng.integers(1, 7))
                edits[i] = k
                for p in rng.choice(len(w), size=k, replace=False):
                    w[p] = f"x{int(rng.integers(10**9))}"
                texts.append(" ".join(w))
    urls = [f"https://site{i % 5000}.example/page/{i}" for i in range(n)]
    ids = [hashlib.blake2b(t.encode(), digest_size=12).hexdigest() for t in texts]
    path = folder / "records.arrow"
    bs = 8192
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, RECORD_SCHEMA) as w:
        for s in range(0, n, bs):
            e = min(n, s + bs)
            m = e - s
            cols = {"shard": pa.array(["corpus.jsonl"] * m), "row": pa.array(range(s, e), pa.int64()),
                    "seq": pa.array(range(s, e), pa.int64()), "record_id": pa.array(ids[s:e]),
                    "kind": pa.array(["web"] * m), "text": pa.array(texts[s:e]), "url": pa.array(urls[s:e])}
            w.write_batch(pa.record_batch([cols.get(f.name, pa.nulls(m, f.type)) for f in RECORD_SCHEMA],
                                          schema=RECORD_SCHEMA))
    if jsonl:
        with open(folder / "corpus.jsonl", "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps({"url": u, "text": t}, ensure_ascii=False) + "\n" for u, t in zip(urls, texts))
    near = np.flatnonzero(kinds == 1)
    jac = [exact_jaccard(texts[int(src[i])], texts[int(i)]) for i in near]
    return {"n": n, "near": near.tolist(), "exact": np.flatnonzero(kinds == 2).tolist(),
            "near_jaccard": jac, "mean_words": float(np.mean([len(t.split()) for t in texts[:20000]]))}


def shingles(text: str, n: int = 5) -> list[str]:
    import re

    w = re.findall(WORD_RE, text.lower())
    return [" ".join(w[i:i + n]) for i in range(max(len(w) - n + 1, 1))]


def exact_jaccard(a: str, b: str) -> float:
    sa, sb = set(shingles(a)), set(shingles(b))
    return len(sa & sb) / len(sa | sb)


# -- children ----------------------------------------------------------------------------------------
class Meter:
    """CPU seconds, wall seconds, peak RSS and sampled peak anonymous memory of this process."""

    def __init__(self):
        self.peak_anon = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._sample, daemon=True)
        self._t.start()

    def _sample(self):
        while not self._stop.is_set():
            try:
                for line in open("/proc/self/status"):
                    if line.startswith("RssAnon:"):
                        self.peak_anon = max(self.peak_anon, int(line.split()[1]) * 1024)
            except OSError:
                return
            self._stop.wait(0.02)

    @staticmethod
    def cpu() -> float:
        t = os.times()
        return t.user + t.system

    def done(self) -> dict:
        self._stop.set()
        self._t.join()
        # VmHWM, not ru_maxrss: Linux carries the parent's high-water mark into ru_maxrss across exec
        hwm = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmHWM:"))
        return {"peak_rss": hwm, "peak_anon": self.peak_anon}


def clusters_to_dups(n: int, i, j) -> list[int]:
    """Every record of a connected cluster but its first (lowest index)."""
    import numpy as np

    from shardguard.core.graph import components

    if len(i) == 0:
        return []
    lab = components(n, np.asarray(i), np.asarray(j))
    order = np.arange(n)
    first = np.full(lab.max() + 1, n)
    np.minimum.at(first, lab, order)
    sizes = np.bincount(lab)
    return np.flatnonzero((sizes[lab] > 1) & (first[lab] != order)).tolist()


def read_texts(folder: Path) -> list[str]:
    import pyarrow as pa

    with pa.memory_map(str(folder / "records.arrow")) as src:
        return pa.ipc.open_file(src).read_all().column("text").to_pylist()


def child(system: str, folder: Path, cfg: dict) -> dict:
    import pyarrow as pa

    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    m = Meter()
    out: dict = {}
    if system == "shardguard":
        from shardguard.detectors.dedup.exact_dup import ExactDuplicates
        from shardguard.detectors.dedup.minhash import MinHashNearDuplicates
        from shardguard.engine.local import run_local

        c0, w0 = m.cpu(), time.perf_counter()
        dets = [ExactDuplicates(), MinHashNearDuplicates(threshold=cfg["threshold"], num_perm=cfg["num_perm"])]
        findings, disc, timings = run_local(folder / "records.arrow", dets)
        out["cpu"], out["wall"] = m.cpu() - c0, time.perf_counter() - w0
        out["dups"] = sorted(findings.column("row").to_pylist())
        out["note"] = (f"exact_dup {timings['exact_dup']:.1f} s, minhash {timings['minhash']:.1f} s (wall); "
                       f"{disc['minhash']['near_duplicate_clusters']} clusters")
    elif system == "ingest":
        from shardguard.ingest import ShardInfo, ingest_shard

        c0, w0 = m.cpu(), time.perf_counter()
        p = folder / "corpus.jsonl"
        rows = sum(b.num_rows for b in ingest_shard(p, "corpus.jsonl", "web", 4096, info=ShardInfo("c", str(p)))
                   if isinstance(b, pa.RecordBatch))
        out["cpu"], out["wall"] = m.cpu() - c0, time.perf_counter() - w0
        out["dups"], out["note"] = None, f"JSONL -> Arrow records with record ids, {rows} rows"
    else:
        texts = read_texts(folder)
        n = len(texts)
        c0, w0 = m.cpu(), time.perf_counter()
        sh = [shingles(t) for t in texts]
        thr, k = cfg["threshold"], cfg["num_perm"]
        src, dst = [], []
        if system == "datasketch":
            from datasketch import MinHash, MinHashLSH

            ms = MinHash.bulk([[s.encode() for s in x] for x in sh], num_perm=k)
            lsh = MinHashLSH(threshold=thr, num_perm=k)
            for i, mh in enumerate(ms):
                lsh.insert(i, mh)
            for i, mh in enumerate(ms):
                for j in lsh.query(mh):
                    if j > i and mh.jaccard(ms[j]) >= thr:
                        src.append(i)
                        dst.append(j)
            out["note"] = f"datasketch bands {lsh.b}x{lsh.r}"
        else:
            import rensa

            ms = []
            for x in sh:
                r = rensa.RMinHash(num_perm=k, seed=42)
                r.update(x)
                ms.append(r)
            lsh = rensa.RMinHashLSH(threshold=thr, num_perm=k, num_bands=cfg["bands"])
            for i, mh in enumerate(ms):
                lsh.insert(i, mh)
            for i, mh in enumerate(ms):
                for j in lsh.query(mh):
                    if j > i and mh.jaccard(ms[j]) >= thr:
                        src.append(i)
                        dst.append(j)
            out["note"] = f"rensa bands {cfg['bands']}x{k // cfg['bands']}"
        out["dups"] = clusters_to_dups(n, src, dst)
        out["cpu"], out["wall"] = m.cpu() - c0, time.perf_counter() - w0
    out.update(m.done())
    return out


def run_child(system: str, folder: Path, cfg: dict, timeout: float) -> dict:
    env = dict(os.environ, **{k: "1" for k in THREAD_VARS})
    res = folder / f"{system}.json"
    cmd = [sys.executable, "-m", "bench.dedup", "--child", system, "--folder", str(folder),
           "--threshold", str(cfg["threshold"]), "--num-perm", str(cfg["num_perm"]), "--bands", str(cfg["bands"])]
    try:
        p = subprocess.run(cmd, env=env, timeout=timeout, capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        return {"error": f"over {timeout:.0f} s"}
    if p.returncode != 0:
        return {"error": p.stderr.strip().splitlines()[-1] if p.stderr.strip() else f"exit {p.returncode}"}
    return json.loads(res.read_text()) if res.exists() else {"error": "no result"}


def score(dups: list[int] | None, truth: dict) -> tuple[str, ...]:
    """Recall on planted near copies of true Jaccard >= 0.85 (clearly over the threshold), on all
    planted near copies (0.8-0.98: those near 0.8 are found about half the time by any MinHash), on
    exact copies; precision = share of the marked records that are planted copies."""
    if dups is None:
        return "", "", "", ""
    near, exact = set(truth["near"]), set(truth["exact"])
    clear = {i for i, j in zip(truth["near"], truth["near_jaccard"]) if j >= 0.85}
    found = set(dups)

    def frac(a, b):
        return f"{len(a & b) / max(1, len(b)):.3f}"

    return frac(found, clear), frac(found, near), frac(found, exact), frac(near | exact, found)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", default="10000,100000")
    ap.add_argument("--baseline-max", type=int, default=100000, help="run datasketch/rensa up to this many docs")
    ap.add_argument("--ingest-max", type=int, default=100000, help="measure ingest up to this many docs")
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--num-perm", type=int, default=128)
    ap.add_argument("--bands", type=int, default=0, help="rensa bands (default: shardguard's banding)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per system and size")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    cfg = {"threshold": args.threshold, "num_perm": args.num_perm, "bands": args.bands}
    if not cfg["bands"]:
        from shardguard.detectors.dedup.minhash import optimal_bands

        cfg["bands"] = optimal_bands(args.threshold, args.num_perm)[0]
    if args.child:
        folder = Path(args.folder)
        (folder / f"{args.child}.json").write_text(json.dumps(child(args.child, folder, cfg)))
        return 0

    rows = []
    for n in [int(x) for x in args.docs.split(",")]:
        with tempfile.TemporaryDirectory(prefix="bench-dedup-") as tmp:
            folder = Path(tmp)
            t = time.perf_counter()
            truth = build_corpus(n, folder, jsonl=n <= args.ingest_max)
            jac = sorted(truth["near_jaccard"])
            print(f"{n} docs (mean {truth['mean_words']:.0f} words): corpus built in {time.perf_counter() - t:.0f} s; "
                  f"{len(truth['near'])} near copies (true Jaccard {jac[0]:.2f}-{jac[-1]:.2f}, "
                  f"median {jac[len(jac) // 2]:.2f}), {len(truth['exact'])} exact copies", file=sys.stderr)
            systems = ["shardguard"] + (["ingest"] if n <= args.ingest_max else []) + \
                (["datasketch", "rensa"] if n <= args.baseline_max else [])
            for system in systems:
                r = run_child(system, folder, cfg, args.timeout)
                msg = r.get("error") or f"{r['cpu']:.1f} CPU s, {r['wall']:.1f} wall s"
                print(f"  {system}: {msg}", file=sys.stderr)
                rows.append((n, system, r, score(r.get("dups"), truth)))
            for system in ("datasketch", "rensa"):
                if n > args.baseline_max:
                    rows.append((n, system, {"error": f"not run above {args.baseline_max:,} docs"}, ("",) * 4))

    print(f"\nthreshold {args.threshold}, {args.num_perm} permutations, word 5-grams, 1 thread per system; "
          f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs\n")
    print("| docs | system | docs/s per core (CPU) | CPU s | wall s | peak RSS MB | peak anon MB | "
          "recall near J>=0.85 | recall near all | recall exact | precision | note |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for n, system, r, sc in rows:
        if "error" in r:
            print(f"| {n:,} | {system} | | | | | | | | | | {r['error']} |")
            continue
        print(f"| {n:,} | {system} | {n / max(r['cpu'], 1e-9):,.0f} | {r['cpu']:.1f} | {r['wall']:.1f} | "
              f"{r['peak_rss'] / 2**20:,.0f} | {r['peak_anon'] / 2**20:,.0f} | {' | '.join(sc)} | {r.get('note', '')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
