"""The Temporal client, and starting or cancelling a job's workflow through it."""

from __future__ import annotations

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
