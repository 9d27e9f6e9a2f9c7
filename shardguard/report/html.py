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
import pyarrow.compute as pc

from shardguard.core.schema import FIELDS
from shardguard.report.evidence import marks_for, segments, verdict_why

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0;font-size:13px}td,th{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f4f4f4}.num{text-align:right;font-variant-numeric:tabular-nums}
.clean{color:#176f2c;font-weight:600}.review{color:#a15c00;font-weight:600}.poisoned{color:#b00020;font-weight:700}
.ok{color:#176f2c}.bad{color:#b00020}code,pre{background:#f6f6f6;padding:1px 4px;border-radius:3px;white-space:pre-wrap;word-break:break-word}
.small{color:#666;font-size:12px}.kpi{display:inline-block;margin:0 1.4em .6em 0}.kpi b{font-size:1.5em;display:block}
h3{font-size:1.1em;margin:1.2em 0 .3em}.card{border:1px solid #ddd;border-radius:4px;margin:.5em 0;padding:.4em .7em}
.card .fld{margin:.2em 0}.card .fld b{display:inline-block;min-width:6.5em;color:#555;font-weight:600}
.card pre{margin:.1em 0;max-height:14em;overflow:auto}ul.why{margin:.2em 0;padding-left:1.2em}
mark{padding:0 1px;border-radius:2px}mark.trigger{background:#ffd54f}mark.secret{background:#ef9a9a}
mark.pii{background:#ce93d8}mark.evasion{background:#ffab91}mark.harm{background:#ff8a80}mark.term{background:#b3e5fc}
details>summary{cursor:pointer;color:#1565c0}
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


def bar_plot(labels: list, values: list, title: str, xlabel: str, limit: int = 25) -> str:
    """A horizontal bar chart (largest first, at most `limit` bars) as an <img>; "" when there is
    nothing to compare (fewer than two bars)."""
    pairs = sorted(zip(values, map(str, labels)), key=lambda p: -p[0])[:limit]
    if len(pairs) < 2:
        return ""
    fig, ax = plt_figure(6, 0.5 + 0.26 * len(pairs))
    ax.barh([(lab if len(lab) <= 40 else lab[:39] + "…") for _, lab in pairs][::-1],
            [v for v, _ in pairs][::-1], color="#1565c0")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.tick_params(labelsize=7)
    return png(fig)


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


_CATEGORY_COLOURS = ["#b00020", "#888", "#a15c00", "#6a1b9a", "#1565c0", "#555"]


def _category_plot(summary: dict) -> str:
    """Rows flagged per category as a horizontal bar chart in plain HTML: drawn on every scan, so it
    costs no plotting library (importing matplotlib alone takes longer than a 10-row scan)."""
    cats = dict(summary["rows_by_category"])
    top = max(cats.values(), default=0) or 1
    rows = []
    for i, (name, n) in enumerate(cats.items()):
        colour = _CATEGORY_COLOURS[i % len(_CATEGORY_COLOURS)]
        width = 100.0 * n / top
        rows.append(f"<tr><th style='font-weight:normal;text-align:right;border:0'>{esc(name)}</th>"
                    f"<td style='border:0;width:420px'><span style='display:inline-block;height:12px;"
                    f"width:{width:.1f}%;background:{colour};vertical-align:middle'></span> "
                    f"<span class='small'>{int(n)}</span></td></tr>")
    return ("<p class='small'>Rows flagged per category</p><table role='img' aria-label='rows flagged per category'>"
            + "".join(rows) + "</table>")


def _detector_findings(flags: pa.Table) -> pa.Table:
    """Without the malformed rows' findings (detector `ingest`): a million of them must not become
    Python objects here, and neither section shows them."""
    if not flags.num_rows:
        return flags
    return flags.filter(pc.not_equal(flags.column("detector"), "ingest"))


def _score_plot(flags: pa.Table, bins: int = 10) -> str:
    """Finding scores per detector as small histograms in plain HTML (no plotting library per scan):
    one row per detector, ten bins from 0 to 1, bar heights relative to the detector's fullest bin."""
    flags = _detector_findings(flags)
    if not flags.num_rows:
        return ""
    d = flags.select(["detector", "score"]).to_pydict()
    by: dict[str, list[int]] = {}
    for det, sc in zip(d["detector"], d["score"]):
        if det != "ingest" and sc is not None:  # malformed rows: always 1.0
            h = by.setdefault(det, [0] * bins)
            h[min(bins - 1, max(0, int(float(sc) * bins)))] += 1
    if not by:
        return ""
    rows = []
    for det, h in sorted(by.items()):
        top = max(h) or 1
        bars = "".join(f"<span title='{i / bins:.1f}–{(i + 1) / bins:.1f}: {n}' style='display:inline-block;"
                       f"width:14px;margin-right:1px;vertical-align:bottom;background:#1565c0;"
                       f"height:{max(1, round(28 * n / top)) if n else 0}px'></span>" for i, n in enumerate(h))
        rows.append(f"<tr><td>{esc(det)}</td><td class='num'>{sum(h)}</td><td style='height:30px;"
                    f"vertical-align:bottom'>{bars}</td><td class='small'>{esc(' '.join(map(str, h)))}</td></tr>")
    return ("<p class='small'>Finding scores per detector, ten bins from 0 to 1 (counts per bin on the right):</p>"
            "<table><tr><th>detector</th><th>findings</th><th>score 0 → 1</th><th>per bin</th></tr>"
            + "".join(rows) + "</table>")


def _verdict(v: str) -> str:
    return f'<span class="{e(v)}">{e(v)}</span>'


def _details(s: str | None) -> dict:
    try:
        d = json.loads(s or "{}")
    except ValueError:
        return {}
    return d if isinstance(d, dict) else {}


def read_records(records_path: str | None, keys: set[tuple[str, int]]) -> dict[tuple[str, int], dict]:
    """(shard, row) -> {"kind", "fields"} for the wanted rows of a scan's Arrow records file."""
    if not records_path or not keys:
        return {}
    import pyarrow.compute as pc
    import pyarrow.ipc as ipc

    shards = pa.array(sorted({s for s, _ in keys}), pa.string())
    out: dict[tuple[str, int], dict] = {}
    names = ["shard", "row", "kind", *dict.fromkeys(f for fs in FIELDS.values() for f in fs)]
    with pa.memory_map(str(records_path), "r") as src:
        reader = ipc.open_file(src)
        for i in range(reader.num_record_batches):
            b = reader.get_batch(i)
            b = b.filter(pc.is_in(b.column("shard"), value_set=shards))
            if not b.num_rows:
                continue
            d = b.select(names).to_pydict()
            for j, (s, r) in enumerate(zip(d["shard"], d["row"])):
                if (s, r) in keys:
                    k = d["kind"][j]
                    out[(s, r)] = {"kind": k, "fields": {f: d[f][j] for f in FIELDS.get(k, ())}}
    return out


def excerpt(text: str | None, marks: list, width: int = 700) -> str:
    """A field's text as escaped HTML, cut to about `width` characters around its first highlight,
    highlights as <mark> (secrets and PII shown by their mask)."""
    text = text or ""
    lo, hi = 0, len(text)
    if len(text) > width:
        first = min((m.start for m in marks), default=0)
        lo = max(0, min(first - width // 3, len(text) - width))
        hi = lo + width
    kept = [m for m in marks if lo <= m.start and m.end <= hi]
    for m in kept:
        m.start, m.end = m.start - lo, m.end - lo
    out = ["…" if lo else ""]
    for seg in segments(text[lo:hi], kept):
        m = seg["mark"]
        out.append(e(seg["text"]) if m is None else f'<mark class="{e(m.cls)}" title="{e(m.title)}">{e(seg["text"])}</mark>')
    out.append("…" if hi < len(text) else "")
    return "".join(out)


def _record_card(f: dict, rec: dict | None, rec_findings: list[dict], redactor=None) -> str:
    head = (f"<div class='card'><div><b>{esc(f['shard'], 200)}</b> row {esc(f['row'])} · {esc(f['category'])} · "
            f"score {f['score']:.2f} · {esc(f['reason'], 300)}</div>")
    if rec is None:
        return head + "<p class='small'>(record text not available)</p></div>"
    fields = rec["fields"]
    if redactor is not None:  # a --redact scan: the page shows what clean/ holds, placeholders and all
        fields = json.loads(redactor(json.dumps(fields, ensure_ascii=False), rec["kind"], FIELDS[rec["kind"]]))
        rec_findings = [x for x in rec_findings if x["detector"] not in ("pii", "secrets")]
    marks = marks_for(rec["kind"], fields, rec_findings) if rec["kind"] in FIELDS else {}
    body = []
    for name, text in fields.items():
        if not text:
            continue
        if name == "url":
            body.append(f"<div class='fld'><b>url</b> <code>{esc(text, 300)}</code></div>")
        else:
            body.append(f"<div class='fld'><b>{e(name)}</b><pre>{excerpt(text, marks.get(name, []))}</pre></div>")
    return head + "".join(body) + "</div>"


def top_findings(flags: pa.Table, records_path: str | None, per_detector: int = 5, redactor=None) -> str:
    """The highest-scoring findings of each detector, with the record they are about."""
    flags = _detector_findings(flags)
    if not flags.num_rows:
        return ""
    d = flags.select(["shard", "row", "detector", "category", "score", "reason", "details"]).to_pylist()
    by_det: dict[str, list[dict]] = {}
    for f in d:
        if f["detector"] != "ingest":
            by_det.setdefault(f["detector"], []).append(f)
    chosen: dict[str, list[dict]] = {}
    for det, fs in sorted(by_det.items()):
        seen: set[tuple[str, int]] = set()
        pick = []
        for f in sorted(fs, key=lambda f: (-f["score"], f["shard"], f["row"])):
            if (f["shard"], f["row"]) not in seen:
                seen.add((f["shard"], f["row"]))
                pick.append(f)
            if len(pick) >= per_detector:
                break
        chosen[det] = pick
    keys = {(f["shard"], f["row"]) for fs in chosen.values() for f in fs}
    recs = read_records(records_path, keys)
    of_record: dict[tuple[str, int], list[dict]] = {}
    for f in d:  # every finding of a shown record, so secrets and PII are masked whoever found the record
        if (f["shard"], f["row"]) in keys:
            of_record.setdefault((f["shard"], f["row"]), []).append({"detector": f["detector"],
                                                                     "details": _details(f["details"])})
    out = ["<p class='small'>The highest-scoring findings of each detector with their record; highlighted: "
           "<mark class='trigger'>trigger</mark> <mark class='secret'>secret (masked)</mark> "
           "<mark class='pii'>PII (masked)</mark> <mark class='evasion'>evasion advice</mark> "
           "<mark class='term'>campaign term</mark>.</p>"]
    for det, fs in chosen.items():
        out.append(f"<h3>{e(det)} <span class='small'>({len(by_det[det])} finding{'s' if len(by_det[det]) != 1 else ''})</span></h3>")
        out.extend(_record_card(f, recs.get((f["shard"], f["row"])), of_record.get((f["shard"], f["row"]), []),
                                redactor) for f in fs)
    return "".join(out)


def _why(x: dict, policy: dict) -> str:
    return "<ul class='why'>" + "".join(f"<li>{esc(w, 400)}</li>" for w in verdict_why(x, policy)) + "</ul>"


def scan_report(summary: dict, flags: pa.Table, sections: list[tuple[str, str]] | None = None,
                max_findings: int = 500, records_path: str | None = None, per_detector: int = 5,
                redactor: Callable[[str, str, tuple], str] | None = None) -> str:
    """The scan's report page. `records_path` (the scan's Arrow records file) adds each detector's top
    findings with their record text (secrets and PII shown masked; with `redactor`, a `--redact` scan's,
    the text as clean/ holds it); without it the page has the tables only."""
    s = summary
    pol = s.get("policy") or {}
    acc = "ok" if s["accounting_ok"] else "bad"
    body = [f"<h1>shardguard scan report</h1><p class='small'>inputs: {esc(', '.join(s.get('inputs', [])), 600)} · "
            f"engine {esc(s.get('engine'))} · {esc(s.get('seconds'))} s · shardguard {esc(s.get('shardguard_version'))}</p>"]
    kpis = [("rows", s["rows_total"]), ("kept", s["rows_kept"]), ("held back", s["rows_held_back"]),
            ("malformed", s["rows_malformed"]), ("flagged", s["rows_flagged"])]
    body.append("".join(f"<span class='kpi'><b>{v}</b>{e(k)}</span>" for k, v in kpis))
    body.append(f"<p class='{acc}'>Row accounting: kept {s['rows_kept']} + held back {s['rows_held_back']} + malformed "
                f"{s['rows_malformed']} = {s['rows_kept'] + s['rows_held_back'] + s['rows_malformed']} "
                f"(rows read: {s['rows_total']}) — {'adds up' if s['accounting_ok'] else 'DOES NOT ADD UP'}.</p>")
    vs = s.get("verdicts") or {}
    body.append("<h2>Verdicts</h2><p>" + ", ".join(f"{_verdict(v)} {esc(n)}" for v, n in vs.items()) + " shard(s).</p>")
    flagged = [x for x in s["shards"] if x["verdict"] != "clean"]
    if flagged:
        order = {"poisoned": 0, "review": 1}
        body.append("<p>Why each shard needs attention:</p>" + table(
            ["shard", "verdict", "why", "held back", "findings"],
            ([x["shard"], x["verdict"], x, x["held_back"],
              ", ".join(f"{k} {v}" for k, v in sorted(x["findings"].items()))]
             for x in sorted(flagged, key=lambda x: (order.get(x["verdict"], 2), x["shard"]))),
            num_cols={3}, cell=lambda i, v: _verdict(v) if i == 1 else _why(v, pol) if i == 2 else esc(v, 300)))
    else:
        body.append("<p>Every shard is clean: no finding reached the policy's review or poison rules.</p>")
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
    body.append(_score_plot(flags))
    top = top_findings(flags, records_path, per_detector, redactor)
    if top:
        body.append("<h2>Top findings per detector</h2>" + top)
    for title, content in sections or []:
        body.append(f"<h2>{e(title)}</h2>{content}")
    disc = {k: v for k, v in s.get("discoveries", {}).items() if v}
    if disc:
        body.append("<details><summary>Discoveries as raw JSON (also in summary.json)</summary><pre>"
                    + esc(json.dumps(disc, indent=1, ensure_ascii=False, default=str), 20000) + "</pre></details>")
    n = flags.num_rows
    body.append(f"<h2>All findings</h2><p class='small'>{n} findings; the first {min(n, max_findings)} by score are "
                f"listed. All are in flags.parquet.</p>")
    if n:
        keys = [("score", "descending"), ("shard", "ascending"), ("row", "ascending"), ("detector", "ascending"),
                ("category", "ascending"), ("reason", "ascending")]
        # the top rows only (no sorted copy of a million findings), then in order
        top_t = flags.take(pc.select_k_unstable(flags, min(n, max_findings), keys)).sort_by(keys)
        d = top_t.select(["shard", "row", "detector", "category", "score", "reason"]).to_pydict()
        body.append("<details><summary>the list</summary>" + table(
            ["shard", "row", "detector", "category", "score", "reason"],
            zip(d["shard"], d["row"], d["detector"], d["category"], [f"{x:.2f}" for x in d["score"]], d["reason"]),
            num_cols={1, 4}) + "</details>")
    return page("shardguard scan report", "".join(body))
