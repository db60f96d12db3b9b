"""Removing preview data: a deleted project's objects, builds and sources past their retention,
and objects that no row names. Called by the cleanup activities (on the worker), in small
batches, each database step one short transaction that never waits on storage.

Builds: objects first, then the row, so that a failure leaves a row whose files are gone (the
manifest says so, and requesting the build again rebuilds it) rather than objects nobody can
find. Sources: the row first, then the object, and the object only once no project's source
names its hash and no running build reads it (sources are content-addressed, shared by every
project that uploaded the same files)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from contracts.cleanup import ExpiredBatch
from core.config import Settings
from core.storage import Storage
from services.previews import layout
from services.previews.repository import PreviewRepository

log = logging.getLogger(__name__)

SOURCES_PREFIX = "sources/"
BUILDS_PREFIX = "previews/"
SOURCE_SUFFIX = ".tar.gz"


@dataclass(frozen=True)
class SourceObjects:
    deleted: int
    kept: int  # still used


class PreviewCleanup:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], storage: Storage, settings: Settings
    ) -> None:
        self.sessions = sessions
        self.storage = storage
        self.settings = settings

    async def delete_build_objects(self, build_ids: Collection[str]) -> int:
        """Every object of these builds; returns how many there were."""
        deleted = 0
        for build_id in build_ids:
            if not build_id:
                continue
            deleted += await asyncio.to_thread(
                self.storage.delete_prefix, layout.build_prefix(build_id)
            )
        return deleted

    async def delete_unused_sources(self, hashes: Collection[str]) -> SourceObjects:
        """The source objects of these hashes that nothing uses any more."""
        async with self.sessions() as session:
            in_use = await PreviewRepository(session).hashes_in_use(hashes)
        unused = sorted(set(hashes) - in_use)
        for source_hash in unused:
            await asyncio.to_thread(self.storage.delete_file, layout.source_key(source_hash))
        return SourceObjects(deleted=len(unused), kept=len(set(hashes)) - len(unused))

    async def expire_builds(self, now: datetime) -> ExpiredBatch:
        """One batch of builds past BUILD_RETENTION_DAYS: objects, then rows."""
        days = self.settings.build_retention_days
        if days == 0:
            return ExpiredBatch()
        cutoff = now - timedelta(days=days)
        limit = self.settings.retention_batch_size
        async with self.sessions() as session:
            build_ids = await PreviewRepository(session).expired_build_ids(cutoff, limit)
        objects = await self.delete_build_objects(build_ids)
        async with self.sessions() as session:
            rows = await PreviewRepository(session).delete_expired_builds(build_ids, cutoff)
            await session.commit()
        if build_ids:
            log.info("builds expired", extra={"rows": rows, "objects": objects})
        return ExpiredBatch(rows=rows, objects=objects, full=len(build_ids) == limit)

    async def expire_sources(self, now: datetime) -> ExpiredBatch:
        """One batch of sources past SOURCE_RETENTION_DAYS: rows, then unused objects."""
        days = self.settings.source_retention_days
        if days == 0:
            return ExpiredBatch()
        cutoff = now - timedelta(days=days)
        limit = self.settings.retention_batch_size
        async with self.sessions() as session:
            hashes = await PreviewRepository(session).delete_expired_sources(cutoff, limit)
            await session.commit()
        objects = await self.delete_unused_sources(set(hashes))
        if hashes:
            log.info("sources expired", extra={"rows": len(hashes), "objects": objects.deleted})
        return ExpiredBatch(rows=len(hashes), objects=objects.deleted, full=len(hashes) == limit)

    async def sweep_orphans(self, now: datetime) -> tuple[int, int]:
        """Objects that no row names: build folders whose build is gone (a deleted project's
        build that was still uploading), and source objects older than ORPHAN_GRACE_S that no
        source or running build names (an upload whose row was never written, a cleanup
        that could not run). At most RETENTION_BATCH_SIZE of each per call."""
        limit = self.settings.retention_batch_size
        folders = await asyncio.to_thread(lambda: list(self.storage.list_folders(BUILDS_PREFIX)))
        build_ids = [folder[len(BUILDS_PREFIX) :].rstrip("/") for folder in folders]
        orphan_builds: list[str] = []
        for start in range(0, len(build_ids), 500):
            chunk = build_ids[start : start + 500]
            async with self.sessions() as session:
                known = await PreviewRepository(session).existing_build_ids(chunk)
            orphan_builds += [build_id for build_id in chunk if build_id not in known]
        orphan_builds = orphan_builds[:limit]
        await self.delete_build_objects(orphan_builds)

        grace = now - timedelta(seconds=self.settings.orphan_grace_s)
        candidates = [
            item.key[len(SOURCES_PREFIX) : -len(SOURCE_SUFFIX)]
            for item in await asyncio.to_thread(
                lambda: list(self.storage.list_objects(SOURCES_PREFIX))
            )
            if item.key.endswith(SOURCE_SUFFIX) and item.last_modified <= grace
        ]
        deleted_sources = 0
        for start in range(0, len(candidates), 500):
            if deleted_sources >= limit:
                break
            chunk = candidates[start : start + 500][: limit - deleted_sources]
            deleted_sources += (await self.delete_unused_sources(chunk)).deleted
        if orphan_builds or deleted_sources:
            log.info(
                "orphans removed",
                extra={"builds": len(orphan_builds), "sources": deleted_sources},
            )
        return len(orphan_builds), deleted_sources
