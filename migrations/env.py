"""Alembic environment: async engines (psycopg 3 on Postgres, aiosqlite on SQLite)."""

import asyncio
import warnings
from typing import Any

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from sqlmodel import SQLModel

import core.models  # noqa: F401 - registers the tables on the metadata
from core.config import get_settings, to_async_database_url

# SQLite's batch mode reflects tables next to the one it rebuilds and cannot reflect their
# expression indexes; it leaves those indexes alone, so the warning says nothing useful.
warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based index")

config = context.config
target_metadata = SQLModel.metadata


def _database_url() -> str:
    url = config.attributes.get("database_url") or get_settings().sqlalchemy_url
    return to_async_database_url(url)


def _configure(**kwargs: Any) -> None:
    url = _database_url()
    context.configure(
        target_metadata=target_metadata,
        render_as_batch=url.startswith("sqlite"),  # SQLite can only ALTER by copying tables
        compare_type=True,
        **kwargs,
    )


def run_migrations_offline() -> None:
    _configure(url=_database_url(), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def _run_with(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_online() -> None:
    engine = create_async_engine(_database_url(), poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_with)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
