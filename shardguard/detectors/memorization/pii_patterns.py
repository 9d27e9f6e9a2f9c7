"""PII finders: validated formats with spans (emails, phones, cards, IBANs, IPs, SSNs, street addresses)."""

from __future__ import annotations

import ipaddress
import re

from shardguard.detectors.memorization.values import Match, resolve_overlaps

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


# Rust-regex supersets of what the finders look for (no look-arounds), for the batch prefilter
PII_PREFILTER = {
    "email": r"[A-Za-z0-9]@[A-Za-z0-9-]+\.",
    "digits": r"\d[\d\s().-]{6,}\d|\d\.\d{1,3}\.\d{1,3}\.\d",
    "ipv6": r"[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:",
    "iban": r"[A-Z]{2}\d{2} ?[A-Z0-9]{4}",
    "address": rf"\d\s+(?:[A-Za-z0-9'.-]+\s+){{1,6}}(?:{_STREET})\b",
}
