from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field

from services.common import InputModel, LoginPassword, Password, Username, max_json_bytes

MAX_PREFERENCES_BYTES = 16 * 1024
Email = Annotated[EmailStr, Field(max_length=254), AfterValidator(str.lower)]
Preferences = Annotated[dict[str, Any], AfterValidator(max_json_bytes(MAX_PREFERENCES_BYTES))]


class UserCreate(InputModel):
    email: Email
    username: Username
    password: Password


class UserLogin(InputModel):
    username: str = Field(min_length=1, max_length=254, description="Username or email")
    password: LoginPassword


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    username: str
    created_at: datetime
    last_login: datetime | None
    preferences: dict[str, Any]
    roles: list[str]


class UserPublic(BaseModel):
    """What other users may see: used by the share-preview search."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    username: str


class UserUpdate(InputModel):
    email: Email | None = None
    username: Username | None = None
    password: Password | None = Field(default=None, description="New password")
    current_password: str | None = Field(
        default=None, description="Required to change the password or the email"
    )
