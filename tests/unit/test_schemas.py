from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.projects.schemas import ProjectCreate
from services.users.schemas import UserCreate, UserUpdate


def _user(**changes: str) -> dict[str, str]:
    return {"email": "A.B@Example.com", "username": "alice", "password": "p" * 8, **changes}


def test_email_is_stored_lower_case() -> None:
    assert UserCreate(**_user()).email == "a.b@example.com"


@pytest.mark.parametrize("password", ["p" * 72, "é" * 36, "€" * 24])
def test_passwords_up_to_72_bytes(password: str) -> None:
    assert UserCreate(**_user(password=password)).password == password


@pytest.mark.parametrize("password", ["p" * 73, "é" * 37, "€" * 25, "short"])
def test_passwords_over_72_bytes_or_too_short(password: str) -> None:
    with pytest.raises(ValidationError):
        UserCreate(**_user(password=password))


@pytest.mark.parametrize("username", ["ab", "x" * 33, "-leading", "has space", "émile"])
def test_bad_usernames(username: str) -> None:
    with pytest.raises(ValidationError):
        UserCreate(**_user(username=username))


def test_update_fields_are_optional_and_strict() -> None:
    assert UserUpdate().model_dump(exclude_unset=True) == {}
    with pytest.raises(ValidationError):
        UserUpdate(roles=["admin"])  # type: ignore[call-arg]


def test_project_name_is_trimmed_and_config_bounded() -> None:
    assert ProjectCreate(name="  My App  ").name == "My App"
    with pytest.raises(ValidationError, match="at most 65536 bytes"):
        ProjectCreate(name="x", config={"k": "v" * 70_000})
