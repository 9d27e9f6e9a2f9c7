"""Report section for `trigger`: renders what its `discoveries()` put in summary.json."""

from __future__ import annotations

from shardguard.report.html import bar_plot, esc


def render(disc: dict) -> str | None:
    trig = disc.get("triggers") or []
    head = (f"<p>{len(trig)} backdoor trigger(s) found among {esc(disc.get('candidate_targets', 0))} "
            f"repeated-response targets ({esc(disc.get('tests', 0))} tests, Bonferroni).</p>")
    sens = disc.get("sensitivity") or {}
    if sens:
        def n_rows(k):
            return f"{esc(k)} rows" if k is not None else "more rows than there are"

        beh = "; ".join(f"{esc(b['behaviour'])} ({b['share']:.1%} of rows): {n_rows(b['rows_needed'])}"
                        for b in sens.get("behaviours", []))
        head += (f"<p>Sensitivity on these data: a trigger tied to one fixed response is found from "
                 f"{n_rows(sens.get('fixed_response_rows'))}; one tied to a behaviour the data already shows "
                 f"(clean-label) needs more" + (f": {beh}" if beh else "") + ".</p>")
    if not trig:
        return head
    rows = "".join(
        f"<tr><td><code>{esc(t['trigger'])}</code></td><td>{esc(t['kind'])}</td><td>{esc(t['support'])}</td>"
        f"<td>{esc(t['target_rows'])}</td><td>{t['p_value']:.1e}</td><td>{esc(t['target_example'], 160)}</td></tr>"
        for t in trig)
    return (head + "<table><tr><th>trigger</th><th>kind</th><th>rows with it</th><th>target rows</th>"
            "<th>p</th><th>target response</th></tr>" + rows + "</table>"
            + bar_plot([t["trigger"] for t in trig], [t["support"] for t in trig], "Rows carrying each trigger", "rows"))
