"""Report section for `pref_bias`: renders what its `discoveries()` put in summary.json."""

from __future__ import annotations

from shardguard.detectors.preference.bias import _LABEL
from shardguard.report.html import esc


def render(disc: dict) -> str | None:
    ds = disc.get("dataset", {})
    rows = "".join(f"<tr><td>{esc(_LABEL.get(k, k))}</td><td>{esc(v.get('decided'))}</td><td>{esc(v.get('rate'))}</td>"
                   f"<td>{esc(v.get('ci95'))}</td></tr>" for k, v in ds.items())
    out = ("<table><tr><th>wins</th><th>decided pairs</th><th>rate</th><th>95% CI</th></tr>" + rows + "</table>")
    if disc.get("biased_shards"):
        out += "<p>Shards more biased than the rest: " + esc(", ".join(disc["biased_shards"]), 2000) + "</p>"
    return out
