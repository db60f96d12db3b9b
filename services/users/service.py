from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.config import Settings
from core.db import release_connection
from core.errors import Conflict, PermissionDenied, RateLimited, ValidationFailed
from core.models import User
from core.ratelimit import RateLimiter, password_guess_limit
from core.security import PasswordHasher
from services.common import Page
from services.users.repository import UserRepository
from services.users.schemas import UserCreate, UserPublic, UserUpdate

MIN_SEARCH_LENGTH = 2


def conflict_for(fields: list[str]) -> Conflict:
    names = " and ".join(fields) or "email or username"
    return Conflict(f"An account with this {names} already exists", details={"fields": fields})


class UserService:
    def __init__(
        self,
        session: AsyncSession,
        hasher: PasswordHasher,
        limiter: RateLimiter,
        settings: Settings,
    ) -> None:
        self.session = session
        self.users = UserRepository(session)
        self.hasher = hasher
        self.limiter = limiter
        self.settings = settings

    async def create(self, data: UserCreate) -> User:
        # Check first so that a taken name costs no bcrypt time; the unique indexes still
        # decide races between two concurrent registrations.
        taken = await self.users.taken_fields(email=data.email, username=data.username)
        if taken:
            raise conflict_for(taken)
        await release_connection(self.session)  # not held through ~0.2 s of bcrypt
        user = User(
            email=data.email,
            username=data.username,
            password_hash=await self.hasher.hash(data.password),
        )
        self.users.add(user)
        await self._commit_unique(user)
        return user

    async def update(self, user: User, data: UserUpdate) -> User:
        changes = data.model_dump(exclude_unset=True, exclude={"current_password"})
        if "password" in changes or "email" in changes:
            if not data.current_password:
                raise ValidationFailed.for_field(
                    "current_password", "required to change the password or the email"
                )
            await self._check_current_password(user, data.current_password)
        # Explicit nulls change nothing.
        changes = {field: value for field, value in changes.items() if value is not None}
        taken = await self.users.taken_fields(
            email=changes.get("email"), username=changes.get("username"), excluding=user.id
        )
        if taken:
            raise conflict_for(taken)
        new_password = changes.pop("password", None)
        if new_password is not None:
            await release_connection(self.session)
            user.password_hash = await self.hasher.hash(new_password)
            # Revokes every access token issued before, the caller's own included.
            user.token_generation += 1
        for field, value in changes.items():
            setattr(user, field, value)
        await self._commit_unique(user)
        return user

    async def _check_current_password(self, user: User, password: str) -> None:
        """Under the account's budget of password guesses, which logins share: a stolen token
        must not give unlimited guesses at the password either."""
        limit = password_guess_limit(self.settings, str(user.id))
        decision = await self.limiter.hit([limit])
        if not decision.allowed:
            raise RateLimited(
                "Too many password attempts; try again later",
                retry_after_s=decision.retry_after_s,
            )
        await release_connection(self.session)
        if not await self.hasher.verify(password, user.password_hash):
            raise PermissionDenied("Current password is incorrect")
        await self.limiter.reset(limit.key)

    async def set_preferences(self, user: User, preferences: dict[str, Any]) -> User:
        user.preferences = preferences
        await self.session.commit()
        return user

    async def search(
        self, query: str, *, caller: User, limit: int, offset: int
    ) -> Page[UserPublic]:
        query = query.strip()
        if len(query) < MIN_SEARCH_LENGTH:
            raise ValidationFailed.for_field(
                "q", f"must be at least {MIN_SEARCH_LENGTH} characters"
            )
        users, total = await self.users.search_by_username_prefix(
            query, excluding=caller.id, limit=limit, offset=offset
        )
        return Page(
            items=[UserPublic.model_validate(user) for user in users],
            total=total,
            limit=limit,
            offset=offset,
        )

    async def _commit_unique(self, user: User) -> None:
        """Commit; a unique-index violation (a concurrent writer won) becomes a 409."""
        # Read before committing: a rollback expires the object's attributes.
        email, username, user_id = user.email, user.username, user.id
        try:
            await self.session.commit()
        except IntegrityError:
            await self.session.rollback()
            taken = await self.users.taken_fields(email=email, username=username, excluding=user_id)
            raise conflict_for(taken) from None
