"""Report section for `response_cluster`: renders what its `discoveries()` put in summary.json."""

from __future__ import annotations

from shardguard.report.html import bar_plot, esc


def render(disc: dict) -> str | None:
    gs = disc.get("response_groups") or []
    if not gs:
        return "<p>No group of near-identical responses to unrelated instructions.</p>"
    rows = "".join(f"<tr><td>{esc(g['group'])}</td><td>{esc(g['size'])}</td><td>{esc(g['trigger'] or '')}</td>"
                   f"<td>{esc(g['example_response'], 200)}</td></tr>" for g in gs)
    return ("<p>Groups of (near-)identical responses given to unrelated instructions.</p><table><tr>"
            "<th>group</th><th>rows</th><th>trigger</th><th>response</th></tr>" + rows + "</table>"
            + bar_plot([g["group"] for g in gs], [g["size"] for g in gs], "Rows per response group", "rows"))
