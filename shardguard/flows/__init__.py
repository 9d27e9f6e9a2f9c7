"""Prefect flows: scan, bench, compare and the scheduled service.

Every flow is started through `run_flow`: a recorded Prefect flow run when a server is configured
(`PREFECT_API_URL`) or asked for, otherwise the same flow code called directly (`flow.fn`), so a
one-off command does not pay Prefect's ephemeral-server start-up (≈ 23 s a process here)."""

from __future__ import annotations

import os


def run_flow(flow_obj, args: dict, use_prefect: bool | None = None, **direct_only):
    """`direct_only`: arguments that cannot be flow parameters (callbacks such as a log function)."""
    if use_prefect is None:
        use_prefect = bool(os.environ.get("PREFECT_API_URL"))
    return flow_obj(**args) if use_prefect else flow_obj.fn(**args, **direct_only)


def in_prefect_run() -> bool:
    from prefect.context import FlowRunContext

    return FlowRunContext.get() is not None


def stage(t, *args, **kwargs):
    """Run a task through Prefect inside a flow run, or as the plain function outside one."""
    return t(*args, **kwargs) if in_prefect_run() else t.fn(*args, **kwargs)
