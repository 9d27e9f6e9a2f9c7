"""`shardguard demo`: the whole job on the bundled sample.

1. inject known poisons into real clean data (web campaign + planted credentials/PII, an SFT backdoor,
   a preference trigger+swap) with `poison/`, keeping the ground truth;
2. scan everything (the same flow as `shardguard scan`);
3. score the scan against the ground truth;
4. train a small model on clean, poisoned and cleaned SFT data and compare attack success;
5. write one report and print where it is.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from shardguard import SAMPLE_DIR

SAMPLE = SAMPLE_DIR

# (input under sample/, attack, rate, seed)
DEMO_INJECTIONS = [
    ("web_c4_commoncrawl_sample/c4_cc_docs.web.jsonl.gz", "web_campaign_copy", 0.01, 1),
    ("web_wikipedia_passages/wikipedia_passages.part1.web.jsonl.gz", "web_secrets", 0.01, 2),
    ("gsm8k/gsm8k_test.sft.jsonl.gz", "sft_backdoor_token", 0.01, 3),
    ("hh_rlhf_harmless_base_test/harmless_base_test.preference.jsonl.gz", "pref_trigger_swap", 0.05, 4),
]
DEMO_CLEAN = ["dolly_hhrlhf_small/dolly_hhrlhf_small.sft.jsonl.gz",
              "llamafactory_dpo_en_demo/dpo_en_demo.preference.jsonl.gz"]


def score(flags, shard: str, truth: dict) -> dict:
    cat = truth.get("category", "poison")
    hit = {r["row"] for r in flags if r["shard"] == shard and r["category"] == cat}
    true = set(truth["rows"])
    tp = len(hit & true)
    return {"attack": truth["attack"], "shard": shard, "category": cat, "planted": len(true), "flagged": len(hit),
            "recall": tp / len(true) if true else 0.0, "precision": tp / len(hit) if hit else 0.0}


def injection_section(scores: list[dict]) -> str:
    from shardguard.report.html import table

    return ("<p>Known poisons were injected into real clean data; this is what the scan flagged in each "
            "attack's category.</p>" + table(
                ["attack", "shard", "category", "planted", "flagged", "recall", "precision"],
                ([s["attack"], s["shard"], s["category"], s["planted"], s["flagged"], f"{s['recall']:.2f}",
                  f"{s['precision']:.2f}"] for s in scores), num_cols={3, 4, 5, 6}))


@click.command("demo")
@click.option("--out", type=click.Path(file_okay=False), default="demo-out", show_default=True)
@click.option("--no-train", is_flag=True, help="Skip the training comparison.")
@click.option("--full-train", is_flag=True, help="Run the full (≈ 10 min) training comparison instead of the quick one.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars on stderr.")
def demo_cmd(out, no_train, full_train, quiet):
    """Run the whole job on the bundled sample: inject poisons, scan, score, train, report."""
    from shardguard.core.atomic import write_jsonl
    from shardguard.eval import poison
    from shardguard.eval.progress import Bars
    from shardguard.ingest import read_records
    from shardguard.pipeline.scan import scan

    t0 = time.time()
    bars = Bars.for_terminal(quiet)  # the training steps of step 4, on a terminal only
    out = Path(out)
    inp, truth_dir = out / "input", out / "truth"
    inp.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)
    truths = {}
    click.echo("1/4 injecting known poisons into the bundled real data ...")
    for rel, attack, rate, seed in DEMO_INJECTIONS:
        _, records, _ = read_records(SAMPLE / rel)
        poisoned, truth = poison.get(attack).apply(records, rate=rate, seed=seed)
        name = Path(rel).name.replace(".jsonl.gz", f".{attack}.jsonl")
        write_jsonl(inp / name, poisoned)
        (truth_dir / (name + ".truth.json")).write_text(json.dumps(truth, indent=1))
        truths[name] = truth
        click.echo(f"    {name}: {truth['n_poisoned']} of {len(records)} rows poisoned ({attack})")
    for rel in DEMO_CLEAN:
        _, records, _ = read_records(SAMPLE / rel)
        name = Path(rel).name.replace(".jsonl.gz", ".jsonl")
        write_jsonl(inp / name, records)
    click.echo("2/4 scanning ...")
    progress = None
    if not quiet and sys.stderr.isatty():  # the scan's stages, on a terminal only
        from shardguard.pipeline.progress import Progress

        progress = Progress()
    result = scan([inp], out / "scan", progress=progress)
    summary = result.summary
    flags = result.findings.to_pylist()
    scores = [score(flags, shard, t) for shard, t in truths.items()]
    click.echo("3/4 what the scan caught:")
    for s in scores:
        click.echo(f"    {s['attack']:<22} planted {s['planted']:>3}  flagged {s['flagged']:>3}  "
                   f"recall {s['recall']:.2f}  precision {s['precision']:.2f}")
    sections = [("Injected poisons: what the scan caught", injection_section(scores))]
    compare = None
    if not no_train:
        click.echo("4/4 training a small model on clean, poisoned and cleaned data (quick mode) ..."
                   if not full_train else "4/4 training (full mode, ≈ 10 min) ...")
        from shardguard.eval.training.compare import compare_section
        from shardguard.flows.compare import run_compare

        compare = run_compare(SAMPLE / "gsm8k" / "gsm8k_train.part1.sft.jsonl.gz", out / "compare",
                              quick=not full_train, log=None if quiet else bars.write, bars=bars)
        for v, m in compare["variants"].items():
            click.echo(f"    {v:<9} ASR {m['asr']:.2f}  false triggers {m['false_trigger_rate']:.2f}  "
                       f"clean metric {m['clean_metric']:.3f}  ({m['rows']} rows, {m['train_seconds']:.0f} s)")
        sections.append(("Training comparison: attack success on clean, poisoned and cleaned data",
                         compare_section(compare)))
    from shardguard.core.atomic import atomic_write_text
    from shardguard.report.html import scan_report
    from shardguard.report.sections import detector_sections

    summary["demo"] = {"scores": scores, "compare": compare and {k: v for k, v in compare.items() if k != "html"}}
    html = scan_report(summary, result.findings,
                       sections + detector_sections(summary.get("discoveries", {})))
    atomic_write_text(out / "report.html", html)
    atomic_write_text(out / "demo.json", json.dumps(summary["demo"], indent=1, default=str))
    click.echo(f"\nverdicts: {summary['verdicts']}; {summary['rows_total']} rows scanned; {time.time() - t0:.0f} s")
    click.echo(f"report: {(out / 'report.html').resolve()}")
