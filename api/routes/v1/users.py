from typing import Annotated, Any

from fastapi import APIRouter, Body, Query

from api.deps import CurrentUser, Limit, Offset, UserServiceDep
from services.common import DEFAULT_PAGE_SIZE, Page
from services.users.schemas import Preferences, UserPublic, UserRead, UserUpdate

router = APIRouter(prefix="/users", tags=["users"])


@router.get("/me")
async def read_me(user: CurrentUser) -> UserRead:
    return UserRead.model_validate(user)


@router.patch("/me")
async def update_me(body: UserUpdate, user: CurrentUser, users: UserServiceDep) -> UserRead:
    """Change email, username or password. Changing the password or the email needs
    `current_password`."""
    return UserRead.model_validate(await users.update(user, body))


@router.get("/me/preferences")
async def read_preferences(user: CurrentUser) -> dict[str, Any]:
    return user.preferences


@router.put("/me/preferences")
async def replace_preferences(
    preferences: Annotated[Preferences, Body()], user: CurrentUser, users: UserServiceDep
) -> dict[str, Any]:
    """Replace the preferences with this JSON object (at most 16 KiB)."""
    updated = await users.set_preferences(user, preferences)
    return updated.preferences


@router.get("/search")
async def search_users(
    q: Annotated[str, Query(max_length=32, description="Username prefix, 2+ characters")],
    user: CurrentUser,
    users: UserServiceDep,
    limit: Limit = DEFAULT_PAGE_SIZE,
    offset: Offset = 0,
) -> Page[UserPublic]:
    """Find users to share a preview with, by username prefix (never by email)."""
    return await users.search(q, caller=user, limit=limit, offset=offset)
