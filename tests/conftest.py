"""Shared fixtures. Real data comes from the bundled sample (gzipped copies of ../shared/data),
so tests run the same on a user's clone as in CI."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from shardguard.core.atomic import write_jsonl  # also imported by the tests from here

for _k, _v in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DO_NOT_TRACK": "1",
               "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "TOKENIZERS_PARALLELISM": "false",
               "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120", "SHARDGUARD_TORCH_THREADS": "2"}.items():
    os.environ.setdefault(_k, _v)

REPO = Path(__file__).resolve().parents[1]
if "SHARDGUARD_CACHE" not in os.environ:  # tests never write into the user's ~/.cache
    import tempfile

    os.environ["SHARDGUARD_CACHE"] = tempfile.mkdtemp(prefix="shardguard-test-cache-")
SAMPLE = REPO / "shardguard" / "sample"
SHARED = REPO.parent / "shared" / "data"


def read_jsonl_gz(path: Path, limit: int | None = None) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    out = []
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                out.append(json.loads(line))
                if limit and len(out) >= limit:
                    break
    return out


def canon_sft(rows: list[dict]) -> list[dict]:
    """SFT rows reduced to the canonical fields (missing ones as "")."""
    return [{k: r.get(k) or "" for k in ("instruction", "input", "response")} for r in rows]


def sft_batches(rows: list[dict], tmp: Path, batch_size: int = 2048) -> list:
    """Write rows as a JSONL shard and read it back as canonical Arrow batches (the scan's ingest)."""
    from shardguard.ingest import ingest_shard

    path = write_jsonl(tmp / f"rows-{len(rows)}-{batch_size}.jsonl", rows)
    return list(ingest_shard(path, path.name, "sft", batch_size))


def run_detectors(dets: list, batches: list, reverse_merge: bool = False) -> tuple[dict, dict]:
    """The engines' Driver over these detectors (each sees the models of those before it): observe ->
    merge -> finalize, then `flag` for the last one. Returns (its model, {row: finding dict})."""
    from shardguard.engine.driver import Driver

    drv = Driver(dets)
    parts = [drv.observe(b) for b in batches]
    state = None
    for p in parts[::-1] if reverse_merge else parts:
        state = drv.merge(state, p)
    models = drv.finalize(state)
    last = dets[-1]
    found = {}
    for b in batches:
        rows = b.column("row").to_pylist()
        for d, sel, fs in drv.flag_raw(b, models):
            if d is last:
                srows = sel.column("row").to_pylist() if sel.num_rows != b.num_rows else rows
                for f in fs:
                    found[srows[f["i"]]] = f
    return models[last.name], found


@pytest.fixture(scope="session")
def sample() -> Path:
    return SAMPLE


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data when present (CI has it), else the bundled copies (same rows, gzipped)."""
    return SHARED if SHARED.is_dir() else SAMPLE


@pytest.fixture(scope="session")
def gsm8k_rows() -> list[dict]:
    return read_jsonl_gz(SAMPLE / "gsm8k" / "gsm8k_test.sft.jsonl.gz")


@pytest.fixture(scope="session")
def web_rows() -> list[dict]:
    return read_jsonl_gz(SAMPLE / "web_c4_commoncrawl_sample" / "c4_cc_docs.web.jsonl.gz")


def stop_process_group(proc, timeout: float) -> None:
    """SIGTERM the process group `proc` leads (started with start_new_session=True); SIGKILL it if it
    has not exited after `timeout` seconds."""
    import signal
    import subprocess

    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """A real Prefect server (`prefect server start`) on a free local port, shared by the session.

    Yields its API URL. Tests point Prefect at it with `prefect.settings.temporary_settings`."""
    import subprocess
    import sys
    import time
    import urllib.request

    home = tmp_path_factory.mktemp("prefect-home")
    port = _free_port()
    env = dict(os.environ, PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1",
               PREFECT_UI_ENABLED="false", PREFECT_API_URL="")
    env.pop("PREFECT_API_URL")
    log = open(home / "server.log", "w")  # noqa: SIM115
    prefect = Path(sys.executable).with_name("prefect")
    proc = subprocess.Popen([str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.time() + 240
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise RuntimeError(f"prefect server did not start; log: {(home / 'server.log').read_text()[-3000:]}")
        time.sleep(1)
    try:
        yield url
    finally:
        stop_process_group(proc, 30)
        log.close()


# -- a local webhook receiver (service tests) -----------------------------------------------------

import threading  # noqa: E402
from http.server import BaseHTTPRequestHandler, HTTPServer  # noqa: E402


class _Hook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def webhook_server():
    _Hook.received = []
    srv = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_port}/hook", _Hook.received
