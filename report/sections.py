"""Report sections contributed by detectors.

A detector class may define `report_html(discoveries: dict) -> str | None` (a classmethod or
staticmethod): it receives what its `discoveries()` put in summary.json and returns an HTML
fragment (escaped with `report.html.esc`). The scan report shows one section per detector."""

from __future__ import annotations

import detectors


def detector_sections(discoveries: dict) -> list[tuple[str, str]]:
    out = []
    for name, cls in sorted(detectors.registry().items()):
        fn = getattr(cls, "report_html", None)
        if fn is None or not discoveries.get(name):
            continue
        frag = fn(discoveries[name])
        if frag:
            out.append((f"{name}", frag))
    return out
