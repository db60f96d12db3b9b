from __future__ import annotations

import uuid

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import utc_now
from core.errors import Conflict, NotFound
from core.models import Project, User
from services.common import Page
from services.projects.repository import ProjectRepository
from services.projects.schemas import ProjectCreate, ProjectRead, ProjectUpdate


def _name_conflict(name: str) -> Conflict:
    return Conflict(f"You already have a project named {name!r}", details={"fields": ["name"]})


class ProjectService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.projects = ProjectRepository(session)

    async def create(self, owner: User, data: ProjectCreate) -> Project:
        if await self.projects.name_taken(owner.id, data.name):
            raise _name_conflict(data.name)
        project = Project(owner_id=owner.id, name=data.name, config=data.config)
        self.projects.add(project)
        await self._commit(data.name)
        return project

    async def list(self, owner: User, *, limit: int, offset: int) -> Page[ProjectRead]:
        projects, total = await self.projects.list_owned(owner.id, limit=limit, offset=offset)
        return Page(
            items=[ProjectRead.model_validate(project) for project in projects],
            total=total,
            limit=limit,
            offset=offset,
        )

    async def get(self, owner: User, project_id: uuid.UUID) -> Project:
        project = await self.projects.get_owned(project_id, owner.id)
        if project is None:
            raise NotFound("Project not found")
        return project

    async def update(self, owner: User, project_id: uuid.UUID, data: ProjectUpdate) -> Project:
        project = await self.get(owner, project_id)
        if data.name is not None and data.name != project.name:
            if await self.projects.name_taken(owner.id, data.name, excluding=project.id):
                raise _name_conflict(data.name)
            project.name = data.name
        if data.config is not None:
            project.config = data.config
        project.updated_at = utc_now()
        await self._commit(project.name)
        return project

    async def _commit(self, name: str) -> None:
        try:
            await self.session.commit()
        except IntegrityError:
            await self.session.rollback()
            raise _name_conflict(name) from None
