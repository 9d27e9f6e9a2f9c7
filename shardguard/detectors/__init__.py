"""Detectors, grouped by family (`dedup/`, `sft/`, `preference/`, `memorization/`, `web/`), and the registry.

Add a detector by writing one file with a `Detector` subclass that sets `name` (and `kinds`,
`category`, `Settings`/`defaults`, `requires`):
- inside shardguard: any module under a family folder here is found automatically;
- in your own package: register the class under the `shardguard.detectors` entry point group
  (`[project.entry-points."shardguard.detectors"] shout = "my_pkg.shout:Shouting"`).
The engines run whatever is enabled, in dependency order; `requires` enables what a detector needs.
"""

from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points

from shardguard.core.schema import CATEGORIES, FINDING_SCHEMA
from shardguard.detectors.base import Detector, SettingsError

__all__ = ["CATEGORIES", "FINDING_SCHEMA", "Detector", "SettingsError", "registry", "build", "categories",
           "ENTRY_POINT_GROUP"]

ENTRY_POINT_GROUP = "shardguard.detectors"
_REGISTRY: dict[str, type[Detector]] | None = None


def _add(found: dict[str, type[Detector]], obj: type[Detector], where: str) -> None:
    if obj.name in found and found[obj.name] is not obj:
        raise RuntimeError(f"two detectors are named '{obj.name}' ({found[obj.name].__module__} and {where})")
    found[obj.name] = obj


def registry() -> dict[str, type[Detector]]:
    """name -> Detector class: ours (every module under the family folders) and external ones
    (the `shardguard.detectors` entry point group)."""
    global _REGISTRY
    if _REGISTRY is None:
        found: dict[str, type[Detector]] = {}
        for mod in pkgutil.walk_packages(__path__, prefix=f"{__name__}."):
            if mod.ispkg or mod.name.rsplit(".", 1)[-1].startswith("_") or mod.name.endswith(".base"):
                continue
            m = importlib.import_module(mod.name)
            for obj in vars(m).values():
                if isinstance(obj, type) and issubclass(obj, Detector) and obj is not Detector and obj.name \
                        and obj.__module__ == m.__name__:
                    _add(found, obj, m.__name__)
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            obj = ep.load()
            if not (isinstance(obj, type) and issubclass(obj, Detector) and obj.name):
                raise RuntimeError(f"entry point {ep.name} = {ep.value} ({ENTRY_POINT_GROUP}) is not a named "
                                   f"shardguard Detector subclass")
            _add(found, obj, ep.value)
        _REGISTRY = found
    return _REGISTRY


def categories() -> tuple[str, ...]:
    """The public categories plus those the registered detectors declare."""
    extra = sorted({c for cls in registry().values() for c in cls.categories} - set(CATEGORIES))
    return tuple(CATEGORIES) + tuple(extra)


def build(settings: dict | None = None, only: list[str] | None = None) -> list[Detector]:
    """Instantiate the enabled detectors in dependency order.

    `settings` maps detector name -> {setting: value, "enabled": bool}; `only` restricts by name.
    A detector's `requires` are enabled with it; requiring one the settings disable is an error."""
    settings = settings or {}
    reg = registry()
    unknown = (set(settings) | set(only or ())) - set(reg)
    if unknown:
        raise ValueError(f"unknown detector(s) {sorted(unknown)}; available: {sorted(reg)}")
    for name, conf in settings.items():
        if not isinstance(conf, dict):
            raise ValueError(f"[detectors.{name}] must be a table of settings, got {type(conf).__name__}")
    enabled: set[str] = set()
    for name, cls in reg.items():
        on = settings.get(name, {}).get("enabled", cls.enabled_by_default)
        if only is not None:
            on = name in only
        if on:
            enabled.add(name)
    # requires: enable what an enabled detector needs, transitively
    stack = sorted(enabled)
    while stack:
        name = stack.pop()
        for r in reg[name].requires:
            if r not in reg:
                raise ValueError(f"detector '{name}' requires '{r}', which is not installed")
            if settings.get(r, {}).get("enabled", True) is False:
                raise ValueError(f"detector '{name}' requires '{r}', but the configuration disables it "
                                 f"([detectors.{r}] enabled = false)")
            if r not in enabled:
                enabled.add(r)
                stack.append(r)
    chosen = []
    for name in sorted(enabled):
        conf = {k: v for k, v in settings.get(name, {}).items() if k != "enabled"}
        chosen.append(reg[name](**conf))
    order, seen = [], set()
    by_name = {d.name: d for d in chosen}

    def visit(d: Detector, stack: tuple = ()):
        if d.name in seen:
            return
        if d.name in stack:
            raise RuntimeError(f"detector dependency cycle: {stack + (d.name,)}")
        for r in d.requires:
            visit(by_name[r], stack + (d.name,))
        seen.add(d.name)
        order.append(d)

    for d in chosen:
        visit(d)
    return order
