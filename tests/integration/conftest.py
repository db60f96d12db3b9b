"""The API in process (FastAPI's TestClient, lifespan included) on the real Postgres and Redis."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from core.config import Settings
from tests.helpers import PASSWORD, Account, delete_redis_keys, libpq_url, unique_name


@pytest.fixture(scope="session")
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture(scope="session")
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture(scope="session")
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(autouse=True)
def _clean_state(database_url: str, redis_prefix: str) -> None:
    """Every test starts with no users (so no projects) and no rate-limit counters."""
    with psycopg.connect(libpq_url(database_url), autocommit=True) as connection:
        connection.execute("TRUNCATE users CASCADE")
    delete_redis_keys(redis_prefix)


@pytest.fixture
def register(client: TestClient) -> Callable[..., Account]:
    """Register an account through the API; returns its credentials and access token."""

    def register_account(
        username: str | None = None, password: str = PASSWORD, email: str | None = None
    ) -> Account:
        username = username or unique_name()
        email = email or f"{username}@example.com"
        response = client.post(
            "/api/v1/auth/register",
            json={"email": email, "username": username, "password": password},
        )
        assert response.status_code == 201, response.text
        body = response.json()
        return Account(
            id=body["user"]["id"],
            username=username,
            email=email.lower(),
            password=password,
            token=body["access_token"],
        )

    return register_account
