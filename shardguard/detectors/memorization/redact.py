"""Redaction: every PII value and secret in a record replaced by its typed placeholder (`--redact`)."""

from __future__ import annotations

import json
from collections.abc import Callable

from shardguard.detectors.memorization.pii_patterns import find_pii
from shardguard.detectors.memorization.secret_patterns import find_secrets, plugins
from shardguard.detectors.memorization.values import placeholder, resolve_overlaps

# ---------------------------------------------------------------------------------------------
# redaction
# ---------------------------------------------------------------------------------------------

def redact_text(text: str) -> str:
    """Replace every PII value and secret in `text` with its typed placeholder."""
    ms = resolve_overlaps(find_secrets(text) + find_pii(text))
    if not ms:
        return text
    parts, pos = [], 0
    for m in ms:
        parts.append(text[pos:m.start])
        parts.append(placeholder(m.type))
        pos = m.end
    parts.append(text[pos:])
    return "".join(parts)


def _redact_obj(obj):
    if isinstance(obj, str):
        return redact_text(obj)
    if isinstance(obj, list):
        return [_redact_obj(x) for x in obj]
    if isinstance(obj, dict):
        return {k: _redact_obj(v) for k, v in obj.items()}
    return obj


def make_redact() -> Callable[[str, str, tuple[str, ...]], str]:
    plugins()

    def redact(raw_json: str, kind: str, fields: tuple[str, ...] = ()) -> str:
        if not raw_json:
            return raw_json
        try:
            obj = json.loads(raw_json)
        except ValueError:
            return redact_text(raw_json)
        new = _redact_obj(obj)
        if new == obj:
            return raw_json
        return json.dumps(new, ensure_ascii=False)

    return redact
