"""bench.json -> the terminal table, bench.md (Markdown) and bench.html (self-contained, with plots)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from shardguard.core.atomic import atomic_write_text

GROUP_ORDER = ["shape", "check", "mixture", "other"]


def _group(r: dict) -> str:
    if r.get("group"):
        return r["group"]
    from shardguard.eval.bench.run import group_of

    return group_of(r["dataset"])


def _gkey(g: str) -> int:
    return GROUP_ORDER.index(g) if g in GROUP_ORDER else len(GROUP_ORDER)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _best(res: dict) -> tuple[str, dict]:
    if not res["detectors"]:
        return "-", {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    name = max(res["detectors"], key=lambda d: (res["detectors"][d]["f1"], d))
    return name, res["detectors"][name]


def _trig(res: dict) -> str:
    rep = res.get("trigger_reported") or {}
    if not rep:
        return "n/a"
    return f"{sum(rep.values())}/{len(rep)}"


def rows_detail(bench: dict) -> tuple[list[str], list[list]]:
    headers = [
        "group",
        "attack",
        "dataset",
        "rate",
        "poisoned",
        "category",
        "best detector",
        "P",
        "R",
        "F1",
        "all P",
        "all R",
        "all F1",
        "any-cat R",
        "trigger reported",
        "verdict",
        "s",
    ]
    rows = []
    for r in sorted(bench["results"], key=lambda r: _gkey(_group(r))):
        name, b = _best(r)
        a = r["all"]
        if "error" in r or "skipped" in r:
            why = "FAILED: " + r["error"][:80] if "error" in r else "skipped: " + r["skipped"]
            rows.append(
                [_group(r), r["attack"], r["dataset"], r["rate"], "-", r["category"], why]
                + [""] * (len(headers) - 7)
            )
            continue
        rows.append(
            [
                _group(r),
                r["attack"],
                r["dataset"],
                r["rate"],
                f"{r['n_poisoned']}/{r['rows']}",
                r["category"],
                name,
                f"{b['precision']:.2f}",
                f"{b['recall']:.2f}",
                f"{b['f1']:.2f}",
                f"{a['precision']:.2f}",
                f"{a['recall']:.2f}",
                f"{a['f1']:.2f}",
                f"{r['any_category_recall']:.2f}",
                _trig(r),
                r["verdict"],
                r["seconds"],
            ]
        )
    return headers, rows


def rows_pivot(bench: dict, key: str = "recall") -> tuple[list[str], list[list]]:
    """group x attack x dataset rows (shape, check, mixture, then web/preference), one column per rate:
    the "all detectors" metric in the attack's category; n/a where nothing could be planted."""
    rates = sorted({r["rate"] for r in bench["results"]})
    cell: dict[tuple[str, str, str], dict[float, str]] = defaultdict(dict)
    for r in sorted(bench["results"], key=lambda r: _gkey(_group(r))):
        a = r["all"]
        cell[(_group(r), r["attack"], r["dataset"])][r["rate"]] = (
            "error"
            if "error" in r
            else "n/a"
            if "skipped" in r
            else f"{a['recall']:.2f}/{a['precision']:.2f}"
            if key == "rp"
            else f"{a[key]:.2f}"
        )
    headers = ["group", "attack", "dataset"] + [f"{100 * x:g}%" for x in rates]
    return headers, [[g, a, d] + [v.get(x, "") for x in rates] for (g, a, d), v in cell.items()]


def rows_groups(bench: dict) -> tuple[list[str], list[list]]:
    """SFT groups (shape, check, mixture) x attack, one column per rate: recall/precision pooled over the
    group's datasets (planted rows caught / planted rows; caught / flagged), runs with nothing planted
    or a failure left out."""
    rates = sorted({r["rate"] for r in bench["results"]})
    acc: dict[tuple[str, str], dict[float, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0, 0]))
    for r in bench["results"]:
        g = _group(r)
        if g == "other" or "error" in r or "skipped" in r or not r["n_poisoned"]:
            continue
        c = acc[(g, r["attack"])][r["rate"]]
        c[0] += r["all"]["tp"]
        c[1] += r["n_poisoned"]
        c[2] += r["all"]["flagged"]

    def fmt(c):
        return f"{c[0] / c[1]:.2f}/{c[0] / c[2] if c[2] else 0.0:.2f}" if c[1] else ""

    keys = sorted(acc, key=lambda k: (_gkey(k[0]), k[1]))
    headers = ["group", "attack"] + [f"{100 * x:g}%" for x in rates]
    return headers, [[g, a] + [fmt(acc[(g, a)][x]) if x in acc[(g, a)] else "" for x in rates] for g, a in keys]


def groups_line(bench: dict) -> str:
    m = bench["meta"]
    groups = m.get("groups") or {}
    parts = [f"{g}: {', '.join(ds)}" for g, ds in groups.items() if ds]
    cap = m.get("cap")
    line = "Groups (" + m.get("splits", "bench/splits.toml") + "): " + "; ".join(parts) + "."
    if cap and not m.get("limit"):
        line += f" Datasets over {cap:,} rows cut to their first {cap:,} (T0 and the mixture are shuffled)."
    return line


def rows_per_type(bench: dict) -> tuple[list[str], list[list]]:
    """PII/secret attacks: row-level recall per planted type, pooled over the rates of each dataset."""
    acc: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for r in bench["results"]:
        for t, v in (r.get("per_type") or {}).items():
            a = acc[(r["attack"], r["dataset"], t)]
            a[0] += round(v["recall"] * v["rows"])
            a[1] += v["rows"]
    rows = [[a, d, t, n, f"{hit / n:.2f}" if n else "-"] for (a, d, t), (hit, n) in sorted(acc.items())]
    return ["attack", "dataset", "type", "rows planted", "recall"], rows


def rows_clean(bench: dict) -> tuple[list[str], list[list]]:
    cats = ["poison", "duplicate", "pii", "secret", "quality"]
    headers = ["group", "dataset", "kind", "rows"] + [f"{c} %" for c in cats] + ["verdict", "s"]
    rows = [
        [_group(c), c["dataset"], c["kind"], c["rows"]]
        + [_pct(c["fp_rate"].get(k, 0.0)) for k in cats]
        + [c["verdict"], c["seconds"]]
        for c in sorted(bench["clean"], key=lambda c: _gkey(_group(c)))
    ]
    return headers, rows


def text_table(headers: list[str], rows: list[list]) -> str:
    cells = [[str(h) for h in headers]] + [[str(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def md_table(headers: list[str], rows: list[list]) -> str:
    def c(v):
        return str(v).replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(c(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(c(v) for v in r) + " |" for r in rows]
    return "\n".join(out)


def terminal(bench: dict) -> str:
    m = bench["meta"]
    parts = [
        f"shardguard bench ({m.get('mode', 'full')}; {m['seconds']} s; "
        f"detectors: {', '.join(m['detectors'])})",
        groups_line(bench),
        "\nSFT groups, recall / precision pooled over each group's datasets:",
        text_table(*rows_groups(bench)),
        "\nRecall / precision, all detectors, attack's category:",
        text_table(*rows_pivot(bench, "rp")),
        "\nClean data, % of rows flagged:",
        text_table(*rows_clean(bench)),
    ]
    if bench.get("errors"):
        parts += ["\nFAILED runs:"] + bench["errors"]
    return "\n".join(parts)


def markdown(bench: dict) -> str:
    m = bench["meta"]
    return (
        "\n\n".join(
            [
                "# shardguard bench",
                f"{m.get('mode', 'full').capitalize()} run, {m['created']}, seed {m['seed']}, {m['seconds']} s on "
                f"{m['cpus']} CPUs. Detectors: {', '.join(f'`{d}`' for d in m['detectors'])}. "
                f"Datasets: {', '.join(f'`{k}` ({v})' for k, v in m['datasets'].items())}"
                + (f", first rows only ({m['limit']})" if m.get("limit") else "")
                + ".",
                groups_line(bench),
                "## SFT groups: recall/precision by rate, pooled over each group's datasets",
                "*shape*: data the detectors may be designed on; *check*: data only measured on (the figures "
                "that count); *mixture*: every bundled SFT set shuffled together. n/a runs (nothing could be "
                "planted) are left out.",
                md_table(*rows_groups(bench)),
                "## Recall by rate (all detectors, rows flagged in the attack's category)",
                md_table(*rows_pivot(bench, "recall")),
                "## Precision by rate (all detectors, attack's category; 0.00 where nothing was flagged)",
                md_table(*rows_pivot(bench, "precision")),
                "## Clean data: % of rows flagged per category",
                md_table(*rows_clean(bench)),
                "## PII and secrets: recall per planted type (row level, all rates pooled)",
                md_table(*rows_per_type(bench)),
                "## Every run",
                "`best detector`: highest F1 in the attack's category; `all`: union of detectors in that category; "
                "`any-cat R`: share of poisoned rows flagged in any category; `trigger reported`: planted triggers "
                "found verbatim in the scan's discoveries.",
                md_table(*rows_detail(bench)),
            ]
            + (
                ["## Failed runs", "\n".join(f"- {x}" for x in bench["errors"])]
                if bench.get("errors")
                else []
            )
        )
        + "\n"
    )


def _plots(bench: dict) -> str:
    from shardguard.report.html import e, plt_figure, png

    by_attack: dict[str, list[dict]] = defaultdict(list)
    for r in bench["results"]:
        by_attack[r["attack"]].append(r)
    out = []
    for attack, rs in by_attack.items():
        fig, ax = plt_figure(4.2, 2.6)
        series: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
        for r in rs:
            if "skipped" in r:
                continue
            series[r["dataset"]].append((r["rate"], r["all"]["recall"], r["any_category_recall"]))
        for i, (d, pts) in enumerate(sorted(series.items())):
            pts.sort()
            color = f"C{i}"
            ax.plot([100 * p[0] for p in pts], [p[1] for p in pts], "o-", color=color, label=f"{d}")
            ax.plot(
                [100 * p[0] for p in pts],
                [p[2] for p in pts],
                "x--",
                color=color,
                alpha=0.5,
                label=f"{d} (any category)",
            )
        ax.set_xscale("log")
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("poison rate (%)")
        ax.set_ylabel("recall")
        ax.set_title(attack, fontsize=10)
        if series:
            ax.legend(fontsize=7)
        out.append(
            f"<div style='display:inline-block;margin:4px'>{png(fig)}<div class='small'>"
            f"{e(attack)} ({e(rs[0]['category'])})</div></div>"
        )
    return "".join(out)


def html_page(bench: dict) -> str:
    from shardguard.report.html import e, page, table

    m = bench["meta"]
    body = [
        f"<h1>shardguard bench</h1><p class='small'>{e(m.get('mode', 'full').capitalize())} run, {e(m['created'])}, "
        f"seed {m['seed']}, {m['seconds']} s. Detectors: {e(', '.join(m['detectors']))}.</p>",
        "<h2>Recall vs poison rate</h2><p class='small'>Solid: rows flagged in the attack's category by any "
        "detector. Dashed: rows flagged in any category.</p>",
        _plots(bench),
        "<h2>Recall / precision by rate</h2>",
    ]
    h, rows = rows_pivot(bench, "rp")
    body.append(table(h, rows, num_cols=set(range(3, len(h)))))
    h, rows = rows_groups(bench)
    if rows:
        body.append(f"<h2>SFT groups: recall / precision pooled</h2><p class='small'>{e(groups_line(bench))}</p>")
        body.append(table(h, rows, num_cols=set(range(2, len(h)))))
    body.append("<h2>Clean data: % of rows flagged</h2>")
    h, rows = rows_clean(bench)
    body.append(table(h, rows, num_cols=set(range(3, len(h)))))
    body.append("<h2>Every run</h2>")
    h, rows = rows_detail(bench)
    body.append(table(h, rows, num_cols={3, 7, 8, 9, 10, 11, 12, 13, 16}))
    disc = [
        [
            r["attack"],
            r["dataset"],
            r["rate"],
            json.dumps(r["triggers"], ensure_ascii=False),
            json.dumps(r["trigger_reported"], ensure_ascii=False),
        ]
        for r in bench["results"]
        if r["triggers"]
    ]
    if disc:
        body.append("<h2>Planted triggers and whether the scan reported them</h2>")
        body.append(table(["attack", "dataset", "rate", "planted", "reported exactly"], disc))
    return page("shardguard bench", "".join(body))


def write_outputs(out: Path, bench: dict) -> None:
    atomic_write_text(out / "bench.json", json.dumps(bench, indent=1, ensure_ascii=False, default=str))
    atomic_write_text(out / "bench.md", markdown(bench))
    atomic_write_text(out / "bench.html", html_page(bench))
