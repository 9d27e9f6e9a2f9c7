"""The bench: inject each attack at each rate into real clean data, scan, and score every detector.

    results = run_bench(out_dir, attacks=None, rates=None, datasets=None, quick=False)

For every attack x rate x matching dataset: `poison.poison_file` -> `pipeline.scan` (all enabled
detectors, or `only`) -> score on rows. A detector's rows are those it flagged in the attack's category;
"all" is the union over detectors. Precision, recall and F1 against the truth rows, plus the share of
truth rows flagged in *any* category (so a campaign caught as `duplicate` shows up), the scan's seconds,
the shard verdict, the triggers the scan reported (summary["discoveries"]) and whether each planted
trigger was reported exactly. Each clean dataset is also scanned once: rows flagged per category / rows.

SFT datasets belong to the *shape* or *check* group of bench/splits.toml (data the detectors may be
designed on / data only measured on) or are the *mixture* (every bundled SFT set, T0 included,
concatenated and shuffled, built into the work folder); every result carries its `group` and the
outputs report the groups side by side. Datasets larger than `cap` rows (default 6,000) are cut to their
first `cap` rows (the T0 files and the mixture are shuffled, so that is a uniform sample); `limit` takes
the first N rows of every dataset instead.

Writes bench.json, bench.md and bench.html into out_dir; returns the bench.json dict.
"""

from __future__ import annotations

import json
import os
import platform
import random
import shutil
import time
import tomllib
from collections import defaultdict
from pathlib import Path
from typing import Any

from shardguard import SAMPLE_DIR
from shardguard.eval import poison
from shardguard.pipeline.scan import scan

SAMPLE = SAMPLE_DIR
# the shape/check split of the SFT data (also at bench/splits.toml, a link to this file)
SPLITS_FILE = Path(__file__).resolve().with_name("splits.toml")

# name -> (kind, path under shardguard/sample); the mixture has no file: it is built from MIXTURE_PARTS
DATASETS: dict[str, tuple[str, str | None]] = {
    "c4": ("web", "web_c4_commoncrawl_sample/c4_cc_docs.web.jsonl.gz"),
    "wikipedia": ("web", "web_wikipedia_passages/wikipedia_passages.part1.web.jsonl.gz"),
    "gsm8k": ("sft", "gsm8k/gsm8k_test.sft.jsonl.gz"),
    "gsm8k_train": ("sft", "gsm8k/gsm8k_train.part1.sft.jsonl.gz"),
    "dolly": ("sft", "dolly_hhrlhf_small/dolly_hhrlhf_small.sft.jsonl.gz"),
    "self_instruct": ("sft", "self_instruct_human_written/user_oriented_instructions.sft.jsonl.gz"),
    "t0_shape": ("sft", "t0_prompted_multitask/t0_shape.sft.jsonl.gz"),
    "t0_check": ("sft", "t0_prompted_multitask/t0_check.sft.jsonl.gz"),
    "mixture": ("sft", None),
    "hh_rlhf": ("preference", "hh_rlhf_harmless_base_test/harmless_base_test.preference.jsonl.gz"),
    "dpo_demo": ("preference", "llamafactory_dpo_en_demo/dpo_en_demo.preference.jsonl.gz"),
}
DEFAULT_DATASETS = [
    "c4", "wikipedia", "gsm8k", "gsm8k_train", "dolly", "self_instruct", "t0_shape", "t0_check", "mixture",
    "hh_rlhf", "dpo_demo",
]
# Datasets with more rows are cut to their first DEFAULT_CAP rows unless `cap`/`limit` say otherwise.
DEFAULT_CAP = 6000
MIXTURE_SEED = 0  # the mixture's shuffle: fixed, so every bench seed sees the same mixture
GROUP_ORDER = ["shape", "check", "mixture", "other"]


def mixture_parts() -> list[Path]:
    """Every bundled SFT file (GSM8K test and both train parts, Dolly, both self-instruct files, T0 shape
    and check)."""
    return sorted(SAMPLE.glob("*/*.sft.jsonl.gz"))


def splits() -> dict[str, list[str]]:
    """bench/splits.toml as {group: [bench dataset names]}: the bundled sets by name, the T0 halves as
    t0_shape / t0_check, the mixture on its own."""
    with open(SPLITS_FILE, "rb") as f:
        cfg = tomllib.load(f)
    return {
        "shape": [*cfg["bundled"]["shape"], "t0_shape"],
        "check": [*cfg["bundled"]["check"], "t0_check"],
        "mixture": ["mixture"],
    }


def group_of(dataset: str) -> str:
    """shape, check or mixture for the SFT datasets (bench/splits.toml); other for web and preference."""
    for g, names in splits().items():
        if dataset in names:
            return g
    return "other"
DEFAULT_RATES = [0.001, 0.003, 0.005, 0.01, 0.03, 0.05]
# --quick: a few attacks across the three kinds, 300-row slices, one rate (< 40 s, run by `make test`).
QUICK = {
    "attacks": ["web_campaign_copy", "web_secrets", "sft_backdoor_token", "pref_trigger_swap"],
    "rates": [0.05],
    "datasets": ["c4", "self_instruct", "dpo_demo"],
    "limit": {"web": 200, "sft": 300, "preference": 100},
}  # preference detectors embed: fewer rows


def _prf(flagged: set[int], truth: set[int]) -> dict[str, Any]:
    tp = len(flagged & truth)
    p = tp / len(flagged) if flagged else 0.0
    r = tp / len(truth) if truth else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {
        "precision": round(p, 4),
        "recall": round(r, 4),
        "f1": round(f, 4),
        "flagged": len(flagged),
        "tp": tp,
    }


def _strings(obj: Any) -> set[str]:
    out: set[str] = set()
    stack = [obj]
    while stack:
        x = stack.pop()
        if isinstance(x, str):
            out.add(x)
        elif isinstance(x, dict):
            stack.extend(x.keys())
            stack.extend(x.values())
        elif isinstance(x, list | tuple):
            stack.extend(x)
    return out


def trigger_report(truth_triggers: list[str], discoveries: dict) -> dict[str, bool]:
    """For each planted trigger: did some detector report exactly that string (surrounding spaces aside)?"""
    found = {s.strip() for s in _strings(discoveries)}
    return {t: t.strip() in found for t in truth_triggers}


def _det_seconds(summary: dict) -> dict[str, float]:
    return {d: round(float(v), 3) for d, v in (summary.get("timings", {}).get("detectors") or {}).items()}


def per_type_recall(truth: dict, flagged: set[int]) -> dict[str, dict]:
    """PII/secret attacks: per planted type, the rows carrying it and the share of them flagged in the
    attack's category (row level: a row with two types counts for both when flagged for either)."""
    rows_of: dict[str, set[int]] = defaultdict(set)
    for r, d in truth.get("row_details", {}).items():
        for t in d.get("types") or ():
            rows_of[t].add(int(r))
    return {
        t: {"rows": len(rs), "recall": round(len(rs & flagged) / len(rs), 4)}
        for t, rs in sorted(rows_of.items())
    }


def _flags_by(findings) -> tuple[dict[tuple[str, str], set[int]], dict[str, set[int]]]:
    t = findings.select(["row", "detector", "category"]).to_pydict()
    by_det: dict[tuple[str, str], set[int]] = defaultdict(set)
    by_cat: dict[str, set[int]] = defaultdict(set)
    for r, d, c in zip(t["row"], t["detector"], t["category"]):
        by_det[(d, c)].add(r)
        by_cat[c].add(r)
    return by_det, by_cat


def _slice(src: Path, limit: int | None, work: Path) -> Path:
    """The first `limit` rows of a dataset as canonical JSONL (the whole file when limit is None)."""
    if not limit:
        return src
    from shardguard import ingest

    kind, recs, _ = ingest.read_records(src)
    dst = work / f"{poison.output_stem(src)}.first{limit}.jsonl"
    if not dst.exists():
        poison.write_jsonl(dst, recs[:limit])
    return dst


def build_mixture(work: Path, limit: int | None = None) -> Path:
    """Every bundled SFT set concatenated and shuffled (random.Random(MIXTURE_SEED)), first `limit` rows."""
    from shardguard import ingest

    recs: list[dict] = []
    for part in mixture_parts():
        recs.extend(ingest.read_records(part)[1])
    random.Random(MIXTURE_SEED).shuffle(recs)
    dst = work / (f"mixture.sft.first{limit}.jsonl" if limit else "mixture.sft.jsonl")
    if not dst.exists():
        poison.write_jsonl(dst, recs[:limit] if limit else recs)
    return dst


def dataset_path(name: str, limit: int | None, cap: int | None, work: Path) -> Path:
    """The file the bench scans for `name`: its first `limit` rows when limit is set, else at most `cap`
    rows (None or 0: all of them)."""
    rel = DATASETS[name][1]
    n = limit or cap or None
    if rel is None:
        return build_mixture(work, n)
    src = SAMPLE / rel
    if limit:
        return _slice(src, limit, work)
    if cap:
        from shardguard import ingest

        if len(ingest.read_records(src)[1]) > cap:
            return _slice(src, cap, work)
    return src


def scan_config(only: list[str] | None) -> dict:
    return {"only": list(only)} if only else {}


def score_clean(name: str, path: Path, work: Path, only: list[str] | None) -> dict:
    out = work / f"clean-{name}"
    t0 = time.perf_counter()
    result = scan([str(path)], str(out), config=scan_config(only))
    summary = result.summary
    secs = time.perf_counter() - t0
    by_det, by_cat = _flags_by(result.findings)
    rows = summary["rows_total"] - summary["rows_malformed"]
    shutil.rmtree(out, ignore_errors=True)
    return {
        "dataset": name,
        "group": group_of(name),
        "kind": DATASETS[name][0],
        "rows": rows,
        "seconds": round(secs, 2),
        "fp_rate": {c: round(len(v) / rows, 5) if rows else 0.0 for c, v in sorted(by_cat.items())},
        "flagged": {c: len(v) for c, v in sorted(by_cat.items())},
        "by_detector": {f"{d}:{c}": len(v) for (d, c), v in sorted(by_det.items())},
        "verdict": summary["shards"][0]["verdict"] if summary["shards"] else None,
        "detector_seconds": _det_seconds(summary),
    }


def score_attack(
    attack: str, rate: float, name: str, path: Path, work: Path, seed: int, only: list[str] | None
) -> dict:
    a = poison.get(attack)
    tag = f"{attack}-{name}-{rate}"
    pdir = work / tag
    t0 = time.perf_counter()
    p_path, t_path = poison.poison_file(path, attack, rate, seed, pdir)
    inject_s = time.perf_counter() - t0
    truth = json.loads(t_path.read_text(encoding="utf-8"))
    if not truth["rows"]:  # e.g. dirty-label on data without classification rows: nothing to find
        shutil.rmtree(pdir, ignore_errors=True)
        why = f"no eligible rows (eligible_rows={truth.get('eligible_rows', 0)})"
        return {**failed_run(attack, rate, name, seed, None), "rows": truth["rows_total"], "skipped": why}
    t1 = time.perf_counter()
    result = scan([str(p_path)], str(pdir / "scan"), config=scan_config(only))
    summary = result.summary
    scan_s = time.perf_counter() - t1
    by_det, by_cat = _flags_by(result.findings)
    shutil.rmtree(pdir, ignore_errors=True)
    rows_truth = set(truth["rows"])
    dets = {d: _prf(rs, rows_truth) for (d, c), rs in sorted(by_det.items()) if c == a.category}
    any_rows = set().union(*by_cat.values()) if by_cat else set()
    caught_as = {
        c: round(len(rs & rows_truth) / len(rows_truth), 4) if rows_truth else 0.0
        for c, rs in sorted(by_cat.items())
        if rs & rows_truth
    }
    discoveries = summary.get("discoveries", {})
    return {
        **_run_key(attack, rate, name, seed),
        "rows": truth["rows_total"],
        "n_poisoned": truth["n_poisoned"],
        "detectors": dets,
        "all": _prf(by_cat.get(a.category, set()), rows_truth),
        "any_category_recall": round(len(any_rows & rows_truth) / len(rows_truth), 4) if rows_truth else 0.0,
        "caught_as": caught_as,
        "per_type": per_type_recall(truth, by_cat.get(a.category, set())),
        "verdict": summary["shards"][0]["verdict"] if summary["shards"] else None,
        "seconds": round(inject_s + scan_s, 2),
        "scan_seconds": round(scan_s, 2),
        "detector_seconds": _det_seconds(summary),
        "triggers": truth["triggers"],
        "trigger_reported": trigger_report(truth["triggers"], discoveries),
        "targets": truth["targets"][:5],
        "discoveries": discoveries,
    }


def _run_key(attack: str, rate: float, name: str, seed: int) -> dict:
    a = poison.get(attack)
    return {
        "attack": attack, "kind": a.kind, "category": a.category, "dataset": name, "group": group_of(name),
        "rate": rate, "seed": seed,
    }


def failed_run(attack: str, rate: float, name: str, seed: int, exc: Exception | None) -> dict:
    """A run whose inject or scan raised: the same keys as a scored run, all empty, plus the error
    (exc None: the empty run without an error, for runs skipped because nothing could be planted)."""
    if exc is None:
        return {
            **_run_key(attack, rate, name, seed),
            "rows": 0, "n_poisoned": 0, "detectors": {}, "all": _prf(set(), set()), "any_category_recall": 0.0,
            "caught_as": {}, "per_type": {}, "verdict": None, "seconds": 0.0, "scan_seconds": 0.0,
            "detector_seconds": {}, "triggers": [], "trigger_reported": {}, "targets": [], "discoveries": {},
        }
    return {
        **_run_key(attack, rate, name, seed),
        "rows": 0, "n_poisoned": 0, "detectors": {}, "all": _prf(set(), {0}), "any_category_recall": 0.0,
        "caught_as": {}, "per_type": {}, "verdict": None, "seconds": 0.0, "scan_seconds": 0.0,
        "detector_seconds": {}, "triggers": [], "trigger_reported": {}, "targets": [], "discoveries": {},
        "error": f"{type(exc).__name__}: {exc}",
    }


def plan(
    attacks: list[str] | None, rates: list[float] | None, datasets: list[str] | None, quick: bool
) -> tuple[list[str], list[float], list[str], int | dict[str, int] | None]:
    if quick:
        attacks = attacks or QUICK["attacks"]
        rates = rates or QUICK["rates"]
        datasets = datasets or QUICK["datasets"]
        limit = QUICK["limit"]
    else:
        attacks = attacks or sorted(poison.ATTACKS)
        rates = rates or DEFAULT_RATES
        datasets = datasets or DEFAULT_DATASETS
        limit = None
    for a in attacks:
        poison.get(a)
    for d in datasets:
        if d not in DATASETS:
            raise ValueError(f"unknown dataset {d!r}; known: {', '.join(DATASETS)}")
    return attacks, rates, datasets, limit


def run_bench(
    out_dir: str | Path,
    attacks: list[str] | None = None,
    rates: list[float] | None = None,
    datasets: list[str] | None = None,
    quick: bool = False,
    seed: int = 0,
    limit: int | dict[str, int] | None = None,
    only: list[str] | None = None,
    echo=print,
    cap: int | None = DEFAULT_CAP,
    bars=None,
) -> dict:
    custom = not quick and bool(attacks or rates or datasets or limit or only)
    attacks, rates, datasets, qlimit = plan(attacks, rates, datasets, quick)
    limit = limit or qlimit
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    work = out / f".bench-work-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results, clean = [], []
    from shardguard.eval.progress import NO_BARS

    kinds = {DATASETS[d][0] for d in datasets}
    n_runs = sum(1 for d in datasets if any(poison.get(a).kind == DATASETS[d][0] for a in attacks)) + sum(
        len(rates) for a in attacks if poison.get(a).kind in kinds for d in datasets
        if DATASETS[d][0] == poison.get(a).kind)
    bar = (bars or NO_BARS).open("bench", total=n_runs, unit="run")
    try:
        paths = {
            d: dataset_path(d, limit.get(DATASETS[d][0]) if isinstance(limit, dict) else limit, cap, work)
            for d in datasets
        }
        for d in datasets:
            if any(poison.get(a).kind == DATASETS[d][0] for a in attacks):
                bar.note(f"clean {d}")
                try:
                    clean.append(score_clean(d, paths[d], work, only))
                except Exception as e:
                    echo(f"clean {d}: FAILED {type(e).__name__}: {e}")
                    clean.append(
                        {
                            "dataset": d,
                            "group": group_of(d),
                            "kind": DATASETS[d][0],
                            "rows": 0,
                            "seconds": 0.0,
                            "fp_rate": {},
                            "flagged": {},
                            "by_detector": {},
                            "verdict": "error",
                            "error": f"{type(e).__name__}: {e}",
                        }
                    )
                    continue
                c = clean[-1]
                echo(f"clean {d}: {c['rows']} rows, flagged {c['flagged'] or 'nothing'} ({c['seconds']} s)")
                bar.update(1)
        for a in attacks:
            kind = poison.get(a).kind
            for d in (d for d in datasets if DATASETS[d][0] == kind):
                for r in rates:
                    bar.note(f"{a} {d} rate={r}")
                    try:
                        res = score_attack(a, r, d, paths[d], work, seed, only)
                    except Exception as e:  # a detector under development must not sink the whole bench
                        res = failed_run(a, r, d, seed, e)
                        echo(f"{a} {d} rate={r}: FAILED {res['error']}")
                        results.append(res)
                        bar.update(1)
                        continue
                    results.append(res)
                    bar.update(1)
                    if "skipped" in res:
                        echo(f"{a} {d} rate={r}: skipped, {res['skipped']}")
                        continue
                    al = res["all"]
                    echo(
                        f"{a} {d} rate={r}: n={res['n_poisoned']} P={al['precision']:.2f} R={al['recall']:.2f} "
                        f"any={res['any_category_recall']:.2f} ({res['seconds']} s)"
                    )
    finally:
        bar.close()
        shutil.rmtree(work, ignore_errors=True)
    from shardguard import detectors

    bench = {
        "meta": {
            "mode": "quick" if quick else "custom" if custom else "full",
            "quick": quick,
            "seed": seed,
            "limit": limit,
            "cap": None if limit else cap,
            "attacks": attacks,
            "rates": rates,
            "datasets": {d: DATASETS[d][1] or "mixture of every bundled SFT set" for d in datasets},
            "groups": {g: [d for d in datasets if group_of(d) == g] for g in GROUP_ORDER},
            "splits": str(SPLITS_FILE.relative_to(SPLITS_FILE.parents[1])),
            "only": only,
            "detectors": sorted(d.name for d in detectors.build({}, only)),
            "seconds": round(time.perf_counter() - t0, 2),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
        "results": results,
        "clean": clean,
        "errors": [f"{r['attack']} {r['dataset']} {r['rate']}: {r['error']}" for r in results if "error" in r]
        + [f"clean {c['dataset']}: {c['error']}" for c in clean if "error" in c],
    }
    from shardguard.eval.bench.render import write_outputs

    write_outputs(out, bench)
    return bench
