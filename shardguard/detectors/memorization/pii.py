"""PII: emails, phone numbers, credit cards, IBANs, IP addresses, US SSNs, street addresses.

Validated formats keep false positives down: cards pass Luhn and match an issuer's IIN range and
length, IBANs pass the ISO 13616 mod-97 check and their country's length, SSNs obey the SSA's
area/group/serial rules, IPv4 addresses exclude loopback/reserved ranges and version numbers
(`v1.2.3.4`, and 1.2.3.4-style all-single-digit quads unless the context says IP), IPv6 goes
through `ipaddress`. Each finding lists every value with its type, field, span, masked form, hash
and the number of records (and shards) holding the same value; the score rises with that number.

`make_redactor()` returns the function `shardguard scan --redact` applies to every record written
to clean/ and quarantine/: PII and secrets become typed placeholders (`[EMAIL]`, `[AWS_KEY]`...).
"""

from __future__ import annotations

from collections.abc import Callable

from shardguard.detectors.memorization.memo import MemoDetector
from shardguard.detectors.memorization.pii_patterns import PII_PREFILTER, find_pii
from shardguard.detectors.memorization.redact import make_redact
from shardguard.detectors.memorization.values import Match

_BASE = {"email": 0.5, "phone": 0.5, "ip_address": 0.4, "address": 0.5, "iban": 0.7, "credit_card": 0.8, "ssn": 0.8}
_LABEL = {"email": "email", "phone": "phone number", "ip_address": "IP address", "address": "street address",
          "iban": "IBAN", "credit_card": "credit card number", "ssn": "US SSN"}


class PII(MemoDetector):
    name = "pii"
    category = "pii"
    kinds = ("web", "sft", "preference")
    defaults = {
        "types": ["email", "phone", "credit_card", "iban", "ip_address", "ssn", "address"],
        "hash_salt": "",           # set one to make value hashes unlinkable across organisations
        "max_shards_listed": 1000,  # distinct shards remembered per value (the count saturates there)
        "max_matches_listed": 50,   # per record, in details
        "top_repeated": 25,         # most repeated values in discoveries
    }

    def __init__(self, **config):
        super().__init__(**config)
        unknown = set(self.config["types"]) - set(_BASE)
        if unknown:
            raise ValueError(f"detector 'pii': unknown type(s) {sorted(unknown)}; known: {sorted(_BASE)}")
        self._types = frozenset(self.config["types"])

    def find(self, text: str) -> list[Match]:
        return find_pii(text, self._types)

    def prefilter_patterns(self) -> list[str]:
        t = self._types
        pats = []
        if "email" in t:
            pats.append(PII_PREFILTER["email"])
        if t & {"phone", "credit_card", "ssn", "ip_address"}:
            pats.append(PII_PREFILTER["digits"])
        if "ip_address" in t:
            pats.append(PII_PREFILTER["ipv6"])
        if "iban" in t:
            pats.append(PII_PREFILTER["iban"])
        if "address" in t:
            pats.append(PII_PREFILTER["address"])
        return pats

    def base_score(self, m: Match) -> float:
        if m.subtype == "example_domain":
            return 0.2  # name@example.com: a placeholder, not a person (still redacted)
        return _BASE[m.type]

    def label(self, m: Match) -> str:
        return _LABEL.get(m.type, m.type)


def make_redactor() -> Callable[[str, str, tuple[str, ...]], str]:
    """`redact(raw_json, kind, fields) -> raw_json` with PII and secrets replaced by typed placeholders.

    Every string value of the record is redacted, recursively (the canonical text fields and any
    other field of the original shape); keys, numbers and the JSON structure are kept."""
    return make_redact()
