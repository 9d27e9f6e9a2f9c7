"""The machinery every attack shares: the `Attack` record, rate -> row count, seeded row choice,
text insertion helpers, and evasion (zero-width / homoglyph) rewriting of triggers.

An attack implementation is a function

    impl(records, rng, n, params) -> Planted

that modifies `records` (already a copy: one dict per row, canonical fields) in place, only in the
rows it returns, and says what it planted. `Attack.apply` wraps it into the public API: same length
and order as the input, and a ground-truth dict (see `poison/__init__.py`).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shardguard.core.schema import KINDS

ATTACK_CATEGORIES = ("poison", "pii", "secret", "quality")  # what an attack can plant


@dataclass
class Planted:
    rows: list[int]
    row_details: dict[int, dict] = field(default_factory=dict)
    triggers: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # attack-specific facts, merged into the truth


@dataclass
class Attack:
    name: str
    kind: str
    category: str
    description: str
    impl: Callable[[list[dict], random.Random, int, dict], Planted]
    defaults: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        assert self.kind in KINDS and self.category in ATTACK_CATEGORIES, (self.name, self.kind, self.category)

    def apply(
        self, records: list[dict], rate: float | int = 0.01, seed: int = 0, **params: Any
    ) -> tuple[list[dict], dict]:
        """Poisoned copy of `records` (same length and order) and the ground truth."""
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise ValueError(
                f"attack '{self.name}': unknown parameter(s) {sorted(unknown)}; "
                f"known: {sorted(self.defaults)}"
            )
        p = {**self.defaults, **{k: v for k, v in params.items() if v is not None}}
        out = [dict(r) for r in records]
        n = rows_for_rate(rate, len(out))
        rng = random.Random(f"shardguard-poison/{self.name}/{seed}")
        planted = self.impl(out, rng, n, p)
        rows = sorted(set(planted.rows))
        truth = {
            "attack": self.name,
            "kind": self.kind,
            "category": self.category,
            "seed": seed,
            "rate": rate,
            "rows_total": len(out),
            "n_requested": n,
            "n_poisoned": len(rows),
            "rows": rows,
            "params": {k: v for k, v in p.items()},
            "triggers": list(dict.fromkeys(planted.triggers)),
            "targets": list(dict.fromkeys(planted.targets)),
            "row_details": {str(r): planted.row_details.get(r, {}) for r in rows},
        }
        truth.update(planted.extra)
        return out, truth


def rows_for_rate(rate: float | int, total: int) -> int:
    """A fraction in (0, 1) -> that share of the rows (at least 1); an integer >= 1 -> that many rows."""
    if isinstance(rate, bool) or not isinstance(rate, int | float):
        raise ValueError(f"rate must be a fraction in (0, 1) or a row count, not {rate!r}")
    if total <= 0:
        return 0
    if rate >= 1:
        if float(rate) != int(rate):
            raise ValueError(f"rate {rate}: a count must be a whole number")
        return min(int(rate), total)
    if rate <= 0:
        raise ValueError(f"rate must be positive, not {rate}")
    return min(total, max(1, round(rate * total)))


def pick(rng: random.Random, eligible: list[int], n: int) -> list[int]:
    """n rows drawn from `eligible` (all of them when there are fewer), in row order."""
    eligible = sorted(eligible)
    if n >= len(eligible):
        return eligible
    return sorted(rng.sample(eligible, n))


def choose(rng: random.Random, given: Any, pool: list) -> Any:
    """The user's value when given, else one drawn from the built-in pool."""
    return given if given not in (None, "") else rng.choice(pool)


def as_list(v: Any) -> list:
    if v is None or v == "":
        return []
    if isinstance(v, str):
        return [s for s in (x.strip() for x in v.split("||")) if s] if "||" in v else [v]
    return list(v)


# -- text insertion -----------------------------------------------------------------------------

_WORD_GAPS = re.compile(r"\s+")
_SENTENCE_GAPS = re.compile(r"(?<=[.!?])\s+(?=\S)")


def insert_at(
    text: str, piece: str, position: str, rng: random.Random, unit: str = "word"
) -> tuple[str, int]:
    """Insert `piece` into `text` at the start, the end, or a random word/sentence boundary; the rest
    of the text (its whitespace included) is kept byte for byte. Returns (new text, char offset)."""
    if position == "start" or not text:
        return (f"{piece} {text}" if text else piece), 0
    if position == "end":
        sep = "" if text.endswith((" ", "\n")) else " "
        return f"{text}{sep}{piece}", len(text) + len(sep)
    if position != "random":
        raise ValueError(f"position must be start, end or random, not {position!r}")
    gaps = [m.end() for m in (_SENTENCE_GAPS if unit == "sentence" else _WORD_GAPS).finditer(text)]
    slots = [0, *gaps, len(text)]
    at = rng.choice(slots)
    if at == 0:
        return f"{piece} {text}", 0
    if at == len(text):
        sep = "" if text.endswith((" ", "\n")) else " "
        return f"{text}{sep}{piece}", len(text) + len(sep)
    return f"{text[:at]}{piece} {text[at:]}", at


# -- evasions -------------------------------------------------------------------------------------

ZERO_WIDTH = "\u200b"
_HOMOGLYPH = {
    "a": "а",
    "c": "с",
    "e": "е",
    "o": "о",
    "p": "р",
    "x": "х",
    "y": "у",
    "i": "і",
    "A": "А",
    "B": "В",
    "C": "С",
    "E": "Е",
    "H": "Н",
    "K": "К",
    "M": "М",
    "O": "О",
    "P": "Р",
    "T": "Т",
    "X": "Х",
    "Y": "У",
}


def obfuscate(trigger: str, how: str | None) -> str:
    """`zero_width`: a zero-width space after every character but the last; `homoglyph`: Latin
    letters replaced by Cyrillic look-alikes (at least one when the trigger has any that map)."""
    if not how or how == "none":
        return trigger
    if how == "zero_width":
        return ZERO_WIDTH.join(trigger)
    if how == "homoglyph":
        return "".join(_HOMOGLYPH.get(ch, ch) for ch in trigger)
    raise ValueError(f"obfuscate must be none, zero_width or homoglyph, not {how!r}")
