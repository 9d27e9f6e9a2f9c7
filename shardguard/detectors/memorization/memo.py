"""Shared machinery of the memorization-risk detectors (`pii`, `secrets`) and the redactor.

Models memorize what they see often, so both detectors do three things the same way:

1. find typed values with spans (`find_pii`, `find_secrets`: validated formats, no guesswork);
2. count, per value, how many records (and shards) contain it: `observe` keeps a salted hash of
   each value -> record count (mergeable), `flag` reports "seen in N records" and raises the score
   with N;
3. never show a value in full: findings, discoveries and the report carry a masked form
   (`AKIA…(20 chars)`, `j***@example.com`) and the first 12 hex of a sha256 for correlation.

A fast prefilter (one Rust regex per pattern family, run by polars over the whole batch column)
picks the few texts that can contain anything; only those go through the Python validators.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl
import pyarrow as pa

from shardguard.core.schema import TEXT_FIELDS
from shardguard.detectors.base import Detector

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


# ---------------------------------------------------------------------------------------------
# PII finders
# ---------------------------------------------------------------------------------------------

_EMAIL = re.compile(
    r"(?<![\w.+%-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"[A-Za-z]{2,24}(?![\w-])")
_EXAMPLE_DOMAINS = {"example.com", "example.org", "example.net"}
_EXAMPLE_SUFFIXES = (".example.com", ".example.org", ".example.net", ".test", ".example", ".invalid", ".localhost")
_NOT_TLD = {"png", "jpg", "jpeg", "gif", "svg", "webp", "css", "js", "ico", "bmp", "tif", "tiff"}

_PHONE_NANP = re.compile(
    r"(?<![\w+/.-])(?:(?:\+|00)?1(?:[\s.-]|(?=\()))?(?:\((?P<ap>\d{3})\)\s?|(?P<a>\d{3})(?P<s1>[\s.-]))(?P<x>\d{3})(?P<s2>[\s.-])"
    r"\d{4}(?:\s?(?:x|ext\.?|extension)\s?\d{1,5})?(?![\w/-]|\.\d|,\d{3})")
_PHONE_INTL = re.compile(r"(?<![\w+])\+\d{1,3}(?:[\s.-]?\(?\d{1,5}\)?){2,6}(?![\w-]|\.\d)")
_PHONE_CONTEXT = re.compile(
    r"(?i)\b(?:phone|tel|telephone|mobile|mob|cell|fax|call(?: us)?(?: at| on)?|whatsapp)\b\.?\s*(?:no\.?|number)?\s*"
    r"[:#]?\s*(\(?\+?\d[\d\s().-]{5,18}\d)(?![\w-]|\.\d)")

_PHONE_WORDS = ("phone", "tel", "mob", "cell", "fax", "call", "whatsapp")
_DIGIT_RUN = re.compile(r"\d[\d -]{11,}\d")  # candidates for cards: the full pattern runs only inside these
_CARD = re.compile(r"(?<![\d.,-])(?:\d[ -]?){12,18}\d(?![\d-]|[.,]\d)")

_IBAN = re.compile(r"(?<![A-Za-z0-9])([A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?)(?![A-Za-z0-9])")
IBAN_LENGTH = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "BY": 28,
    "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20,
    "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18,
    "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24,
    "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24,
    "XK": 20,
}

_IPV4 = re.compile(r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
                   r"(?![\w]|\.\d)")
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_VERSION_BEFORE = re.compile(
    r"(?i)(?:\bv|\bver\.?|version|release|build|firmware|update|driver|\brev\.?|\bsection|§)\s*$")
_IP_CONTEXT = re.compile(r"(?i)\b(?:ip|ips|address|server|host|dns|ping|gateway|router|subnet|nameserver)\b")

_SSN = re.compile(r"(?<![\d-])(\d{3})-(\d{2})-(\d{4})(?![\d-])")
_SSN_CONTEXT = re.compile(r"(?i)\b(?:ssn|social security(?: number| no\.?)?)\b\s*[:#]?\s*(\d{3}\s\d{2}\s\d{4}|\d{9})(?!\d)")

_STREET_WORDS = r"Street|Avenue|Road|Boulevard|Lane|Drive|Court|Way|Place|Terrace|Circle|Parkway|Highway|Square|Trail|Plaza|Alley"
_STREET_ABBR = r"St|Ave|Rd|Blvd|Ln|Dr|Ct|Pl|Pkwy|Hwy|Sq|Ter"
_STREET = f"{_STREET_WORDS}|{_STREET_ABBR}"
_ADDRESS = re.compile(  # one line of text: [ \t], never a newline, between the parts
    r"(?<![\w,.-])\d{1,6}[A-Za-z]?[ \t]+(?:(?:N|S|E|W|NE|NW|SE|SW|North|South|East|West)\.?[ \t]+)?"
    r"(?P<name>(?:[A-Z][A-Za-z'-]*[ \t]+|\d{1,3}(?:st|nd|rd|th)[ \t]+){1,4})"
    rf"(?:(?:{_STREET_WORDS})\b|(?:{_STREET_ABBR})\b\.?)"
    r"(?:[ \t]+(?:N|S|E|W|NE|NW|SE|SW)\b\.?)?"
    r"(?:,?[ \t]+(?:Apt|Apartment|Suite|Ste|Unit|#)\.?[ \t]*[A-Za-z0-9-]+)?"
    r"(?:,[ \t]*[A-Z][A-Za-z .'-]{1,30},[ \t]*[A-Z]{2}[ \t]+\d{5}(?:-\d{4})?)?")


_YEAR_BEFORE = re.compile(r"(?i)\b(?:the|in|of|since|from|by|until|to)\s+$")


def _address_ok(text: str, m: re.Match) -> bool:
    """Drop what the street pattern catches in prose: `27 MPG Hwy`, `the 1927 Supreme Court`, `Day 4 The ... Way`."""
    num, name = m.group().split(None, 1)[0], m.group("name").split()
    if any(len(w) >= 2 and w.isupper() and w.isalpha() and w not in ("NE", "NW", "SE", "SW") for w in name):
        return False
    if name and name[0] in ("The", "A", "An", "And", "Of"):
        return False
    if len(num) == 4 and num.isdigit() and 1800 <= int(num) <= 2099 \
            and _YEAR_BEFORE.search(text[max(0, m.start() - 12):m.start()]):
        return False
    return True


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def card_brand(d: str) -> str | None:
    """Issuer from the IIN prefix and length (public ranges); None when no network issues such a number."""
    n = len(d)
    if d[0] == "4" and n in (13, 16, 19):
        return "visa"
    p2, p4 = int(d[:2]), int(d[:4])
    if n == 16 and (51 <= p2 <= 55 or 2221 <= p4 <= 2720):
        return "mastercard"
    if n == 15 and p2 in (34, 37):
        return "amex"
    if 16 <= n <= 19 and (d.startswith("6011") or p2 == 65 or 644 <= int(d[:3]) <= 649):
        return "discover"
    if 16 <= n <= 19 and 3528 <= p4 <= 3589:
        return "jcb"
    if n == 14 and (300 <= int(d[:3]) <= 305 or p2 in (36, 38, 39)):
        return "diners"
    if 12 <= n <= 19 and p2 in (50, 56, 57, 58, 63, 67):
        return "maestro"
    return None


def iban_ok(compact: str) -> bool:
    s = compact[4:] + compact[:4]
    num = "".join(str(int(c, 36)) for c in s)
    return int(num) % 97 == 1


def ssn_ok(area: str, group: str, serial: str) -> bool:
    a = int(area)
    return a != 0 and a != 666 and a < 900 and group != "00" and serial != "0000"


def _phone_digits_ok(s: str) -> bool:
    d = re.sub(r"\D", "", s)
    return 7 <= len(d) <= 15 and len(set(d)) > 2


def find_pii(text: str, types: frozenset[str] | None = None) -> list[Match]:
    """All PII in `text`, non-overlapping (stronger types win: SSN/card/IBAN over phone)."""
    out: list[Match] = []

    def want(t):
        return types is None or t in types

    if want("email") and "@" in text:
        for m in _EMAIL.finditer(text):
            dom = m.group().rsplit("@", 1)[1].lower()
            if dom.rsplit(".", 1)[-1] not in _NOT_TLD:
                # RFC 2606 reserved names (example.com, *.test): placeholders in docs and code, kept but scored low
                reserved = dom in _EXAMPLE_DOMAINS or dom.endswith(_EXAMPLE_SUFFIXES)
                out.append(Match("email", m.start(), m.end(), m.group(), "example_domain" if reserved else ""))
    if want("ssn"):
        for m in _SSN.finditer(text):
            if ssn_ok(*m.groups()):
                out.append(Match("ssn", m.start(), m.end(), m.group()))
        low = text.lower()
        for m in (_SSN_CONTEXT.finditer(text) if "ssn" in low or "social security" in low else ()):
            d = re.sub(r"\D", "", m.group(1))
            if ssn_ok(d[:3], d[3:5], d[5:]):
                out.append(Match("ssn", m.start(1), m.end(1), m.group(1)))
    if want("credit_card"):
        for m in (c for run in _DIGIT_RUN.finditer(text)
                  for c in _CARD.finditer(text, run.start(), min(len(text), run.end() + 2))):
            d = re.sub(r"\D", "", m.group())
            if 13 <= len(d) <= 19 and luhn_ok(d) and len(set(d)) > 1:
                brand = card_brand(d)
                if brand:
                    out.append(Match("credit_card", m.start(), m.end(), m.group(), brand))
    if want("iban"):
        for m in _IBAN.finditer(text):
            raw = m.group(1)
            cc = raw[:2]
            L = IBAN_LENGTH.get(cc)
            compact = raw.replace(" ", "")
            if not L or len(compact) < L:
                continue
            # cut the match where the country's length ends (a following word in capitals may have joined)
            k, end = 0, m.start(1)
            for ch in raw:
                end += 1
                if ch != " ":
                    k += 1
                if k == L:
                    break
            if iban_ok(compact[:L]):
                out.append(Match("iban", m.start(1), end, text[m.start(1):end]))
    if want("ip_address"):
        if text.count(".") >= 3:
            for m in _IPV4.finditer(text):
                v = m.group()
                ip = ipaddress.IPv4Address(v)
                if ip.is_loopback or ip.is_unspecified or ip.is_multicast or ip.is_reserved or v.startswith("0.") \
                        or v.endswith(".0"):  # a network number, or a version like 14.0.1.0
                    continue
                before = text[max(0, m.start() - 16):m.start()]
                if _VERSION_BEFORE.search(before):
                    continue
                if all(len(o) == 1 for o in v.split(".")) \
                        and not _IP_CONTEXT.search(text[max(0, m.start() - 60):m.end() + 30]):
                    continue  # 1.2.3.4-style: a section or version number unless the context says IP
                out.append(Match("ip_address", m.start(), m.end(), v, "ipv4" + ("_private" if ip.is_private else "")))
        if "::" in text or text.count(":") >= 5:
            for m in _IPV6.finditer(text):
                v = m.group()
                groups = [g for g in v.split(":") if g]
                if len(groups) < 3 or not any(c.isalpha() for c in v) and "::" not in v:
                    continue
                try:
                    ip = ipaddress.IPv6Address(v)
                except ValueError:
                    continue
                if ip.is_loopback or ip.is_unspecified or ip.is_multicast:
                    continue
                out.append(Match("ip_address", m.start(), m.end(), v, "ipv6"))
    if want("phone"):
        for m in _PHONE_NANP.finditer(text):
            area, sep = m.group("ap") or m.group("a"), m.group("s1")
            if sep is not None and sep != m.group("s2"):
                continue  # 555-123 4567: mixed separators without parentheses are rarely phones
            if (sep is not None and sep.isspace() or m.group("s2") == " " and not m.group("ap")) \
                    and (area[0] in "01" or m.group("x")[0] in "01"):
                continue  # space-separated digit groups: only with valid NANP area code and exchange
            out.append(Match("phone", m.start(), m.end(), m.group(), "nanp"))
        if "+" in text:
            for m in _PHONE_INTL.finditer(text):
                if _phone_digits_ok(m.group()) and len(re.sub(r"\D", "", m.group())) >= 8:
                    out.append(Match("phone", m.start(), m.end(), m.group().rstrip(" .-"), "intl"))
        low = text.lower()
        for m in (_PHONE_CONTEXT.finditer(text) if any(w in low for w in _PHONE_WORDS) else ()):
            v, st = m.group(1).rstrip(" .-("), m.start(1)
            if v.startswith("(") and ")" not in v:
                v, st = v[1:], st + 1
            if _phone_digits_ok(v):
                out.append(Match("phone", st, st + len(v), v, "context"))
    if want("address"):
        for m in _ADDRESS.finditer(text):
            if _address_ok(text, m):
                out.append(Match("address", m.start(), m.end(), m.group().rstrip(" ,")))
    return resolve_overlaps(out)


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


# ---------------------------------------------------------------------------------------------
# secret finders: detect-secrets' plugins as a library (their vetted patterns and validators)
# ---------------------------------------------------------------------------------------------

def _plugins() -> list[tuple[str, str, Any]]:
    from detect_secrets.plugins.aws import AWSKeyDetector
    from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
    from detect_secrets.plugins.basic_auth import BasicAuthDetector
    from detect_secrets.plugins.discord import DiscordBotTokenDetector
    from detect_secrets.plugins.github_token import GitHubTokenDetector
    from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
    from detect_secrets.plugins.jwt import JwtTokenDetector
    from detect_secrets.plugins.mailchimp import MailchimpDetector
    from detect_secrets.plugins.npm import NpmDetector
    from detect_secrets.plugins.openai import OpenAIDetector
    from detect_secrets.plugins.private_key import PrivateKeyDetector
    from detect_secrets.plugins.pypi_token import PypiTokenDetector
    from detect_secrets.plugins.sendgrid import SendGridDetector
    from detect_secrets.plugins.slack import SlackDetector
    from detect_secrets.plugins.square_oauth import SquareOAuthDetector
    from detect_secrets.plugins.stripe import StripeDetector
    from detect_secrets.plugins.telegram_token import TelegramBotTokenDetector
    from detect_secrets.plugins.twilio import TwilioKeyDetector

    return [
        ("aws_key", "aws", AWSKeyDetector()), ("github_token", "github", GitHubTokenDetector()),
        ("slack_token", "slack", SlackDetector()), ("private_key", "private_key", PrivateKeyDetector()),
        ("jwt", "jwt", JwtTokenDetector()), ("secret", "gitlab", GitLabTokenDetector()),
        ("secret", "openai", OpenAIDetector()), ("secret", "stripe", StripeDetector()),
        ("secret", "sendgrid", SendGridDetector()), ("secret", "discord", DiscordBotTokenDetector()),
        ("secret", "mailchimp", MailchimpDetector()), ("secret", "npm", NpmDetector()),
        ("secret", "pypi", PypiTokenDetector()), ("secret", "telegram", TelegramBotTokenDetector()),
        ("secret", "azure_storage", AzureStorageKeyDetector()), ("secret", "square", SquareOAuthDetector()),
        ("secret", "twilio", TwilioKeyDetector()), ("secret", "basic_auth", BasicAuthDetector()),
    ]


_GROUP_IS_VALUE = {"aws", "basic_auth", "npm"}
# lowercase substrings every match of a plugin contains (a cheap gate before its regexes); None: always run
_MARKERS = {
    "aws": ("akia", "asia", "abia", "acca", "a3t", "aws"), "github": ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
    "slack": ("xox", "hooks.slack.com"), "jwt": ("eyj",), "gitlab": ("gl", "gr1348941"), "openai": ("t3blbkfj",),
    "stripe": ("k_live_",), "sendgrid": ("sg.",), "mailchimp": ("-us",), "npm": ("_authtoken",), "pypi": ("pypi-",),
    "telegram": (":",), "azure_storage": ("accountkey=",), "square": ("sq0csp-",), "basic_auth": ("://",),
    "private_key": ("private key", "putty-user-key-file"), "discord": (".",),
}
_KEYWORDS = ("secret", "token", "api_key", "api-key", "apikey", "access_key", "access-key", "accesskey", "auth_key",
             "auth-key", "authkey", "private_key", "private-key", "privatekey", "passw", "pwd", "credential", "bearer")
_PLUGINS: list | None = None
_ENTROPY: tuple | None = None


def plugins():
    global _PLUGINS, _ENTROPY
    if _PLUGINS is None:
        from detect_secrets.plugins.high_entropy_strings import Base64HighEntropyString, HexHighEntropyString

        _PLUGINS = _plugins()
        _ENTROPY = (Base64HighEntropyString(), HexHighEntropyString())
    return _PLUGINS


_PEM_BLOCK = re.compile(
    r"-----BEGIN ((?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?)-----.*?(?:-----END \1-----|$)", re.S)
_PUTTY = re.compile(r"PuTTY-User-Key-File-\d: .*?(?:Private-MAC: \S+|$)", re.S)
# keyword = value assignments whose value looks random (detect-secrets' entropy measures decide "random")
_KEYWORD_ASSIGN = re.compile(
    r"(?i)(?<![A-Za-z0-9])([A-Za-z0-9_.-]{0,30}?(?:secret|token|api[_-]?key|apikey|access[_-]?key|auth[_-]?key|"
    r"client[_-]?secret|private[_-]?key|passw(?:or)?d|passwd|pwd|credentials?|bearer)[A-Za-z0-9_.-]{0,20})"
    r"[\"']?\s*(?:=|:=|=>|:|\s)\s*[\"']?([A-Za-z0-9+/_.~$!@#%^&*=-]{8,200})")
_BEARER = re.compile(r"(?i)\bBearer\s+([A-Za-z0-9._~+/=-]{20,})")


def _entropy_ok(value: str, keyword: str) -> tuple[bool, str]:
    """Is this assigned value a credential? Long random-looking tokens (entropy near the maximum for
    their length and alphabet, per detect-secrets' Shannon entropy), or a password-like value after a
    password keyword (letters with digits or symbols, not a plain word)."""
    plugins()
    b64, hexp = _ENTROPY
    v = value.strip("\"'.,;")
    if len(v) < 8 or v.lower() in ("password", "passwords", "required", "optional", "none", "null", "true", "false"):
        return False, ""
    is_pw = bool(re.search(r"(?i)pass|pwd", keyword))
    if len(v) >= 16 and re.fullmatch(r"[0-9a-fA-F]+", v) and not v.isdigit():
        if hexp.calculate_shannon_entropy(v) >= 3.0:
            return True, "hex_high_entropy"
    if len(v) >= 16 and re.search(r"[A-Za-z]", v) and re.search(r"\d", v):
        # random strings of n distinct-ish symbols have entropy close to log2(n); prose words do not mix digits
        if b64.calculate_shannon_entropy(v) >= min(4.2, 0.8 * math.log2(len(v))):
            return True, "base64_high_entropy"
    if is_pw and re.fullmatch(r"[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)+(?:\(.*)?", v):
        return False, ""  # code reading a password from somewhere (os.environ.get, config.db.password)
    if is_pw and 8 <= len(v) <= 64 and re.search(r"[A-Za-z]", v) and (re.search(r"\d", v) or re.search(r"[^\w]", v)) \
            and not re.fullmatch(r"[A-Za-z]+[.,;:!?]?", v) and not v.startswith(("http", "www.")):
        return True, "password"
    return False, ""


def find_secrets(text: str) -> list[Match]:
    out: list[Match] = []
    low = text.lower()
    for kind, sub, plugin in plugins():
        marks = _MARKERS.get(sub)
        if marks is not None and not any(x in low for x in marks):
            continue  # none of this vendor's fixed markers: its patterns cannot match
        if kind == "private_key":
            if "PRIVATE KEY" in text or "PuTTY-User-Key-File" in text:
                hits = list(plugin.analyze_string(text))
                if hits:
                    for m in _PEM_BLOCK.finditer(text):
                        out.append(Match(kind, m.start(), m.end(), m.group(), m.group(1).lower().replace(" ", "_")))
                    for m in _PUTTY.finditer(text):
                        out.append(Match(kind, m.start(), m.end(), m.group(), "putty"))
            continue
        for rx in plugin.denylist:
            for m in rx.finditer(text):
                # the value is the whole match, except where the plugin's group is the value itself
                # (AWS secret keys after a keyword, the password of scheme://user:pass@host, npm tokens)
                g = 1 if sub in _GROUP_IS_VALUE and rx.groups else 0
                s, e = m.span(g)
                v = m.group(g)
                if kind == "jwt":
                    # the plugin's lazy pattern stops before the signature: take it too when it decodes
                    if text[e - 1:e] == "." or text[e:e + 1] == ".":
                        e2 = e + (text[e:e + 1] == ".")
                        while e2 < len(text) and (text[e2].isalnum() or text[e2] in "-_=+/"):
                            e2 += 1
                        if plugin.is_formally_valid(text[s:e2]):
                            e, v = e2, text[s:e2]
                    if not plugin.is_formally_valid(v):
                        continue
                stype = sub
                if kind == "aws_key":
                    stype = "aws_secret_access_key" if g else "aws_access_key_id"
                out.append(Match(kind, s, e, v, stype))
    if not any(w in low for w in _KEYWORDS):
        return resolve_overlaps(out)
    for m in _KEYWORD_ASSIGN.finditer(text):
        ok, how = _entropy_ok(m.group(2), m.group(1))
        if ok:
            v = m.group(2).rstrip("\"'.,;")
            s = m.start(2)
            kind = "aws_key" if re.search(r"(?i)aws", m.group(1)) and len(v) == 40 else "secret"
            out.append(Match(kind, s, s + len(v), v, "aws_secret_access_key" if kind == "aws_key" else how))
    for m in (_BEARER.finditer(text) if "bearer" in low else ()):
        ok, how = _entropy_ok(m.group(1), "token")
        if ok:
            out.append(Match("secret", m.start(1), m.end(1), m.group(1), "bearer_" + how))
    return resolve_overlaps(out)


# Rust-regex supersets of what the finders look for (no look-arounds), for the batch prefilter
PII_PREFILTER = {
    "email": r"[A-Za-z0-9]@[A-Za-z0-9-]+\.",
    "digits": r"\d[\d\s().-]{6,}\d|\d\.\d{1,3}\.\d{1,3}\.\d",
    "ipv6": r"[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:",
    "iban": r"[A-Z]{2}\d{2} ?[A-Z0-9]{4}",
    "address": rf"\d\s+(?:[A-Za-z0-9'.-]+\s+){{1,6}}(?:{_STREET})\b",
}
SECRET_PREFILTER = (
    r"(?:A3T[A-Z0-9]|ABIA|ACCA|AKIA|ASIA)[0-9A-Z]{16}|gh[pousr]_|xox[aboprs]-|hooks\.slack\.com|PRIVATE KEY|"
    r"PuTTY-User|eyJ[A-Za-z0-9_-]{4}|glpat-|gl[a-z]{2,5}-|GR1348941|T3BlbkFJ|[rs]k_live_|SG\.|[MNO][A-Za-z0-9_-]{23,25}\.|"
    r"-us\d|_authToken|pypi-|\d{8,10}:[0-9A-Za-z_-]{30}|AccountKey=|sq0csp-|AC[a-z0-9]{32}|SK[a-z0-9]{32}|"
    r"://[^\s/:@]+:[^\s/@]+@|(?i:secret|token|api[_-]?key|apikey|access[_-]?key|auth[_-]?key|passw|passwd|pwd|"
    r"credential|bearer)"
)


def prefilter(texts: pa.Array | list, patterns: list[str]) -> list[int]:
    """Indices of texts that match any of `patterns` (run natively by polars over the column)."""
    s = pl.Series("t", texts, dtype=pl.String).fill_null("")
    mask = None
    for p in patterns:
        hit = s.str.contains(p)
        mask = hit if mask is None else (mask | hit)
    if mask is None:
        return []
    return mask.arg_true().to_list()


# ---------------------------------------------------------------------------------------------
# the shared detector
# ---------------------------------------------------------------------------------------------



class MemoDetector(Detector):
    """Finds typed values per record, counts each value across records and shards, masks everything.

    Subclasses set `name`, `category`, `defaults` (must include `hash_salt`, `max_shards_listed`,
    `top_repeated`) and implement `base_score(match)`, `find(text)` and `prefilter_patterns()`."""

    find: Callable[[MemoDetector, str], list[Match]]

    def prefilter_patterns(self) -> list[str]:
        raise NotImplementedError

    def base_score(self, m: Match) -> float:
        raise NotImplementedError

    def label(self, m: Match) -> str:
        return m.type.replace("_", " ")

    # -- scanning -------------------------------------------------------------------------------
    def scan_batch(self, batch: pa.RecordBatch) -> dict[int, list[tuple[str, Match]]]:
        """{row index in batch: [(field, match), ...]} for records with at least one match."""
        kinds = batch.column("kind")
        kind_list = kinds.to_pylist() if len(set(kinds.unique().to_pylist())) > 1 else None
        fields = sorted({f for k in (kind_list or [kinds[0].as_py()]) for f in TEXT_FIELDS.get(k, ("text",))})
        pats = self.prefilter_patterns()
        found: dict[int, list[tuple[str, Match]]] = {}
        for f in fields:
            col = batch.column(f)
            idx = prefilter(col, pats)
            if not idx:
                continue
            vals = col.take(pa.array(idx, pa.int64())).to_pylist()
            for i, t in zip(idx, vals):
                if not t:
                    continue
                if kind_list is not None and f not in TEXT_FIELDS.get(kind_list[i], ("text",)):
                    continue
                ms = self.find(t)
                if ms:
                    found.setdefault(i, []).extend((f, m) for m in ms)
        return found

    # -- pass 1: value counts -------------------------------------------------------------------
    def observe(self, batch: pa.RecordBatch):
        salt = self.config["hash_salt"]
        cap = self.config["max_shards_listed"]
        shards = batch.column("shard")
        state: dict[str, list] = {}
        for i, ms in self.scan_batch(batch).items():
            shard = shards[i].as_py()
            seen = set()
            for _, m in ms:
                h = value_hash(m.type, m.value, salt)
                if h in seen:
                    continue
                seen.add(h)
                e = state.get(h)
                if e is None:
                    state[h] = [1, {shard}, m.type, mask(m.type, m.value, m.subtype)]
                else:
                    e[0] += 1
                    if len(e[1]) < cap:
                        e[1].add(shard)
        return state

    def merge(self, a, b):
        if not a:
            return b or {}
        if not b:
            return a
        if len(a) < len(b):
            a, b = b, a
        out = dict(a)
        cap = self.config["max_shards_listed"]
        for h, (n, sh, t, mk) in b.items():
            e = out.get(h)
            if e is None:
                out[h] = [n, set(sh), t, mk]
            else:
                out[h] = [e[0] + n, set(list(e[1] | sh)[:cap]) if len(e[1] | sh) > cap else e[1] | sh, e[2], e[3]]
        return out

    def finalize(self, state, context):
        return {h: (n, len(sh), t, mk) for h, (n, sh, t, mk) in (state or {}).items()}

    # -- pass 2 ---------------------------------------------------------------------------------
    def score(self, m: Match, n_records: int) -> float:
        """Base score by type, rising with repetition: +0.1 per doubling of the records holding it."""
        return min(1.0, self.base_score(m) + 0.1 * math.log2(max(1, n_records)))

    def flag(self, batch, model):
        model = model or {}
        salt = self.config["hash_salt"]
        found = []
        for i, ms in sorted(self.scan_batch(batch).items()):
            items = []
            for f, m in ms:
                h = value_hash(m.type, m.value, salt)
                n, n_sh, _, _ = model.get(h, (1, 1, m.type, ""))
                items.append({"type": m.type, "subtype": m.subtype, "field": f, "start": m.start, "end": m.end,
                              "masked": mask(m.type, m.value, m.subtype), "hash": h, "records": n, "shards": n_sh,
                              "score": round(self.score(m, n), 3)})
            items.sort(key=lambda x: (-x["score"], x["field"], x["start"]))
            top = items[0]
            parts = []
            for x in items[:3]:
                where = f"{x['records']} records" if x["records"] > 1 else "1 record"
                if x["shards"] > 1:
                    where += f" across {x['shards']} shards"
                parts.append(f"{self.label(Match(x['type'], 0, 0, '', x['subtype']))} {x['masked']} "
                             f"(#{x['hash']}) seen in {where}")
            more = f"; and {len(items) - 3} more" if len(items) > 3 else ""
            types = sorted({x["type"] for x in items})
            found.append({"i": i, "score": top["score"],
                          "reason": f"{len(items)} {self.noun(len(items))}: " + "; ".join(parts) + more,
                          "details": {"types": types, "max_repeat": max(x["records"] for x in items),
                                      "matches": items[: self.config["max_matches_listed"]],
                                      "n_matches": len(items)}})
        return found

    def noun(self, n: int) -> str:
        return "value" if n == 1 else "values"

    def discoveries(self, model):
        model = model or {}
        by_type: dict[str, list[int]] = {}
        for n, _, t, _ in model.values():
            c = by_type.setdefault(t, [0, 0])
            c[0] += 1
            c[1] += n
        rep = sorted(((n, nsh, t, mk, h) for h, (n, nsh, t, mk) in model.items() if n > 1), key=lambda x: (-x[0], x[4]))
        return {
            "distinct_values": len(model),
            "by_type": {t: {"distinct_values": v[0], "occurrences_in_records": v[1]} for t, v in sorted(by_type.items())},
            "repeated_values": len(rep),
            "most_repeated": [{"type": t, "masked": mk, "hash": h, "records": n, "shards": nsh}
                              for n, nsh, t, mk, h in rep[: self.config["top_repeated"]]],
        }

    def shard_notes(self, details: list[dict], policy) -> dict:
        """Repetition drives memorization: the shard's most repeated value; a value in
        `policy.repeat_review_min` records or more makes the shard a memorization risk (review)."""
        m = max(int(d.get("max_repeat", 1)) for d in details) if details else 0
        if not m:
            return {}
        risk = m >= policy.repeat_review_min
        return {"max_value_repeat": m, "memorization_risk": risk, "review": risk}

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
