from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from services.users.schemas import UserRead


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 token type
    expires_in: int


class RegisterResponse(TokenResponse):
    user: UserRead
