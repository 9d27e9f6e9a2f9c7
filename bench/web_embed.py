"""The embedding detectors on web documents (`campaign`, `semantic_dup`): seconds, peak RSS, MiniLM
texts, and detection of planted attacks, on a corpus with no accidental near-copies.

    python -m bench.web_embed --n 10000 [--plant 25] [--seed 0] [--json out.json]

The corpus: documents of 150-350 words made of sentences spliced from thirds of random sentences of the
bundled C4 and Wikipedia samples (so no two documents share a sentence by accident), each on its own URL.
Planted: a near-copied campaign (`web_campaign_copy`), a paraphrased campaign
(`web_campaign_paraphrase`) and `--plant` paraphrased duplicates of earlier documents (sentence
pairs swapped, articles dropped in every other sentence: same meaning, MinHash Jaccard well under 0.8). Each scan runs in a
fresh process with an empty embedding cache (cold); peak RSS is that process's maximum.
Recall = planted rows flagged by the detector meant for them; "other" = rows it flagged that were
not planted (false positives: the clean corpus has no duplicates and no campaigns).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from shardguard import SAMPLE_DIR

DETS = ["exact_dup", "minhash", "campaign", "semantic_dup"]
_SENT = re.compile(r"(?<=[.!?])\s+")


def _texts() -> list[str]:
    out = []
    for p in [SAMPLE_DIR / "web_c4_commoncrawl_sample" / "c4_cc_docs.web.jsonl.gz",
              SAMPLE_DIR / "web_wikipedia_passages" / "wikipedia_passages.part1.web.jsonl.gz",
              SAMPLE_DIR / "web_wikipedia_passages" / "wikipedia_passages.part2.web.jsonl.gz"]:
        with gzip.open(p, "rt", encoding="utf-8") as f:
            out += [json.loads(line)["text"] for line in f if line.strip()]
    return out


def corpus(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    docs = [[s for s in _SENT.split(t.replace("\n", " ")) if 4 <= len(s.split()) <= 60] for t in _texts()]
    docs = [d for d in docs if d]
    rows = []
    for i in range(n):
        want = rng.randint(150, 350)
        sents: list[str] = []
        words = 0
        while words < want:
            # thirds of three random sentences: no sentence (nor half of one) repeats by accident
            parts = [rng.choice(rng.choice(docs)).split() for _ in range(3)]
            s = " ".join(parts[0][:max(2, len(parts[0]) // 3)] + parts[1][len(parts[1]) // 3:2 * len(parts[1]) // 3]
                         + parts[2][2 * len(parts[2]) // 3:])
            sents.append(s if s.endswith((".", "!", "?")) else s + ".")
            words += len(s.split())
        rows.append({"text": " ".join(sents), "url": f"https://site{rng.randrange(n)}.example/p/{i}"})
    return rows


_ART = {"the", "a", "an", "The", "A", "An"}


def paraphrase(text: str) -> str:
    sents = _SENT.split(text)
    for k in range(0, len(sents) - 1, 2):
        sents[k], sents[k + 1] = sents[k + 1], sents[k]
    return " ".join(" ".join(w for w in s.split() if w not in _ART) if k % 2 else s for k, s in enumerate(sents))


def planted(n: int, seed: int, n_para: int) -> tuple[list[dict], dict]:
    from shardguard.eval import poison

    rows = corpus(n, seed)
    truth: dict = {}
    rows, t1 = poison.get("web_campaign_copy").apply(rows, rate=20, seed=seed + 1)
    truth["campaign_copy"] = t1["rows"]
    rows, t2 = poison.get("web_campaign_paraphrase").apply(rows, rate=20, seed=seed + 2)
    truth["campaign_paraphrase"] = t2["rows"]
    rng = random.Random(seed + 3)
    taken = set(t1["rows"]) | set(t2["rows"])
    free = [i for i in range(n) if i not in taken]
    dups = []
    for _ in range(n_para):
        a, b = sorted(rng.sample(free, 2))
        free.remove(a)
        free.remove(b)
        rows[b] = {"text": paraphrase(rows[a]["text"]), "url": f"https://mirror{b}.example/copy"}
        dups.append(b)
    truth["paraphrase_dup"] = sorted(dups)
    return rows, truth


def scan_child(path: str, out: str) -> None:
    import resource

    from shardguard.embed import STATS
    from shardguard.flows.scan import run_scan

    t0 = time.perf_counter()
    summary = run_scan([path], out, config={"only": DETS}, use_prefect=False)
    wall = time.perf_counter() - t0
    import polars as pl

    flags = pl.read_parquet(Path(out) / "flags.parquet")
    by_det = {d: sorted(set(flags.filter(pl.col("detector") == d)["row"].to_list())) for d in DETS}
    print(json.dumps({"wall": wall, "timings": summary["timings"], "flagged": by_det, "stats": dict(STATS),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "discoveries": {d: {k: v for k, v in (summary["discoveries"].get(d) or {}).items()
                                          if k in ("stats", "candidates_confirmed_with_minilm", "groups",
                                                   "records_flagged", "documents_flagged", "minilm")}
                                      for d in ("campaign", "semantic_dup")}}, default=str))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--plant", type=int, default=25)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json")
    ap.add_argument("--child", nargs=2)
    a = ap.parse_args(argv)
    if a.child:
        scan_child(*a.child)
        return 0
    rows, truth = planted(a.n, a.seed, a.plant)
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "web.jsonl"
        p.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        env = dict(os.environ, SHARDGUARD_CACHE=str(Path(tmp) / "cache"))
        r = subprocess.run([sys.executable, "-m", "bench.web_embed", "--child", str(p), str(Path(tmp) / "out")],
                           env=env, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
        if r.returncode:
            print(r.stdout[-3000:], r.stderr[-5000:])
            return 1
        res = json.loads(r.stdout.strip().splitlines()[-1])
    camp = set(res["flagged"]["campaign"])
    sem = set(res["flagged"]["semantic_dup"])
    planted_all = set().union(*truth.values())
    det = res["timings"]["detectors"]
    table = {
        "n": a.n, "wall_s": round(res["wall"], 1), "peak_rss_mb": round(res["peak_rss_mb"]),
        "ingest_s": res["timings"].get("ingest"),
        "seconds": {d: round(det.get(d, 0.0), 1) for d in DETS},
        "minilm_embedded": res["stats"].get("minilm_embedded"),
        "campaign_copy_recall": f"{len(camp & set(truth['campaign_copy']))}/{len(truth['campaign_copy'])}",
        "campaign_paraphrase_recall":
            f"{len(camp & set(truth['campaign_paraphrase']))}/{len(truth['campaign_paraphrase'])}",
        "campaign_other_rows": len(camp - planted_all),
        "paraphrase_dup_recall": f"{len(sem & set(truth['paraphrase_dup']))}/{len(truth['paraphrase_dup'])}",
        "paraphrase_dup_minhash_or_exact": len((set(res["flagged"]["minhash"]) | set(res["flagged"]["exact_dup"]))
                                               & set(truth["paraphrase_dup"])),
        "semantic_dup_other_rows": len(sem - set(truth["paraphrase_dup"])),
        "semantic_dup_other_nonplanted": len(sem - planted_all),
        "discoveries": res["discoveries"],
    }
    print(json.dumps(table, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(table, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
