"""`shardguard verify DATA... --manifest M` and `shardguard verify --compare SNAPSHOT_A SNAPSHOT_B`

Exit codes: 0 identical; 3 a record was added, removed or changed since the scan (or, with --compare,
a URL's content differs between the snapshots); 2 usage error."""

from __future__ import annotations

import json
import sys

import click

SHOW = 20  # changes printed per shard (all of them with --json)


def _print_manifest(rep: dict, w) -> None:
    for s in rep["shards"]:
        counts = ", ".join(f"{s[k]} {k}" for k in ("added", "removed", "changed") if s[k])
        w(f"{s['shard']}: {s['status']}{' (' + counts + ')' if counts else ''}"
          f"{'  [' + s['error'] + ']' if s.get('error') else ''}\n")
        mine = [c for c in rep["changes"] if c["shard"] == s["shard"]]
        for c in mine[:SHOW]:
            row = c["row"] if c["row"] is not None else c["old_row"]
            url = f" {c['url']}" if c.get("url") else ""
            w(f"  {c['change']:<8} row {row}{url}: {c['reason']}\n")
        if len(mine) > SHOW:
            w(f"  ... {len(mine) - SHOW} more (--json lists all)\n")
    n = rep["counts"]
    if rep["identical"]:
        w(f"identical: {len(rep['shards'])} shards match {rep['manifest']}\n")
    else:
        w(f"CHANGED since the scan: {n['added']} added, {n['removed']} removed, {n['changed']} changed\n")


def _print_compare(rep: dict, w) -> None:
    for c in rep["changed"][:200]:
        w(f"changed  {c['url']}: {c['reason']}\n")
        d = c.get("first_difference")
        if d:
            w(f"         at character {d['offset']}: {d['a_excerpt'][:80]!r} -> {d['b_excerpt'][:80]!r}\n")
    if len(rep["changed"]) > 200:
        w(f"... {len(rep['changed']) - 200} more (--json lists all)\n")
    u = rep["urls"]
    w(f"URLs: {u['a']} in A, {u['b']} in B, {u['both']} in both; {len(rep['changed'])} changed content; "
      f"{rep['added']['count']} only in B, {rep['removed']['count']} only in A; records without a URL: "
      f"{rep['records_without_url']['a']} in A, {rep['records_without_url']['b']} in B\n")
    w("identical content for every URL in both\n" if rep["identical"]
      else f"SPLIT VIEW: {len(rep['changed'])} URLs served different content in the two snapshots\n")


@click.command("verify")
@click.argument("data", nargs=-1, type=click.Path(exists=True))
@click.option("--manifest", "manifest", type=click.Path(exists=True, dir_okay=True),
              help="A scan's manifest.parquet (or the scan's --out folder).")
@click.option("--compare", "compare", is_flag=True,
              help="DATA is two snapshots (files or folders of web shards): report URLs whose content changed.")
@click.option("--kind", type=click.Choice(["auto", "web", "sft", "preference"]), default="auto", show_default=True,
              help="Record kind for --compare.")
@click.option("--reread", is_flag=True,
              help="Compare every shard record by record, even one whose file hash is unchanged.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole report as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing; the exit code says it (0 identical, 3 changed).")
def verify_cmd(data, manifest, compare, kind, reread, as_json, quiet):
    """Check data against a scan's manifest before training on it, or compare two crawls for split views.

    \b
    shardguard verify data/ --manifest audit/manifest.parquet     # exit 3 if anything changed
    shardguard verify --compare crawl-2024-01/ crawl-2024-02/     # URLs whose content differs

    A shard whose file hash is unchanged is not re-read."""
    from pathlib import Path

    from shardguard.pipeline.manifest import MANIFEST
    from shardguard.pipeline.verify import compare_snapshots, verify_data

    if compare:
        if manifest:
            raise click.UsageError("--compare takes two snapshots, not --manifest")
        if len(data) != 2:
            raise click.UsageError(f"--compare takes exactly two snapshots (files or folders), got {len(data)}")
        rep = compare_snapshots([data[0]], [data[1]], kind)
        printer = _print_compare
    else:
        if not manifest:
            raise click.UsageError("give --manifest (a scan's manifest.parquet), or --compare A B")
        if not data:
            raise click.UsageError("give the data to verify (files or folders of shards)")
        m = Path(manifest)
        if m.is_dir():
            m = m / MANIFEST
            if not m.is_file():
                raise click.UsageError(f"{manifest} holds no {MANIFEST}")
        try:
            rep = verify_data(list(data), m, reread=reread)
        except ValueError as e:
            raise click.UsageError(str(e)) from e
        printer = _print_manifest
    if as_json:
        sys.stdout.write(json.dumps(rep, indent=2, ensure_ascii=False, default=str) + "\n")
    elif not quiet:
        printer(rep, sys.stdout.write)
    sys.exit(0 if rep["identical"] else 3)
