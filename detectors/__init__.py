"""Detectors: one file each, found automatically.

Add a detector by writing `detectors/my_check.py` with a `Detector` subclass that sets `name`
(and `kinds`, `category`, `defaults`). Nothing else needs to change: the registry imports every
module in this package and the engines run whatever is enabled, in dependency order.
"""

from __future__ import annotations

import importlib
import pkgutil

from detectors.base import CATEGORIES, FINDING_SCHEMA, Detector

__all__ = ["CATEGORIES", "FINDING_SCHEMA", "Detector", "registry", "build"]

_REGISTRY: dict[str, type[Detector]] | None = None


def registry() -> dict[str, type[Detector]]:
    global _REGISTRY
    if _REGISTRY is None:
        found: dict[str, type[Detector]] = {}
        for mod in pkgutil.iter_modules(__path__):
            if mod.name.startswith("_") or mod.name == "base":
                continue
            m = importlib.import_module(f"{__name__}.{mod.name}")
            for obj in vars(m).values():
                if isinstance(obj, type) and issubclass(obj, Detector) and obj is not Detector and obj.name \
                        and obj.__module__ == m.__name__:
                    if obj.name in found:
                        raise RuntimeError(f"two detectors are named '{obj.name}'")
                    found[obj.name] = obj
        _REGISTRY = found
    return _REGISTRY


def build(settings: dict | None = None, only: list[str] | None = None) -> list[Detector]:
    """Instantiate the enabled detectors in dependency order.

    `settings` maps detector name -> {setting: value, "enabled": bool}; `only` restricts by name."""
    settings = settings or {}
    reg = registry()
    unknown = (set(settings) | set(only or ())) - set(reg)
    if unknown:
        raise ValueError(f"unknown detector(s) {sorted(unknown)}; available: {sorted(reg)}")
    chosen = []
    for name, cls in sorted(reg.items()):
        conf = dict(settings.get(name, {}))
        enabled = conf.pop("enabled", cls.enabled_by_default)
        if only is not None:
            enabled = name in only
        if enabled:
            chosen.append(cls(**conf))
    # dependency order (requires), stable by name otherwise
    order, seen = [], set()
    by_name = {d.name: d for d in chosen}

    def visit(d: Detector, stack: tuple = ()):
        if d.name in seen:
            return
        if d.name in stack:
            raise RuntimeError(f"detector dependency cycle: {stack + (d.name,)}")
        for r in d.requires:
            if r in by_name:
                visit(by_name[r], stack + (d.name,))
        seen.add(d.name)
        order.append(d)

    for d in chosen:
        visit(d)
    return order
