"""What Prefect costs a scan: direct flow code vs a recorded flow run (local server) vs the ephemeral server.

    .venv/bin/python -m bench.prefect_overhead [--rows 200] [--repeat 3] [--ephemeral]

Starts a real `prefect server start` on a free port (≈ 20–60 s, not counted), scans the same small
shard `--repeat` times each way, and prints the seconds per scan and the overhead over direct.
`--ephemeral` also times one `shardguard scan --prefect` process with no server (Prefect's
ephemeral in-process server), the cost a one-off scan would pay if it always went through Prefect.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--ephemeral", action="store_true")
    args = ap.parse_args(argv)
    os.environ.update(DO_NOT_TRACK="1", PREFECT_SERVER_ANALYTICS_ENABLED="false")
    tmp = Path(tempfile.mkdtemp())
    rows = []
    with gzip.open(REPO / "shardguard/sample/gsm8k/gsm8k_test.sft.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            rows.append(line)
            if len(rows) >= args.rows:
                break
    shard = tmp / "s.jsonl"
    shard.write_text("".join(rows), encoding="utf-8")

    t = time.perf_counter()
    from shardguard.flows.scan import run_scan

    import_s = time.perf_counter() - t
    direct = []
    for i in range(args.repeat):
        t = time.perf_counter()
        run_scan([shard], tmp / f"d{i}", use_prefect=False)
        direct.append(time.perf_counter() - t)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    home = tmp / "prefect-home"
    env = dict(os.environ, PREFECT_HOME=str(home), PREFECT_UI_ENABLED="false")
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen([str(Path(sys.executable).with_name("prefect")), "server", "start", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    t = time.perf_counter()
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2):
                break
        except OSError:
            time.sleep(0.5)
    server_start = time.perf_counter() - t
    recorded = []
    try:
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: url}):
            for i in range(args.repeat):
                t = time.perf_counter()
                run_scan([shard], tmp / f"p{i}", use_prefect=True)
                recorded.append(time.perf_counter() - t)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
    eph = None
    if args.ephemeral:
        env = dict(os.environ, PREFECT_HOME=str(tmp / "eph-home"), PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120")
        env.pop("PREFECT_API_URL", None)
        t = time.perf_counter()
        subprocess.run([str(Path(sys.executable).with_name("shardguard")), "scan", str(shard), "--out", str(tmp / "e"),
                        "--prefect", "-q"], env=env, check=True, capture_output=True)
        eph = time.perf_counter() - t
    d, r = statistics.median(direct), statistics.median(recorded)
    print(f"\nscan of {args.rows} SFT rows, median of {args.repeat}; Python {sys.version.split()[0]}\n")
    print("| mode | seconds per scan | overhead vs direct |")
    print("|---|---|---|")
    print(f"| import shardguard.flows.scan (prefect, pyarrow, polars), once per process | {import_s:.2f} | |")
    print(f"| direct (no server configured; the CLI default) | {d:.2f} | 0 |")
    print(f"| recorded flow run in a running local server | {r:.2f} | {r - d:+.2f} |")
    print(f"| (starting that server, once) | {server_start:.1f} | |")
    if eph is not None:
        print(f"| ephemeral server, whole `shardguard scan --prefect` process | {eph:.1f} | |")
    print(json.dumps({"direct": direct, "recorded": recorded, "server_start": server_start, "ephemeral": eph}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
