"""Sharing a build with another user, who may then read it (not cancel or share it)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import utc_now
from core.errors import Conflict, NotFound
from core.models import PreviewShare, User
from services.notifications.hub import NotificationHub
from services.notifications.schemas import NotificationType
from services.notifications.service import NotificationService
from services.previews.repository import PreviewRepository
from services.previews.schemas import ShareRead
from services.quotas import QuotaService
from services.users.repository import UserRepository


class ShareService:
    def __init__(self, session: AsyncSession, hub: NotificationHub, quotas: QuotaService) -> None:
        self.session = session
        self.hub = hub
        self.quotas = quotas
        self.builds = PreviewRepository(session)
        self.users = UserRepository(session)

    async def share(self, owner: User, build_id: str, username: str) -> ShareRead:
        """Idempotent: sharing again answers the same share and notifies nobody."""
        build = await self.builds.get_owned(build_id, owner.id)
        if build is None:
            raise NotFound("Build not found")
        recipient = await self.users.get_by_login(username)
        if recipient is None or recipient.username.lower() != username.strip().lower():
            raise NotFound(f"No user named {username!r}")
        if recipient.id == owner.id:
            raise Conflict("You cannot share a build with yourself")
        shared_at = utc_now()
        if not await self.builds.share_exists(build.id, recipient.id):
            await self.quotas.new_share(owner.id)  # 429 over the account's quota of shares
            share = PreviewShare(preview_id=build.id, recipient_id=recipient.id, shared_by=owner.id)
            self.builds.add_share(share)
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
