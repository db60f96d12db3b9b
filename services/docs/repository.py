from __future__ import annotations

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from core.db import paginate
from core.models import AIRequest, Project


class DocJobRepository:
    """Documentation jobs (ai_requests rows). Reads for users are scoped to the project's
    owner: a job is nobody else's business."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, job_id: uuid.UUID) -> AIRequest | None:
        return await self.session.get(AIRequest, job_id)

    async def get_owned(self, job_id: uuid.UUID, owner_id: uuid.UUID) -> AIRequest | None:
        statement = (
            sa.select(AIRequest)
            .join(Project, col(Project.id) == col(AIRequest.project_id))
            .where(col(AIRequest.id) == job_id, col(Project.owner_id) == owner_id)
        )
        return (await self.session.scalars(statement)).first()

    async def get_by_key(self, job_key: str) -> AIRequest | None:
        statement = sa.select(AIRequest).where(col(AIRequest.job_key) == job_key)
        return (await self.session.scalars(statement)).first()

    async def list_for_project(
        self, project_id: uuid.UUID, *, limit: int, offset: int
    ) -> tuple[Sequence[AIRequest], int]:
        statement = (
            sa.select(AIRequest)
            .where(col(AIRequest.project_id) == project_id)
            .order_by(col(AIRequest.requested_at).desc(), col(AIRequest.id))
        )
        return await paginate(self.session, statement, limit=limit, offset=offset)
