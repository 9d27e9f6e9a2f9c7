"""A scan under Prefect is a real flow run in a real Prefect server, with its stages as task runs
and a Markdown artifact; without a server configured the same flow code runs directly."""

from __future__ import annotations

import asyncio
import json

from conftest import SAMPLE, read_jsonl_gz, write_jsonl
from prefect.settings import PREFECT_API_URL, temporary_settings

from shardguard.flows.scan import run_scan


def test_scan_recorded_in_prefect_server(tmp_path, prefect_server):
    rows = read_jsonl_gz(SAMPLE / "gsm8k" / "gsm8k_test.sft.jsonl.gz", limit=50)
    write_jsonl(tmp_path / "s.jsonl", rows + rows[:2])
    with temporary_settings(updates={PREFECT_API_URL: prefect_server}):
        summary = run_scan([tmp_path / "s.jsonl"], tmp_path / "out", use_prefect=True)

        async def inspect():
            from prefect.client.orchestration import get_client

            async with get_client() as client:
                runs = await client.read_flow_runs()
                tasks = await client.read_task_runs()
                arts = await client.read_artifacts()
                return runs, tasks, arts

        runs, tasks, arts = asyncio.run(inspect())
    assert summary["rows_total"] == 52 and summary["rows_held_back"] == 2
    # the server is shared by the session: look only at ad-hoc runs of this flow (not scheduled ones)
    scan_runs = [r for r in runs if r.state and r.state.is_completed() and r.deployment_id is None
                 and r.parameters.get("out") == str(tmp_path / "out")]
    assert len(scan_runs) == 1
    assert {t.name.split("-")[0] for t in tasks if t.flow_run_id == scan_runs[0].id} >= {"ingest", "detect", "decide", "write"}
    md = [a for a in arts if a.key == "shardguard-scan"]
    assert md and "52 rows" in md[0].data and "s.jsonl" in md[0].data
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["rows_total"] == 52


def test_direct_run_needs_no_server(tmp_path, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    rows = read_jsonl_gz(SAMPLE / "gsm8k" / "gsm8k_test.sft.jsonl.gz", limit=20)
    write_jsonl(tmp_path / "s.jsonl", rows)
    import time

    t0 = time.perf_counter()
    summary = run_scan([tmp_path / "s.jsonl"], tmp_path / "out")
    assert summary["rows_total"] == 20
    assert time.perf_counter() - t0 < 10  # no ephemeral Prefect server start (≈ 23 s here)
