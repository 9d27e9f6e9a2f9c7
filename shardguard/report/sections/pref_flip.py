"""Report section for `pref_flip`: renders what its `discoveries()` put in summary.json."""

from __future__ import annotations

from shardguard.report.html import bar_plot, esc


def render(disc: dict) -> str | None:
    head = (f"<p>{esc(disc.get('pairs'))} preference pairs; the cross-fitted reward model agrees with "
            f"{esc(disc.get('agreement'))} of the labels; {esc(disc.get('candidates'))} prompt tokens tested "
            f"(max-T thresholds by tier: {esc(disc.get('tiers'))}); "
            f"{esc(disc.get('suspected_flips'))} pairs look swapped on their own.</p>")
    sens = disc.get("sensitivity") or {}
    need = sens.get("pairs_needed") or {}
    if need:
        head += (f"<p>Sensitivity on these data: a swapped pair moves the flip statistic by "
                 f"{esc(sens.get('effect_per_pair'))} standard deviations, so one trigger is found about 4 times "
                 f"in 5 (a normal approximation, a few pairs optimistic) once it is carried by about "
                 + ", ".join(f"{esc(v)} swapped pairs ({esc(k)} tokens)" for k, v in need.items())
                 + "; fewer usually go unseen.</p>")
    if not disc.get("triggers"):
        return head + "<p>No prompt trigger concentrates swapped-looking pairs.</p>"
    rows = "".join(f"<tr><td><code>{esc(t['trigger'])}</code></td><td>{esc(t['support'])}</td>"
                   f"<td>{esc(t['flip_rate'])}</td><td>{esc(t['background_flip_rate'])}</td><td>{esc(t['z'])}</td></tr>"
                   for t in disc["triggers"])
    return (head + "<table><tr><th>trigger</th><th>pairs</th><th>judged flipped</th><th>elsewhere</th>"
            "<th>z</th></tr>" + rows + "</table>"
            + bar_plot([t["trigger"] for t in disc["triggers"]], [t["support"] for t in disc["triggers"]],
                       "Pairs carrying each trigger", "pairs"))
