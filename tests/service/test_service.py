"""`shardguard serve` against a real Prefect server: the scheduled deployment scans what lands in the
watched folder with no manual trigger, records verdicts in the history database, and calls the
webhook on a poisoned shard."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO, stop_process_group, webhook_server, write_jsonl

from shardguard.eval import poison
from shardguard.service.history import History

SHARDGUARD = str(Path(sys.executable).with_name("shardguard"))


def drop(watch: Path, name: str, rows: list[dict]) -> None:
    """Land a shard the way uploaders should: write a hidden temp file, then rename it into place."""
    tmp = write_jsonl(watch / f".{name}.part", rows)
    os.replace(tmp, watch / name)


def shards_in_db(state: Path) -> list[dict]:
    """Shards of the scans that have finished (a scan records its shards before its webhook call)."""
    if not (state / "history.db").is_file():
        return []
    h = History.open(state=state)
    try:
        done = {s["id"] for s in h.scans() if s["status"] == "done"}
        return [s for s in h.shards() if s["scan_id"] in done]
    finally:
        h.close()


def wait_for(state: Path, n: int, deadline: float, proc: subprocess.Popen, log: Path) -> list[dict]:
    while time.time() < deadline:
        got = shards_in_db(state)
        if len(got) >= n:
            return got
        assert proc.poll() is None, f"shardguard serve exited {proc.returncode}:\n{log.read_text()[-4000:]}"
        time.sleep(1)
    raise AssertionError(f"no verdict for shard {n} in time; history: {shards_in_db(state)}\n"
                         f"serve log:\n{log.read_text()[-4000:]}")


def wait_runs_completed(api: str, state: Path, deadline: float):
    """The flow runs that made the scans, once Prefect has them completed (the run ends just after
    the scan is recorded)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    h = History.open(state=state)
    ids = [s["flow_run_id"] for s in h.scans()]
    h.close()

    async def runs_by_id():
        async with get_client() as client:
            dep = await client.read_deployment_by_name("shardguard-incremental/test-watch")
            return dep, {str(r.id): r for r in await client.read_flow_runs()}

    with temporary_settings(updates={PREFECT_API_URL: api}):
        while True:
            dep, runs = asyncio.run(runs_by_id())
            if all(i in runs and runs[i].state.is_final() for i in ids) or time.time() > deadline:
                return dep, runs
            time.sleep(1)


def test_schedule_scans_new_shards_without_manual_trigger(tmp_path, prefect_server, gsm8k_rows):
    watch, state = tmp_path / "watch", tmp_path / "state"
    watch.mkdir()
    cfg = tmp_path / "scan.toml"
    cfg.write_text('only = ["exact_dup", "minhash", "trigger"]\n')
    hook, hook_url, received = webhook_server()
    env = dict(os.environ, PREFECT_API_URL=prefect_server, PREFECT_HOME=str(tmp_path / "prefect-client"),
               PREFECT_RUNNER_POLL_FREQUENCY="1", PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1",
               OMP_NUM_THREADS="1", PREFECT_LOGGING_LEVEL="INFO")
    log = tmp_path / "serve.log"
    t0 = time.time()
    with open(log, "w") as logf:
        proc = subprocess.Popen(
            [SHARDGUARD, "serve", "--watch", str(watch), "--state", str(state), "--every", "5s", "--settle", "0",
             "--webhook", hook_url, "--config", str(cfg), "--name", "test-watch"],
            cwd=REPO, env=env, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        clean = gsm8k_rows[:300]
        drop(watch, "clean.sft.jsonl", clean)
        first = wait_for(state, 1, t0 + 90, proc, log)
        t_first = time.time() - t0
        bad, truth = poison.get("sft_backdoor_token").apply(gsm8k_rows[300:600], rate=0.03, seed=0)
        drop(watch, "incoming.sft.jsonl", bad)
        both = wait_for(state, 2, t0 + 140, proc, log)
        t_both = time.time() - t0
        dep, runs = wait_runs_completed(prefect_server, state, t0 + 150)
    finally:
        stop_process_group(proc, 20)
        hook.shutdown()
    print(f"first verdict after {t_first:.1f} s, second after {t_both:.1f} s")

    assert [s["name"] for s in first] == ["clean.sft.jsonl"]
    by_name = {s["name"]: s for s in both}
    assert by_name["clean.sft.jsonl"]["verdict"] == "clean" and by_name["clean.sft.jsonl"]["status"] == "accepted"
    p = by_name["incoming.sft.jsonl"]
    assert p["verdict"] == "poisoned" and p["status"] == "pending" and p["rows"] == 300
    assert truth["n_poisoned"] == 9 and p["by_category"].get("poison", 0) >= truth["n_poisoned"]
    assert (state / by_name["clean.sft.jsonl"]["accepted_path"]).is_file()

    h = History.open(state=state)
    try:
        scans = sorted(h.scans(), key=lambda s: s["started_at"])
    finally:
        h.close()
    # one scan per arrival, each started by the schedule; the second was judged against the first
    assert len(scans) == 2 and all(s["status"] == "done" for s in scans)
    assert [s["trigger"] for s in scans] == ["schedule", "schedule"]
    assert scans[1]["context_rows"] == 300 and scans[1]["n_new"] == 1

    # the webhook got the poisoned shard, once
    assert len(received) == 1 and received[0]["event"] == "shardguard.poisoned"
    assert [s["name"] for s in received[0]["shards"]] == ["incoming.sft.jsonl"]
    assert scans[1]["notified"].startswith("ok")

    # the Prefect server recorded those runs as auto-scheduled runs of the deployment
    for s in scans:
        r = runs[s["flow_run_id"]]
        assert r.deployment_id == dep.id and r.auto_scheduled and r.state.is_completed()


def test_serve_without_server_explains_how_to_start_one(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(tmp_path / "home")
    (tmp_path / "w").mkdir()
    r = subprocess.run([SHARDGUARD, "serve", "--watch", str(tmp_path / "w"), "--state", str(tmp_path / "s")],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "prefect server start" in r.stderr and "PREFECT_API_URL" in r.stderr
