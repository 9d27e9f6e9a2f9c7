"""Report section for `campaign`: renders what its `discoveries()` put in summary.json."""

from __future__ import annotations

import numpy as np

from shardguard.report.html import bar_plot, esc, plt_figure, png


def render(disc: dict) -> str | None:
    clusters = disc.get("clusters") or []
    st = disc.get("stats") or {}
    parts = [f"<p>{esc(len(clusters))} campaign cluster(s), {esc(disc.get('documents_flagged', 0))} "
             f"document(s) flagged; {esc(st.get('chunks', 0))} sentence chunks scanned, "
             f"{esc(st.get('chunks_confirmed_with_minilm', 0))} re-embedded with MiniLM, "
             f"{esc(st.get('topical_clusters_not_flagged', 0))} topical cluster(s) judged not to be "
             f"campaigns.</p>"]
    if clusters:
        rows = []
        for c in clusters:
            rows.append(f"<tr><td>{esc(c['cluster_id'])}</td><td>{esc(c['via'])}</td>"
                        f"<td class=num>{esc(c['size'])}</td><td class=num>{esc(c['distinct_urls'])}</td>"
                        f"<td class=num>{esc(c['distinct_domains'])}</td>"
                        f"<td>{esc(', '.join(c.get('terms', [])))}</td>"
                        f"<td><code>{esc(c.get('representative', ''), 300)}</code></td></tr>")
        parts.append("<table><tr><th>cluster</th><th>found by</th><th>documents</th><th>URLs</th>"
                     "<th>domains</th><th>shared words</th><th>representative text</th></tr>"
                     + "".join(rows) + "</table>")
        parts.append(bar_plot([f"{c['cluster_id']} ({c['distinct_domains']} domains)" for c in clusters],
                              [c["size"] for c in clusters], "Documents per campaign cluster", "documents"))
        pts = [(c["cluster_id"], np.asarray(c["xy"])) for c in clusters if c.get("xy")]
        if pts:
            fig, ax = plt_figure(5.5, 3.6)
            for cid, xy in pts:
                ax.scatter(xy[:, 0], xy[:, 1], s=14, label=str(cid), alpha=0.8)
            ax.set_title("campaign chunks, 2-D PCA of MiniLM embeddings")
            ax.legend(fontsize=7, loc="best")
            parts.append("<p class=small>2-D projection (PCA) of the clustered chunks' MiniLM embeddings, "
                         "one colour per campaign cluster:</p>" + png(fig))
    nc = disc.get("topical_clusters_not_flagged") or []
    if nc:
        parts.append("<p class=small>Largest clusters not called campaigns (too few domains, or their "
                     "shared words are common in the rest of the data):</p>")
        parts.append("<table><tr><th>documents</th><th>URLs</th><th>domains</th><th>shared words</th>"
                     "<th>concentration</th><th>representative</th></tr>" + "".join(
                         f"<tr><td class=num>{esc(c['size'])}</td><td class=num>{esc(c['distinct_urls'])}</td>"
                         f"<td class=num>{esc(c['distinct_domains'])}</td><td>{esc(', '.join(c['terms']))}</td>"
                         f"<td class=num>{esc(c['concentration'])}</td><td>{esc(c['representative'], 200)}</td></tr>"
                         for c in nc) + "</table>")
    return "\n".join(parts)
