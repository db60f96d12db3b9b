"""Plain helpers for tests (fixtures live in the conftest modules)."""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import redis
from psycopg import sql
from sqlalchemy.engine import make_url

from migrations import runner

POSTGRES_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
TEST_JWT_SECRET = "test-secret-" + "x" * 40
PASSWORD = "correct horse battery staple"

_counter = itertools.count()


def unique_name(stem: str = "user") -> str:
    return f"{stem}{next(_counter)}x{uuid.uuid4().hex[:6]}"


def postgres_url(database: str, driver: str = "postgresql+psycopg") -> str:
    url = make_url(POSTGRES_ADMIN_URL).set(drivername=driver, database=database)
    return url.render_as_string(hide_password=False)


def libpq_url(sqlalchemy_url: str) -> str:
    return make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(False)


def create_database(name: str) -> str:
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return postgres_url(name)


def drop_database(name: str) -> None:
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@contextmanager
def temporary_database(*, migrated: bool) -> Iterator[str]:
    """A Postgres database of its own (migrated to head, or empty), dropped afterwards."""
    name = f"hivesync_test_{uuid.uuid4().hex[:10]}"
    url = create_database(name)
    try:
        if migrated:
            runner.upgrade(url)
        yield url
    finally:
        drop_database(name)


def redis_keys(prefix: str) -> list[bytes]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        return list(client.scan_iter(match=prefix + "*", count=1000))
    finally:
        client.close()


def delete_redis_keys(prefix: str) -> None:
    keys = redis_keys(prefix)
    if keys:
        client = redis.Redis.from_url(REDIS_URL)
        try:
            client.delete(*keys)
        finally:
            client.close()


@dataclass(frozen=True)
class Account:
    id: str
    username: str
    email: str
    password: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """The response has the documented error shape, with this status and code."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    return dict(body["error"])
