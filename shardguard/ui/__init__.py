"""The reviewer's web app (`shardguard ui`): the review queue, shards, records and the audit history.

`create_app(out=..., state=...)` builds it (FastAPI + Jinja2, no script in any page); `data` reads a
scan's outputs back (records, findings, highlights)."""

from shardguard.ui.app import create_app

__all__ = ["create_app"]
