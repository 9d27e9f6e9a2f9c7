"""`shardguard serve`, `shardguard history`, `shardguard review list|show|accept|reject`.

History and review need no Prefect (they only read and write the history database and the state
folder); only `serve` imports Prefect.
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path

import click

STATE_HELP = "Service state folder (history.db, scans/, accepted/). Default: $SHARDGUARD_STATE or ./shardguard-state."
DB_HELP = "History database URL (default: sqlite in the state folder; e.g. postgresql+psycopg://u:p@host/db)."


def _default_state() -> str:
    return os.environ.get("SHARDGUARD_STATE", "shardguard-state")


def state_db_options(f):
    f = click.option("--db", "db", default=None, help=DB_HELP)(f)
    f = click.option("--state", "state", default=_default_state, type=click.Path(file_okay=False),
                     show_default="./shardguard-state", help=STATE_HELP)(f)
    return f


def _open(state, db):
    from shardguard.service.history import History

    if not db and not os.environ.get("SHARDGUARD_DB") and not (Path(state) / "history.db").is_file():
        raise click.UsageError(f"no history database in {state!r}: give --state DIR (the folder `shardguard "
                               f"serve --state` used) or --db URL")
    return History.open(db, state)


def _counts(d: dict | None) -> str:
    return ", ".join(f"{k} {v}" for k, v in (d or {}).items() if v) or "-"


# -- serve -----------------------------------------------------------------------------------------

SERVER_HOWTO = """No Prefect server is configured (PREFECT_API_URL is not set), and schedules need one:
Prefect's ephemeral mode runs flows but never schedules them.

  1. start a server (keep it running):   prefect server start --host 127.0.0.1 --port 4200
  2. point shardguard at it:             export PREFECT_API_URL=http://127.0.0.1:4200/api
  3. run this command again.

Or run a single incremental scan now, without Prefect:   shardguard serve --once --watch DIR --state DIR
For a standalone server with Postgres and a work pool, see infra/README.md."""


@click.command("serve")
@click.option("--watch", required=True, type=click.Path(exists=True, file_okay=False),
              help="Folder where new shards land (scanned recursively; hidden files ignored).")
@click.option("--every", default=None, help="Interval between scans, e.g. 30s, 10m, 1h (default 10m).")
@click.option("--cron", default=None, help="A cron schedule instead of --every, e.g. '*/15 * * * *'.")
@state_db_options
@click.option("--webhook", default=None, help="URL that receives a JSON POST when a shard is judged poisoned.")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
              help="TOML or JSON scan settings (as for `shardguard scan --config`).")
@click.option("--kind", type=click.Choice(["auto", "web", "sft", "preference"]), default="auto", show_default=True)
@click.option("--settle", "settle_seconds", type=float, default=2.0, show_default=True,
              help="Leave files modified less than this many seconds ago for the next run.")
@click.option("--name", default="shardguard-watch", show_default=True, help="Prefect deployment name.")
@click.option("--once", is_flag=True, help="Run one incremental scan now, without Prefect, and exit.")
def serve_cmd(watch, every, cron, state, db, webhook, config_path, kind, settle_seconds, name, once):
    """Scan what is new in --watch on a schedule (a Prefect deployment), recording verdicts in the history.

    New shards (by content hash) are scanned together with the accepted corpus; clean ones are accepted
    automatically, the others wait in `shardguard review list`. Needs a Prefect server (PREFECT_API_URL)
    unless --once is given."""
    from shardguard.service.incremental import load_config, parse_every

    if every and cron:
        raise click.UsageError("give --every or --cron, not both")
    try:
        if every:
            parse_every(every)
        config = load_config(config_path)
    except (ValueError, TypeError, OSError) as e:
        raise click.UsageError(str(e)) from e
    params = dict(config=config, kind=kind, webhook=webhook, db=db, settle_seconds=settle_seconds)
    if once:
        from shardguard.service.incremental import incremental_scan

        res = incremental_scan(watch, state, trigger="manual", **params)
        if not res["scan_id"]:
            click.echo(f"nothing new in {watch}")
            return
        for s in res["shards"]:
            click.echo(f"{s['name']:<50} {s['rows']:>7} rows  {s['verdict']:<9} {_counts(s['by_category'])}")
        click.echo(f"scan {res['scan_id']}: outputs in {res['out']}"
                   + (f"; webhook {res['notified']}" if res["notified"] else ""))
        return
    from prefect.settings import PREFECT_API_URL

    api = PREFECT_API_URL.value()
    if not api:
        click.echo(SERVER_HOWTO, err=True)
        sys.exit(2)
    import urllib.request

    try:
        with urllib.request.urlopen(api.rstrip("/") + "/health", timeout=10) as r:
            ok = r.status == 200
    except OSError as e:
        ok, why = False, str(e)
    else:
        why = "unhealthy"
    if not ok:
        click.echo(f"The Prefect server at {api} does not answer ({why}). Start it with "
                   f"`prefect server start`, or fix PREFECT_API_URL.", err=True)
        sys.exit(1)
    from shardguard.flows.service import serve

    sched = f"cron {cron!r}" if cron else f"every {every or '10m'}"
    click.echo(f"serving deployment shardguard-incremental/{name} ({sched}) on {api}; watching {watch}, "
               f"state in {state}. Ctrl-C stops (and pauses the schedule).")
    serve(watch, state, every=every, cron=cron, name=name, **params)


# -- history ---------------------------------------------------------------------------------------

@click.command("history")
@state_db_options
@click.option("--diff", nargs=2, metavar="SCAN_A SCAN_B", default=None, help="What changed from scan A to scan B.")
@click.option("--limit", type=int, default=50, show_default=True, help="Scans (and decisions) to list.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def history_cmd(state, db, diff, limit, as_json):
    """List the scans, verdicts and review decisions recorded by `shardguard serve`, or diff two scans.

    Scan ids may be abbreviated to a unique prefix."""
    from shardguard.service.history import dumps

    h = _open(state, db)
    try:
        if diff:
            try:
                d = h.diff(*diff)
            except LookupError as e:
                raise click.UsageError(str(e)) from e
            if as_json:
                click.echo(dumps(d))
                return
            click.echo(f"scan A {d['a']['id']} ({d['a']['started_at']}): {_counts(d['a']['verdicts'])}")
            click.echo(f"scan B {d['b']['id']} ({d['b']['started_at']}): {_counts(d['b']['verdicts'])}")
            click.echo("verdicts B - A: " + ", ".join(f"{k} {v:+d}" for k, v in d["verdicts_delta"].items()))
            for label, key in (("only in A", "only_in_a"), ("only in B", "only_in_b")):
                for s in d[key]:
                    click.echo(f"  {label}: {s['name']}  {s['verdict']}  ({s['status']}, {s['rows']} rows, "
                               f"{s['flagged']} flagged, {s['content_hash'][:12]})")
            for c in d["changed"]:
                parts = [f"{k} {v[0]} -> {v[1]}" for k, v in c.items() if k not in ("name", "by_category")]
                parts += [f"{k} {v[0]} -> {v[1]}" for k, v in c.get("by_category", {}).items()]
                click.echo(f"  changed: {c['name']}: " + "; ".join(parts))
            if not (d["only_in_a"] or d["only_in_b"] or d["changed"]):
                click.echo("  no differences")
            return
        scans = h.scans(limit)
        decs = h.decisions()[-limit:]
        counts = h.counts()
        if as_json:
            click.echo(dumps({"scans": scans, "shards": h.shards(), "decisions": decs, "status_counts": counts}))
            return
        if not scans:
            click.echo("no scans recorded yet")
        else:
            click.echo(f"{'scan':<24} {'started (UTC)':<25} {'trigger':<10} {'status':<7} {'new':>4} {'rows':>8}  verdicts")
            for s in scans:
                click.echo(f"{s['id']:<24} {s['started_at']:<25} {s['trigger'] or '-':<10} {s['status']:<7} "
                           f"{s['n_new'] or 0:>4} {s['rows_total'] or 0:>8}  {_counts(s['verdicts'])}"
                           + (f"  webhook: {s['notified']}" if s["notified"] else "")
                           + (f"  error: {s['error']}" if s["error"] else ""))
        click.echo(f"\nshards: {counts['accepted']} accepted, {counts['pending']} pending review, "
                   f"{counts['rejected']} rejected")
        if decs:
            click.echo("\ndecisions:")
            for d in decs:
                click.echo(f"  {d['at']}  {d['decision']:<6} {d['name']}  by {d['by']}"
                           + (f": {d['reason']}" if d["reason"] else ""))
    finally:
        h.close()


# -- review ----------------------------------------------------------------------------------------

@click.group("review")
def review_cmd():
    """The review queue: shards judged `review` or `poisoned` wait here for a person.

    SHARD is a shard's name in the watched folder (its latest version), its id, or a content-hash prefix."""


@review_cmd.command("list")
@state_db_options
@click.option("--all", "show_all", is_flag=True, help="Every shard, not only those pending.")
@click.option("--json", "as_json", is_flag=True)
def review_list(state, db, show_all, as_json):
    """Shards waiting for a decision (or all shards with --all)."""
    from shardguard.service.history import dumps

    h = _open(state, db)
    try:
        rows = h.shards(status=None if show_all else "pending")
    finally:
        h.close()
    if as_json:
        click.echo(dumps(rows))
        return
    if not rows:
        click.echo("review queue is empty" if not show_all else "no shards recorded")
        return
    click.echo(f"{'id':>4}  {'shard':<40} {'verdict':<9} {'status':<9} {'rows':>7} {'held':>6}  {'hash':<12}  findings")
    for s in rows:
        click.echo(f"{s['id']:>4}  {s['name']:<40} {s['verdict']:<9} {s['status']:<9} {s['rows']:>7} "
                   f"{s['held_back']:>6}  {s['content_hash'][:12]}  {_counts(s['findings'])}")


@review_cmd.command("show")
@click.argument("shard")
@state_db_options
@click.option("--findings", "n_findings", type=int, default=10, show_default=True, help="Findings to print.")
def review_show(shard, state, db, n_findings):
    """One shard: verdict, counts, where its outputs are, its top findings and its decisions."""
    h = _open(state, db)
    try:
        try:
            s = h.shard(shard)
        except LookupError as e:
            raise click.UsageError(str(e)) from e
        sc = h.scan(s["scan_id"])
        decs = h.decisions(s["id"])
    finally:
        h.close()
    root = Path(sc["state"])
    click.echo(f"shard {s['id']}: {s['name']}  ({s['kind']}, {s['rows']} rows, sha256 {s['content_hash']})")
    click.echo(f"verdict {s['verdict']}, status {s['status']}; flagged {s['flagged']}, held back {s['held_back']}, "
               f"malformed {s['rows_malformed']}")
    click.echo(f"by category: {_counts(s['by_category'])}; by detector: {_counts(s['findings'])}")
    click.echo(f"scan {sc['id']} ({sc['started_at']}, {sc['trigger']}): report {sc['out_dir']}/report.html")
    for k in ("clean_path", "quarantine_path", "accepted_path"):
        if s[k]:
            click.echo(f"{k.split('_')[0]}: {root / s[k]}")
    flags = Path(sc["out_dir"]) / "flags.parquet"
    if n_findings and flags.is_file():
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        t = pq.read_table(flags, columns=["shard", "row", "detector", "category", "score", "reason"])
        rows = t.filter(pc.equal(t.column("shard"), s["name"])).to_pylist()
        order = {c: i for i, c in enumerate(("poison", "secret", "pii", "duplicate", "quality", "malformed"))}
        rows.sort(key=lambda r: (order.get(r["category"], 9), -r["score"], r["row"], r["detector"]))
        if rows:
            click.echo(f"top findings ({min(n_findings, len(rows))} of {len(rows)}):")
            for r in rows[:n_findings]:
                click.echo(f"  row {r['row']:>6}  {r['detector']}:{r['category']}  {r['score']:.2f}  {r['reason']}")
    if decs:
        click.echo("decisions:")
        for d in decs:
            click.echo(f"  {d['at']}  {d['decision']}  by {d['by']}" + (f": {d['reason']}" if d["reason"] else ""))


def _decide(shard, state, db, by, reason, accept: bool):
    from shardguard.service.history import accept_shard, reject_shard

    state_arg = state if (Path(state) / "history.db").is_file() or not db else None
    _open(state, db).close()
    try:
        s = (accept_shard if accept else reject_shard)(shard, by=by, reason=reason, state=state_arg, db=db)
    except LookupError as e:
        raise click.UsageError(str(e)) from e
    if accept:
        where = f"; clean rows added to the accepted corpus: {s['accepted_path']}" if s["accepted_path"] else \
            "; no clean rows to add"
        click.echo(f"accepted {s['name']} (id {s['id']}) by {by}{where}")
    else:
        click.echo(f"rejected {s['name']} (id {s['id']}) by {by}; it stays quarantined"
                   + (f" ({s['quarantine_path']})" if s["quarantine_path"] else ""))


def _by_option(f):
    f = click.option("--reason", default=None, help="Why (recorded in the history).")(f)
    f = click.option("--by", default=lambda: os.environ.get("SHARDGUARD_REVIEWER") or getpass.getuser(),
                     show_default="$SHARDGUARD_REVIEWER or your user name", help="Who decided.")(f)
    return f


@review_cmd.command("accept")
@click.argument("shard")
@state_db_options
@_by_option
def review_accept(shard, state, db, by, reason):
    """Accept SHARD: its clean rows join the accepted corpus that later scans are judged against."""
    _decide(shard, state, db, by, reason, True)


@review_cmd.command("reject")
@click.argument("shard")
@state_db_options
@_by_option
def review_reject(shard, state, db, by, reason):
    """Reject SHARD: it stays quarantined (and leaves the accepted corpus if it had been accepted)."""
    _decide(shard, state, db, by, reason, False)


__all__ = ["serve_cmd", "history_cmd", "review_cmd"]
