"""Typed values found in text (`Match`), their placeholders, salted hashes and masked forms."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

# what each type becomes in redacted output
PLACEHOLDER = {
    "email": "[EMAIL]", "phone": "[PHONE]", "credit_card": "[CREDIT_CARD]", "iban": "[IBAN]",
    "ip_address": "[IP_ADDRESS]", "ssn": "[SSN]", "address": "[ADDRESS]",
    "aws_key": "[AWS_KEY]", "github_token": "[GITHUB_TOKEN]", "slack_token": "[SLACK_TOKEN]",
    "private_key": "[PRIVATE_KEY]", "jwt": "[JWT]",
}
SECRET_PLACEHOLDER = "[SECRET]"  # every other credential type


def placeholder(kind: str) -> str:
    return PLACEHOLDER.get(kind, SECRET_PLACEHOLDER)


@dataclass(frozen=True)
class Match:
    type: str      # e.g. "email", "aws_key"
    start: int     # span in the scanned string
    end: int
    value: str     # the matched value: never written anywhere, only hashed and masked
    subtype: str = ""  # e.g. "ipv6", "aws_secret_access_key", "stripe"


# ---------------------------------------------------------------------------------------------
# hashing and masking
# ---------------------------------------------------------------------------------------------

def normalize_value(kind: str, value: str) -> str:
    """The form that is hashed: the same value written differently counts as the same value."""
    if kind in ("phone", "credit_card", "ssn"):
        return re.sub(r"\D", "", value)
    if kind == "iban":
        return value.replace(" ", "").upper()
    if kind in ("email", "ip_address"):
        return value.lower()
    if kind == "address":
        return " ".join(value.lower().split())
    return value


def value_hash(kind: str, value: str, salt: str = "") -> str:
    """First 12 hex of sha256(salt | type | normalized value): stable for correlation, not the value."""
    return hashlib.sha256(f"{salt}|{kind}|{normalize_value(kind, value)}".encode()).hexdigest()[:12]


def mask(kind: str, value: str, subtype: str = "") -> str:
    """A display form that never contains the whole value (nor, for short types, most of it)."""
    n = len(value)
    if kind == "email":
        local, _, dom = value.partition("@")
        return f"{local[:1]}***@{dom}"
    if kind == "phone":
        d = re.sub(r"\D", "", value)
        return f"{'+' if value.lstrip().startswith('+') else ''}***{d[-2:]} ({len(d)} digits)"
    if kind == "credit_card":
        d = re.sub(r"\D", "", value)
        return f"{d[:1]}***…{d[-2:]} ({len(d)} digits)"
    if kind == "iban":
        c = value.replace(" ", "")
        return f"{c[:4]}…({len(c)} chars)"
    if kind == "ssn":
        return "***-**-****"
    if kind == "ip_address":
        if ":" in value:
            return value.split(":", 1)[0] + ":…(IPv6)"
        return value.split(".", 1)[0] + ".x.x.x"
    if kind == "address":
        words = value.split()
        return f"… {words[-1]} ({n} chars)" if words else "…"
    if kind == "private_key":
        m = re.search(r"BEGIN ([A-Z0-9 ]*PRIVATE KEY[A-Z ]*)", value)
        return f"{m.group(1) if m else 'private key'} block ({n} chars)"
    if kind == "password":
        return f"***({n} chars)"
    # tokens: a short prefix, which for most vendors is the public type marker (AKIA, ghp_, xoxb-)
    keep = 4 if n >= 16 else 2
    return f"{value[:keep]}…({n} chars)"




# stronger evidence first: validated checksums and vendor formats beat loose patterns
_PRIORITY = {"private_key": 0, "aws_key": 1, "github_token": 1, "slack_token": 1, "jwt": 1, "secret": 2,
             "ssn": 3, "credit_card": 3, "iban": 3, "email": 4, "ip_address": 5, "address": 6, "phone": 7}


def resolve_overlaps(ms: list[Match]) -> list[Match]:
    if len(ms) <= 1:
        return ms
    ms = sorted(ms, key=lambda m: (_PRIORITY.get(m.type, 2), -(m.end - m.start), m.start))
    taken: list[tuple[int, int]] = []
    keep = []
    for m in ms:
        if any(m.start < e and s < m.end for s, e in taken):
            continue
        taken.append((m.start, m.end))
        keep.append(m)
    return sorted(keep, key=lambda m: m.start)
