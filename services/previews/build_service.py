"""Preview builds: requested (new, joined, run again or answered from storage), read, listed
and cancelled, through the job lifecycle that documentation jobs share."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from contracts.errors import ErrorCode
from contracts.jobs import JobError, TaskQueue
from contracts.previews import (
    PREVIEW_WORKFLOW,
    BuildPhase,
    PreviewBuildInput,
)
from core.config import Settings
from core.db import release_connection, without_connection
from core.errors import NotFound, PreviewError, StorageError
from core.models import PreviewLog, User
from core.security import create_preview_token
from core.storage import Storage
from services.common import Page
from services.jobs.lifecycle import JobKind, JobLifecycle, JobStatus
from services.previews import layout
from services.previews.repository import PreviewRepository
from services.previews.schemas import BuildAccepted, BuildRead, BuildReady, BuildRequest
from services.previews.source_service import SourceService
from services.previews.sources import invalid_source, validate_path
from services.previews.toolchain import toolchain_version
from services.projects.service import ProjectService
from services.quotas import BUILD_QUOTA, QuotaService

BUILDS = JobKind("build", BuildPhase, PREVIEW_WORKFLOW, ErrorCode.PREVIEW_ERROR)


class BuildService:
    def __init__(
        self,
        session: AsyncSession,
        settings: Settings,
        storage: Storage,
        temporal: Client,
        quotas: QuotaService,
    ) -> None:
        self.session = session
        self.settings = settings
        self.quotas = quotas
        self.storage = storage
        self.builds = PreviewRepository(session)
        self.projects = ProjectService(session)
        self.sources = SourceService(session, storage)
        self.lifecycle: JobLifecycle[PreviewLog, BuildPhase] = JobLifecycle(
            session, temporal, BUILDS, task_queue=settings.task_queue(TaskQueue.CPU)
        )

    async def request(
        self, owner: User, request: BuildRequest, *, wait_s: float
    ) -> BuildAccepted | BuildReady:
        """The build of these sources: `BuildReady` when it is ready (at once when the same
        build is in storage already, or within `wait_s`), `BuildAccepted` while it runs.
        A build that failed within `wait_s` raises its error (STORAGE_ERROR or a preview
        error), with the build's id in its details."""
        build = await self._submit(owner, request)
        status = self.lifecycle.recorded(build)
        if wait_s and not status.phase.ended:
            status = await self.lifecycle.wait(build, wait_s)
        if status.phase == BuildPhase.READY:
            await release_connection(self.session)  # signing needs none
            url, token, expires_in = self._signed_access(build)
            return BuildReady(url=url, token=token, expires_in=expires_in, build_id=build.build_id)
        if status.phase == BuildPhase.FAILED and status.error is not None:
            raise _build_failure(build.build_id, status.error)
        return BuildAccepted(
            build_id=build.build_id,
            status=status.phase,
            status_url=f"{self.settings.base_url}/api/v1/preview/builds/{build.build_id}",
        )

    async def _submit(self, owner: User, request: BuildRequest) -> PreviewLog:
        # Plain ids first: losing an insert race rolls the session back and expires `owner`.
        owner_id = owner.id
        project_id = (await self.projects.get(owner, request.project_id)).id
        source = await self.sources.for_build(project_id, request)
        source_hash = source.source_hash
        entry_file = validate_path(request.entry_file)
        if entry_file not in source.paths:
            raise invalid_source("The entry file is not among the sources", entry_file=entry_file)
        toolchain = toolchain_version(self.settings.bundler_dir)
        build_id = layout.build_id_for(
            project_id=project_id,
            source_hash=source_hash,
            platform=request.target_platform,
            entry_file=entry_file,
            environment=request.environment,
            toolchain=toolchain,
        )
        found = await self.builds.get(build_id)
        if found is not None and found.status == BuildPhase.READY:
            metadata = layout.build_key(build_id, layout.METADATA)
            if not await without_connection(self.session, self.storage.exists, metadata):
                await self.lifecycle.rerun(found)  # its files are gone: build it again

        def workflow_input(build: PreviewLog) -> PreviewBuildInput:
            return PreviewBuildInput(
                build_id=build.build_id,
                project_id=build.project_id,
                user_id=build.user_id,
                source_hash=build.source_hash,
                entry_file=build.entry_file,
                platform=request.target_platform,
                environment=request.environment,
                toolchain=toolchain,
                timeout_ms=self.settings.preview_max_timeout_ms,
                requested_at=build.requested_at,
            )

        await self.quotas.start_job(owner_id, BUILD_QUOTA, build_id)
        return await self.lifecycle.submit(
            found,
            new=lambda: PreviewLog(
                build_id=build_id,
                project_id=project_id,
                user_id=owner_id,
                source_hash=source_hash,
                entry_file=entry_file,
                environment=request.environment,
                platform=request.target_platform,
                status=BuildPhase.QUEUED.value,
            ),
            find=lambda: self.builds.get(build_id),
            workflow_input=workflow_input,
        )

    async def get(self, viewer: User, build_id: str) -> BuildRead:
        """The build's owner or a user it was shared with may read it."""
        build = await self.builds.get_visible(build_id, viewer.id)
        if build is None:
            raise NotFound("Build not found")
        status = await self.lifecycle.status(build)
        await release_connection(self.session)  # signing the URL of a ready build needs none
        return self._view(build, status)

    async def list(
        self, owner: User, project_id: uuid.UUID, *, limit: int, offset: int
    ) -> Page[BuildRead]:
        """The project's builds, newest first, as their rows have them."""
        project = await self.projects.get(owner, project_id)
        builds, total = await self.builds.list_for_project(project.id, limit=limit, offset=offset)
        await release_connection(self.session)  # signing the URLs of ready builds needs none
        items = [self._view(build, self.lifecycle.recorded(build)) for build in builds]
        return Page(items=items, total=total, limit=limit, offset=offset)

    async def cancel(self, owner: User, build_id: str) -> BuildRead:
        build = await self.builds.get_owned(build_id, owner.id)
        if build is None:
            raise NotFound("Build not found")
        return self._view(build, await self.lifecycle.cancel(build))

    def _view(self, build: PreviewLog, status: JobStatus[BuildPhase]) -> BuildRead:
        view = BuildRead(
            build_id=build.build_id,
            project_id=build.project_id,
            status=status.phase,
            platform=build.platform,
            entry_file=build.entry_file,
            environment=build.environment,
            requested_at=build.requested_at,
            completed_at=build.completed_at,
            duration_ms=build.duration_ms,
            bundle_size=build.bundle_size,
            error=status.error,
        )
        if status.phase == BuildPhase.READY:
            view.url, view.token, view.expires_in = self._signed_access(build)
        return view

    def _signed_access(self, build: PreviewLog) -> tuple[str, str, int]:
        """A freshly signed bundle URL and preview token, and how long both last."""
        ttl = self.settings.signed_url_ttl_s
        url = self.storage.get_signed_url(layout.build_key(build.build_id, layout.BUNDLE), ttl)
        token = create_preview_token(
            self.settings, build.project_id, build.build_id, ttl=timedelta(seconds=ttl)
        )
        return url, token.token, ttl


def _build_failure(build_id: str, error: JobError) -> PreviewError | StorageError:
    error_type = StorageError if error.code == ErrorCode.STORAGE_ERROR else PreviewError
    return error_type(
        error.message, code=error.code, details={**error.details, "build_id": build_id}
    )
