"""Report section for `memorization`: renders what its `discoveries()` put in summary.json."""

from __future__ import annotations

from shardguard.report.html import esc, table


def render(disc: dict) -> str | None:
    if not disc or not disc.get("distinct_values"):
        return None
    out = [f"<p>{esc(disc['distinct_values'])} distinct values found; {esc(disc.get('repeated_values', 0))} "
           "appear in more than one record (repetition drives memorization). Values are shown masked, "
           "with a hash prefix for correlation.</p>"]
    out.append(table(["type", "distinct values", "record occurrences"],
                     ([t, v["distinct_values"], v["occurrences_in_records"]] for t, v in disc["by_type"].items()),
                     num_cols={1, 2}))
    if disc.get("most_repeated"):
        out.append("<p>Most repeated values:</p>")
        out.append(table(["type", "masked value", "hash", "records", "shards"],
                         ([x["type"], x["masked"], x["hash"], x["records"], x["shards"]] for x in disc["most_repeated"]),
                         num_cols={3, 4}))
    return "".join(out)
