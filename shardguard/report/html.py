"""Self-contained HTML pages (scan report, bench, compare): inline CSS and PNG plots, every piece
of input text escaped. Untrusted data stays data: nothing from a record reaches the page unescaped.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Callable, Iterable

import pyarrow as pa

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0;font-size:13px}td,th{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f4f4f4}.num{text-align:right;font-variant-numeric:tabular-nums}
.clean{color:#176f2c;font-weight:600}.review{color:#a15c00;font-weight:600}.poisoned{color:#b00020;font-weight:700}
.ok{color:#176f2c}.bad{color:#b00020}code,pre{background:#f6f6f6;padding:1px 4px;border-radius:3px;white-space:pre-wrap;word-break:break-word}
.small{color:#666;font-size:12px}.kpi{display:inline-block;margin:0 1.4em .6em 0}.kpi b{font-size:1.5em;display:block}
"""

e = html.escape


def esc(v, limit: int = 400) -> str:
    s = "" if v is None else str(v)
    if len(s) > limit:
        s = s[:limit] + "…"
    return e(s)


def png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def plt_figure(w=6.0, h=3.0):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(w, h))


def table(headers: list[str], rows: Iterable[Iterable], num_cols: set[int] | None = None,
          cell: Callable[[int, object], str] | None = None) -> str:
    num_cols = num_cols or set()
    out = ["<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in headers) + "</tr>"]
    for r in rows:
        tds = []
        for i, v in enumerate(r):
            content = cell(i, v) if cell else esc(v)
            tds.append(f'<td class="num">{content}</td>' if i in num_cols else f"<td>{content}</td>")
        out.append("<tr>" + "".join(tds) + "</tr>")
    out.append("</table>")
    return "".join(out)


def generic_section(disc: dict, max_rows: int = 50) -> str | None:
    """A detector's discoveries as plain tables, for detectors without their own section renderer:
    scalars as one key/value table, each list of objects as a table of its own."""
    if not isinstance(disc, dict) or not disc:
        return None
    scalars = [(k, v) for k, v in disc.items() if not isinstance(v, list | dict)]
    out = [table(["finding", "value"], scalars)] if scalars else []
    for k, v in disc.items():
        if isinstance(v, dict) and v and not any(isinstance(x, list | dict) for x in v.values()):
            out.append(f"<p>{esc(k)}</p>" + table(["key", "value"], v.items()))
        elif isinstance(v, list) and v:
            if all(isinstance(x, dict) for x in v):
                cols = list(dict.fromkeys(c for x in v[:max_rows] for c in x))
                out.append(f"<p>{esc(k)} ({len(v)})</p>"
                           + table(cols, ([x.get(c) for c in cols] for x in v[:max_rows])))
            else:
                out.append(f"<p>{esc(k)}: {esc(', '.join(map(str, v[:max_rows])), 2000)}</p>")
    return "".join(out) or None


def page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>"
            f"<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">"
            f"<style>{CSS}</style></head><body>{body}</body></html>")


def _category_plot(summary: dict) -> str:
    cats = {k: v for k, v in summary["rows_by_category"].items()}
    fig, ax = plt_figure(6, 2.6)
    names = list(cats)
    ax.barh(names, [cats[n] for n in names], color=["#b00020", "#888", "#a15c00", "#6a1b9a", "#1565c0", "#555"][: len(names)])
    ax.set_xlabel("rows")
    ax.set_title("Rows flagged per category")
    for i, n in enumerate(names):
        ax.text(cats[n], i, f" {cats[n]}", va="center", fontsize=8)
    return png(fig)


def _verdict(v: str) -> str:
    return f'<span class="{e(v)}">{e(v)}</span>'


def scan_report(summary: dict, flags: pa.Table, sections: list[tuple[str, str]] | None = None,
                max_findings: int = 500) -> str:
    s = summary
    acc = "ok" if s["accounting_ok"] else "bad"
    body = [f"<h1>shardguard scan report</h1><p class='small'>inputs: {esc(', '.join(s.get('inputs', [])), 600)} · "
            f"engine {esc(s.get('engine'))} · {esc(s.get('seconds'))} s · shardguard {esc(s.get('shardguard_version'))}</p>"]
    kpis = [("rows", s["rows_total"]), ("kept", s["rows_kept"]), ("held back", s["rows_held_back"]),
            ("malformed", s["rows_malformed"]), ("flagged", s["rows_flagged"])]
    body.append("".join(f"<span class='kpi'><b>{v}</b>{e(k)}</span>" for k, v in kpis))
    body.append(f"<p class='{acc}'>Row accounting: kept {s['rows_kept']} + held back {s['rows_held_back']} + malformed "
                f"{s['rows_malformed']} = {s['rows_kept'] + s['rows_held_back'] + s['rows_malformed']} "
                f"(rows read: {s['rows_total']}) — {'adds up' if s['accounting_ok'] else 'DOES NOT ADD UP'}.</p>")
    body.append("<h2>Shards</h2>")
    body.append(table(
        ["shard", "kind", "rows", "malformed", "flagged", "held back", "kept", "verdict", "findings"],
        ([x["shard"], x["kind"], x["rows"], x["rows_malformed"], x["flagged"], x["held_back"], x["kept"], x["verdict"],
          ", ".join(f"{k} {v}" for k, v in sorted(x["findings"].items())) + (f" — error: {x['error']}" if x.get("error") else "")]
         for x in s["shards"]),
        num_cols={2, 3, 4, 5, 6}, cell=lambda i, v: _verdict(v) if i == 7 else esc(v, 300)))
    if s.get("shards_skipped"):
        body.append("<p>Files skipped (not shards): " + esc(", ".join(x["file"] for x in s["shards_skipped"]), 2000) + "</p>")
    body.append("<h2>What was found</h2>" + _category_plot(s))
    body.append(table(["detector", "findings by category"],
                      ([d, ", ".join(f"{c}: {n}" for c, n in cs.items())] for d, cs in s["findings_by_detector"].items())))
    for title, content in sections or []:
        body.append(f"<h2>{e(title)}</h2>{content}")
    disc = {k: v for k, v in s.get("discoveries", {}).items() if v}
    if disc:
        body.append("<h2>Discoveries</h2><pre>" + esc(json.dumps(disc, indent=1, ensure_ascii=False, default=str), 20000) + "</pre>")
    n = flags.num_rows
    body.append(f"<h2>Findings</h2><p class='small'>{n} findings; the first {min(n, max_findings)} by score are shown. "
                f"All are in flags.parquet.</p>")
    if n:
        top = flags.sort_by([("score", "descending"), ("shard", "ascending"), ("row", "ascending")]).slice(0, max_findings)
        d = top.select(["shard", "row", "detector", "category", "score", "reason"]).to_pydict()
        body.append(table(["shard", "row", "detector", "category", "score", "reason"],
                          zip(d["shard"], d["row"], d["detector"], d["category"], [f"{x:.2f}" for x in d["score"]], d["reason"]),
                          num_cols={1, 4}))
    return page("shardguard scan report", "".join(body))
