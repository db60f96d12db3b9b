from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from contracts.previews import BuildPhase
from core.db import paginate
from core.models import PreviewLog, PreviewShare, PreviewSource, Project

_ENDED = [phase.value for phase in BuildPhase if phase.ended]


class PreviewRepository:
    """Builds, sources and shares. Reads are scoped to who may see them: a build is visible to
    its project's owner and to the users it was shared with, and to nobody else."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, build_id: str) -> PreviewLog | None:
        statement = sa.select(PreviewLog).where(col(PreviewLog.build_id) == build_id)
        return (await self.session.scalars(statement)).first()

    async def get_owned(self, build_id: str, owner_id: uuid.UUID) -> PreviewLog | None:
        statement = (
            sa.select(PreviewLog)
            .join(Project, col(Project.id) == col(PreviewLog.project_id))
            .where(col(PreviewLog.build_id) == build_id, col(Project.owner_id) == owner_id)
        )
        return (await self.session.scalars(statement)).first()

    async def get_visible(self, build_id: str, user_id: uuid.UUID) -> PreviewLog | None:
        shared_with_user = (
            sa.select(col(PreviewShare.id))
            .where(
                col(PreviewShare.preview_id) == col(PreviewLog.id),
                col(PreviewShare.recipient_id) == user_id,
            )
            .exists()
        )
        statement = (
            sa.select(PreviewLog)
            .join(Project, col(Project.id) == col(PreviewLog.project_id))
            .where(col(PreviewLog.build_id) == build_id)
            .where(sa.or_(col(Project.owner_id) == user_id, shared_with_user))
        )
        return (await self.session.scalars(statement)).first()

    async def list_for_project(
        self, project_id: uuid.UUID, *, limit: int, offset: int
    ) -> tuple[Sequence[PreviewLog], int]:
        statement = (
            sa.select(PreviewLog)
            .where(col(PreviewLog.project_id) == project_id)
            .order_by(col(PreviewLog.requested_at).desc(), col(PreviewLog.id))
        )
        return await paginate(self.session, statement, limit=limit, offset=offset)

    def add_share(self, share: PreviewShare) -> None:
        self.session.add(share)

    async def get_source(self, source_id: uuid.UUID, project_id: uuid.UUID) -> PreviewSource | None:
        statement = sa.select(PreviewSource).where(
            col(PreviewSource.id) == source_id, col(PreviewSource.project_id) == project_id
        )
        return (await self.session.scalars(statement)).first()

    async def find_source(self, project_id: uuid.UUID, source_hash: str) -> PreviewSource | None:
        statement = sa.select(PreviewSource).where(
            col(PreviewSource.project_id) == project_id,
            col(PreviewSource.source_hash) == source_hash,
        )
        return (await self.session.scalars(statement)).first()

    async def share_exists(self, preview_id: uuid.UUID, recipient_id: uuid.UUID) -> bool:
        statement = sa.select(col(PreviewShare.id)).where(
            col(PreviewShare.preview_id) == preview_id,
            col(PreviewShare.recipient_id) == recipient_id,
        )
        return (await self.session.scalars(statement)).first() is not None

    # --- retention and cleanup ---------------------------------------------------------------

    async def hashes_in_use(self, hashes: Collection[str]) -> set[str]:
        """The source hashes that a project's sources still name, or a build that has not
        ended still reads."""
        if not hashes:
            return set()
        by_source = sa.select(col(PreviewSource.source_hash)).where(
            col(PreviewSource.source_hash).in_(hashes)
        )
        by_running_build = sa.select(col(PreviewLog.source_hash)).where(
            col(PreviewLog.source_hash).in_(hashes), col(PreviewLog.status).not_in(_ENDED)
        )
        return set(await self.session.scalars(sa.union(by_source, by_running_build)))

    async def existing_build_ids(self, build_ids: Collection[str]) -> set[str]:
        if not build_ids:
            return set()
        statement = sa.select(col(PreviewLog.build_id)).where(
            col(PreviewLog.build_id).in_(build_ids)
        )
        return set(await self.session.scalars(statement))

    @staticmethod
    def _expired_build(cutoff: datetime) -> sa.ColumnElement[bool]:
        """An ended build built (or requested, when it never completed) before `cutoff`."""
        built = sa.func.coalesce(col(PreviewLog.completed_at), col(PreviewLog.requested_at))
        return sa.and_(col(PreviewLog.status).in_(_ENDED), built < cutoff)

    async def expired_build_ids(self, cutoff: datetime, limit: int) -> list[str]:
        statement = (
            sa.select(col(PreviewLog.build_id))
            .where(self._expired_build(cutoff))
            .order_by(col(PreviewLog.requested_at))
            .limit(limit)
        )
        return list(await self.session.scalars(statement))

    async def delete_expired_builds(self, build_ids: Collection[str], cutoff: datetime) -> int:
        """Deletes those of `build_ids` that are still expired (a build requested again since it
        was listed is kept); the caller commits."""
        if not build_ids:
            return 0
        statement = (
            sa.delete(PreviewLog)
            .where(col(PreviewLog.build_id).in_(build_ids), self._expired_build(cutoff))
            .returning(col(PreviewLog.id))
        )
        return len((await self.session.execute(statement)).all())

    async def delete_expired_sources(self, cutoff: datetime, limit: int) -> list[str]:
        """Deletes up to `limit` sources uploaded before `cutoff` that their project has not
        built since, and that no build of it is reading now; returns their hashes. The caller
        commits."""
        recent_or_running = (
            sa.select(col(PreviewLog.id))
            .where(
                col(PreviewLog.project_id) == col(PreviewSource.project_id),
                col(PreviewLog.source_hash) == col(PreviewSource.source_hash),
                sa.or_(
                    col(PreviewLog.requested_at) >= cutoff, col(PreviewLog.status).not_in(_ENDED)
                ),
            )
            .exists()
        )
        expired = (
            sa.select(col(PreviewSource.id))
            .where(col(PreviewSource.created_at) < cutoff, ~recent_or_running)
            .order_by(col(PreviewSource.created_at))
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        statement = (
            sa.delete(PreviewSource)
            .where(col(PreviewSource.id).in_(expired))
            .returning(col(PreviewSource.source_hash))
        )
        return list((await self.session.execute(statement)).scalars())
