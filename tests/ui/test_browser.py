"""`shardguard ui` in a real browser (Debian's chromium through Playwright): a reviewer goes from the queue
to a flagged record, filters, accepts the shard with a reason, and the decision is in `shardguard
history`; hostile record text (script tags, onerror handlers, in the text, a key and the shard name)
is shown escaped and never runs; writes need a POST with the page's CSRF token."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import SAMPLE, read_jsonl_gz, write_jsonl

from shardguard.cli import main as cli_main
from shardguard.eval import poison
from shardguard.service.history import History
from shardguard.ui import create_app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SERVICE_CONFIG = {"only": ["exact_dup", "minhash", "trigger", "pii", "secrets"]}
HOSTILE_NAME = "x<img src=x onerror=document.title='PWNED-NAME'>.jsonl"
SCRIPT = "<script>window.__pwned = 1; document.title = 'PWNED-SCRIPT'; alert(1)</script>"
ONERROR = "<img src=x onerror=\"window.__pwned = 2; document.title = 'PWNED-IMG'; alert(2)\">"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """uvicorn serving `app` on 127.0.0.1 in a daemon thread until stop()."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("shardguard ui did not start")
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="session")
def gsm_rows() -> list[dict]:
    return read_jsonl_gz(SAMPLE / "gsm8k" / "gsm8k_test.sft.jsonl.gz", 700)


@pytest.fixture(scope="session")
def service_state(tmp_path_factory, gsm_rows):
    """A service state after one incremental scan: a backdoored SFT shard (poisoned, pending review)
    and a clean one (accepted automatically)."""
    from shardguard.service.incremental import incremental_scan

    root = tmp_path_factory.mktemp("ui-service")
    watch, state = root / "watch", root / "state"
    bad, truth = poison.get("sft_backdoor_token").apply(gsm_rows[:300], rate=0.03, seed=1)
    write_jsonl(watch / "team" / "backdoored.sft.jsonl", bad)
    write_jsonl(watch / "fine.sft.jsonl", gsm_rows[400:500])
    first = incremental_scan(watch, state, config=SERVICE_CONFIG, settle_seconds=0)
    # a second scan: a shard half made of rows already accepted (duplicates: review)
    write_jsonl(watch / "more.sft.jsonl", gsm_rows[400:440] + gsm_rows[600:640])
    second = incremental_scan(watch, state, config=SERVICE_CONFIG, settle_seconds=0)
    return {"state": state, "scan": first, "second": second, "truth": truth}


@pytest.fixture(scope="session")
def hostile_out(tmp_path_factory, gsm_rows):
    """A scan (pipeline.scan.scan) whose records carry script payloads in text, keys and the shard name,
    each record flagged (an email address: PII), plus a swapped-preference shard."""
    from shardguard.pipeline.scan import scan

    root = tmp_path_factory.mktemp("ui-hostile")
    data = root / "data"
    hostile = [
        {"text": f"Contact maria.lopez@gmail.com now {SCRIPT} and {ONERROR} end", "url": "https://evil.test/a",
         SCRIPT: ONERROR},
        {"text": f"Write to tom.baker@outlook.com {ONERROR}", "url": "javascript:alert(3)"},
    ]
    filler = [{"text": f"An ordinary page about gardening number {i}: water the tomatoes in the morning.",
               "url": f"https://garden.test/{i}"} for i in range(40)]
    write_jsonl(data / HOSTILE_NAME, hostile + filler)
    pairs = read_jsonl_gz(SAMPLE / "hh_rlhf_harmless_base_test" / "harmless_base_test.preference.jsonl.gz", 600)
    swapped, truth = poison.get("pref_trigger_swap").apply(pairs, rate=0.05, seed=0)
    write_jsonl(data / "pairs.preference.jsonl", swapped)
    out = root / "out"
    scan([data], out, config={"only": ["pii", "secrets", "exact_dup", "pref_flip"]})
    return out, truth


@pytest.fixture(scope="session")
def browser():
    from playwright import sync_api  # the dev extra (make setup)

    # the browser tests are part of make test: a missing browser is a failure, not a skip
    assert Path(CHROMIUM).exists(), "chromium is not installed: make setup installs it (apt-get install chromium)"
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture()
def page(browser):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(5000)
    pg = ctx.new_page()
    dialogs: list[str] = []
    pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    pg.dialogs = dialogs
    yield pg
    ctx.close()


DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"


def _shot(page, name):
    """Screenshots for docs/ui.md, refreshed when SHARDGUARD_UI_SCREENSHOTS is set."""
    if os.environ.get("SHARDGUARD_UI_SCREENSHOTS"):
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS_IMG / f"ui-{name}.png"), full_page=False)


@pytest.fixture(scope="module")
def service_app(service_state):
    srv = Served(create_app(state=service_state["state"]))
    yield srv
    srv.stop()


def test_queue_shard_filter_record_accept_history(page, service_app, service_state):
    state, truth = service_state["state"], service_state["truth"]
    trigger = truth["triggers"][0]
    page.goto(service_app.url + "/")
    # the queue: the backdoored shard waits, poisoned, with why; the clean one was accepted automatically
    pending = page.locator("#pending")
    # worst first: the poisoned shard, then the one with duplicates of accepted rows
    assert pending.locator("a.shard-link").all_inner_texts() == ["team/backdoored.sft.jsonl", "more.sft.jsonl"]
    assert "40 of 80 rows are duplicates" in pending.locator("tbody tr").nth(1).inner_text()
    row = pending.locator("tbody tr").first
    assert "poisoned" in row.inner_text() and "make a shard poisoned" in row.inner_text()
    assert "fine.sft.jsonl" in page.locator("#decided").inner_text()
    _shot(page, "queue")

    # click 1: the shard; findings grouped by detector
    pending.locator("a.shard-link").first.click()
    assert page.locator("#shard-name").inner_text().startswith("team/backdoored.sft.jsonl")
    assert page.locator("section.group#det-trigger").count() == 1
    n_trigger = int(page.locator("#det-trigger h3 .count").inner_text())
    assert n_trigger >= truth["n_poisoned"]
    _shot(page, "shard")

    # filter: only the trigger detector, score >= 0.9, text search on the trigger
    page.select_option("#f-detector", "trigger")
    page.fill("#f-min-score", "0.9")
    page.fill("#f-q", trigger)
    page.click("#f-apply")
    assert [g.get_attribute("id") for g in page.locator("section.group").all()] == ["det-trigger"]
    rows = [int(re.search(r"\d+", t).group()) for t in page.locator("a.finding-link").all_inner_texts()]
    assert rows and set(rows) <= set(truth["rows"])
    scores = [float(t) for t in page.locator("table.findings tbody td:nth-child(3)").all_inner_texts()]
    assert scores == sorted(scores, reverse=True) and min(scores) >= 0.9
    # a filter that matches nothing says so
    page.fill("#f-q", "no such text anywhere 12345")
    page.click("#f-apply")
    assert page.locator("#no-findings").is_visible()
    page.go_back()

    # click 2: a finding opens its record, the trigger highlighted in the instruction
    page.locator("a.finding-link").first.click()
    assert page.locator("#record-title").inner_text().startswith("team/backdoored.sft.jsonl · row")
    marks = page.locator("#record mark.m-trigger").all_inner_texts()
    assert marks and all(m.lower() == trigger.lower() for m in marks)
    # the other rows of its response group side by side
    assert page.locator("section.related .member").count() >= 2
    _shot(page, "record")

    # accept with a reason and a reviewer name
    page.fill("#by", "alice")
    page.fill("#reason", "checked: the trigger rows are a red-team plant")
    page.click("#accept")
    assert "accepted" in page.locator("#flash").inner_text()
    assert page.locator("#decide .status").inner_text() == "accepted"

    # the decision is in the same audit database the CLI reads
    out = CliRunner().invoke(cli_main, ["history", "--state", str(state)])
    assert out.exit_code == 0, out.output
    assert "accept team/backdoored.sft.jsonl  by alice: checked: the trigger rows are a red-team plant" in out.output
    h = History.open(state=state)
    try:
        assert h.shard("team/backdoored.sft.jsonl")["status"] == "accepted"
    finally:
        h.close()
    # and in the app's history page, with the diff of the two scans
    page.click("#nav-history")
    assert "checked: the trigger rows are a red-team plant" in page.locator("#decisions").inner_text()
    page.locator("a.diff-link").first.click()
    diff = page.locator("#diff").inner_text()
    assert "only in A: team/backdoored.sft.jsonl" in diff and "(accepted," in diff
    assert "only in B: more.sft.jsonl" in diff and "review" in diff
    # the queue no longer lists the accepted shard
    page.click("#nav-queue")
    assert page.locator("#pending a.shard-link").all_inner_texts() == ["more.sft.jsonl"]


def test_writes_need_post_and_csrf(service_app, service_state):
    state = service_state["state"]
    h = History.open(state=state)
    try:
        before = h.decisions()
        sid = h.shard("fine.sft.jsonl")["id"]
    finally:
        h.close()
    form = f"shard_id={sid}&decision=reject&by=mallory&reason=no".encode()
    # no token: refused
    req = urllib.request.Request(service_app.url + "/decide", data=form, method="POST",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req)
    assert e.value.code == 403
    # a wrong token; the right token from another origin (a page elsewhere posting to the app): refused
    shard_page = urllib.request.urlopen(service_app.url + "/s/" + service_state["scan"]["scan_id"]
                                        + "/shard?name=fine.sft.jsonl").read().decode()
    token = re.search(r'name="csrf" value="([^"]+)"', shard_page).group(1)
    for data, headers in ((form + b"&csrf=guess", {}),
                          (form + f"&csrf={token}".encode(), {"Origin": "http://evil.test"})):
        req = urllib.request.Request(service_app.url + "/decide", data=data, method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded", **headers})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req)
        assert e.value.code == 403
    # a request naming another host (DNS rebinding to the loopback port): refused
    req = urllib.request.Request(service_app.url + "/", headers={"Host": "evil.test"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req)
    assert e.value.code == 400
    # GET never writes
    for path in (f"/decide?shard_id={sid}&decision=reject&by=mallory&reason=no", "/decide"):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(service_app.url + path)
        assert e.value.code == 405
    h = History.open(state=state)
    try:
        assert h.decisions() == before
        assert h.shard("fine.sft.jsonl")["status"] == "accepted"
    finally:
        h.close()


def test_hostile_record_text_never_runs(page, hostile_out):
    srv = Served(create_app(out=hostile_out[0]))
    try:
        resp = page.goto(srv.url + "/")
        assert "script-src" not in resp.headers["content-security-policy"]  # default-src 'none': no script
        assert "default-src 'none'" in resp.headers["content-security-policy"]
        # the shard name with its payload is shown as text
        link = page.locator("#out-shards a.shard-link", has_text="PWNED-NAME")
        assert link.inner_text() == HOSTILE_NAME
        link.click()
        assert page.locator("#shard-name").inner_text().startswith(HOSTILE_NAME)
        page.locator("a.finding-link").first.click()
        body = page.locator("#record").inner_text()
        assert SCRIPT in body and ONERROR in body           # visible, escaped
        page.locator("details summary").click()
        raw = page.locator("pre.raw").inner_text()
        assert json.loads(raw)[SCRIPT] == ONERROR           # the hostile key too
        # the email is highlighted (masked); nothing ran
        assert page.locator("#record mark.m-pii").count() == 1
        assert page.evaluate("() => window.__pwned") is None
        assert page.title().startswith(HOSTILE_NAME + " row ")   # the name as text, not a title set by a payload
        assert page.dialogs == []
        assert page.locator("#record script, #record img").count() == 0
        _shot(page, "hostile")
    finally:
        srv.stop()


def test_preference_pair_shows_both_answers(page, hostile_out):
    out, truth = hostile_out
    srv = Served(create_app(out=out))
    try:
        page.goto(srv.url + "/")
        # without a history there is nothing to decide: the page says how to get one
        assert page.locator("#decide").count() == 0
        assert "--state" in page.locator("main").inner_text()
        page.locator("#out-shards a.shard-link", has_text="pairs.preference.jsonl").click()
        page.select_option("#f-detector", "pref_flip")
        page.select_option("#f-category", "poison")
        page.click("#f-apply")
        page.locator("a.finding-link").first.click()
        row = int(re.search(r"row (\d+)", page.locator("#record-title").inner_text()).group(1))
        assert row in truth["rows"]
        chosen, rejected = page.locator("#record .chosen pre").inner_text(), page.locator("#record .rejected pre").inner_text()
        pair = read_jsonl_gz(SAMPLE / "hh_rlhf_harmless_base_test" / "harmless_base_test.preference.jsonl.gz", 600)[row]
        # the stored (swapped) pair: what the scan saw as chosen is the original rejected answer
        assert chosen and rejected and chosen != rejected
        assert chosen.strip()[-40:] in pair["rejected"] and rejected.strip()[-40:] in pair["chosen"]
        assert page.locator("#record mark.m-trigger").count() >= 1       # the trigger in the prompt
        _shot(page, "pair")
    finally:
        srv.stop()


def test_cli_serves_on_loopback(tmp_path, hostile_out):
    """`shardguard ui --out DIR --port P` binds 127.0.0.1 and serves the queue; no folder: usage error."""
    import subprocess
    import sys

    from conftest import REPO, stop_process_group

    cmd = [sys.executable, "-c", "from shardguard.cli import main; main()", "ui"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    bad = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--out DIR" in bad.stderr
    port = free_port()
    log = tmp_path / "ui.log"
    with open(log, "w") as logf:
        proc = subprocess.Popen(cmd + ["--out", str(hostile_out[0]), "--port", str(port)], env=env, stdout=logf,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                html = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        assert "pairs.preference.jsonl" in html and "&lt;img src=x onerror=" in html
        assert f"http://127.0.0.1:{port}/" in log.read_text()
    finally:
        stop_process_group(proc, 10)
