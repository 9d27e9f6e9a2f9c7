"""Scan configuration: one TOML (or JSON) file, every key optional.

```toml
batch_size = 2048
[limits]
max_line_bytes = 16777216
[detectors.minhash]
threshold = 0.8
[detectors.pii]
enabled = false
[policy]
hold_back = ["poison", "duplicate", "secret"]      # categories whose rows go to quarantine/
min_score = { poison = 0.5 }                        # per-category score needed to hold a row back
poisoned_min_rows = 1                               # poison rows (score >= poisoned_min_score) that make a shard `poisoned`
poisoned_min_score = 0.8
review_categories = ["poison", "secret", "pii", "malformed"]
review_duplicate_fraction = 0.2
```
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from shardguard.ingest.readers import Limits


@dataclass
class Policy:
    hold_back: list[str] = field(default_factory=lambda: ["poison", "duplicate", "secret"])
    min_score: dict[str, float] = field(default_factory=dict)
    poisoned_min_rows: int = 1
    poisoned_min_score: float = 0.8
    review_categories: list[str] = field(default_factory=lambda: ["poison", "secret", "pii", "malformed"])
    review_duplicate_fraction: float = 0.2
    # a PII/secret value repeated in this many records marks the shard a memorization risk (review)
    repeat_review_min: int = 10


@dataclass
class ScanConfig:
    batch_size: int = 2048
    limits: Limits = field(default_factory=Limits)
    detectors: dict[str, dict] = field(default_factory=dict)
    only: list[str] | None = None
    policy: Policy = field(default_factory=Policy)
    redact: bool = False

    @classmethod
    def load(cls, path: str | Path | None) -> ScanConfig:
        if path is None:
            return cls()
        p = Path(path)
        text = p.read_text(encoding="utf-8")
        raw = json.loads(text) if p.suffix.lower() == ".json" else tomllib.loads(text)
        return cls.from_dict(raw, source=str(p))

    @classmethod
    def from_dict(cls, raw: dict, source: str = "config") -> ScanConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"{source}: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
        cfg = cls()
        for k, v in raw.items():
            if k == "limits":
                cfg.limits = _sub(Limits, v, f"{source}: [limits]")
            elif k == "policy":
                cfg.policy = _sub(Policy, v, f"{source}: [policy]")
            else:
                setattr(cfg, k, v)
        return cfg


def _sub(klass, v: dict, where: str):
    known = {f.name for f in fields(klass)}
    unknown = set(v) - known
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
    return klass(**v)
