"""Deleting a project: its rows at once, then what lies outside the database (its running
jobs' workflows, its builds' objects, its sources' objects that no other project uses) through
ProjectCleanupWorkflow, which retries until it is all gone.

The order keeps a failure from leaving half a project. The project row is locked first (so no
build, source or job can be added to it meanwhile) and the cleanup workflow is started before
the deletion commits: when Temporal cannot be reached the request fails with nothing deleted.
The workflow's first step waits until the row is really gone, so that a deletion that did not
commit after all (a crash between the two) removes nothing."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError

from contracts.cleanup import (
    PROJECT_CLEANUP_WORKFLOW,
    ProjectContents,
    project_cleanup_workflow_id,
)
from contracts.jobs import TaskQueue
from core.config import Settings
from core.errors import NotFound, ServiceUnavailable
from core.models import User
from core.temporal import UNREACHABLE
from services.projects.repository import ProjectRepository


class ProjectDeletion:
    def __init__(self, session: AsyncSession, settings: Settings, temporal: Client) -> None:
        self.session = session
        self.settings = settings
        self.temporal = temporal
        self.projects = ProjectRepository(session)

    async def delete(self, owner: User, project_id: uuid.UUID) -> ProjectContents:
        """Delete the project (404 unless `owner` owns it) and hand what it leaves outside the
        database to the cleanup workflow; returns what that workflow was given."""
        project = await self.projects.lock_owned(project_id, owner.id)
        if project is None:
            raise NotFound("Project not found")
        contents = await self.projects.contents(project.id)
        if not contents.empty:
            try:
                await self._start_cleanup(contents)
            except BaseException:
                await self.session.rollback()
                raise
        await self.projects.delete(project)
        await self.session.commit()
        return contents

    async def _start_cleanup(self, contents: ProjectContents) -> None:
        try:
            await self.temporal.start_workflow(
                PROJECT_CLEANUP_WORKFLOW,
                contents,
                id=project_cleanup_workflow_id(contents.project_id),
                task_queue=self.settings.task_queue(TaskQueue.CPU),
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            )
        except (RPCError, RuntimeError) as exc:  # RuntimeError: a lazy client's failed connect
            raise ServiceUnavailable(UNREACHABLE, details={"dependency": "temporal"}) from exc
