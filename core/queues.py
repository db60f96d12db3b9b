"""What waits in a Temporal task queue and who polls it, from Temporal's DescribeTaskQueue.

Shared by the health checks (`/health/queues`, `hivesync health`) and the GPU autoscaler's
sensors. The figures are Temporal's own: the backlog count and the age of its oldest task are
approximate and cached by the server for a few seconds, so a reading may lag a change by that
much (callers that decide on them must tolerate a stale or noisy value); the pollers are the
workers that asked for tasks in the last minutes, each with the time it last did.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

# A worker long-polls for up to about a minute when its queue is empty (an idle, healthy
# worker's last poll may be ~60 s old, measured), and Temporal lists a poller for minutes after
# its last poll: one not seen for longer than this is gone.
LIVE_POLLER_S = 90.0


@dataclass(frozen=True)
class QueueStats:
    """One task queue's activity tasks (and workflow tasks, when asked for)."""

    name: str
    backlog: int  # tasks waiting for a worker (approximate)
    backlog_age_s: float  # how long the oldest of them has waited (approximate; 0 when none)
    pollers: int  # workers that polled recently
    last_poll_age_s: float | None  # since the most recent poll; None when nobody polled
    add_rate: float  # tasks added per second (Temporal's estimate)
    dispatch_rate: float  # tasks handed to workers per second

    @property
    def live_pollers(self) -> int:
        """The pollers, or 0 when even the latest of them has not polled for LIVE_POLLER_S
        (Temporal keeps listing a stopped worker for minutes)."""
        if self.last_poll_age_s is None or self.last_poll_age_s > LIVE_POLLER_S:
            return 0
        return self.pollers


async def describe_queue(
    client: Client, name: str, *, include_workflow_tasks: bool = False
) -> QueueStats:
    """The queue's stats (activity tasks; with `include_workflow_tasks`, the workflow tasks
    added in: cpu_tasks carries both). Raises temporalio's RPCError when Temporal cannot
    answer."""
    kinds = [TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY]
    if include_workflow_tasks:
        kinds.append(TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW)
    now = datetime.now(UTC)
    backlog, age_s, add_rate, dispatch_rate = 0, 0.0, 0.0, 0.0
    pollers: set[str] = set()
    last_poll: datetime | None = None
    for kind in kinds:
        response = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace,
                task_queue=TaskQueue(name=name, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
                task_queue_type=kind,
                report_stats=True,
            )
        )
        stats = response.stats
        backlog += stats.approximate_backlog_count
        age_s = max(age_s, stats.approximate_backlog_age.ToTimedelta().total_seconds())
        add_rate += stats.tasks_add_rate
        dispatch_rate += stats.tasks_dispatch_rate
        for poller in response.pollers:
            pollers.add(poller.identity)
            if poller.HasField("last_access_time"):
                polled = poller.last_access_time.ToDatetime(tzinfo=UTC)
                last_poll = polled if last_poll is None else max(last_poll, polled)
    return QueueStats(
        name=name,
        backlog=backlog,
        backlog_age_s=age_s,
        pollers=len(pollers),
        last_poll_age_s=None if last_poll is None else max(0.0, (now - last_poll).total_seconds()),
        add_rate=add_rate,
        dispatch_rate=dispatch_rate,
    )
