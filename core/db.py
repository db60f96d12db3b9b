"""Database engine, sessions and the column types shared by the tables."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import AsyncAdaptedQueuePool
from sqlalchemy.util.concurrency import await_
from sqlalchemy.util.queue import AsyncAdaptedQueue, Empty

from core.config import Settings

T = TypeVar("T")
P = ParamSpec("P")
RowT = TypeVar("RowT")

# JSON everywhere, stored as JSONB on Postgres.
JSONType = sa.JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them without a zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class _FifoHandoffQueue(AsyncAdaptedQueue[Any]):
    """A pool queue that hands a returned connection straight to the longest-waiting task.

    SQLAlchemy's queue wraps `asyncio.Queue`, where a task arriving while others wait can take
    a connection that was just returned, and the waiter it was meant for goes back to the end
    of the line. Under sustained load some requests then wait until they time out while the
    median stays low (sqlalchemy/sqlalchemy#7679). Here nobody overtakes a waiter.
    """

    def __init__(self, maxsize: int = 0, use_lifo: bool = False) -> None:
        super().__init__(maxsize, use_lifo)
        self._waiters: deque[asyncio.Future[Any]] = deque()

    def put_nowait(self, item: Any) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():  # skip waiters that timed out or were cancelled
                waiter.set_result(item)
                return
        super().put_nowait(item)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        while self._waiters and self._waiters[0].done():
            self._waiters.popleft()
        if not self._waiters or not block:
            try:
                return self.get_nowait()
            except Empty:
                if not block:
                    raise
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await_(asyncio.wait_for(waiter, timeout))
        except TimeoutError as exc:
            raise Empty() from exc
        except BaseException:
            # Cancelled just as a connection was handed over: pass it to the next in line.
            if waiter.done() and not waiter.cancelled():
                self.put_nowait(waiter.result())
            raise


class FairAsyncQueuePool(AsyncAdaptedQueuePool):
    """The async queue pool, first come first served (see `_FifoHandoffQueue`)."""

    _queue_class = _FifoHandoffQueue


def create_engine(settings: Settings) -> AsyncEngine:
    url = settings.sqlalchemy_url
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})
        sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        url,
        poolclass=FairAsyncQueuePool,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_s,
        pool_pre_ping=settings.db_pool_pre_ping,
        pool_recycle=1800,
        connect_args={"connect_timeout": max(1, round(settings.db_connect_timeout_s))},
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def create_session_factory(
    engine: AsyncEngine, *, read_only: bool = False
) -> async_sessionmaker[AsyncSession]:
    """Sessions on `engine`. A read-only factory runs each statement in autocommit: no BEGIN and
    ROLLBACK round trips around requests that only read (it shares the engine's pool).

    expire_on_commit=False keeps objects readable after commit, for building responses."""
    bind = engine.execution_options(isolation_level="AUTOCOMMIT") if read_only else engine
    return async_sessionmaker(bind, class_=AsyncSession, expire_on_commit=False)


async def release_connection(session: AsyncSession) -> None:
    """Give the session's pooled connection back before slow work that needs no database (a
    workflow wait, an archive parse, a storage call, a hash, a password hash).

    A session keeps its connection checked out from its first statement until it commits,
    rolls back or closes, read-only (autocommit) sessions included: the session's transaction
    holds it even when the database runs no transaction. Ending that transaction here costs
    nothing in autocommit and one COMMIT otherwise; loaded objects stay usable
    (expire_on_commit=False) and the next statement takes a connection again."""
    if session.new or session.dirty or session.deleted:
        raise RuntimeError("release_connection() would commit pending changes")
    if session.in_transaction():
        await session.commit()


async def without_connection(
    session: AsyncSession, work: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
) -> T:
    """`work(*args, **kwargs)` in a worker thread, the session's connection released first:
    slow or CPU-bound work (parsing, hashing, storage calls) neither blocks the event loop nor
    keeps a pooled connection from other requests."""
    await release_connection(session)
    return await asyncio.to_thread(work, *args, **kwargs)


async def insert_or_existing(
    session: AsyncSession, row: RowT, existing: Callable[[], Awaitable[RowT | None]]
) -> RowT:
    """Insert `row` and commit; when a unique constraint says an identical row got there first
    (a concurrent identical request), the row that won, read by `existing`.

    Read plain attributes of other objects before calling: the rollback of a lost race expires
    every object the session holds."""
    session.add(row)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        winner = await existing()
        if winner is None:  # the constraint that failed was not the identity one
            raise
        return winner
    return row


async def paginate(
    session: AsyncSession, statement: sa.Select[T], *, limit: int, offset: int
) -> tuple[Sequence[T], int]:
    """One page of `statement` and the total row count, in one query when the page is not empty.

    The total comes from `count(*) OVER ()` on the page's own rows; only a page past the end
    (no rows to carry the window value) costs a second, counting query.
    """
    total_column = sa.func.count().over().label("_total")
    result = await session.execute(statement.add_columns(total_column).limit(limit).offset(offset))
    rows = result.all()
    if rows:
        return [row[0] for row in rows], int(rows[0][-1])
    if offset == 0:
        return [], 0
    count = sa.select(sa.func.count()).select_from(statement.order_by(None).subquery())
    return [], int((await session.execute(count)).scalar_one())
