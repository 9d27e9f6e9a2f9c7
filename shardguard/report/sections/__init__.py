"""One report section per detector, rendered from its discoveries (summary.json) alone.

Detectors never write markup. A section renderer is a function `render(discoveries: dict) -> str | None`
returning an HTML fragment with every value escaped (`shardguard.report.html.esc`):
- ours live in this folder, one module per detector (named in `BUILTIN`);
- an external detector package registers one under the `shardguard.report_sections` entry point group
  (`shout = "my_pkg.report:render"`); without one, its discoveries are shown as plain tables.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from importlib.metadata import entry_points

from shardguard.report.html import generic_section

ENTRY_POINT_GROUP = "shardguard.report_sections"

# detector name -> module of this package that renders it (pii and secrets share one)
BUILTIN = {
    "campaign": "campaign",
    "pii": "memorization",
    "pref_bias": "pref_bias",
    "pref_flip": "pref_flip",
    "response_cluster": "response_cluster",
    "secrets": "memorization",
    "trigger": "trigger",
}
# ours that have nothing worth a section beyond the summary tables
QUIET = {"exact_dup", "minhash", "semantic_dup", "answer_conflict", "safety_bypass"}


@functools.cache
def _external() -> dict[str, object]:
    """Entry point name -> entry point, read once per process (each read walks every installed package)."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def renderer(name: str) -> Callable[[dict], str | None] | None:
    if name in BUILTIN:
        return importlib.import_module(f"{__name__}.{BUILTIN[name]}").render
    ep = _external().get(name)
    if ep is not None:
        return ep.load()
    if name in QUIET:
        return None
    return generic_section


def detector_sections(discoveries: dict) -> list[tuple[str, str]]:
    out = []
    for name in sorted(discoveries):
        fn = renderer(name)
        if fn is None or not discoveries.get(name):
            continue
        frag = fn(discoveries[name])
        if frag:
            out.append((name, frag))
    return out
