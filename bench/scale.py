"""How a whole scan scales: rows/s, peak RSS and per-detector seconds from 10k to 1M rows.

    .venv/bin/python -m bench.scale [--kinds web,sft,preference] [--sizes 10000,100000,300000,1000000]
        [--max-size-sft 100000] [--baseline-max 100000] [--out bench-out/scale] [--png docs/img/scale.png]

Each point is one `shardguard scan` process (all default detectors), run like a user runs it: a fresh
process, a cold embedding cache (a new empty SHARDGUARD_CACHE and HOME each time), imports included.
Peak RSS is the scan process's own (`os.wait4`). Corpora are built from the bundled sample:

* web: documents of ~250 words made of sentences drawn at random from the C4/Common Crawl and
  Wikipedia sample (so the corpus has no accidental near-copies), 1% planted near-copies (5% of
  words changed), one URL each, in shards of 100k documents;
* sft / preference: the bundled rows (T0 shape half, GSM8K train, Dolly; HH-RLHF, DPO demo), then
  variants of them with a few words substituted, so rows are distinct.

The baseline beside each web point is what a user would otherwise run for the same corpus:
datasketch `MinHash.bulk` + `MinHashLSH` (128 permutations, threshold 0.8, word 5-grams), dedup only,
in its own process; above `--baseline-max` documents it is extrapolated linearly from the largest
measured size (marked `~`). Prints a Markdown table and writes a PNG of µs per row against size.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from shardguard import SAMPLE_DIR

SHARD_ROWS = 100_000


def _read(rel: str) -> list[dict]:
    with gzip.open(SAMPLE_DIR / rel, "rt", encoding="utf-8") as f:
        return [json.loads(x) for x in f if x.strip()]


def _sentences() -> list[str]:
    docs = (_read("web_c4_commoncrawl_sample/c4_cc_docs.web.jsonl.gz")
            + _read("web_wikipedia_passages/wikipedia_passages.part1.web.jsonl.gz")
            + _read("web_wikipedia_passages/wikipedia_passages.part2.web.jsonl.gz"))
    out = []
    for d in docs:
        out += [s.strip() for s in re.split(r"(?<=[.!?])\s+", d.get("text") or "") if len(s.split()) >= 5]
    return out


def _write_shards(rows_iter, n: int, folder: Path, suffix: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    f = None
    for i, r in enumerate(rows_iter):
        if i >= n:
            break
        if i % SHARD_ROWS == 0:
            if f:
                f.close()
            f = open(folder / f"part-{i // SHARD_ROWS:04d}.{suffix}.jsonl", "w", encoding="utf-8")
        f.write(json.dumps(r, ensure_ascii=False) + "\n")
    if f:
        f.close()


def web_rows(seed: int = 0):
    rng = random.Random(seed)
    sents = _sentences()
    recent: list[str] = []
    i = 0
    while True:
        if recent and rng.random() < 0.01:  # a planted near-copy of a recent document
            words = rng.choice(recent).split()
            for _ in range(max(1, len(words) // 20)):
                words[rng.randrange(len(words))] = rng.choice(sents).split()[0]
            text = " ".join(words)
        else:
            parts, n = [], 0
            target = rng.randint(200, 300)
            while n < target:
                s = rng.choice(sents)
                parts.append(s)
                n += len(s.split())
            text = " ".join(parts)
            recent = (recent + [text])[-50:]
        yield {"text": text, "url": f"https://site{rng.randrange(20000)}.example.org/page/{i}"}
        i += 1


def _variants(rows: list[dict], fields: tuple[str, ...], seed: int):
    rng = random.Random(seed)
    vocab = sorted({w for r in rows[:5000] for f in fields for w in str(r.get(f) or "").split() if w.isalpha()})
    rows = list(rows)
    rng.shuffle(rows)
    round_ = 0
    while True:
        for r in rows:
            if round_ == 0:
                yield r
                continue
            v = dict(r)
            for f in fields:
                w = str(v.get(f) or "").split()
                if w:
                    for _ in range(3):
                        w[rng.randrange(len(w))] = rng.choice(vocab)
                    v[f] = " ".join(w)
            yield v
        round_ += 1


def sft_rows(seed: int = 0):
    rows = (_read("t0_prompted_multitask/t0_shape.sft.jsonl.gz") + _read("gsm8k/gsm8k_train.part1.sft.jsonl.gz")
            + _read("gsm8k/gsm8k_train.part2.sft.jsonl.gz") + _read("dolly_hhrlhf_small/dolly_hhrlhf_small.sft.jsonl.gz"))
    return _variants(rows, ("instruction", "response"), seed)


def preference_rows(seed: int = 0):
    rows = (_read("hh_rlhf_harmless_base_test/harmless_base_test.preference.jsonl.gz")
            + _read("llamafactory_dpo_en_demo/dpo_en_demo.preference.jsonl.gz"))
    return _variants(rows, ("prompt", "chosen", "rejected"), seed)


GEN = {"web": (web_rows, "web"), "sft": (sft_rows, "sft"), "preference": (preference_rows, "preference")}


def corpus(kind: str, n: int, root: Path) -> Path:
    folder = root / f"{kind}-{n}"
    done = folder / ".complete"
    if not done.exists():
        shutil.rmtree(folder, ignore_errors=True)
        gen, suffix = GEN[kind]
        _write_shards(gen(), n, folder, suffix)
        done.write_text("ok")
    return folder


def _run(cmd: list[str], env: dict) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MiB of that process, exit code)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    err = p.stderr.read().decode("utf-8", "replace") if p.stderr else ""
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode not in (0, 3):
        print(err[-3000:], file=sys.stderr)
    return wall, ru.ru_maxrss / 1024, p.returncode


def scan_point(kind: str, n: int, root: Path) -> dict:
    data = corpus(kind, n, root)
    out = root / f"out-{kind}-{n}"
    cache = root / f"cache-{kind}-{n}"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    env = dict(os.environ, SHARDGUARD_CACHE=str(cache), HOME=str(cache), PREFECT_HOME=str(cache / "prefect"))
    exe = str(Path(sys.executable).parent / "shardguard")
    wall, rss, rc = _run([exe, "scan", str(data), "--out", str(out), "--kind", kind, "-q"], env)
    s = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}
    det = (s.get("timings") or {}).get("detectors") or {}
    res = {"kind": kind, "rows": n, "wall_s": wall, "rss_mib": rss, "rc": rc,
           "rows_total": s.get("rows_total"), "ingest_s": (s.get("timings") or {}).get("ingest"),
           "detectors": det, "flagged": s.get("rows_flagged", s.get("flagged")),
           "minilm": (s.get("embeddings") or {})}
    shutil.rmtree(cache, ignore_errors=True)
    return res


_DS = r"""
import json, sys, time, re
from datasketch import MinHash, MinHashLSH
import numpy as np
folder = sys.argv[1]
t0 = time.perf_counter()
docs = []
import glob
for p in sorted(glob.glob(folder + "/*.jsonl")):
    with open(p, encoding="utf-8") as f:
        docs += [json.loads(x)["text"] for x in f]
def shingles(t):
    w = t.lower().split()
    return [" ".join(w[i:i + 5]).encode() for i in range(max(1, len(w) - 4))]
lsh = MinHashLSH(threshold=0.8, num_perm=128)
hit = 0
B = 2000
for s in range(0, len(docs), B):
    ms = MinHash.bulk([shingles(t) for t in docs[s:s + B]], num_perm=128)
    for k, m in enumerate(ms):
        if lsh.query(m):
            hit += 1
        lsh.insert(s + k, m)
print(json.dumps({"seconds": time.perf_counter() - t0, "dups": hit}))
"""


def baseline_point(n: int, root: Path) -> dict:
    data = corpus("web", n, root)
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-c", _DS, str(data)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    out = p.stdout.read().decode() if p.stdout else "{}"
    wall = time.perf_counter() - t0
    r = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    return {"rows": n, "wall_s": wall, "rss_mib": ru.ru_maxrss / 1024, "dups": r.get("dups")}


def table(points: list[dict], base: dict[int, dict]) -> str:
    lines = ["| kind | rows | whole scan s | rows/s | µs/row | × µs/row at smallest | peak RSS MiB | "
             "datasketch dedup-only s (web) | its rows/s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    first: dict[str, float] = {}
    for p in points:
        us = 1e6 * p["wall_s"] / p["rows"]
        first.setdefault(p["kind"], us)
        b = base.get(p["rows"]) if p["kind"] == "web" else None
        bs = (("~" if b.get("extrapolated") else "") + f"{b['wall_s']:.1f}") if b else "–"
        br = (("~" if b.get("extrapolated") else "") + f"{p['rows'] / b['wall_s']:,.0f}") if b else "–"
        lines.append(f"| {p['kind']} | {p['rows']:,} | {p['wall_s']:.1f} | {p['rows'] / p['wall_s']:,.0f} | {us:.0f} | "
                     f"{us / first[p['kind']]:.2f} | {p['rss_mib']:,.0f} | {bs} | {br} |")
    return "\n".join(lines)


def detector_table(points: list[dict], at: int) -> str:
    pts = [p for p in points if p["rows"] == at]
    if not pts:
        return ""
    names = sorted({d for p in pts for d in p["detectors"] if d != "detect_total"})
    head = "| detector | " + " | ".join(f"{p['kind']} s" for p in pts) + " |"
    lines = [head, "|---|" + "---:|" * len(pts), "| ingest | " + " | ".join(f"{p['ingest_s'] or 0:.1f}" for p in pts) + " |"]
    for d in names:
        lines.append(f"| {d} | " + " | ".join(f"{(p['detectors'].get(d) or 0):.1f}" for p in pts) + " |")
    lines.append("| whole scan (wall, imports and writing included) | "
                 + " | ".join(f"{p['wall_s']:.1f}" for p in pts) + " |")
    return f"Per-detector seconds at {at:,} rows:\n\n" + "\n".join(lines)


def plot(points: list[dict], base: dict[int, dict], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for kind in dict.fromkeys(p["kind"] for p in points):
        ps = [p for p in points if p["kind"] == kind]
        ax.plot([p["rows"] for p in ps], [1e6 * p["wall_s"] / p["rows"] for p in ps], "o-", label=f"shardguard, {kind}")
    if base:
        ks = sorted(base)
        ax.plot(ks, [1e6 * base[k]["wall_s"] / k for k in ks], "s--", color="grey",
                label="datasketch MinHashLSH, dedup only (web)")
    ax.axhline(1000, color="red", lw=0.8, ls=":", label="1,000 rows/s")
    ax.set_xscale("log")
    ax.set_xlabel("rows")
    ax.set_ylabel("µs per row (whole process, cold cache)")
    ax.set_title("shardguard scan: cost per row against size (2 cores)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kinds", default="web,sft,preference")
    ap.add_argument("--sizes", default="10000,100000,300000,1000000")
    ap.add_argument("--max-size-sft", type=int, default=100_000, help="largest size for sft and preference")
    ap.add_argument("--baseline-max", type=int, default=100_000, help="largest size datasketch is run at")
    ap.add_argument("--out", default="bench-out/scale")
    ap.add_argument("--png", default="docs/img/scale.png")
    ap.add_argument("--json", default=None, help="also write the points as JSON here")
    args = ap.parse_args(argv)
    root = Path(args.out)
    root.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    points, base = [], {}
    for kind in args.kinds.split(","):
        for n in sizes:
            if kind != "web" and n > args.max_size_sft:
                continue
            p = scan_point(kind, n, root)
            points.append(p)
            print(f"# {kind} {n:,}: {p['wall_s']:.1f} s, {n / p['wall_s']:,.0f} rows/s, {p['rss_mib']:,.0f} MiB, "
                  f"rc {p['rc']}", file=sys.stderr, flush=True)
            if kind == "web":
                if n <= args.baseline_max:
                    base[n] = baseline_point(n, root)
                elif base:
                    m = max(base)
                    base[n] = {"rows": n, "wall_s": base[m]["wall_s"] * n / m, "extrapolated": True}
    print(table(points, base))
    print()
    print(detector_table(points, 100_000 if any(p["rows"] == 100_000 for p in points) else sizes[0]))
    plot(points, base, Path(args.png))
    print(f"\nPNG: {args.png}")
    if args.json:
        Path(args.json).write_text(json.dumps({"points": points, "baseline": base}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
