"""`shardguard ui`: the reviewer's web app over a scan's --out folder and/or the service's --state."""

from __future__ import annotations

from pathlib import Path

import click

from shardguard.cli.service import DB_HELP, STATE_HELP


@click.command("ui")
@click.option("--out", "out", type=click.Path(exists=True, file_okay=False), default=None,
              help="A scan's output folder (summary.json, flags.parquet, clean/, quarantine/).")
@click.option("--state", "state", type=click.Path(file_okay=False), default=None,
              help=STATE_HELP.split(" Default")[0] + " Review decisions need it.")
@click.option("--db", "db", default=None, help=DB_HELP)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to bind. Anything but loopback exposes the records to the network.")
@click.option("--port", default=8765, show_default=True, type=int)
def ui_cmd(out, state, db, host, port):
    """Review in a browser: the queue, each shard's findings, the flagged records, accept/reject, history.

    Give --out DIR (one scan's outputs) and/or --state DIR (the service's state: its review queue and
    audit history; decisions land in the same database as `shardguard review`)."""
    if not out and not state and not db:
        raise click.UsageError("give --out DIR (a scan's output folder) and/or --state DIR (the service's state)")
    if state and not db and not (Path(state) / "history.db").is_file():
        raise click.UsageError(f"no history database in {state!r}: give the folder `shardguard serve --state` used")
    import uvicorn

    from shardguard.ui.app import create_app

    try:
        loopback = host in ("127.0.0.1", "localhost", "::1")
        app = create_app(out=out, state=state, db=db, allowed_hosts=None if not loopback else
                         ("127.0.0.1", "localhost", "::1"))
    except ValueError as e:
        raise click.UsageError(str(e)) from e
    if not loopback:
        click.echo(f"warning: serving on {host}: anyone who can reach it can read the records and decide", err=True)
    click.echo(f"shardguard ui on http://{'[' + host + ']' if ':' in host else host}:{port}/  (Ctrl-C stops)")
    uvicorn.run(app, host=host, port=port, log_level="warning")


__all__ = ["ui_cmd"]
