"""Preview builds as the API sees them: sources in, workflow started or joined, status out."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from datetime import datetime, timedelta
from typing import IO, Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.service import RPCError, RPCStatusCode

from core.clock import utc_now
from core.config import Settings
from core.errors import AuthError, Conflict, ErrorCode, NotFound, ServiceUnavailable
from core.models import PreviewLog, PreviewShare, PreviewSource, User
from core.security import InvalidToken, create_preview_token, decode_preview_token
from core.storage import ObjectNotFound, Storage
from core.temporal import request_cancellation, start_or_join
from services.common import Page
from services.notifications.hub import NotificationHub
from services.notifications.schemas import NotificationType
from services.notifications.service import NotificationService
from services.previews import layout
from services.previews.repository import PreviewRepository
from services.previews.schemas import (
    Base64File,
    BuildRead,
    BuildReady,
    BuildRequest,
    ManifestAsset,
    ManifestRead,
    ShareRead,
    SourceUploaded,
)
from services.previews.sources import (
    SourceSet,
    decode_base64,
    from_archive,
    from_inline,
    invalid_source,
    validate_path,
)
from services.previews.toolchain import toolchain_version
from services.projects.service import ProjectService
from services.users.repository import UserRepository
from workflows.contracts import (
    CPU_TASK_QUEUE,
    TERMINAL_PHASES,
    BuildPhase,
    JobError,
    PreviewBuildInput,
)

log = logging.getLogger(__name__)

WORKFLOW_NAME = "PreviewBuildWorkflow"


def workflow_id(build_id: str) -> str:
    return f"preview-{build_id}"


class PreviewService:
    def __init__(
        self,
        session: AsyncSession,
        settings: Settings,
        storage: Storage,
        temporal: Client,
        hub: NotificationHub,
    ) -> None:
        self.session = session
        self.settings = settings
        self.storage = storage
        self.temporal = temporal
        self.hub = hub
        self.builds = PreviewRepository(session)
        self.projects = ProjectService(session)

    # --- sources -----------------------------------------------------------------------------

    async def upload_sources(
        self, owner: User, project_id: uuid.UUID, archive: IO[bytes], archive_size: int
    ) -> SourceUploaded:
        project = await self.projects.get(owner, project_id)
        sources = await asyncio.to_thread(from_archive, archive, archive_size)
        stored = await self._store_sources(project.id, sources)
        return SourceUploaded(
            source_id=stored.id,
            source_hash=stored.source_hash,
            file_count=stored.file_count,
            total_bytes=stored.total_bytes,
        )

    async def _store_sources(self, project_id: uuid.UUID, sources: SourceSet) -> PreviewSource:
        """Content-addressed: the same sources are uploaded to storage once, and uploading
        them again to the same project answers the same source id."""
        source_hash = sources.source_hash
        existing = await self.builds.find_source(project_id, source_hash)
        if existing is not None:
            return existing
        key = layout.source_key(source_hash)
        if not await asyncio.to_thread(self.storage.exists, key):
            archive = await asyncio.to_thread(sources.to_archive)
            await asyncio.to_thread(
                self.storage.upload_bytes, key, archive, content_type="application/gzip"
            )
        stored = PreviewSource(
            project_id=project_id,
            source_hash=source_hash,
            file_count=len(sources.files),
            total_bytes=sources.total_bytes,
            paths=sorted(sources.files),
        )
        self.builds.add(stored)
        try:
            await self.session.commit()
        except IntegrityError:  # the same sources, uploaded concurrently
            await self.session.rollback()
            raced = await self.builds.find_source(project_id, source_hash)
            assert raced is not None
            return raced
        return stored

    # --- builds --------------------------------------------------------------------------------

    async def request_build(self, owner: User, request: BuildRequest) -> tuple[PreviewLog, bool]:
        """The build for these sources; True when it is ready already (served from storage).

        Plain ids are read up front: losing an insert race rolls the session back, which
        expires every object it holds."""
        owner_id = owner.id
        project_id = (await self.projects.get(owner, request.project_id)).id
        source = await self._sources_for(project_id, request)
        source_hash, source_paths = source.source_hash, source.paths
        entry_file = validate_path(request.entry_file)
        if entry_file not in source_paths:
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
        build = await self.builds.get(build_id)
        if build is not None and build.status == BuildPhase.READY:
            metadata = layout.build_key(build_id, layout.METADATA)
            if await asyncio.to_thread(self.storage.exists, metadata):
                return build, True
        if build is None:
            build = await self._record(
                PreviewLog(
                    build_id=build_id,
                    project_id=project_id,
                    user_id=owner_id,
                    source_hash=source_hash,
                    entry_file=entry_file,
                    environment=request.environment,
                    platform=request.target_platform,
                    status=BuildPhase.QUEUED.value,
                )
            )
        elif build.status in TERMINAL_PHASES:
            await self._reset_for_another_run(build)
        await self._start_workflow(build, toolchain)
        return build, False

    async def _sources_for(self, project_id: uuid.UUID, request: BuildRequest) -> PreviewSource:
        if request.source_id is not None:
            source = await self.builds.get_source(request.source_id, project_id)
            if source is None:
                raise NotFound("Source not found")
            return source
        assert request.files is not None
        decoded = {
            path: decode_base64(path, content.base64)
            if isinstance(content, Base64File)
            else content
            for path, content in request.files.items()
        }
        sources = await asyncio.to_thread(from_inline, decoded)
        return await self._store_sources(project_id, sources)

    async def _record(self, build: PreviewLog) -> PreviewLog:
        """Insert a new build's row; when an identical request got there first, join it."""
        build_id = build.build_id
        self.builds.add(build)
        try:
            await self.session.commit()
            return build
        except IntegrityError:
            await self.session.rollback()
            raced = await self.builds.get(build_id)
            assert raced is not None
            return raced

    async def _reset_for_another_run(self, build: PreviewLog) -> None:
        """A build that failed or was cancelled runs again when it is asked for again."""
        build.status = BuildPhase.QUEUED.value
        build.timestamp = utc_now()
        build.completed_at = None
        build.duration_ms = None
        build.bundle_size = None
        build.error_code = build.error_message = None
        build.error_details = None
        await self.session.commit()

    async def _start_workflow(self, build: PreviewLog, toolchain: str) -> None:
        """Start the build's workflow, or join the run already going (identical requests)."""
        request = PreviewBuildInput(
            build_id=build.build_id,
            project_id=build.project_id,
            user_id=build.user_id,
            source_hash=build.source_hash,
            entry_file=build.entry_file,
            platform=build.platform,
            environment=build.environment,
            toolchain=toolchain,
            timeout_ms=self.settings.preview_max_timeout_ms,
            requested_at=build.timestamp,
        )
        await start_or_join(
            self.temporal,
            WORKFLOW_NAME,
            request,
            workflow_id=workflow_id(build.build_id),
            task_queue=self.settings.task_queue(CPU_TASK_QUEUE),
        )

    async def wait(self, build: PreviewLog, timeout_s: float) -> BuildRead:
        """The build's state once it ends, or as it is after `timeout_s`."""
        handle = self._handle(build.build_id)
        try:
            async with asyncio.timeout(timeout_s):
                await handle.result()
        except (TimeoutError, WorkflowFailureError):
            pass
        return await self.describe(build)

    async def get(self, viewer: User, build_id: str) -> BuildRead:
        build = await self.builds.get_visible(build_id, viewer.id)
        if build is None:
            raise NotFound("Build not found")
        return await self.describe(build)

    async def describe(self, build: PreviewLog) -> BuildRead:
        """Status from the workflow while it runs; from the record once it has ended."""
        await self.session.refresh(build)
        view = _recorded_view(build)
        if view.status not in TERMINAL_PHASES:
            view.status, view.error = await self._workflow_phase(build.build_id)
        if view.status == BuildPhase.READY:
            view.url, view.token, view.expires_in = self._signed_access(build)
        return view

    def ready_answer(self, build: PreviewLog) -> BuildReady:
        url, token, expires_in = self._signed_access(build)
        return BuildReady(url=url, token=token, expires_in=expires_in, build_id=build.build_id)

    def _signed_access(self, build: PreviewLog) -> tuple[str, str, int]:
        ttl = self.settings.signed_url_ttl_s
        url = self.storage.get_signed_url(layout.build_key(build.build_id, layout.BUNDLE), ttl)
        token = create_preview_token(
            self.settings, build.project_id, build.build_id, ttl=timedelta(seconds=ttl)
        )
        return url, token.token, ttl

    async def _workflow_phase(self, build_id: str) -> tuple[BuildPhase, JobError | None]:
        handle = self._handle(build_id)
        try:
            description = await handle.describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return BuildPhase.QUEUED, None  # recorded, about to start
            raise ServiceUnavailable(
                "Build status is unavailable; retry shortly", details={"dependency": "temporal"}
            ) from exc
        status = description.status
        if status == WorkflowExecutionStatus.RUNNING:
            for pending in description.raw_description.pending_activities:
                if pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED:
                    details = await self.temporal.data_converter.decode(
                        list(pending.heartbeat_details.payloads)
                    )
                    return BuildPhase(details[0]) if details else BuildPhase.BUNDLING, None
            return BuildPhase.QUEUED, None
        if status == WorkflowExecutionStatus.COMPLETED:
            return BuildPhase.READY, None
        if status in (WorkflowExecutionStatus.CANCELED, WorkflowExecutionStatus.TERMINATED):
            return BuildPhase.CANCELLED, None
        try:
            await handle.result()
        except WorkflowFailureError as failure:
            return BuildPhase.FAILED, JobError.from_failure(failure.cause, ErrorCode.PREVIEW_ERROR)
        return BuildPhase.FAILED, None

    async def list(
        self, owner: User, project_id: uuid.UUID, *, limit: int, offset: int
    ) -> Page[BuildRead]:
        project = await self.projects.get(owner, project_id)
        builds, total = await self.builds.list_for_project(project.id, limit=limit, offset=offset)
        items = [_recorded_view(build) for build in builds]
        return Page(items=items, total=total, limit=limit, offset=offset)

    async def cancel(self, owner: User, build_id: str) -> BuildRead:
        build = await self.builds.get_owned(build_id, owner.id)
        if build is None:
            raise NotFound("Build not found")
        if build.status in TERMINAL_PHASES:
            raise Conflict(f"The build is {build.status} already")
        await request_cancellation(self.temporal, workflow_id(build_id))
        return await self.describe(build)

    def _handle(self, build_id: str) -> WorkflowHandle[Any, Any]:
        return self.temporal.get_workflow_handle(workflow_id(build_id))

    # --- the preview app ---------------------------------------------------------------------

    async def manifest(self, token: str) -> ManifestRead:
        """For the mobile preview app: the build's metadata with fresh signed URLs. The
        stateless preview token is the only credential."""
        try:
            claims = decode_preview_token(self.settings, token)
        except InvalidToken as exc:
            log.info("preview token rejected: %s", exc)
            raise AuthError("Invalid or expired preview token") from None
        build = await self.builds.get(claims.build_id)
        if build is None or build.project_id != claims.project_id:
            raise NotFound("Build not found")
        if build.status != BuildPhase.READY:
            raise NotFound("The build is not ready")
        try:
            raw = await asyncio.to_thread(
                self.storage.get_bytes, layout.build_key(build.build_id, layout.METADATA)
            )
        except ObjectNotFound:
            raise NotFound("The build's files are no longer stored") from None
        metadata: dict[str, Any] = json.loads(raw)
        ttl = self.settings.signed_url_ttl_s

        def sign(name: str) -> str:
            return self.storage.get_signed_url(layout.build_key(build.build_id, name), ttl)

        return ManifestRead(
            build_id=build.build_id,
            project_id=build.project_id,
            platform=metadata["platform"],
            entry_file=metadata["entry_file"],
            environment=metadata["environment"],
            created_at=datetime.fromisoformat(metadata["created_at"]),
            bundle_url=sign(layout.BUNDLE),
            bundle_brotli_url=sign(layout.BUNDLE_BROTLI),
            bundle=metadata["bundle"],
            assets=[
                ManifestAsset(url=sign(f"{layout.ASSETS}/{asset['path']}"), **asset)
                for asset in metadata["assets"]
            ],
            toolchain=metadata["toolchain"],
            expires_in=ttl,
        )

    # --- sharing -----------------------------------------------------------------------------

    async def share(self, owner: User, build_id: str, username: str) -> ShareRead:
        build = await self.builds.get_owned(build_id, owner.id)
        if build is None:
            raise NotFound("Build not found")
        recipient = await UserRepository(self.session).get_by_login(username)
        if recipient is None or recipient.username.lower() != username.strip().lower():
            raise NotFound(f"No user named {username!r}")
        if recipient.id == owner.id:
            raise Conflict("You cannot share a build with yourself")
        shared_at = utc_now()
        if not await self.builds.share_exists(build.id, recipient.id):
            share = PreviewShare(preview_id=build.id, recipient_id=recipient.id, shared_by=owner.id)
            self.builds.add(share)
            shared_at = share.created_at
            await NotificationService(self.session, self.hub).notify(  # commits the share too
                recipient.id,
                NotificationType.PREVIEW_SHARED,
                {
                    "build_id": build.build_id,
                    "project_id": str(build.project_id),
                    "platform": build.platform,
                    "shared_by": owner.username,
                },
            )
        return ShareRead(build_id=build.build_id, username=recipient.username, shared_at=shared_at)


def _recorded_view(build: PreviewLog) -> BuildRead:
    """The build as its record has it (the status of a running build is the workflow's)."""
    error = None
    if build.error_code:
        error = JobError(
            code=build.error_code,
            message=build.error_message or "",
            details=build.error_details or {},
        )
    return BuildRead(
        build_id=build.build_id,
        project_id=build.project_id,
        status=BuildPhase(build.status),
        platform=build.platform,
        entry_file=build.entry_file,
        environment=build.environment,
        requested_at=build.timestamp,
        completed_at=build.completed_at,
        duration_ms=build.duration_ms,
        bundle_size=build.bundle_size,
        error=error,
    )
