"""An external detector: a whole-dataset count (observe/merge/finalize) and a per-record flag."""

from __future__ import annotations

from dataclasses import dataclass

from shardguard.detectors import Detector


@dataclass(frozen=True)
class ShoutSettings:
    min_letters: int = 12
    share: float = 0.8


class Shouting(Detector):
    name = "shout"
    category = "shouting"  # a category of its own, declared here
    categories = ("shouting",)
    Settings = ShoutSettings

    def _loud(self, texts):
        out = []
        for t in texts:
            letters = [c for c in t or "" if c.isalpha()]
            out.append(len(letters) >= self.settings.min_letters
                       and sum(c.isupper() for c in letters) >= self.settings.share * len(letters))
        return out

    def observe(self, batch):
        return sum(self._loud(batch.column("text").to_pylist()))

    def merge(self, a, b):
        return (a or 0) + (b or 0)

    def finalize(self, state, context):
        return {"loud_rows": state or 0}

    def flag(self, batch, model):
        return [{"i": i, "score": 0.6, "reason": "written in capitals"}
                for i, loud in enumerate(self._loud(batch.column("text").to_pylist())) if loud]

    def discoveries(self, model):
        return {"loud_rows": model["loud_rows"]}
