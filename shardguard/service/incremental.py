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

"Judged against everything already accepted": each scan judges the new shards together with the
accepted corpus, so cross-shard detectors (exact/MinHash duplicates, trigger statistics, response
clusters) see both, and only the new shards' findings are kept. The accepted corpus is not re-read:
its merged detector states are stored after each run (`service.corpus`, `<state>/corpus/`) and merged
with the new shards' states, so a run costs O(new); the verdicts equal a full rescan's (a test checks
it). The Beam engine still reads the accepted corpus as context shards. No scan runs when nothing is new.

Entry points: `incremental_scan(...)` (plain function), `incremental_scan_flow` (the Prefect flow that
`shardguard serve` deploys on a schedule), `accept_shard` / `reject_shard` (the review queue).
"""

from __future__ import annotations

import json
import re
import shutil
import time
import tomllib
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

from shardguard.pipeline.config import ScanConfig
from shardguard.pipeline.scan import StageRunner, direct, scan
from shardguard.service.corpus import AcceptedCorpus
from shardguard.service.history import (
    AUTO,
    History,
    accept_shard,
    file_hash,
    record_accept,
    reject_shard,
    resolve_url,
    state_lock,
)

__all__ = ["incremental_scan", "accept_shard", "reject_shard", "notify", "deployment_parameters"]



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
    from shardguard.ingest import expand_paths

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
                     beam_options: list[str] | None = None, run_stage: StageRunner = direct) -> dict:
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
                                trigger, flow_run_id, run_stage)
    finally:
        hist.close()


def _rel(out: Path, name: str | None, state: Path) -> str | None:
    return str((out / name).relative_to(state)) if name and (out / name).is_file() else None


def _scan_locked(watch, state, hist, cfg, kind, webhook, settle_seconds, engine_opts, trigger, flow_run_id,
                 run_stage) -> dict:
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
            dst = inp / n["name"]
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(n["path"], dst)
            n["hash"] = file_hash(dst)
        accepted = state / "accepted"
        context = sorted(p for p in accepted.glob("*") if p.is_file()) if accepted.is_dir() else []
        engine, beam_options = engine_opts
        service_info = {"scan_id": scan_id, "watch": str(watch), "context_shards": len(context),
                        "note": "discoveries cover the new shards and the accepted corpus; "
                                "findings, verdicts and outputs cover the new shards only"}
        base_state, base_rows, base_records, context_paths = None, 0, None, [accepted] if context else []
        if engine == "local" and context:
            # the accepted corpus's stored detector states: this run observes only the new shards
            corpus = AcceptedCorpus(state, cfg, kind)
            service_info["corpus"] = corpus.sync() | {"rows": corpus.rows, "mode": "stored states"}
            base_state, base_rows, base_records, context_paths = corpus.state(), corpus.rows, corpus.record_files(), []
        summary = scan([inp], out, kind, engine, cfg, beam_options, context_paths=context_paths,
                       inputs_label=[str(watch)], run_stage=run_stage, base_state=base_state, base_rows=base_rows,
                       base_records=base_records,
                       extra_summary={"service": service_info}).summary
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


def deployment_parameters(watch, state, config=None, kind="auto", webhook=None, db=None,
                          settle_seconds=2.0, engine="local", beam_options=None) -> dict:
    return {"watch": str(Path(watch).resolve()), "state": str(Path(state).resolve()),
            "config": load_config(config), "kind": kind, "webhook": webhook, "db": db,
            "settle_seconds": float(settle_seconds), "engine": engine, "beam_options": list(beam_options or [])}
