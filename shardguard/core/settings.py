"""Typed settings: one check that a dataclass's values have their declared types, used by the scan
configuration and by every detector's `Settings`."""

from __future__ import annotations

import dataclasses
import types
from typing import Any, get_type_hints


def type_ok(value: Any, typ: Any) -> bool:
    """`value` fits the annotation `typ` (a bool is not an int; a generic checks its container)."""
    if typ is Any:
        return True
    if isinstance(typ, types.UnionType) or getattr(typ, "__origin__", None) is types.UnionType:
        return any(type_ok(value, t) for t in typ.__args__)
    origin = getattr(typ, "__origin__", None)
    if origin is not None:
        return isinstance(value, origin)
    if typ is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if typ is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if typ is type(None):
        return value is None
    return isinstance(value, typ)


def type_name(t: Any) -> str:
    return getattr(t, "__name__", None) or str(t)


def check_fields(obj: Any, where: str) -> None:
    """Raise ValueError naming the first field whose value does not have its declared type."""
    hints = get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if not type_ok(v, hints.get(f.name, Any)):
            raise ValueError(f"{where}: {f.name} must be {type_name(hints.get(f.name))}, got {type(v).__name__} {v!r}")
