"""Evidence for a human reader, shared by the static report and `shardguard ui`: why a shard got its
verdict (in words, from the same rules as `pipeline.stages.stage_decide`), and which spans of a record
to highlight (triggers, secrets and PII masks, evasion advice, campaign terms) from its findings' details.

Nothing here builds markup from record text: `segments` cuts the text, the caller escapes each piece.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

# -- why a shard got its verdict -----------------------------------------------------------------

def verdict_why(e: dict, policy: dict) -> list[str]:
    """The policy's reasons for a shard's verdict, in words (the same rules as pipeline.stages.stage_decide)."""
    v = e.get("verdict")
    cats = e.get("by_category") or {}
    out: list[str] = []
    if e.get("error"):
        out.append(f"the shard could not be read: {e['error']}")
    if v == "poisoned":
        out.append(f"{cats.get('poison', 0)} row(s) flagged poison; at least {policy.get('poisoned_min_rows', 1)} "
                   f"with score ≥ {policy.get('poisoned_min_score', 0.8)} make a shard poisoned")
    elif v == "review":
        for c in policy.get("review_categories", ()):
            n = e.get("rows_malformed", 0) if c == "malformed" else cats.get(c, 0)
            if n:
                out.append(f"{n} row(s) flagged {c} (a review category)")
        good = (e.get("rows") or 0) - (e.get("rows_malformed") or 0)
        dup = cats.get("duplicate", 0)
        frac = policy.get("review_duplicate_fraction")
        if good and frac is not None and dup / good >= frac:
            out.append(f"{dup} of {good} rows are duplicates (≥ {frac:.0%})")
        if e.get("memorization_risk"):
            out.append(f"a PII/secret value repeats in up to {e.get('max_value_repeat')} records (memorization risk)")
        if not out:
            out.append("a detector asked for review of this shard")
    else:
        out.append("no finding reached the policy's review or poison rules")
    return out


# -- highlights ----------------------------------------------------------------------------------

@dataclass
class Mark:
    start: int
    end: int
    cls: str          # css class: trigger, secret, pii, evasion, term
    title: str
    replace: str | None = None   # shown instead of the text (secrets and PII: the mask)


def find_all(text: str, needle: str, word: bool) -> list[tuple[int, int]]:
    if not needle or not text:
        return []
    pat = re.escape(needle)
    if word and re.match(r"\w", needle) and re.search(r"\w$", needle):
        pat = rf"(?<!\w){pat}(?!\w)"
    return [(m.start(), m.end()) for m in re.finditer(pat, text, flags=re.IGNORECASE)][:50]


def marks_for(kind: str, fields: dict, findings: list[dict]) -> dict[str, list[Mark]]:
    """Spans to highlight per field, from the findings' details."""
    marks: dict[str, list[Mark]] = defaultdict(list)
    trigger_fields = {"sft": ("instruction", "input"), "preference": ("prompt",), "web": ("text",)}[kind]
    for f in findings:
        d, det = f["details"], f["detector"]
        if det in ("pii", "secrets"):
            for m in d.get("matches") or ():
                fld, s, e = m.get("field"), m.get("start"), m.get("end")
                if fld in fields and isinstance(s, int) and isinstance(e, int) and 0 <= s < e <= len(fields[fld] or ""):
                    cls = "secret" if det == "secrets" else "pii"
                    label = f"{m.get('type')}{'/' + m['subtype'] if m.get('subtype') else ''}: {m.get('masked')}"
                    marks[fld].append(Mark(s, e, cls, label, replace=f"[{m.get('type', cls)}: {m.get('masked')}]"))
            continue
        trig = d.get("as_written") or d.get("trigger")
        if isinstance(trig, str) and trig:
            for fld in trigger_fields:
                for s, e in find_all(fields.get(fld) or "", trig, word=True):
                    marks[fld].append(Mark(s, e, "trigger", f"{det}: trigger {trig!r}"))
        ev = d.get("evasion_advice")
        if isinstance(ev, str) and ev:
            for fld in ("response",):
                for s, e in find_all(fields.get(fld) or "", ev, word=False):
                    marks[fld].append(Mark(s, e, "evasion", f"{det}: advice on evading detection"))
        harm = d.get("harm")
        if isinstance(harm, str) and harm:
            for fld in ("instruction", "input"):
                for s, e in find_all(fields.get(fld) or "", harm, word=True):
                    marks[fld].append(Mark(s, e, "harm", f"{det}: harmful request {harm!r}"))
        for term in (d.get("terms") or [])[:8] if det == "campaign" else ():
            if isinstance(term, str):
                for s, e in find_all(fields.get("text") or "", term, word=True):
                    marks["text"].append(Mark(s, e, "term", f"campaign term {term!r}"))
    return marks


def segments(text: str | None, marks: list[Mark]) -> list[dict]:
    """The text cut at the marks: [{"text", "mark": Mark | None}], overlaps resolved first come first.

    The template escapes every piece; no markup is ever built from record text here."""
    text = text or ""
    chosen: list[Mark] = []
    prio = {"secret": 0, "pii": 1, "trigger": 2, "evasion": 3, "harm": 4, "term": 5}
    for m in sorted(marks, key=lambda m: (prio.get(m.cls, 9), m.start)):
        same = next((c for c in chosen if (c.start, c.end, c.cls) == (m.start, m.end, m.cls)), None)
        if same is not None:
            if m.title not in same.title:
                same.title += "; " + m.title
        elif all(m.end <= c.start or m.start >= c.end for c in chosen):
            chosen.append(Mark(m.start, m.end, m.cls, m.title, m.replace))
    chosen.sort(key=lambda m: m.start)
    out, pos = [], 0
    for m in chosen:
        if m.start > pos:
            out.append({"text": text[pos:m.start], "mark": None})
        out.append({"text": m.replace if m.replace is not None else text[m.start:m.end], "mark": m})
        pos = m.end
    if pos < len(text) or not out:
        out.append({"text": text[pos:], "mark": None})
    return out
