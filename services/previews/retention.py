"""The schedule that runs RetentionWorkflow: created when a cpu_tasks worker starts, updated in
place when it exists (so every worker of a deployment may start it, and a changed interval
applies at the next start)."""

from __future__ import annotations

import logging
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from contracts.cleanup import RETENTION_SCHEDULE, RETENTION_WORKFLOW
from contracts.jobs import TaskQueue
from core.config import Settings

log = logging.getLogger(__name__)


def retention_schedule_id(settings: Settings) -> str:
    return settings.temporal_task_queue_prefix + RETENTION_SCHEDULE


def retention_schedule(settings: Settings) -> Schedule:
    interval = timedelta(seconds=settings.retention_sweep_interval_s)
    return Schedule(
        action=ScheduleActionStartWorkflow(
            RETENTION_WORKFLOW,
            id=retention_schedule_id(settings) + "-run",
            task_queue=settings.task_queue(TaskQueue.CPU),
            # A run stuck on storage that is down gives way to the next one.
            execution_timeout=interval * 4,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=interval)]),
        # One run at a time; runs missed while Temporal was down are not made up for.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=interval),
    )


async def ensure_retention_schedule(client: Client, settings: Settings) -> None:
    """Create the schedule, or bring an existing one up to date; idempotent."""
    schedule_id = retention_schedule_id(settings)
    wanted = retention_schedule(settings)
    try:
        await client.create_schedule(schedule_id, wanted)
        log.info("retention schedule created", extra={"schedule_id": schedule_id})
        return
    except ScheduleAlreadyRunningError:
        pass

    def update(current: ScheduleUpdateInput) -> ScheduleUpdate:
        wanted.state = current.description.schedule.state  # keep a pause an operator set
        return ScheduleUpdate(schedule=wanted)

    await client.get_schedule_handle(schedule_id).update(update)
