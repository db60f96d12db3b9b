"""Activities of PreviewBuildWorkflow."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.outcomes import outcome_dedupe_key
from contracts.errors import ErrorCode
from contracts.failures import job_failure
from contracts.jobs import JobError
from contracts.previews import (
    BUILD_PREVIEW,
    NOTIFY_PREVIEW_OUTCOME,
    RECORD_PREVIEW_OUTCOME,
    BuildPhase,
    PreviewArtifacts,
    PreviewBuildInput,
    PreviewOutcome,
)
from core.errors import PreviewError, StorageError
from services.jobs.lifecycle import record_outcome
from services.notifications.hub import NotificationHub
from services.notifications.schemas import NotificationType
from services.notifications.service import NotificationService
from services.previews.builder import Builder, WorkspaceError
from services.previews.repository import PreviewRepository

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_S = 2.0


class PreviewActivities:
    def __init__(
        self,
        builder: Builder,
        sessions: async_sessionmaker[AsyncSession],
        hub: NotificationHub,
    ) -> None:
        self.builder = builder
        self.sessions = sessions
        self.hub = hub

    @activity.defn(name=BUILD_PREVIEW)
    async def build_preview(self, request: PreviewBuildInput) -> PreviewArtifacts:
        """Heartbeats the current phase while it works, so that the API can report it and
        Temporal notices cancellation and dead workers."""
        phase = BuildPhase.BUNDLING

        def on_phase(new_phase: BuildPhase) -> None:
            nonlocal phase
            phase = new_phase
            activity.heartbeat(phase.value)

        async def heartbeat() -> None:
            while True:
                activity.heartbeat(phase.value)
                await asyncio.sleep(HEARTBEAT_INTERVAL_S)

        beating = asyncio.create_task(heartbeat())
        # What fails here reaches the client (the build's error): never a path of this worker
        # or a stack. The log keeps the whole exception.
        try:
            return await self.builder.build(request, on_phase)
        except PreviewError as exc:  # the sources' fault: retrying cannot help
            raise _application_error(exc, non_retryable=True) from exc
        except StorageError as exc:  # storage down or refusing: retried with backoff
            log.warning("preview %s: storage error: %s", request.build_id, exc.message)
            raise _application_error(exc, non_retryable=False) from exc
        except WorkspaceError as exc:  # the worker's disk: another attempt may pass
            log.warning("preview %s: workspace error", request.build_id, exc_info=exc.cause)
            message = f"The worker could not write the build's files: {exc.client_message}"
            raise _worker_failure(message) from exc
        except Exception as exc:  # the bundler died, a bug, ...: retried, then reported
            log.exception("preview %s failed on the worker", request.build_id)
            text = self.builder.client_text(str(exc)) or type(exc).__name__
            raise _worker_failure(f"The preview build failed on the worker: {text}") from exc
        finally:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating

    @activity.defn(name=RECORD_PREVIEW_OUTCOME)
    async def record_preview_outcome(self, outcome: PreviewOutcome) -> None:
        async with self.sessions() as session:
            build = await PreviewRepository(session).get(outcome.build_id)
            if build is None:  # the project was deleted meanwhile
                return
            record_outcome(
                build, outcome.phase, duration_ms=outcome.duration_ms, error=outcome.error
            )
            if outcome.artifacts is not None:
                build.bundle_size = outcome.artifacts.bundle_size
                build.storage_url = outcome.artifacts.storage_prefix
            await session.commit()

    @activity.defn(name=NOTIFY_PREVIEW_OUTCOME)
    async def notify_preview_outcome(self, outcome: PreviewOutcome) -> None:
        if outcome.phase == BuildPhase.CANCELLED:
            return  # the user cancelled it themselves
        payload: dict[str, object] = {
            "build_id": outcome.build_id,
            "project_id": str(outcome.project_id),
            "duration_ms": outcome.duration_ms,
        }
        if outcome.phase == BuildPhase.READY:
            kind = NotificationType.PREVIEW_READY
        else:
            kind = NotificationType.PREVIEW_FAILED
            payload["error"] = outcome.error.model_dump() if outcome.error else None
        async with self.sessions() as session:
            await NotificationService(session, self.hub).notify_if_present(
                outcome.user_id, kind, payload, dedupe_key=outcome_dedupe_key(kind)
            )


def _worker_failure(message: str) -> ApplicationError:
    """A retryable failure of the worker itself (not the sources' fault)."""
    error = JobError(code=ErrorCode.PREVIEW_ERROR, message=message)
    return job_failure(error, non_retryable=False)


def _application_error(
    exc: PreviewError | StorageError, *, non_retryable: bool
) -> ApplicationError:
    error = JobError(code=exc.code, message=exc.message, details=exc.details)
    return job_failure(error, non_retryable=non_retryable)
