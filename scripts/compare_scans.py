"""Compare two scans' outputs: flags.parquet row for row, and summary.json minus timings and paths.

    python scripts/compare_scans.py OUT_A OUT_B      # exit 0 when identical, 1 with the differences

Used to show that a restructuring changed nothing a user sees (run the same scan before and after)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow.parquet as pq

VOLATILE = {"timings", "seconds", "detector_seconds"}


def _clean(obj, path=""):
    if isinstance(obj, dict):
        return {k: _clean(v, f"{path}.{k}") for k, v in obj.items() if k not in VOLATILE and k != "path"}
    if isinstance(obj, list):
        return [_clean(v, path) for v in obj]
    return obj


def _diff(a, b, path="", out=None, limit=40):
    out = [] if out is None else out
    if len(out) >= limit:
        return out
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append(f"{path}.{k}: only in {'B' if k not in a else 'A'}")
            else:
                _diff(a[k], b[k], f"{path}.{k}", out, limit)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            _diff(x, y, f"{path}[{i}]", out, limit)
    elif a != b:
        out.append(f"{path}: {str(a)[:120]!r} != {str(b)[:120]!r}")
    return out


def compare(a: Path, b: Path) -> list[str]:
    diffs = []
    fa, fb = pq.read_table(a / "flags.parquet"), pq.read_table(b / "flags.parquet")
    if fa.schema != fb.schema:
        diffs.append(f"flags.parquet schema differs: {fa.schema} vs {fb.schema}")
    elif not fa.equals(fb):
        ra, rb = fa.to_pylist(), fb.to_pylist()
        diffs.append(f"flags.parquet differs: {len(ra)} vs {len(rb)} rows")
        diffs += [f"  first differing row {i}: {x} != {y}" for i, (x, y) in enumerate(zip(ra, rb)) if x != y][:5]
    sa = _clean(json.loads((a / "summary.json").read_text(encoding="utf-8")))
    sb = _clean(json.loads((b / "summary.json").read_text(encoding="utf-8")))
    diffs += [f"summary.json {d}" for d in _diff(sa, sb)]
    return diffs


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 2
    diffs = compare(Path(argv[0]), Path(argv[1]))
    print("\n".join(diffs) if diffs else "identical: flags.parquet and summary.json (timings and paths aside)")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
