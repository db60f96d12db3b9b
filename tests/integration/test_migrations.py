"""Migrations on the real Postgres (and on SQLite, the zero-setup default of `make dev`)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel

import core.models  # noqa: F401 - registers the tables
from migrations import runner

T = TypeVar("T")

TABLES = {
    "users",
    "projects",
    "ai_requests",
    "preview_logs",
    "preview_sources",
    "preview_shares",
    "notifications",
}


def _on_connection(url: str, read: Callable[[sa.Connection], T]) -> T:
    async def run() -> T:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(read)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _tables(url: str) -> set[str]:
    return _on_connection(url, lambda connection: set(sa.inspect(connection).get_table_names()))


def _differences_from_models(url: str) -> list[object]:
    def compare(connection: sa.Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, SQLModel.metadata))

    return _on_connection(url, compare)


def test_upgrade_and_downgrade_on_postgres(fresh_database: str) -> None:
    runner.upgrade(fresh_database)
    assert _tables(fresh_database) >= TABLES
    # The migration and the models describe the same schema (expression indexes included:
    # Postgres reflects them, SQLite does not).
    assert _differences_from_models(fresh_database) == []

    runner.downgrade(fresh_database, "base")
    assert _tables(fresh_database) & TABLES == set()

    runner.upgrade(fresh_database)
    assert _tables(fresh_database) >= TABLES


def test_upgrade_and_downgrade_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'hivesync.db'}"
    runner.upgrade(url)
    assert _tables(url) >= TABLES
    runner.downgrade(url, "base")
    assert _tables(url) & TABLES == set()


def test_hivesync_migrate_command(fresh_database: str, tmp_path: Path) -> None:
    env = {"DATABASE_URL": fresh_database, "PATH": "/usr/bin:/bin", "SECRETS_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "cli", "migrate"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "database at revision head" in result.stdout
    assert _tables(fresh_database) >= TABLES
