"""A project's sources: checked, stored once in object storage (content-addressed), and found
again by id (an uploaded archive) or by hash (the same files sent inline again).

Parsing, hashing and storage calls run in a thread with the session's connection given back
(`core.db.without_connection`): a large upload never keeps a pooled connection from others."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import IO, ParamSpec

from sqlalchemy.ext.asyncio import AsyncSession

from core.db import insert_or_existing, without_connection
from core.errors import NotFound
from core.models import PreviewSource, User
from core.storage import Storage
from services.previews import layout
from services.previews.repository import PreviewRepository
from services.previews.schemas import Base64File, BuildRequest, SourceUploaded
from services.previews.sources import SourceSet, decode_base64, from_archive, from_inline
from services.projects.service import ProjectService

P = ParamSpec("P")


def _hashed(
    parse: Callable[P, SourceSet], *args: P.args, **kwargs: P.kwargs
) -> tuple[SourceSet, str]:
    """Parsed sources and their hash (both CPU-bound: run off the event loop)."""
    sources = parse(*args, **kwargs)
    return sources, sources.source_hash


def _from_request_files(files: Mapping[str, str | Base64File]) -> SourceSet:
    decoded = {
        path: decode_base64(path, content.base64) if isinstance(content, Base64File) else content
        for path, content in files.items()
    }
    return from_inline(decoded)


class SourceService:
    def __init__(self, session: AsyncSession, storage: Storage) -> None:
        self.session = session
        self.storage = storage
        self.previews = PreviewRepository(session)
        self.projects = ProjectService(session)

    async def upload(
        self, owner: User, project_id: uuid.UUID, archive: IO[bytes], archive_size: int
    ) -> SourceUploaded:
        """An uploaded .zip or .tar.gz, checked before anything is stored."""
        project = await self.projects.get(owner, project_id)
        parsed = await without_connection(
            self.session, _hashed, from_archive, archive, archive_size
        )
        stored = await self._store(project.id, *parsed)
        return SourceUploaded(
            source_id=stored.id,
            source_hash=stored.source_hash,
            file_count=stored.file_count,
            total_bytes=stored.total_bytes,
        )

    async def for_build(self, project_id: uuid.UUID, request: BuildRequest) -> PreviewSource:
        """The sources a build request names: an upload of the project (`source_id`), or its
        inline `files`, checked and stored."""
        if request.source_id is not None:
            source = await self.previews.get_source(request.source_id, project_id)
            if source is None:
                raise NotFound("Source not found")
            return source
        assert request.files is not None
        parsed = await without_connection(self.session, _hashed, _from_request_files, request.files)
        return await self._store(project_id, *parsed)

    async def _store(
        self, project_id: uuid.UUID, sources: SourceSet, source_hash: str
    ) -> PreviewSource:
        """Content-addressed: the same sources are uploaded to storage once, and uploading
        them again to the same project answers the same source id."""
        existing = await self.previews.find_source(project_id, source_hash)
        key = layout.source_key(source_hash)
        # Also when the row exists: the object may be gone while the row stays (removed by the
        # cleanup of another project that shared it, in the instant this row was written).
        await without_connection(self.session, self._upload_once, key, sources)
        if existing is not None:
            return existing
        return await insert_or_existing(
            self.session,
            PreviewSource(
                project_id=project_id,
                source_hash=source_hash,
                file_count=len(sources.files),
                total_bytes=sources.total_bytes,
                paths=sorted(sources.files),
            ),
            lambda: self.previews.find_source(project_id, source_hash),
        )

    def _upload_once(self, key: str, sources: SourceSet) -> None:
        """Store the sources' archive under `key` unless it is there (in a thread)."""
        if not self.storage.exists(key):
            archive = sources.to_archive()
            self.storage.upload_bytes(key, archive, content_type="application/gzip")
