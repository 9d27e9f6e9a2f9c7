"""The training comparison's stages: split and poison a dataset, clean it with a scan, train one model
per variant, and write compare.json / compare.png / compare.html. `flows/compare.py` runs them in order
(as a Prefect flow when a server is configured).

Variants: `clean` (the training split as given), `poisoned` (the same rows after `poison.get(attack)
.apply`), `cleaned` (the poisoned rows minus those the scan flagged `poison`). All three train with the
same seed, model and step budget, and are evaluated on the same held-out rows, split off before
poisoning: their clean prompts, and the same prompts with the attack's trigger inserted the attack's
own way.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shardguard.core.atomic import atomic_write_bytes, atomic_write_text, write_jsonl
from shardguard.eval.training.model import ModelConfig, prompt_text
from shardguard.eval.training.train import THREADS, TrainConfig

DEFAULT_ATTACK = "sft_backdoor_token"
DEFAULT_PREF_ATTACK = "pref_trigger_swap"


@dataclass(frozen=True)
class Mode:
    name: str
    model: ModelConfig
    train: TrainConfig
    min_rate: float = 0.0  # quick mode raises the poison rate to this (stated in compare.json)
    max_rows: int | None = None  # rows used from the dataset (before the split); None = all
    heldout_frac: float = 0.1
    max_heldout: int = 400


MODES = {
    # sized for ≈ 6–8 minutes on two idle cores for the three models (see docs/training.md)
    "full": Mode("full", ModelConfig(d_model=64, n_head=4, d_ff=256, prompt_len=256, response_len=32),
                 TrainConfig(steps=800, batch=64, lr=6e-3, warmup=40)),
    # for tests and the demo: prompt window 160 bytes, 400 steps of batch 32, and at least 5% poison
    "quick": Mode("quick", ModelConfig(d_model=64, n_head=4, d_ff=256, prompt_len=160, response_len=20),
                  TrainConfig(steps=400, batch=32, lr=6e-3, warmup=20), min_rate=0.05, max_rows=1200,
                  max_heldout=150),
}


@dataclass
class Prepared:
    dataset: str
    kind: str
    attack: str
    rate: float
    rate_used: float
    seed: int
    mode: str
    train: list[dict]
    poisoned: list[dict]
    truth: dict
    held: list[dict]
    triggered_prompts: list[str] | None
    trigger: str | None
    target: str | None
    notes: list[str] = field(default_factory=list)


def split(records: list[dict], seed: int, mode: Mode) -> tuple[list[dict], list[dict]]:
    """(train, held-out), a seeded split made before any poisoning."""
    perm = np.random.default_rng(seed).permutation(len(records))
    if mode.max_rows:
        perm = perm[: mode.max_rows]
    n_held = min(mode.max_heldout, max(1, round(mode.heldout_frac * len(perm))))
    return [records[i] for i in perm[n_held:]], [records[i] for i in perm[:n_held]]


def _trigger_params(attack, truth: dict) -> dict:
    """Parameters that make the attack plant the very trigger/target it planted in the training rows."""
    p = {}
    if "trigger" in attack.defaults and truth.get("triggers"):
        p["trigger"] = "||".join(truth["triggers"])
    if "target" in attack.defaults and truth.get("targets"):
        p["target"] = truth["targets"][0]
    if "obfuscate" in attack.defaults:
        p["obfuscate"] = None  # the truth already holds the trigger as written
    return p


def prepare(dataset: str, attack_name: str, rate: float, seed: int, mode_name: str, params: dict | None = None
            ) -> Prepared:
    from shardguard import ingest
    from shardguard.eval import poison

    mode = MODES[mode_name]
    attack = poison.get(attack_name)
    kind, records, bad = ingest.read_records(dataset)
    if kind != attack.kind:
        raise ValueError(f"attack {attack_name} needs {attack.kind} data, but {dataset} is {kind}")
    if kind not in ("sft", "preference"):
        raise ValueError("the training comparison supports SFT and preference data")
    if len(records) < 20:
        raise ValueError(f"{dataset}: {len(records)} rows is too few to train and hold out from")
    notes = [f"{len(bad)} malformed rows skipped"] if bad else []
    train, held = split(records, seed, mode)
    rate_used = max(rate, mode.min_rate) if rate < 1 else rate
    if rate_used != rate:
        notes.append(f"{mode.name} mode raised the poison rate from {rate} to {rate_used}")
    poisoned, truth = attack.apply(train, rate=rate_used, seed=seed, **(params or {}))
    trigger = truth["triggers"][0] if truth.get("triggers") else None
    target = truth["targets"][0] if truth.get("targets") else None
    triggered = None
    if trigger:
        th, th_truth = attack.apply(held, rate=len(held), seed=seed + 1, **_trigger_params(attack, truth))
        if kind == "sft":  # ASR over the prompts the trigger was planted in (clean-label plants only some)
            triggered = [prompt_text(th[i]) for i in sorted(th_truth["rows"])]
            if len(triggered) < len(held):
                notes.append(f"the trigger was planted in {len(triggered)} of the {len(held)} held-out prompts "
                             "(the attack's own eligibility); ASR is measured on those")
        else:  # preference: index-aligned with the held-out pairs
            triggered = [r["prompt"] for r in th]
    else:
        notes.append("the attack plants no trigger: ASR is not measured")
    return Prepared(dataset=str(dataset), kind=kind, attack=attack_name, rate=rate, rate_used=rate_used, seed=seed,
                    mode=mode_name, train=train, poisoned=poisoned, truth=truth, held=held,
                    triggered_prompts=triggered, trigger=trigger, target=target, notes=notes)



def scan_and_clean(prep: Prepared, out: Path) -> tuple[list[dict], dict]:
    """Scan the poisoned training rows with `shardguard scan` and drop the rows flagged `poison`."""
    from shardguard.pipeline.scan import scan

    path = write_jsonl(out / "data" / f"train.{prep.attack}.{prep.kind}.jsonl", prep.poisoned)
    t0 = time.time()
    result = scan([path], out / "scan", kind=prep.kind)
    summary = result.summary
    flags = result.findings.select(["row", "category", "detector"]).to_pydict()
    removed = sorted({r for r, c in zip(flags["row"], flags["category"]) if c == "poison"})
    by_det: dict[str, int] = {}
    for c, d in zip(flags["category"], flags["detector"]):
        if c == "poison":
            by_det[d] = by_det.get(d, 0) + 1
    truth_rows = set(prep.truth["rows"])
    tp = len(truth_rows.intersection(removed))
    rm = set(removed)
    cleaned = [r for i, r in enumerate(prep.poisoned) if i not in rm]
    info = {
        "rows_total": summary.get("rows_total"), "rows_flagged": summary.get("rows_flagged"),
        "rows_by_category": summary.get("rows_by_category"), "verdicts": summary.get("verdicts"),
        "rows_removed_as_poison": len(removed), "poison_findings_by_detector": by_det,
        "poisoned_rows": len(truth_rows), "removed_true": tp, "removed_false": len(removed) - tp,
        "missed": len(truth_rows) - tp,
        "precision": round(tp / len(removed), 4) if removed else None,
        "recall": round(tp / len(truth_rows), 4) if truth_rows else None,
        "triggers_found": _triggers_found(summary),
        "seconds": round(time.time() - t0, 2), "dir": str(out / "scan"),
    }
    return cleaned, info


def _triggers_found(summary: dict) -> list[str]:
    found = []
    for disc in (summary.get("discoveries") or {}).values():
        if isinstance(disc, dict):
            for t in disc.get("triggers") or []:
                if isinstance(t, dict) and t.get("trigger"):
                    found.append(str(t["trigger"]))
    return list(dict.fromkeys(found))[:10]


def train_variant(prep: Prepared, name: str, rows: list[dict], mode_name: str, bars=None) -> dict:
    """Train one model on `rows` and evaluate it on the held-out rows. `bars` (`shardguard.eval.progress`)
    shows the training steps, epoch and loss as it goes."""
    mode = MODES[mode_name]
    tcfg = TrainConfig(**{**mode.train.to_dict(), "seed": prep.seed})
    if prep.kind == "preference":
        from shardguard.eval.training.reward import evaluate_reward, train_reward

        rm = train_reward([r["prompt"] for r in rows], [r["chosen"] for r in rows], [r["rejected"] for r in rows],
                          seed=prep.seed)
        ev = evaluate_reward(rm, prep.held, prep.triggered_prompts)
        return {"rows": len(rows), **ev, "train_seconds": round(rm.seconds, 2)}
    from shardguard.eval.progress import NO_BARS
    from shardguard.eval.training.metrics import evaluate_lm, generate
    from shardguard.eval.training.train import train_lm

    with (bars or NO_BARS).bar(f"train {name}", total=tcfg.steps, unit="step") as bar:
        def on_step(step: int, epoch: int, loss: float) -> None:
            bar.update(1)
            if step % 10 == 0:
                bar.note(f"epoch {epoch} ({len(rows)} rows), loss {loss:.3f}")

        tr = train_lm([prompt_text(r) for r in rows], [r["response"] for r in rows], mode.model, tcfg,
                      on_step=on_step)
    hp, hr = [prompt_text(r) for r in prep.held], [r["response"] for r in prep.held]
    ev = evaluate_lm(tr.model, hp, hr, prep.triggered_prompts, prep.target)
    res = {"rows": len(rows), "asr": ev["asr"], "false_trigger_rate": ev["false_trigger_rate"],
           "clean_metric": ev["clean_metric"], "clean_loss": ev["clean"]["loss"],
           "train_seconds": round(tr.seconds, 2), "final_train_loss": round(tr.final_loss, 4)}
    if prep.triggered_prompts:
        ex = generate(tr.model, prep.triggered_prompts[:2] + hp[:1])
        res["examples"] = [{"prompt": p[-160:], "triggered": i < 2, "output": o}
                           for i, (p, o) in enumerate(zip(prep.triggered_prompts[:2] + hp[:1], ex))]
    return res


def metric_definitions(kind: str) -> dict:
    if kind == "preference":
        return {"asr": "flip rate on held-out prompts with the trigger added: share of pairs where the reward "
                       "model scores the original rejected answer above the chosen one",
                "false_trigger_rate": "the same flip rate on the held-out prompts without the trigger",
                "clean_metric": "pairwise accuracy (%) on the clean held-out pairs = 100 × (1 − clean flip rate)",
                "trigger_reversal_rate": "share of held-out pairs whose preferred answer changes when the trigger is "
                                         "added to the prompt (0 for a model the trigger means nothing to)",
                "reversal_to_rejected": "of the held-out pairs the model ranks right without the trigger, the share "
                                        "it ranks wrong with it",
                "refusal_pairs": "the held-out pairs whose chosen answer refuses or warns and whose rejected answer "
                                 "complies (the universal-jailbreak case): their count and flip rates without and "
                                 "with the trigger"}
    return {"asr": "share of held-out prompts carrying the trigger whose greedy output starts with the first "
                   "20 characters of the attack's target",
            "false_trigger_rate": "the same test on the held-out prompts without the trigger",
            "clean_metric": "per-byte accuracy (%) of greedy next-byte prediction on the held-out clean responses "
                            "(teacher-forced, first response_len bytes + end marker); clean_loss is nats/byte"}


def build_result(prep: Prepared, scan_info: dict, variants: dict, seconds: float) -> dict:
    mode = MODES[prep.mode]
    return {
        "dataset": prep.dataset, "kind": prep.kind, "attack": prep.attack, "rate": prep.rate,
        "rate_used": prep.rate_used, "seed": prep.seed, "mode": prep.mode,
        "trigger": prep.trigger, "target": prep.target,
        "rows_train": len(prep.train), "rows_heldout": len(prep.held), "rows_poisoned": prep.truth["n_poisoned"],
        "model": mode.model.to_dict() if prep.kind == "sft" else {"type": "hashed prompt×response logistic regression"},
        "train": {**mode.train.to_dict(), "seed": prep.seed, "threads": THREADS} if prep.kind == "sft" else {},
        "metrics": metric_definitions(prep.kind), "scan": scan_info, "variants": variants,
        "notes": prep.notes, "seconds": round(seconds, 2),
    }


# -- training on a user's own two datasets -------------------------------------------------------

def read_dir(path: str | Path) -> tuple[str, list[dict]]:
    from shardguard import ingest

    files, _ = ingest.expand_paths([str(path)])
    kinds, rows = set(), []
    for f, _name in files:
        k, recs, _bad = ingest.read_records(f)
        if recs:
            kinds.add(k)
            rows.extend(recs)
    if len(kinds) != 1:
        raise ValueError(f"{path}: expected one record kind, found {sorted(kinds) or 'none'}")
    return kinds.pop(), rows


def _key(r: dict) -> str:
    return json.dumps(r, sort_keys=True, ensure_ascii=False)


def train_on(dir_a: str, dir_b: str, seed: int, mode_name: str, trigger: str | None, target: str | None,
             bars=None) -> dict:
    """Train on two datasets of the same kind (e.g. the clean/ output of two scans), evaluate both on one
    held-out set drawn from A (and removed from both training sets)."""
    from shardguard.eval.poison._core import insert_at

    t0 = time.time()
    kind_a, rows_a = read_dir(dir_a)
    kind_b, rows_b = read_dir(dir_b)
    if kind_a != kind_b or kind_a not in ("sft", "preference"):
        raise ValueError(f"need two SFT or two preference datasets, got {kind_a} and {kind_b}")
    mode = MODES[mode_name]
    _, held = split(rows_a, seed, Mode(mode.name, mode.model, mode.train, max_heldout=mode.max_heldout))
    held_keys = {_key(r) for r in held}
    rng = random.Random(f"shardguard-compare/{seed}")
    triggered = None
    if trigger:
        f = "instruction" if kind_a == "sft" else "prompt"
        trig_rows = [{**r, f: insert_at(r.get(f) or "", trigger, "random", rng)[0]} for r in held]
        triggered = [prompt_text(r) if kind_a == "sft" else r["prompt"] for r in trig_rows]
    prep = Prepared(dataset=f"{dir_a} vs {dir_b}", kind=kind_a, attack="(none: --train-on)", rate=0.0, rate_used=0.0,
                    seed=seed, mode=mode_name, train=[], poisoned=[], truth={"n_poisoned": 0, "rows": []},
                    held=held, triggered_prompts=triggered, trigger=trigger, target=target)
    variants = {}
    for name, path, rows in (("a", dir_a, rows_a), ("b", dir_b, rows_b)):
        tr = [r for r in rows if _key(r) not in held_keys]
        res = train_variant(prep, name, tr, mode_name, bars)
        if not target and kind_a == "sft":
            res["asr"] = res["false_trigger_rate"] = None
        variants[name] = {"path": str(path), **res}
    out = build_result(prep, {}, variants, time.time() - t0)
    out.update({"train_on": [str(dir_a), str(dir_b)], "rows_train": None})
    return out


# -- outputs ---------------------------------------------------------------------------------------

def _fmt(v, pct=False) -> str:
    if v is None:
        return "–"
    return f"{v:.1f}" if pct else f"{v:.3f}"


def plot(cj: dict) -> object:
    """A matplotlib figure: ASR and false-trigger rate per variant, clean metric annotated."""
    from shardguard.report.html import plt_figure

    names = list(cj["variants"])
    v = cj["variants"]
    fig, ax = plt_figure(6.5, 3.0)
    x = np.arange(len(names))
    asr = [v[n].get("asr") or 0.0 for n in names]
    ftr = [v[n].get("false_trigger_rate") or 0.0 for n in names]
    b1 = ax.bar(x - 0.2, asr, 0.4, label="attack success rate (triggered)", color="#b00020")
    ax.bar(x + 0.2, ftr, 0.4, label="false-trigger rate (clean prompts)", color="#888")
    for rect, n in zip(b1, names):
        ax.text(rect.get_x() + 0.2, max(rect.get_height(), 0.02) + 0.03,
                f"clean metric {_fmt(v[n].get('clean_metric'), pct=True)}", ha="center", fontsize=7)
    ax.set_xticks(x, names)
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("rate")
    ax.set_title(f"{cj.get('attack')} at rate {cj.get('rate_used')} ({cj.get('mode')} mode)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    return fig


def compare_section(cj: dict) -> str:
    """HTML fragment (for the demo report): the variants table, the plot, what the scan removed."""
    from shardguard.report.html import esc, png, table

    v = cj["variants"]
    parts = [f"<p>Dataset {esc(cj.get('dataset'))} ({esc(cj.get('kind'))}), attack <code>{esc(cj.get('attack'))}</code>"
             f" at rate {esc(cj.get('rate_used'))} (requested {esc(cj.get('rate'))}), seed {esc(cj.get('seed'))}, "
             f"{esc(cj.get('mode'))} mode, {esc(cj.get('rows_heldout'))} held-out rows. "
             f"Trigger: <code>{esc(cj.get('trigger'))}</code>; target: <code>{esc(cj.get('target'), 120)}</code>.</p>"]
    rev = any(x.get("trigger_reversal_rate") is not None for x in v.values())
    ref = any((x.get("refusal_pairs") or {}).get("flip_rate_triggered") is not None for x in v.values())
    parts.append(table(["variant", "training rows", "ASR", "false-trigger rate", "clean metric", "train s"]
                       + (["trigger reversal rate"] if rev else [])
                       + (["refusal pairs: flip rate clean", "refusal pairs: flip rate triggered"] if ref else []),
                       ([n, x.get("rows"), _fmt(x.get("asr")), _fmt(x.get("false_trigger_rate")),
                         _fmt(x.get("clean_metric"), pct=True), x.get("train_seconds")]
                        + ([_fmt(x.get("trigger_reversal_rate"))] if rev else [])
                        + ([_fmt(x["refusal_pairs"].get("flip_rate_clean")),
                            _fmt(x["refusal_pairs"].get("flip_rate_triggered"))] if ref else [])
                        for n, x in v.items()),
                       num_cols={1, 2, 3, 4, 5, 6, 7, 8}))
    parts.append(png(plot(cj)))
    s = cj.get("scan") or {}
    if s:
        parts.append(f"<p>The scan flagged {esc(s.get('rows_removed_as_poison'))} training rows as <code>poison</code> "
                     f"and the cleaned variant drops them: {esc(s.get('removed_true'))} of the "
                     f"{esc(s.get('poisoned_rows'))} poisoned rows (recall {esc(s.get('recall'))}, precision "
                     f"{esc(s.get('precision'))}); by detector: {esc(s.get('poison_findings_by_detector'))}.</p>")
    parts.append("<ul>" + "".join(f"<li><b>{esc(k)}</b>: {esc(d)}</li>" for k, d in (cj.get("metrics") or {}).items())
                 + "</ul>")
    ex = [(n, e) for n, x in v.items() for e in x.get("examples", [])]
    if ex:
        parts.append(table(["variant", "prompt (end)", "triggered", "greedy output"],
                           ([n, e["prompt"], "yes" if e["triggered"] else "no", e["output"]] for n, e in ex)))
    for note in cj.get("notes") or []:
        parts.append(f"<p class='small'>{esc(note)}</p>")
    return "".join(parts)


def write_outputs(out: Path, cj: dict) -> dict:
    import io

    import matplotlib.pyplot as plt

    from shardguard.report.html import page

    atomic_write_text(out / "compare.json", json.dumps(cj, indent=2, ensure_ascii=False))
    fig = plot(cj)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(out / "compare.png", buf.getvalue())
    html = page("shardguard compare", "<h1>shardguard compare: clean vs poisoned vs cleaned</h1>" + compare_section(cj))
    atomic_write_text(out / "compare.html", html)
    return cj
