"""The scan's stages as plain functions, composed by `shardguard.pipeline.scan.scan` (and only there).
`shardguard.flows` runs the same composition with each stage as a Prefect task.

    ingest  -> records.arrow (+ malformed rows)          every row read or accounted malformed
    detect  -> findings (side-car table, records untouched)
    decide  -> which rows are held back, per-shard verdicts, row accounting
    write   -> flags.parquet, clean/, quarantine/, summary.json, report.html (atomically)
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePath
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shardguard import __version__, detectors
from shardguard.core.schema import FINDING_SCHEMA, VERDICTS, strip_compression
from shardguard.detectors import Detector
from shardguard.ingest import RECORD_SCHEMA, Malformed, ShardError, ShardInfo, expand_paths, ingest_shard
from shardguard.ingest.malformed import MalformedLog
from shardguard.ingest.readers import shard_label
from shardguard.pipeline.config import ScanConfig
from shardguard.pipeline.progress import Progress, stage_bar


@dataclass
class Ingested:
    records_path: str
    shards: list[dict]
    malformed: MalformedLog  # iterates {"shard", "row", "reason", "raw"} dicts, shard by shard
    skipped: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    context: list[str] = field(default_factory=list)  # shards read only as context (dropped from outputs)


# -- ingest ------------------------------------------------------------------------------------

CONTEXT_PREFIX = "accepted/"


def no_shards_message(paths: list[str], skipped: list[dict]) -> str:
    """Why a scan has nothing to read (a usage error: the CLI exits 2 with it)."""
    shown = ", ".join(f"{s['file']} ({s['reason']})" for s in skipped[:5])
    more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
    return (f"no shard files in {', '.join(map(str, paths))}" + (f": only {shown}{more}" if skipped else
            ": the folder is empty") + "; shards are .jsonl/.json/.parquet/.csv/.arrow/.txt/.warc/.wet "
            "(optionally .gz/.zst/.bz2/.xz)")


def stage_ingest(paths: list[str], work: Path, kind: str, cfg: ScanConfig,
                 context_paths: list[str] | None = None, progress: Progress | None = None) -> Ingested:
    """Every shard of `paths` into one Arrow file. `context_paths` (the service's accepted corpus) are
    read first, named `accepted/<name>`, so cross-shard detectors judge the new shards against them."""
    t0 = time.perf_counter()
    shards, skipped = expand_paths(paths, cfg.limits.follow_links)
    if not shards:
        raise FileNotFoundError(no_shards_message(paths, skipped))
    context: list[tuple[Path, str]] = []
    if context_paths:
        ctx, _ = expand_paths(context_paths, cfg.limits.follow_links)
        taken = {name for _, name in shards}
        for path, name in ctx:
            cname = CONTEXT_PREFIX + name
            while cname in taken:
                cname = "_" + cname
            taken.add(cname)
            context.append((path, cname))
    records_path = work / "records.arrow"
    infos: list[ShardInfo] = []
    # malformed rows: a few bytes each in memory, their raw previews (up to 4 KB) wait in a file
    malformed = MalformedLog(work / "malformed.raw.jsonl")
    seq = 0
    todo = context + shards
    with pa.OSFile(str(records_path), "wb") as sink, pa.ipc.new_file(sink, RECORD_SCHEMA) as writer, \
            stage_bar(progress, "ingest") as bar:
        for n, (path, name) in enumerate(todo, 1):
            info = ShardInfo(shard=name, path=shard_label(str(path)))
            infos.append(info)
            if len(todo) > 1:
                bar.note(f"shard {n}/{len(todo)}")
            try:
                for item in ingest_shard(path, name, kind, cfg.batch_size, cfg.limits, info=info, seq_start=seq):
                    if isinstance(item, Malformed):
                        malformed.append(item.shard, item.row, item.reason, item.raw)
                        bar.update(1)
                    else:
                        writer.write_batch(item)
                        bar.update(item.num_rows)
            except ShardError as e:
                info.error = str(e)
            except OSError as e:
                info.error = f"cannot read file: {e}"
            seq += info.rows - info.malformed
    malformed.close()
    return Ingested(str(records_path), [asdict(i) for i in infos], malformed, skipped, time.perf_counter() - t0,
                    [name for _, name in context])


def drop_context(ingested: Ingested, findings: pa.Table, work: Path) -> tuple[Ingested, pa.Table]:
    """The scan without its context shards: their records, accounting and findings are dropped."""
    if not ingested.context:
        return ingested, findings
    from shardguard.engine.local import iter_batches

    ctx = pa.array(ingested.context, pa.string())
    out = work / "records.new.arrow"
    with pa.OSFile(str(out), "wb") as sink, pa.ipc.new_file(sink, RECORD_SCHEMA) as w:
        for b in iter_batches(Path(ingested.records_path)):
            b = b.filter(pc.invert(pc.is_in(b.column("shard"), value_set=ctx)))
            if b.num_rows:
                w.write_batch(b)
    f = findings.filter(pc.invert(pc.is_in(findings.column("shard"), value_set=ctx)))
    keep = set(ingested.context)
    infos = [i for i in ingested.shards if i["shard"] not in keep]
    mal = ingested.malformed.without(keep, work / "malformed.own.raw.jsonl")
    return Ingested(str(out), infos, mal, ingested.skipped, ingested.seconds), f


# -- detect ------------------------------------------------------------------------------------

def count_records(records_path: str | Path) -> int:
    """Rows in the records file (from its batches' metadata; no data is read)."""
    with pa.OSFile(str(records_path)) as src:
        reader = pa.ipc.open_file(src)
        return sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))


def stage_detect(records_path: str, cfg: ScanConfig, engine: str = "local", beam_options: list[str] | None = None,
                 dets: list | None = None, base_state: dict | None = None, base_records: list | None = None,
                 progress: Progress | None = None):
    dets = dets if dets is not None else detectors.build(cfg.detectors, cfg.only)
    t0 = time.perf_counter()
    if engine == "beam":
        from shardguard.engine.beam import run_beam

        if base_state:
            raise ValueError("the Beam engine reads the accepted corpus as context shards, not as stored states")
        findings, discoveries, timings = run_beam(Path(records_path), dets, beam_options or [])
    elif progress is not None:
        from shardguard.engine.local import run_local

        on_rows, close = progress.passes(count_records(records_path))
        try:
            findings, discoveries, timings = run_local(Path(records_path), dets, base_state, base_records,
                                                       progress=on_rows)
        finally:
            close()
    else:
        from shardguard.engine.local import run_local

        findings, discoveries, timings = run_local(Path(records_path), dets, base_state, base_records)
    findings = sort_findings(findings)
    return findings, discoveries, {"detectors": timings, "detect_total": time.perf_counter() - t0}


def sort_findings(t: pa.Table) -> pa.Table:
    idx = pc.sort_indices(t, sort_keys=[("shard", "ascending"), ("row", "ascending"), ("detector", "ascending"),
                                        ("category", "ascending"), ("reason", "ascending")])
    if len(idx) and pc.all(pc.equal(idx, pa.array(range(len(idx)), idx.type))).as_py():
        return t  # already in order (e.g. a shard of malformed rows only): no copy
    return t.take(idx)


def malformed_findings(malformed) -> pa.Table:
    """One `malformed` finding per malformed row (built a block at a time: a million bad rows stay cheap)."""
    if not malformed:
        return FINDING_SCHEMA.empty_table()
    parts = []
    shard, row, reason = [], [], []

    def block():
        n = len(row)
        parts.append(pa.table({
            "shard": pa.array(shard, pa.string()), "row": pa.array(row, pa.int64()),
            "record_id": pa.nulls(n, pa.string()), "detector": pa.array(["ingest"] * n, pa.string()),
            "category": pa.array(["malformed"] * n, pa.string()), "score": pa.array([1.0] * n, pa.float64()),
            "reason": pa.array(reason, pa.string()), "details": pa.array(["{}"] * n, pa.string()),
        }, schema=FINDING_SCHEMA))
        shard.clear(), row.clear(), reason.clear()

    for m in malformed:
        shard.append(m["shard"])
        row.append(m["row"])
        reason.append(f"row {m['row']}: {m['reason']}")
        if len(row) >= 65536:
            block()
    if row:
        block()
    return pa.concat_tables(parts)


# -- decide ------------------------------------------------------------------------------------

def stage_decide(findings: pa.Table, ingested: Ingested, cfg: ScanConfig, dets: list | None = None) -> dict:
    """Detector findings -> rows held back, per-shard verdicts, and the row accounting.

    Shard-level rules beyond the policy's come from the detectors (`Detector.shard_notes`).
    (Malformed rows come from `ingested`; they are neither kept nor held back.)"""
    pol = cfg.policy
    dets = dets if dets is not None else detectors.build(cfg.detectors, cfg.only)
    noting = {d.name: d for d in dets if type(d).shard_notes is not Detector.shard_notes}
    details_of: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    hold: dict[str, set[int]] = defaultdict(set)
    flagged: dict[str, set[int]] = defaultdict(set)
    by_cat: dict[str, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    strong_poison: dict[str, set[int]] = defaultdict(set)
    per_detector: dict[str, Counter] = defaultdict(Counter)
    reasons: dict[str, Counter] = defaultdict(Counter)
    cols = findings.select(["shard", "row", "detector", "category", "score", "details"]).to_pydict()
    for s, r, d, c, sc, det in zip(cols["shard"], cols["row"], cols["detector"], cols["category"], cols["score"],
                                   cols["details"]):
        if d in noting:
            details_of[s][d].append(json.loads(det or "{}"))
        flagged[s].add(r)
        by_cat[s][c].add(r)
        per_detector[d][c] += 1
        reasons[s][f"{d}:{c}"] += 1
        if c in pol.hold_back and sc >= pol.min_score.get(c, 0.0):
            hold[s].add(r)
        if c == "poison" and sc >= pol.poisoned_min_score:
            strong_poison[s].add(r)

    shards_out = []
    totals = Counter()
    cat_totals = Counter()
    for info in ingested.shards:
        s = info["shard"]
        rows, mal = info["rows"], info["malformed"]
        held = len(hold.get(s, ()))
        cats = {c: len(v) for c, v in by_cat.get(s, {}).items() if c != "malformed"}
        good = rows - mal
        if len(strong_poison.get(s, ())) >= pol.poisoned_min_rows:
            verdict = "poisoned"
        elif info.get("error") or any(cats.get(c, 0) for c in pol.review_categories if c != "malformed") \
                or (mal and "malformed" in pol.review_categories) \
                or (good and cats.get("duplicate", 0) / good >= pol.review_duplicate_fraction):
            verdict = "review"
        else:
            verdict = "clean"
        flagged_rows = len(flagged.get(s, ()))
        entry = {
            "shard": s, "path": info["path"], "format": info["format"], "kind": info["kind"],
            "rows": rows, "rows_malformed": mal, "flagged": flagged_rows, "held_back": held,
            "kept": good - held, "by_category": cats, "verdict": verdict,
            "findings": dict(reasons.get(s, {})),
        }
        if info.get("notes"):  # rows kept after a repair (e.g. lone surrogates replaced)
            entry["ingest_notes"] = info["notes"]
        notes = merge_notes(noting[d].shard_notes(dl, pol) for d, dl in sorted(details_of.get(s, {}).items()))
        if notes.pop("review", False) and verdict == "clean":
            entry["verdict"] = "review"
        entry.update(notes)
        if info.get("error"):
            entry["error"] = info["error"]
        shards_out.append(entry)
        totals.update(rows_total=rows, rows_malformed=mal, rows_held_back=held, rows_kept=good - held,
                      rows_flagged=flagged_rows)
        cat_totals.update(cats)
    summary = {
        "rows_total": totals["rows_total"],
        "rows_kept": totals["rows_kept"],
        "rows_held_back": totals["rows_held_back"],
        "rows_malformed": totals["rows_malformed"],
        "rows_flagged": totals["rows_flagged"],
        "rows_by_category": {c: cat_totals.get(c, 0) for c in detectors.categories() if c != "malformed"}
        | {"malformed": totals["rows_malformed"]},
        "findings_by_detector": {d: dict(c) for d, c in sorted(per_detector.items())},
        "verdicts": {v: sum(1 for e in shards_out if e["verdict"] == v) for v in VERDICTS},
        "shards": shards_out,
        "shards_skipped": ingested.skipped,
        "shards_unreadable": [{"shard": e["shard"], "error": e["error"]} for e in shards_out if "error" in e],
    }
    summary["accounting_ok"] = summary["rows_kept"] + summary["rows_held_back"] + summary["rows_malformed"] \
        == summary["rows_total"]
    return {"summary": summary, "hold": {s: sorted(v) for s, v in hold.items()}}


def merge_notes(notes) -> dict[str, Any]:
    """Shard notes of several detectors: numbers by max, flags by or, anything else first seen."""
    out: dict[str, Any] = {}
    for n in notes:
        for k, v in n.items():
            if k not in out:
                out[k] = v
            elif isinstance(v, bool):
                out[k] = out[k] or v
            elif isinstance(v, int | float):
                out[k] = max(out[k], v)
    return out


# -- write -------------------------------------------------------------------------------------

_JSONISH = ("jsonl", "json", "ndjson", "txt")


def output_name(shard: str, fmt: str, used: set[str]) -> str:
    pp = PurePath(shard)
    # a file given by an absolute or ../ path is named by its file name; folder members keep their layout
    parts = [pp.name] if pp.is_absolute() or ".." in pp.parts else [p for p in pp.parts if p not in (".",)]
    base = "/".join(parts) or "shard"
    base = strip_compression(base)
    stem, _, _ = base.rpartition(".") if "." in PurePath(base).name else (base, "", "")
    ext = ".jsonl" if fmt.split("+")[0] in _JSONISH else ".parquet"
    name = stem + ext
    n = 1
    while name in used:
        n += 1
        name = f"{stem}.{n}{ext}"
    used.add(name)
    return name


def _conform(t: pa.Table, schema: pa.Schema) -> pa.Table:
    cols = []
    for f in schema:
        if f.name not in t.schema.names:
            cols.append(pa.nulls(t.num_rows, f.type))
            continue
        c = t.column(f.name)
        try:
            cols.append(c.cast(f.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            cols.append(pa.array([v if v is None or isinstance(v, str) else json.dumps(v, default=str)
                                  for v in c.to_pylist()], f.type))
    return pa.Table.from_arrays(cols, schema=schema)


class _ShardWriter:
    """Streams one shard's kept or held-back records in the input's format (JSONL, or Parquet)."""

    def __init__(self, path: Path, parquet: bool):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.parquet, self.rows = path, parquet, 0
        self._f = None if parquet else open(path, "w", encoding="utf-8")  # noqa: SIM115
        self._pq: pq.ParquetWriter | None = None

    def write(self, raws: list[str]):
        if not raws:
            return
        self.rows += len(raws)
        if self._f is not None:
            self._f.write("\n".join(raws) + "\n")
            return
        t = pa.Table.from_pylist([json.loads(r) for r in raws])
        if self._pq is None:
            self._schema = t.schema
            self._pq = pq.ParquetWriter(str(self.path), t.schema)
        if t.schema != self._schema:
            try:
                t = t.cast(self._schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                t = self._widen(t)  # schema drift (a column null in the first batches, a string later)
        self._pq.write_table(t)

    def _widen(self, t: pa.Table) -> pa.Table:
        """Rewrite what was written under a schema both it and `t` fit (columns that still disagree
        become JSON text), and go on with that schema."""
        try:
            schema = pa.unify_schemas([self._schema, t.schema], promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            schema = None
        if schema is None:
            fields = []
            for f in self._schema:
                g = t.schema.field(f.name) if f.name in t.schema.names else f
                fields.append(f if f.type == g.type else pa.field(f.name, pa.string()))
            fields += [g for g in t.schema if g.name not in self._schema.names]
            schema = pa.schema(fields)
        self._pq.close()
        old = self.path.with_name(self.path.name + ".drift")
        self.path.rename(old)
        self._pq, self._schema = pq.ParquetWriter(str(self.path), schema), schema
        src = pq.ParquetFile(str(old))
        for i in range(src.num_row_groups):
            self._pq.write_table(_conform(src.read_row_group(i), schema))
        del src
        old.unlink()
        return _conform(t, schema)


    def close(self):
        if self._f is not None:
            self._f.close()
        if self._pq is not None:
            self._pq.close()


def _write_batch(batch: pa.RecordBatch, hold: dict[str, set[int]], redactor, writer, close_shard, current, fields):
    """One batch of records to its shards' clean/ and quarantine/ writers (a shard's writers are closed
    when the next shard starts: the records file holds shards one after another). Returns the shard
    written last."""
    shards = batch.column("shard")
    for s in pc.unique(shards).to_pylist():
        if current is not None and s != current:
            close_shard(current)
        current = s
        sub = batch.filter(pc.equal(shards, s))
        held = hold.get(s, set())
        raws = sub.column("raw").to_pylist()
        if redactor is not None:
            kinds = sub.column("kind").to_pylist()
            raws = [redactor(raw, k, fields[k]) for raw, k in zip(raws, kinds)]
        if held:
            rows = sub.column("row").to_pylist()
            keep_raws, held_raws = [], []
            for r, raw in zip(rows, raws):
                (held_raws if r in held else keep_raws).append(raw)
        else:
            keep_raws, held_raws = raws, []
        writer(s, "clean").write(keep_raws)
        if held_raws:
            writer(s, "quarantine").write(held_raws)
    return current


def stage_write_records(staging: Path, ingested: Ingested, decided: dict, redactor=None,
                        progress: Progress | None = None) -> dict[str, dict]:
    """clean/ and quarantine/ under `staging`; malformed rows go to quarantine/<name>.malformed.jsonl."""
    from shardguard.ingest import FIELDS

    hold = {s: set(r) for s, r in decided["hold"].items()}
    used: set[str] = set()
    files: dict[str, dict] = {}
    fmt_of = {i["shard"]: i["format"] for i in ingested.shards}
    writers: dict[tuple[str, str], _ShardWriter] = {}
    current = None

    def close_shard(s):
        for side in ("clean", "quarantine"):
            w = writers.pop((s, side), None)
            if w:
                w.close()

    def writer(s: str, side: str) -> _ShardWriter:
        if s not in files:
            name = output_name(s, fmt_of.get(s, "jsonl"), used)
            files[s] = {"clean": f"clean/{name}", "quarantine": f"quarantine/{name}"}
        w = writers.get((s, side))
        if w is None:
            w = writers[(s, side)] = _ShardWriter(staging / files[s][side], files[s][side].endswith(".parquet"))
        return w

    from shardguard.engine.local import iter_batches

    total = sum(i["rows"] - i["malformed"] for i in ingested.shards)
    with stage_bar(progress, "write", total) as bar:
        for batch in iter_batches(Path(ingested.records_path)):
            current = _write_batch(batch, hold, redactor, writer, close_shard, current, FIELDS)
            bar.update(batch.num_rows)
    if current is not None:
        close_shard(current)
    # every shard gets a clean file, even when empty, so downstream globbing sees all shards
    for info in ingested.shards:
        s = info["shard"]
        if s not in files and not info.get("error"):
            writer(s, "clean").close()
            writers.pop((s, "clean"), None)
    f, at = None, None  # malformed rows come shard by shard: one file open at a time
    try:
        for m in ingested.malformed:
            s = m["shard"]
            if s != at:
                if f is not None:
                    f.close()
                if s not in files:
                    writer(s, "clean").close()
                    writers.pop((s, "clean"), None)
                name = files[s]["quarantine"].rsplit(".", 1)[0] + ".malformed.jsonl"
                files[s]["malformed"] = name
                p = staging / name
                p.parent.mkdir(parents=True, exist_ok=True)
                f, at = open(p, "a", encoding="utf-8"), s  # noqa: SIM115 - closed below
            f.write(json.dumps({"shard": s, "row": m["row"], "reason": m["reason"], "raw": m["raw"]},
                               ensure_ascii=False) + "\n")
    finally:
        if f is not None:
            f.close()
    for info in ingested.shards:  # whole shards that could not be read are kept as they are
        if info.get("error") and Path(info["path"]).is_file():
            name = "quarantine/_unreadable/" + output_name(info["shard"], "bin", used).rsplit(".", 1)[0] \
                + "".join(Path(info["path"]).suffixes)
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(info["path"], staging / name)
            files.setdefault(info["shard"], {})["unreadable"] = name
    return files


def finish_run(run: Path, flags: pa.Table, summary: dict, report_html: str) -> None:
    """The result's remaining files, into its run folder (published by `OutDir.publish`)."""
    pq.write_table(flags, str(run / "flags.parquet"))
    for side in ("clean", "quarantine"):
        (run / side).mkdir(parents=True, exist_ok=True)
    (run / "report.html").write_text(report_html, encoding="utf-8")
    (run / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False, default=str), encoding="utf-8")


def scan_meta(paths: list[str], kind: str, engine: str, cfg: ScanConfig, dets: list | None = None) -> dict[str, Any]:
    dets = dets if dets is not None else detectors.build(cfg.detectors, cfg.only)
    return {"shardguard_version": __version__, "inputs": [str(p) for p in paths], "kind": kind, "engine": engine,
            "detectors": [d.name for d in dets], "policy": asdict(cfg.policy)}
