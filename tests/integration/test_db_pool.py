"""The connection pool on the real Postgres: first come first served, nothing lost on
cancellation, and no connection held while a password is hashed, while a client waits on a
build, or while sources are parsed, hashed or stored."""

from __future__ import annotations

import asyncio
import io
import threading
import uuid
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool

from api.app import create_app
from api.resources import Resources
from core.config import Settings
from core.db import FairAsyncQueuePool
from tests.fixtures.api import ApiUser, register_on
from tests.fixtures.previews import PreviewApi, bundler_work_dir, unique_app, wait_until
from tests.fixtures.temporal_calls import current_task_id, noting_temporal_calls
from tests.fixtures.workers import ThreadWorker
from tests.helpers import PASSWORD, Account


async def _wait_for_waiters(engine: AsyncEngine, count: int) -> None:
    """Yield to the loop until `count` tasks are queued for a connection."""
    pool = engine.pool
    assert isinstance(pool, FairAsyncQueuePool)
    # The pool's waiter list is internal state with no event to wait on: poll it.
    while len(pool._pool._waiters) < count:  # type: ignore[attr-defined]  # noqa: ASYNC110
        await asyncio.sleep(0)


async def _acquisition_order(engine: AsyncEngine, *, fair: bool) -> list[str]:
    """A holds the only connection; B, C, D queue; A returns it and asks again at once."""
    order: list[str] = []
    holder = await engine.connect()
    await holder.exec_driver_sql("SELECT 1")

    async def take(name: str) -> None:
        async with engine.connect() as connection:
            await connection.exec_driver_sql("SELECT 1")
            order.append(name)

    tasks = []
    for index, name in enumerate("BCD", start=1):
        tasks.append(asyncio.create_task(take(name)))
        if fair:
            await _wait_for_waiters(engine, index)
        else:
            for _ in range(20):
                await asyncio.sleep(0)
    await holder.close()
    await take("A")
    await asyncio.gather(*tasks)
    return order


def _engine(database_url: str, poolclass: type, **options: object) -> AsyncEngine:
    return create_async_engine(
        database_url, poolclass=poolclass, pool_size=1, max_overflow=0, **options
    )


def test_waiters_are_served_in_arrival_order(database_url: str) -> None:
    async def scenario() -> list[str]:
        engine = _engine(database_url, FairAsyncQueuePool)
        try:
            return await _acquisition_order(engine, fair=True)
        finally:
            await engine.dispose()

    assert asyncio.run(scenario()) == ["B", "C", "D", "A"]


def test_sqlalchemy_stock_pool_lets_a_newcomer_overtake(database_url: str) -> None:
    """Why the fair pool exists (sqlalchemy/sqlalchemy#7679). If this starts failing, the stock
    pool became fair and FairAsyncQueuePool can go."""

    async def scenario() -> list[str]:
        engine = _engine(database_url, AsyncAdaptedQueuePool)
        try:
            return await _acquisition_order(engine, fair=False)
        finally:
            await engine.dispose()

    assert asyncio.run(scenario())[0] == "A"


def test_a_cancelled_waiter_loses_no_connection(database_url: str) -> None:
    async def scenario() -> None:
        engine = _engine(database_url, FairAsyncQueuePool)
        try:
            holder = await engine.connect()
            await holder.exec_driver_sql("SELECT 1")

            async def connect() -> AsyncConnection:
                return await engine.connect()

            waiter = asyncio.create_task(connect())
            await _wait_for_waiters(engine, 1)
            waiter.cancel()
            await holder.close()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            async with engine.connect() as connection:
                assert (await connection.execute(sa.text("SELECT 1"))).scalar() == 1
            assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        finally:
            await engine.dispose()

    asyncio.run(scenario())


def test_a_waiter_times_out(database_url: str) -> None:
    async def scenario() -> None:
        engine = _engine(database_url, FairAsyncQueuePool, pool_timeout=0.2)
        try:
            async with engine.connect() as holder:
                await holder.exec_driver_sql("SELECT 1")
                with pytest.raises(sa.exc.TimeoutError):
                    await engine.connect()
            async with engine.connect() as connection:  # the pool still works afterwards
                await connection.exec_driver_sql("SELECT 1")
        finally:
            await engine.dispose()

    asyncio.run(scenario())


def test_logins_do_not_hold_a_connection_while_hashing(
    make_settings: Callable[..., Settings], register: Callable[..., Account]
) -> None:
    """One pooled connection, a 1 s pool timeout and 8 concurrent logins (~2 s of bcrypt in
    all): every login succeeds only if none keeps the connection while bcrypt runs."""
    accounts = [register() for _ in range(8)]
    settings = make_settings(db_pool_size=1, db_max_overflow=0, db_pool_timeout_s=1)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:

        def login(account: Account) -> int:
            return client.post(
                "/api/v1/auth/login", json={"username": account.username, "password": PASSWORD}
            ).status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(login, accounts))
    assert statuses == [200] * 8


def _checked_out(client: TestClient) -> int:
    """Connections of the API's pool now in use."""
    resources: Resources = client.app.state.resources  # type: ignore[attr-defined]
    return int(resources.engine.pool.checkedout())  # type: ignore[attr-defined]


JOINERS = 40


def test_clients_waiting_on_a_build_leave_the_pool_to_everyone_else(
    make_preview_settings: Callable[..., Settings],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """40 clients join one build with `?wait=60` on a pool of 5 connections that answers 503
    after 3 s: the build stays queued (no worker polls its task queue yet), every joiner
    waits without a connection, and another user's requests keep answering. Then the owner
    cancels the build, a worker starts and ends it, and every joiner gets that answer."""
    settings = make_preview_settings(
        temporal_task_queue_prefix=f"pool-{uuid.uuid4().hex[:8]}-",  # no worker here yet
        bundler_work_dir=bundler_work_dir(tmp_path_factory),
        db_pool_size=5,
        db_max_overflow=0,
        db_pool_timeout_s=3,
    )
    # The requests waiting for the build's result: each reads its workflow's history (seen
    # by a Temporal client interceptor on the API's real client).
    readers: set[int] = set()
    lock = threading.Lock()

    def note(call: str) -> None:
        if call == "history":
            with lock:
                readers.add(current_task_id())

    with (
        TestClient(create_app(settings), raise_server_exceptions=False) as client,
        noting_temporal_calls(client.app.state.resources, note),  # type: ignore[attr-defined]
    ):
        owner = PreviewApi(client, register_on(client))
        other = ApiUser(client, register_on(client))
        other.create_project()
        project_id = owner.create_project()
        files = unique_app()
        first = owner.build(project_id, files, wait=0)
        assert first.status_code == 202, first.text
        build_id = first.json()["build_id"]
        assert first.json()["status"] == "queued"

        with ThreadPoolExecutor(max_workers=JOINERS) as pool:
            joins = [pool.submit(owner.build, project_id, files, wait=60) for _ in range(JOINERS)]
            wait_until(lambda: len(readers) == JOINERS, 120, f"{JOINERS} clients waiting")
            wait_until(lambda: _checked_out(client) == 0, 30, "the waiters' connections back")

            others: list[int] = []
            in_use: list[int] = []
            for _ in range(10):
                for path in ("/api/v1/projects", "/api/v1/users/me"):
                    others.append(client.get(path, headers=other.headers).status_code)
                    in_use.append(_checked_out(client))
            assert all(not join.done() for join in joins)  # all still waiting
            assert others == [200] * len(others)
            assert in_use == [0] * len(in_use)

            cancelled = client.delete(f"/api/v1/preview/builds/{build_id}", headers=owner.headers)
            assert cancelled.status_code == 202, cancelled.text
            worker = ThreadWorker(settings).start()  # the cancellation reaches the workflow
            try:
                answers = [join.result() for join in joins]
            finally:
                worker.stop()

    assert [answer.status_code for answer in answers] == [202] * JOINERS, {
        answer.status_code: answer.text for answer in answers
    }
    assert [(answer.json()["build_id"], answer.json()["status"]) for answer in answers] == [
        (build_id, "cancelled")
    ] * JOINERS


def _text_app() -> dict[str, str]:
    """The example app without its image, as a zip of text files carries it."""
    files = {path: content for path, content in unique_app().items() if isinstance(content, str)}
    files["App.js"] = files["App.js"].replace("source={require('./assets/logo.png')}", "")
    return files


def _zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, content in files.items():
            archive.writestr(path, content)
    return buffer.getvalue()


@pytest.mark.usefixtures("preview_worker")
def test_no_connection_is_held_across_parsing_hashing_storage_or_temporal(
    preview_client: TestClient,
) -> None:
    """Each call the API makes to storage (botocore's own `before-sign` event, presigning
    included) and to Temporal (a client interceptor on the API's real client) notes how many
    pooled connections are in use at that moment. Requests are made one at a time, so any
    connection in use is held by the request across that call; parsing and hashing an upload
    come right before its first storage call, which would still see a connection held there."""
    resources: Resources = preview_client.app.state.resources  # type: ignore[attr-defined]
    seen: list[tuple[str, int]] = []

    def note(name: str) -> None:
        seen.append((name, int(resources.engine.pool.checkedout())))  # type: ignore[attr-defined]

    def storage_call(operation_name: str, **_: Any) -> None:
        note(f"storage.{operation_name}")

    events = resources.storage.client.meta.events
    events.register("before-sign.s3", storage_call)
    try:
        with noting_temporal_calls(resources, lambda call: note(f"temporal.{call}")):
            _build_in_every_way(preview_client)
    finally:
        events.unregister("before-sign.s3", storage_call)

    assert {name for name, _ in seen} >= {
        "storage.HeadObject",
        "storage.PutObject",
        "storage.GetObject",
        "temporal.start",
        "temporal.describe",
        "temporal.history",
    }
    assert [(name, in_use) for name, in_use in seen if in_use] == []


def _build_in_every_way(preview_client: TestClient) -> None:
    """Upload a zip, build it, poll, join and wait, build the same sources inline (served from
    storage), list, and read the manifest: every route that parses, hashes, stores or asks
    Temporal."""
    api = PreviewApi(preview_client, register_on(preview_client))
    project_id = api.create_project()
    files = _text_app()
    uploaded = api.upload_sources(project_id, _zip(files))
    assert uploaded.status_code == 201, uploaded.text
    source_id = uploaded.json()["source_id"]
    accepted = api.build(project_id, source_id=source_id, wait=0)
    assert accepted.status_code == 202, accepted.text
    build_id = accepted.json()["build_id"]
    assert api.status(build_id).status_code == 200  # while it runs: asks Temporal
    ready = api.build(project_id, source_id=source_id, wait=60)  # joins it and waits
    assert ready.status_code == 200, ready.text
    inline = api.build(project_id, files, wait=0)  # the same sources, ready in storage
    assert inline.status_code == 200, inline.text
    assert inline.json()["build_id"] == build_id
    assert api.status(build_id).status_code == 200
    listed = preview_client.get(
        f"/api/v1/preview/builds?project_id={project_id}", headers=api.headers
    )
    assert listed.status_code == 200, listed.text
    manifest = preview_client.get(f"/api/v1/preview/manifest?token={ready.json()['token']}")
    assert manifest.status_code == 200, manifest.text
