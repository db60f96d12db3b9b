"""Input types and response shapes shared by several services."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from core.security import MAX_PASSWORD_BYTES

ItemT = TypeVar("ItemT")

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


class InputModel(BaseModel):
    """Request bodies: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class Page(BaseModel, Generic[ItemT]):
    items: list[ItemT]
    total: int = Field(description="Number of items over all pages")
    limit: int
    offset: int


def _password_fits_bcrypt(value: str) -> str:
    if len(value.encode()) > MAX_PASSWORD_BYTES:
        raise ValueError(f"must be at most {MAX_PASSWORD_BYTES} bytes in UTF-8")
    return value


Password = Annotated[str, Field(min_length=8), AfterValidator(_password_fits_bcrypt)]
# Login never applies the length minimum: old accounts may predate it, and a short guess is
# simply a wrong password.
LoginPassword = Annotated[str, Field(min_length=1), AfterValidator(_password_fits_bcrypt)]
Username = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=3, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
    ),
]


def max_json_bytes(limit: int) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A validator: the object's compact JSON serialisation is at most `limit` bytes."""

    def check_size(value: dict[str, Any]) -> dict[str, Any]:
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
        if size > limit:
            raise ValueError(f"must serialise to at most {limit} bytes of JSON, not {size}")
        return value

    return check_size
