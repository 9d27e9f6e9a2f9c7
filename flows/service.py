"""shardguard as a service: incremental scheduled scans of a watched folder, a review queue, history.

    watched folder ──(new content hashes only)──> scan, together with the accepted corpus
         │                                            │ findings of the new shards only
         │                                            v
         │                         <state>/scans/<scan_id>/  flags.parquet, summary.json, report.html,
         │                                                   clean/, quarantine/
         │                                            │
         └── history DB (<state>/history.db): scans, shards (hash, verdict, counts), decisions
                 verdict clean     -> accepted automatically: clean output copied to <state>/accepted/
                 review / poisoned -> pending in the review queue (`shardguard review`)
                 poisoned          -> webhook POST (optional)

"Judged against everything already accepted": each scan reads the new shards *and* the accepted
corpus, so cross-shard detectors (exact/MinHash duplicates, trigger statistics, response clusters)
see both, and only the new shards' findings are kept. The cost is a rescan of the accepted corpus
each time new shards arrive (see docs/service.md); no scan runs when nothing is new.

Entry points: `incremental_scan(...)` (plain function), `incremental_scan_flow` (the Prefect flow that
`shardguard serve` deploys on a schedule), `accept_shard` / `reject_shard` (the review queue).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import tomllib
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from prefect import flow

from flows.scan import decide_task, detect_task, in_prefect_run, ingest_task, stage, write_task
from shardguard import scan
from shardguard.config import ScanConfig
from shardguard.history import (
    AUTO,
    History,
    accept_shard,
    file_hash,
    record_accept,
    reject_shard,
    resolve_url,
    state_lock,
)

__all__ = ["incremental_scan", "incremental_scan_flow", "serve", "accept_shard", "reject_shard", "notify"]

NEW, CONTEXT = "new/", "accepted/"


# -- helpers -------------------------------------------------------------------------------------

def parse_every(every: str | int | float) -> float:
    """'10m', '30s', '1h30m', '2d', '90' (seconds) -> seconds."""
    if isinstance(every, int | float):
        secs = float(every)
    else:
        s = every.strip().lower()
        if re.fullmatch(r"\d+(\.\d+)?", s):
            secs = float(s)
        else:
            parts = re.findall(r"(\d+(?:\.\d+)?)\s*([dhms])", s)
            if not parts or re.sub(r"(\d+(?:\.\d+)?)\s*([dhms])", "", s).strip():
                raise ValueError(f"cannot read interval {every!r}; use e.g. 30s, 10m, 1h, 1h30m")
            secs = sum(float(n) * {"d": 86400, "h": 3600, "m": 60, "s": 1}[u] for n, u in parts)
    if secs <= 0:
        raise ValueError(f"interval must be positive, got {every!r}")
    return secs


def load_config(config: str | dict | None) -> dict:
    """A scan config as a plain dict (a TOML/JSON path or a dict); validated by ScanConfig."""
    if config is None:
        raw: dict = {}
    elif isinstance(config, dict):
        raw = config
    else:
        p = Path(config)
        text = p.read_text(encoding="utf-8")
        raw = json.loads(text) if p.suffix.lower() == ".json" else tomllib.loads(text)
    ScanConfig.from_dict(raw)
    return raw


def new_scan_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def find_new(watch: Path, known: set[str], settle_seconds: float = 2.0) -> tuple[list[dict], list[dict]]:
    """Shards in `watch` whose content hash is not in `known`.

    Files whose modification time is under `settle_seconds` old are left for the next run (they may
    still be being written); hidden files and folders are ignored. Returns (new, waiting)."""
    from ingest import expand_paths

    shards, _ = expand_paths([watch])
    new, waiting, seen = [], [], set()
    t = time.time()
    for path, rel in shards:
        try:
            if t - path.stat().st_mtime < settle_seconds:
                waiting.append({"name": rel, "why": "modified less than settle_seconds ago"})
                continue
            h = file_hash(path)
        except OSError as e:
            waiting.append({"name": rel, "why": f"cannot read: {e}"})
            continue
        if h in known or h in seen:
            continue
        seen.add(h)
        new.append({"path": path, "name": rel, "hash": h})
    return new, waiting


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _strip(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    return pc.replace_substring_regex(col, pattern="^" + re.escape(NEW), replacement="")


def _only_new(ingested: scan.Ingested, findings: pa.Table, work: Path) -> tuple[scan.Ingested, pa.Table]:
    """Keep the new shards (and their findings) and give them back their names in the watched folder."""
    from ingest import RECORD_SCHEMA
    from shardguard.engine import iter_batches

    out = work / "new_records.arrow"
    i_shard = RECORD_SCHEMA.get_field_index("shard")
    with pa.OSFile(str(out), "wb") as sink, pa.ipc.new_file(sink, RECORD_SCHEMA) as w:
        for b in iter_batches(Path(ingested.records_path)):
            b = b.filter(pc.starts_with(b.column("shard"), NEW))
            if b.num_rows:
                w.write_batch(b.set_column(i_shard, "shard", _strip(b.column("shard"))))
    f = findings.filter(pc.starts_with(findings.column("shard"), NEW))
    f = f.set_column(f.schema.get_field_index("shard"), "shard", _strip(f.column("shard")))
    infos = [dict(i, shard=i["shard"][len(NEW):]) for i in ingested.shards if i["shard"].startswith(NEW)]
    mal = [dict(m, shard=m["shard"][len(NEW):]) for m in ingested.malformed if m["shard"].startswith(NEW)]
    return scan.Ingested(str(out), infos, mal, [], ingested.seconds), f


def notify(webhook: str, payload: dict, timeout: float = 10.0, attempts: int = 3) -> str:
    """POST `payload` as JSON; returns 'ok <status>' or the last error (never raises)."""
    body = json.dumps(payload, default=str).encode("utf-8")
    err = ""
    for i in range(attempts):
        req = urllib.request.Request(webhook, data=body, method="POST",
                                     headers={"Content-Type": "application/json",
                                              "User-Agent": "shardguard-service"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return f"ok {r.status}"
        except Exception as e:  # noqa: BLE001 - a notification failure must not fail the scan
            err = f"{type(e).__name__}: {e}"
            time.sleep(min(2 ** i, 5))
    return f"failed: {err}"


# -- the incremental scan --------------------------------------------------------------------------

def incremental_scan(watch: str | Path, state: str | Path, config: str | dict | None = None, kind: str = "auto",
                     webhook: str | None = None, db: str | None = None, settle_seconds: float = 2.0,
                     engine: str = "local", trigger: str = "manual", flow_run_id: str | None = None,
                     beam_options: list[str] | None = None) -> dict:
    """Scan the shards of `watch` not seen before, record verdicts, auto-accept clean ones.

    Returns {"scan_id": None, "new": 0, ...} when there is nothing new (nothing is recorded then)."""
    watch, state = Path(watch).resolve(), Path(state).resolve()
    if not watch.is_dir():
        raise FileNotFoundError(f"watched folder {watch} does not exist")
    raw_cfg = load_config(config)
    cfg = ScanConfig.from_dict(raw_cfg)
    hist = History(resolve_url(db, state))
    try:
        with state_lock(state):
            return _scan_locked(watch, state, hist, cfg, kind, webhook, settle_seconds, (engine, beam_options),
                                trigger, flow_run_id)
    finally:
        hist.close()


def _rel(out: Path, name: str | None, state: Path) -> str | None:
    return str((out / name).relative_to(state)) if name and (out / name).is_file() else None


def _scan_locked(watch, state, hist, cfg, kind, webhook, settle_seconds, engine_opts, trigger, flow_run_id) -> dict:
    new, waiting = find_new(watch, hist.known_hashes(), settle_seconds)
    if not new:
        return {"scan_id": None, "new": 0, "waiting": waiting}
    scan_id = new_scan_id()
    sdir = state / "scans" / scan_id
    inp, out = sdir / "input", sdir / "out"
    hist.start_scan(scan_id, str(watch), str(state), str(out), trigger, flow_run_id)
    t0 = time.time()
    try:
        # the exact bytes we hash are the bytes we scan: copy first, hash the copy
        for n in new:
            dst = inp / (NEW + n["name"])
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(n["path"], dst)
            n["hash"] = file_hash(dst)
        accepted = state / "accepted"
        context = sorted(p for p in accepted.glob("*") if p.is_file()) if accepted.is_dir() else []
        for p in context:
            _link_or_copy(p, inp / CONTEXT / p.name)
        summary = _scan_stages(inp, out, cfg, kind, *engine_opts, scan_id, watch, len(context))
    except Exception as e:
        hist.finish_scan(scan_id, "failed", error=f"{type(e).__name__}: {e}", n_new=len(new))
        raise
    finally:
        shutil.rmtree(inp, ignore_errors=True)

    by_name = {e["shard"]: e for e in summary["shards"]}
    recorded = []
    for n in new:
        e = by_name[n["name"]]
        outs = e.get("outputs", {})
        sid = hist.add_shard(
            scan_id=scan_id, name=n["name"], content_hash=n["hash"], kind=e.get("kind"), rows=e["rows"],
            rows_malformed=e["rows_malformed"], flagged=e["flagged"], held_back=e["held_back"],
            by_category=e["by_category"], findings=e["findings"], verdict=e["verdict"], status="pending",
            clean_path=_rel(out, outs.get("clean"), state), quarantine_path=_rel(out, outs.get("quarantine"), state))
        if e["verdict"] == "clean":
            record_accept(hist, state, hist.shard(sid), AUTO, "verdict clean")
        recorded.append({"id": sid, "name": n["name"], "content_hash": n["hash"], "verdict": e["verdict"],
                         "rows": e["rows"], "by_category": e["by_category"], "findings": e["findings"]})
    poisoned = [r for r in recorded if r["verdict"] == "poisoned"]
    notified = None
    if poisoned and webhook:
        notified = notify(webhook, {
            "event": "shardguard.poisoned", "scan_id": scan_id, "watch": str(watch), "state": str(state),
            "out_dir": str(out), "report": str(out / "report.html"), "verdicts": summary["verdicts"],
            "shards": poisoned})
    hist.finish_scan(scan_id, "done", n_new=len(new), rows_total=summary["rows_total"],
                     context_rows=summary["service"]["context_rows"], verdicts=summary["verdicts"],
                     notified=notified)
    return {"scan_id": scan_id, "new": len(new), "out": str(out), "shards": recorded,
            "verdicts": summary["verdicts"], "notified": notified, "waiting": waiting,
            "seconds": round(time.time() - t0, 3)}


def _scan_stages(inp: Path, out: Path, cfg: ScanConfig, kind: str, engine: str, beam_options: list[str] | None,
                 scan_id: str, watch: Path, n_context: int) -> dict:
    """flows/scan.py's stages, with the accepted corpus read alongside and then dropped from the outputs."""
    t0 = time.time()
    out.mkdir(parents=True, exist_ok=True)
    work = scan.work_dir(out)
    staging = out / f".staging-{os.getpid()}"
    try:
        ingested = stage(ingest_task, [str(inp)], work, kind, cfg)
        findings, discoveries, timings = stage(detect_task, ingested.records_path, cfg, engine, beam_options)
        context_rows = sum(i["rows"] for i in ingested.shards if i["shard"].startswith(CONTEXT))
        new_ing, new_findings = _only_new(ingested, findings, work)
        decided = stage(decide_task, new_findings, new_ing, cfg)
        summary = scan.scan_meta([str(watch)], kind, engine, cfg) | decided["summary"]
        summary["discoveries"] = discoveries
        summary["service"] = {"scan_id": scan_id, "watch": str(watch), "context_shards": n_context,
                              "context_rows": context_rows,
                              "note": "discoveries cover the new shards and the accepted corpus; "
                                      "findings, verdicts and outputs cover the new shards only"}
        summary["timings"] = {"ingest": round(ingested.seconds, 3), **timings}
        summary["seconds"] = round(time.time() - t0, 3)
        return stage(write_task, str(out), staging, new_ing, decided, new_findings, summary, cfg)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)


# -- Prefect -------------------------------------------------------------------------------------

@flow(name="shardguard-incremental", log_prints=True, validate_parameters=False)
def incremental_scan_flow(watch: str, state: str, config: dict | None = None, kind: str = "auto",
                          webhook: str | None = None, db: str | None = None, settle_seconds: float = 2.0,
                          engine: str = "local", beam_options: list[str] | None = None) -> dict:
    trigger, run_id = "manual", None
    if in_prefect_run():
        from prefect.context import FlowRunContext

        fr = FlowRunContext.get().flow_run
        run_id = str(fr.id)
        trigger = "schedule" if getattr(fr, "auto_scheduled", False) else (
            "deployment" if fr.deployment_id else "manual")
    res = incremental_scan(watch, state, config, kind, webhook, db, settle_seconds, engine, trigger, run_id,
                           beam_options)
    if res["scan_id"]:
        print(f"scan {res['scan_id']}: {res['new']} new shard(s), verdicts {res['verdicts']}"
              + (f", webhook {res['notified']}" if res["notified"] else ""))
        if in_prefect_run():
            from prefect.artifacts import create_markdown_artifact

            rows = "\n".join(f"| {s['name']} | {s['rows']} | {s['content_hash'][:12]} | **{s['verdict']}** |"
                             for s in res["shards"][:200])
            create_markdown_artifact(
                key="shardguard-incremental", description="shardguard incremental scan",
                markdown=f"### shardguard scan {res['scan_id']}\n| shard | rows | hash | verdict |\n"
                         f"|---|---|---|---|\n{rows}\n\nOutputs: `{res['out']}`")
    else:
        print(f"nothing new in {watch}" + (f" ({len(res['waiting'])} file(s) still settling)"
                                           if res["waiting"] else ""))
    return res


def deployment_parameters(watch, state, config=None, kind="auto", webhook=None, db=None,
                          settle_seconds=2.0, engine="local", beam_options=None) -> dict:
    return {"watch": str(Path(watch).resolve()), "state": str(Path(state).resolve()),
            "config": load_config(config), "kind": kind, "webhook": webhook, "db": db,
            "settle_seconds": float(settle_seconds), "engine": engine, "beam_options": list(beam_options or [])}


def serve(watch, state, every: str | float | None = "10m", cron: str | None = None, name: str = "shardguard-watch",
          **params: Any) -> None:
    """Register the scheduled deployment with the Prefect server at PREFECT_API_URL and run it (blocks).

    One run at a time (`limit=1`); the schedule is paused when this process stops."""
    parameters = deployment_parameters(watch, state, **params)
    Path(parameters["state"]).mkdir(parents=True, exist_ok=True)
    sched: dict[str, Any] = {"cron": cron} if cron else {"interval": parse_every(every or "10m")}
    incremental_scan_flow.serve(name=name, parameters=parameters, limit=1, pause_on_shutdown=True,
                                description=f"shardguard: scan new shards in {parameters['watch']}",
                                tags=["shardguard"], **sched)
