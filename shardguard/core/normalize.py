"""Text normalization used for matching (never for output: findings quote the original text).

`normalize` folds the evasions an attacker uses to hide a repeated string from exact matching:
Unicode compatibility forms (NFKC), zero-width and bidi control characters, homoglyphs
(Cyrillic/Greek look-alikes mapped to their Latin skeleton), case, and runs of whitespace.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from json.encoder import encode_basestring

# Zero-width, joiners, bidi embeddings/overrides/isolates, BOM, soft hyphen, word joiner etc.
INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064"
    "\u2066-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0]"
)
WHITESPACE = re.compile(r"\s+")

# A compact confusables table: the look-alikes seen in practice (Cyrillic, Greek, fullwidth is
# already handled by NFKC). Maps to the Latin letter a reader would see.
_HOMOGLYPHS = {
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p",
    "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i", "ј": "j", "ԁ": "d",
    "ԛ": "q", "ԝ": "w", "һ": "h", "ӏ": "l", "ɡ": "g",
    "А": "a", "В": "b", "Е": "e", "К": "k", "М": "m", "Н": "h", "О": "o", "Р": "p", "С": "c",
    "Т": "t", "У": "y", "Х": "x", "Ѕ": "s", "І": "i", "Ј": "j",
    # Greek
    "α": "a", "ο": "o", "ρ": "p", "ν": "v", "τ": "t", "ι": "i", "κ": "k", "υ": "u", "χ": "x",
    "Α": "a", "Β": "b", "Ε": "e", "Ζ": "z", "Η": "h", "Ι": "i", "Κ": "k", "Μ": "m", "Ν": "n",
    "Ο": "o", "Ρ": "p", "Τ": "t", "Υ": "y", "Χ": "x",
    # Latin look-alikes and punctuation variants
    "ı": "i", "ℓ": "l", "‐": "-", "‑": "-", "‒": "-", "–": "-", "—": "-", "―": "-",
    "‘": "'", "’": "'", "‚": "'", "“": '"', "”": '"', "„": '"', "′": "'", "″": '"',
}
HOMOGLYPH_TABLE = str.maketrans(_HOMOGLYPHS)


def strip_invisible(text: str) -> str:
    return INVISIBLE.sub("", text)


def normalize(text: str) -> str:
    """The matching form of `text`: NFKC, invisibles removed, homoglyph skeleton, casefold, one space."""
    if not text:
        return ""
    if text.isascii():  # NFKC, invisibles and homoglyphs are all non-ASCII: only case and spacing apply
        return _one_space(text.lower().translate(_ASCII_SPACES))
    t = unicodedata.normalize("NFKC", text)
    if _FOLD.search(t):
        t = _FOLD.sub(_fold, t)
    for c in _ASCII_SPACE_CHARS:
        if c in t:
            t = t.replace(c, " ")
    return _one_space(t.casefold())


# How `normalize` runs fast and stays the definition above (NFKC; INVISIBLE removed; HOMOGLYPH_TABLE;
# casefold; WHITESPACE runs to one space; strip), checked on every code point by the tests:
# - invisibles, look-alikes and non-ASCII whitespace are disjoint sets of single characters, so one
#   regex pass maps them all (str.translate with a dict looks up every character: ≈ 10× slower); ASCII
#   whitespace other than " " (newlines, tabs) by str.replace;
# - whitespace is mapped to " " before casefold, which neither makes nor changes whitespace;
# - runs of " " are then halved until none is left, and the ends stripped (as `\s+` -> " ", strip()).
_SPACES = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008" \
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"  # every c with c.isspace() (what \s matches), but " "
_ASCII_SPACE_CHARS = [c for c in _SPACES if c.isascii()]
_ASCII_SPACES = str.maketrans(dict.fromkeys(_ASCII_SPACE_CHARS, " "))
_FOLD_MAP = {**dict.fromkeys((c for c in _SPACES if not c.isascii()), " "), **_HOMOGLYPHS}
_FOLD = re.compile(INVISIBLE.pattern[:-1] + "".join(re.escape(c) for c in _FOLD_MAP) + "]")


def _fold(m: re.Match, _get=_FOLD_MAP.get) -> str:
    return _get(m.group(), "")  # an invisible maps to nothing


def _one_space(t: str) -> str:
    while "  " in t:
        t = t.replace("  ", " ")
    return t.strip(" ")


# json.dumps(x, ensure_ascii=False, sort_keys=True, default=str), without building an encoder per call
_HASH_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True, default=str)
_json_str = encode_basestring  # the same encoder's string form (ensure_ascii=False)


def content_hash(fields: dict) -> str:
    """Stable record id: a hash of the record's normalized canonical fields (order-independent)."""
    items = sorted(fields.items())
    if all(type(k) is str and type(v) is str for k, v in items):  # canonical records: the JSON written out
        blob = "{" + ", ".join(f"{_json_str(k)}: {_json_str(normalize(v))}" for k, v in items) + "}"
    else:
        blob = _HASH_ENCODER.encode({k: normalize(v) if isinstance(v, str) else v for k, v in items})
    return hashlib.blake2b(blob.encode("utf-8"), digest_size=12).hexdigest()
