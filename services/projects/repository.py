from __future__ import annotations

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from contracts.cleanup import ProjectContents
from contracts.docs import DocPhase, doc_workflow_id
from contracts.previews import BuildPhase, preview_workflow_id
from core.db import paginate
from core.models import AIRequest, PreviewLog, PreviewSource, Project

_BUILD_ENDED = [phase.value for phase in BuildPhase if phase.ended]
_DOC_ENDED = [phase.value for phase in DocPhase if phase.ended]


class ProjectRepository:
    """Reads are scoped to an owner: another user's project is indistinguishable from a
    missing one."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_owned(self, project_id: uuid.UUID, owner_id: uuid.UUID) -> Project | None:
        statement = sa.select(Project).where(
            col(Project.id) == project_id, col(Project.owner_id) == owner_id
        )
        return (await self.session.scalars(statement)).first()

    async def lock_owned(self, project_id: uuid.UUID, owner_id: uuid.UUID) -> Project | None:
        """The project, locked until the transaction ends: rows that name it (builds, sources,
        jobs) cannot be added meanwhile, since their foreign keys need a share lock on it."""
        statement = (
            sa.select(Project)
            .where(col(Project.id) == project_id, col(Project.owner_id) == owner_id)
            .with_for_update()
        )
        return (await self.session.scalars(statement)).first()

    async def contents(self, project_id: uuid.UUID) -> ProjectContents:
        """What deleting the project leaves to clean up outside the database."""
        builds = (
            await self.session.execute(
                sa.select(col(PreviewLog.build_id), col(PreviewLog.status)).where(
                    col(PreviewLog.project_id) == project_id
                )
            )
        ).all()
        running_jobs = await self.session.scalars(
            sa.select(col(AIRequest.id)).where(
                col(AIRequest.project_id) == project_id, col(AIRequest.status).not_in(_DOC_ENDED)
            )
        )
        hashes = await self.session.scalars(
            sa.select(col(PreviewSource.source_hash))
            .where(col(PreviewSource.project_id) == project_id)
            .distinct()
        )
        return ProjectContents(
            project_id=project_id,
            running_workflow_ids=[
                preview_workflow_id(build_id)
                for build_id, status in builds
                if status not in _BUILD_ENDED
            ]
            + [doc_workflow_id(job_id) for job_id in running_jobs],
            build_ids=sorted(build_id for build_id, _ in builds),
            source_hashes=sorted(hashes),
        )

    async def exists(self, project_id: uuid.UUID) -> bool:
        statement = sa.select(col(Project.id)).where(col(Project.id) == project_id)
        return (await self.session.scalars(statement)).first() is not None

    async def list_owned(
        self, owner_id: uuid.UUID, *, limit: int, offset: int
    ) -> tuple[Sequence[Project], int]:
        statement = (
            sa.select(Project)
            .where(col(Project.owner_id) == owner_id)
            .order_by(col(Project.created_at).desc(), col(Project.id))
        )
        return await paginate(self.session, statement, limit=limit, offset=offset)

    async def name_taken(
        self, owner_id: uuid.UUID, name: str, *, excluding: uuid.UUID | None = None
    ) -> bool:
        statement = sa.select(col(Project.id)).where(
            col(Project.owner_id) == owner_id, sa.func.lower(col(Project.name)) == name.lower()
        )
        if excluding is not None:
            statement = statement.where(col(Project.id) != excluding)
        return (await self.session.scalars(statement.limit(1))).first() is not None

    def add(self, project: Project) -> None:
        self.session.add(project)

    async def delete(self, project: Project) -> None:
        await self.session.delete(project)
