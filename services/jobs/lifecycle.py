"""One lifecycle for every kind of job: a row records it, a Temporal workflow runs it.

    submit   record a new job and start its workflow; join an identical one still going; run
             one that failed or was cancelled again (once its last run has closed); answer one
             that succeeded as it is, without a new run
    status   the row's word once the job has ended; the workflow's while it runs (an activity's
             heartbeat may name the phase); the row's again when no run exists yet
    wait     the status once the job ends, or as it is after a timeout
    cancel   ask a job that has not ended to stop (409 once it has)
    record_outcome   what the workflow's last activity writes on the row

No call to Temporal is made with a database connection checked out: the session's connection
goes back to the pool first (`core.db.release_connection`), so that clients waiting on a job
(`?wait=`) or a slow Temporal cannot take the pool from everyone else.

A kind of job brings its row (`core.models.JobRecord`, which names its workflow run), its
phases (`contracts.jobs.JobPhase`) and its workflow (`JobKind`); the rest is the same for all."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.service import RPCError, RPCStatusCode

from contracts.failures import job_error
from contracts.jobs import JobError, JobPhase
from core.clock import utc_now
from core.db import insert_or_existing, release_connection
from core.errors import Conflict, ServiceUnavailable
from core.models import JobRecord
from core.temporal import request_cancellation, start_or_join

RecordT = TypeVar("RecordT", bound=JobRecord)
# How long a request to run an ended job again waits for that job's last run to close (its
# outcome is on the row before its last step, the notification, is done).
PREVIOUS_RUN_GRACE_S = 15.0
PhaseT = TypeVar("PhaseT", bound=JobPhase)


@dataclass(frozen=True)
class JobKind(Generic[PhaseT]):
    """What the lifecycle needs to know of one kind of job, besides its row."""

    noun: str  # in messages: "build", "job"
    phases: type[PhaseT]
    workflow: str  # the workflow's name
    default_error_code: str  # for a failure that names no code of its own


@dataclass(frozen=True)
class JobStatus(Generic[PhaseT]):
    phase: PhaseT
    error: JobError | None = None


def _recorded_error(row: JobRecord) -> JobError | None:
    if row.error_code is None:
        return None
    return JobError(
        code=row.error_code, message=row.error_message or "", details=row.error_details or {}
    )


def record_outcome(
    row: JobRecord, phase: JobPhase, *, duration_ms: int, error: JobError | None
) -> None:
    """Write how a run ended on its row (the caller commits)."""
    row.status = phase.value
    row.completed_at = utc_now()
    row.duration_ms = duration_ms
    if error is not None:
        row.error_code = error.code
        row.error_message = error.message
        row.error_details = error.details


class JobLifecycle(Generic[RecordT, PhaseT]):
    """The lifecycle of one kind of job, whose workflows run on `task_queue` (prefixed)."""

    def __init__(
        self, session: AsyncSession, temporal: Client, kind: JobKind[PhaseT], task_queue: str
    ) -> None:
        self.session = session
        self.temporal = temporal
        self.kind = kind
        self.task_queue = task_queue

    def recorded(self, row: RecordT) -> JobStatus[PhaseT]:
        """The job as its row has it (a running job's row says little: see `status`)."""
        return JobStatus(self.kind.phases(row.status), _recorded_error(row))

    async def submit(
        self,
        found: RecordT | None,
        new: Callable[[], RecordT],
        find: Callable[[], Awaitable[RecordT | None]],
        workflow_input: Callable[[RecordT], BaseModel],
    ) -> RecordT:
        """The job a request asks for. `found` is the identical job already recorded, if any;
        `new` makes the row of a new one and `find` reads the row of an identical one that a
        concurrent request recorded first."""
        if found is None:
            row = await insert_or_existing(self.session, new(), find)
        else:
            row = found
        phase = self.kind.phases(row.status)
        if phase == phase.succeeded():
            return row
        if phase.ended:
            await self._until_closed(row)
            await self.rerun(row)
        await release_connection(self.session)
        await start_or_join(
            self.temporal,
            self.kind.workflow,
            workflow_input(row),
            workflow_id=row.workflow_id,
            task_queue=self.task_queue,
        )
        return row

    async def rerun(self, row: RecordT) -> None:
        """Make an ended job's row ready for another run (the caller starts it)."""
        row.status = self.kind.phases.queued().value
        row.requested_at = utc_now()
        row.forget_outcome()
        await self.session.commit()

    async def _until_closed(self, row: RecordT) -> None:
        """Wait for the job's last run to close. It records its outcome on the row and then
        notifies the user: a run started meanwhile would join it (same workflow id) instead of
        running the job again."""
        await release_connection(self.session)
        try:
            async with asyncio.timeout(PREVIOUS_RUN_GRACE_S):
                await self._handle(row).result()
        except WorkflowFailureError:
            pass  # failed or cancelled: closed all the same
        except TimeoutError:
            raise ServiceUnavailable(
                f"The {self.kind.noun}'s previous run is still finishing; retry shortly",
                details={"dependency": "temporal"},
                headers={"Retry-After": "5"},
            ) from None
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise _temporal_unavailable(self.kind.noun) from exc

    async def status(self, row: RecordT) -> JobStatus[PhaseT]:
        await self.session.refresh(row)
        recorded = self.recorded(row)
        if recorded.phase.ended:
            return recorded
        await release_connection(self.session)
        live = await self._workflow_status(row, recorded)
        if live.phase.ended:  # the row is written by the workflow's last steps: read it again
            await self.session.refresh(row)
            recorded = self.recorded(row)
            if recorded.phase.ended:
                return recorded
        return live

    async def wait(self, row: RecordT, timeout_s: float) -> JobStatus[PhaseT]:
        """The status once the job ends or `timeout_s` has passed; no connection is held
        meanwhile (many clients may wait on one job)."""
        await release_connection(self.session)
        try:
            async with asyncio.timeout(timeout_s):
                await self._handle(row).result()
        except (TimeoutError, WorkflowFailureError):
            pass
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise _temporal_unavailable(self.kind.noun) from exc
        return await self.status(row)

    async def cancel(self, row: RecordT) -> JobStatus[PhaseT]:
        if self.kind.phases(row.status).ended:
            raise Conflict(f"The {self.kind.noun} is {row.status} already")
        await release_connection(self.session)
        await request_cancellation(self.temporal, row.workflow_id)
        return await self.status(row)

    async def _workflow_status(
        self, row: RecordT, recorded: JobStatus[PhaseT]
    ) -> JobStatus[PhaseT]:
        phases = self.kind.phases
        handle = self._handle(row)
        try:
            description = await handle.describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return recorded  # recorded, its run about to start
            raise _temporal_unavailable(self.kind.noun) from exc
        status = description.status
        if status == WorkflowExecutionStatus.RUNNING:
            return JobStatus(await self._running_phase(description) or recorded.phase)
        if status == WorkflowExecutionStatus.COMPLETED:
            return JobStatus(phases.succeeded())
        if status in (WorkflowExecutionStatus.CANCELED, WorkflowExecutionStatus.TERMINATED):
            return JobStatus(phases.cancelled())
        try:
            await handle.result()
        except WorkflowFailureError as failure:
            return JobStatus(
                phases.failed(), job_error(failure.cause, self.kind.default_error_code)
            )
        return JobStatus(phases.failed())

    async def _running_phase(self, description: WorkflowExecutionDescription) -> PhaseT | None:
        """The phase a started activity heartbeats (or the kind's running phase when it says
        nothing); None while no activity runs."""
        for pending in description.raw_description.pending_activities:
            if pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED:
                details = await self.temporal.data_converter.decode(
                    list(pending.heartbeat_details.payloads)
                )
                phases = self.kind.phases
                return phases(details[0]) if details else phases.running()
        return None

    def _handle(self, row: RecordT) -> WorkflowHandle[Any, Any]:
        return self.temporal.get_workflow_handle(row.workflow_id)


def _temporal_unavailable(noun: str) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"The {noun}'s status is unavailable; retry shortly", details={"dependency": "temporal"}
    )
