"""Activities of ProjectCleanupWorkflow and RetentionWorkflow."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from contracts.cleanup import (
    CONFIRM_PROJECT_DELETED,
    DELETE_PROJECT_OBJECTS,
    EXPIRE_BUILDS,
    EXPIRE_SOURCES,
    STOP_PROJECT_JOBS,
    SWEEP_ORPHANS,
    CleanupSummary,
    ExpiredBatch,
    ProjectContents,
)
from core.clock import utc_now
from services.previews.cleanup import PreviewCleanup
from services.projects.repository import ProjectRepository

log = logging.getLogger(__name__)

# A cancelled job has this long to stop (a build kills its Metro process at once; a model call
# ends at its next heartbeat); then it is terminated.
CANCEL_GRACE_S = 60.0
HEARTBEAT_INTERVAL_S = 2.0


class CleanupActivities:
    def __init__(self, cleanup: PreviewCleanup, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.cleanup = cleanup
        self.sessions = sessions

    @activity.defn(name=CONFIRM_PROJECT_DELETED)
    async def confirm_project_deleted(self, project_id: uuid.UUID) -> None:
        """Fails (and is retried) while the project's row exists: the API starts the cleanup
        just before its deletion commits."""
        async with self.sessions() as session:
            if await ProjectRepository(session).exists(project_id):
                raise ApplicationError("The project still exists")

    @activity.defn(name=STOP_PROJECT_JOBS)
    async def stop_project_jobs(self, workflow_ids: list[str]) -> int:
        """Cancel these workflows and wait until each has ended (terminating those that take
        longer than CANCEL_GRACE_S); returns how many were still running."""
        client = activity.client()
        handles = [client.get_workflow_handle(workflow_id) for workflow_id in workflow_ids]
        running = 0
        for handle in handles:
            try:
                await handle.cancel()
                running += 1
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:  # NOT_FOUND: gone or ended already
                    raise

        async def ended(handle: WorkflowHandle[Any, Any]) -> None:
            with contextlib.suppress(WorkflowFailureError, RPCError):
                await handle.result()

        waiting = asyncio.gather(*(ended(handle) for handle in handles))
        try:
            async with asyncio.timeout(CANCEL_GRACE_S):
                while not waiting.done():
                    activity.heartbeat()
                    await asyncio.wait({waiting}, timeout=HEARTBEAT_INTERVAL_S)
        except TimeoutError:
            waiting.cancel()
            for handle in handles:
                with contextlib.suppress(RPCError):
                    await handle.terminate("its project was deleted")
            log.warning("project jobs terminated", extra={"workflows": workflow_ids})
        return running

    @activity.defn(name=DELETE_PROJECT_OBJECTS)
    async def delete_project_objects(self, contents: ProjectContents) -> CleanupSummary:
        await self.cleanup.delete_build_objects(contents.build_ids)
        sources = await self.cleanup.delete_unused_sources(contents.source_hashes)
        return CleanupSummary(
            builds_deleted=len(contents.build_ids),
            sources_deleted=sources.deleted,
            sources_kept=sources.kept,
        )

    @activity.defn(name=EXPIRE_BUILDS)
    async def expire_builds(self) -> ExpiredBatch:
        return await self.cleanup.expire_builds(utc_now())

    @activity.defn(name=EXPIRE_SOURCES)
    async def expire_sources(self) -> ExpiredBatch:
        return await self.cleanup.expire_sources(utc_now())

    @activity.defn(name=SWEEP_ORPHANS)
    async def sweep_orphans(self) -> list[int]:
        """[orphan builds removed, orphan sources removed]"""
        builds, sources = await self.cleanup.sweep_orphans(utc_now())
        return [builds, sources]

    @property
    def all(self) -> list[object]:
        return [
            self.confirm_project_deleted,
            self.stop_project_jobs,
            self.delete_project_objects,
            self.expire_builds,
            self.expire_sources,
            self.sweep_orphans,
        ]
