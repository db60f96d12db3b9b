"""Migrations on the real Postgres (and on SQLite, the zero-setup default of `make dev`)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel

import core.models  # noqa: F401 - registers the tables
from core.db import UTCDateTime
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


# --- revision 0004: the job tables' shared columns renamed, every row kept ---------------------

ColumnType = sa.types.TypeEngine[Any] | sa.TypeDecorator[Any]
UUID, TEXT, JSON = sa.Uuid(), sa.Text(), sa.JSON()
TIME = UTCDateTime()  # aware datetimes on SQLite too, as the service reads them
REQUESTED = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _table(table_name: str, /, **columns: ColumnType) -> sa.TableClause:
    return sa.table(table_name, *(sa.column(column, kind) for column, kind in columns.items()))


def _write(url: str, table: sa.TableClause, row: dict[str, object]) -> None:
    async def run() -> None:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as connection:
                await connection.execute(sa.insert(table).values(**row))
        finally:
            await engine.dispose()

    asyncio.run(run())


def _read(url: str, table: sa.TableClause) -> dict[str, object]:
    def read(connection: sa.Connection) -> dict[str, object]:
        return dict(connection.execute(sa.select(table)).mappings().one())

    return _on_connection(url, read)


def _job_rows(url: str, *, time: str, error: str) -> tuple[dict[str, object], dict[str, object]]:
    """The documentation job and the build, read through the columns of one revision."""
    renamed: dict[str, ColumnType] = {time: TIME, error: TEXT}
    job = _table("ai_requests", id=UUID, status=TEXT, error_code=TEXT, **renamed)
    build = _table(
        "preview_logs",
        id=UUID,
        build_id=TEXT,
        status=TEXT,
        error_message=TEXT,
        **{"timestamp" if time == "created_at" else time: TIME},
    )
    return _read(url, job), _read(url, build)


def _rows_survive_the_job_column_renames(url: str) -> None:
    runner.upgrade(url, "0003")
    user_id, project_id, job_id, build_id = (uuid.uuid4() for _ in range(4))
    _write(
        url,
        _table(
            "users",
            id=UUID,
            email=TEXT,
            username=TEXT,
            password_hash=TEXT,
            created_at=TIME,
            preferences=JSON,
            roles=JSON,
        ),
        {
            "id": user_id,
            "email": "m@example.com",
            "username": "mig",
            "password_hash": "x",
            "created_at": REQUESTED,
            "preferences": {},
            "roles": ["user"],
        },
    )
    _write(
        url,
        _table(
            "projects",
            id=UUID,
            owner_id=UUID,
            name=TEXT,
            created_at=TIME,
            updated_at=TIME,
            config=JSON,
        ),
        {
            "id": project_id,
            "owner_id": user_id,
            "name": "p",
            "created_at": REQUESTED,
            "updated_at": REQUESTED,
            "config": {},
        },
    )
    _write(
        url,
        _table(
            "ai_requests",
            id=UUID,
            project_id=UUID,
            user_id=UUID,
            file_path=TEXT,
            job_type=TEXT,
            status=TEXT,
            input_text=TEXT,
            error=TEXT,
            created_at=TIME,
            job_key=TEXT,
            language=TEXT,
            error_code=TEXT,
        ),
        {
            "id": job_id,
            "project_id": project_id,
            "user_id": user_id,
            "file_path": "a.py",
            "job_type": "function_doc",
            "status": "failed",
            "input_text": "x = 1\n",
            "error": "no provider answered",
            "created_at": REQUESTED,
            "job_key": "k" * 64,
            "language": "python",
            "error_code": "AI_ERROR",
        },
    )
    _write(
        url,
        _table(
            "preview_logs",
            id=UUID,
            project_id=UUID,
            user_id=UUID,
            timestamp=TIME,
            platform=TEXT,
            status=TEXT,
            build_id=TEXT,
            source_hash=TEXT,
            entry_file=TEXT,
            environment=TEXT,
            error_message=TEXT,
        ),
        {
            "id": build_id,
            "project_id": project_id,
            "user_id": user_id,
            "timestamp": REQUESTED,
            "platform": "ios",
            "status": "failed",
            "build_id": "b" * 32,
            "source_hash": "s" * 64,
            "entry_file": "index.js",
            "environment": "production",
            "error_message": "syntax",
        },
    )
    before = _job_rows(url, time="created_at", error="error")

    runner.upgrade(url)
    job, build = _job_rows(url, time="requested_at", error="error_message")
    assert job == {
        "id": job_id,
        "status": "failed",
        "error_code": "AI_ERROR",
        "requested_at": REQUESTED,
        "error_message": "no provider answered",
    }
    assert build == {
        "id": build_id,
        "build_id": "b" * 32,
        "status": "failed",
        "error_message": "syntax",
        "requested_at": REQUESTED,
    }

    runner.downgrade(url, "0003")
    assert _job_rows(url, time="created_at", error="error") == before


def test_job_column_renames_keep_rows_on_postgres(fresh_database: str) -> None:
    _rows_survive_the_job_column_renames(fresh_database)


def test_job_column_renames_keep_rows_on_sqlite(tmp_path: Path) -> None:
    _rows_survive_the_job_column_renames(f"sqlite+aiosqlite:///{tmp_path / 'hivesync.db'}")
