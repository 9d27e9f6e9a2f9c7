"""`normalize` (and so every record id) is exactly its definition: NFKC, invisibles removed, homoglyph
skeleton, casefold, whitespace runs to one space, stripped. The fast implementation is checked
against that definition, written out plainly here, on every code point and on random mixtures."""

from __future__ import annotations

import hashlib
import json
import random
import re
import sys
import unicodedata

from shardguard.core.normalize import HOMOGLYPH_TABLE, INVISIBLE, content_hash, normalize

WHITESPACE = re.compile(r"\s+")


def reference(text: str) -> str:
    if not text:
        return ""
    t = unicodedata.normalize("NFKC", text)
    t = INVISIBLE.sub("", t)
    t = t.translate(HOMOGLYPH_TABLE)
    t = t.casefold()
    return WHITESPACE.sub(" ", t).strip()


def reference_hash(fields: dict) -> str:
    canon = {k: reference(v) if isinstance(v, str) else v for k, v in sorted(fields.items())}
    blob = json.dumps(canon, ensure_ascii=False, sort_keys=True, default=str)
    return hashlib.blake2b(blob.encode("utf-8"), digest_size=12).hexdigest()


def test_every_code_point_normalizes_as_defined():
    for c in range(sys.maxunicode + 1):
        ch = chr(c)
        s = f"{ch}A {ch}\t{ch}{ch.upper()}  b{ch}\u00a0x {ch}"
        assert normalize(s) == reference(s), (hex(c), s)


def test_mixtures_of_evasions_normalize_as_defined():
    pool = ([chr(c) for c in range(0x80)] + [chr(c) for c in range(0x110000) if chr(c).isspace()]
            + list("аеорсхіΑΒΕΟΡΤ‐–—‘’“”\u00ad\u200b\u200d\u202e\u2060\ufeffﬁＡǅßİé\u0301ᾈ①"))
    rnd = random.Random(7)
    for _ in range(50_000):
        s = "".join(rnd.choice(pool) for _ in range(rnd.randint(0, 24)))
        assert normalize(s) == reference(s), repr(s)
        for fields in ({"text": s, "url": s[::-1]}, {"text": s, "url": s[::-1], "n": 3}):
            assert content_hash(fields) == reference_hash(fields)


def test_known_record_id_is_stable():
    # a public contract: ids in flags.parquet must not change between versions
    assert content_hash({"instruction": "Hi  there", "input": "", "response": "Ｈello"}) == "5ac4fc0f724c7a77c878b58e"
    assert normalize("Ρay\u200bΡal  ‘NOW’") == "paypal 'now'"
