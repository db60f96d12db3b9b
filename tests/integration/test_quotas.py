"""Quotas per account on the real Redis, Postgres, Temporal and object storage: running builds,
running documentation jobs and new shares answer 429 RATE_LIMIT with Retry-After over them.

Jobs start on task queues that no worker polls, so they stay running until the test records
their end on their row, as the workflow's last activity does."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
import redis.asyncio as aioredis
from fastapi.testclient import TestClient

from api.app import create_app
from contracts.docs import doc_workflow_id
from contracts.previews import preview_workflow_id
from core.config import Settings
from core.ratelimit import MemoryRunningJobs, RedisRunningJobs, RunningJobs
from core.temporal import connect_temporal
from tests.fixtures.api import register_on
from tests.fixtures.docs import DocsApi
from tests.fixtures.previews import PreviewApi, unique_app
from tests.helpers import REDIS_URL, Account, assert_error, libpq_url, redis_keys


@pytest.fixture
def quota_settings(make_preview_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    """Settings with Temporal and storage, on task queues of this test's own (no worker)."""

    def build(**overrides: Any) -> Settings:
        queues = f"quota-{uuid.uuid4().hex[:8]}-"
        return make_preview_settings(temporal_task_queue_prefix=queues, **overrides)

    return build


@contextmanager
def api(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def record_end(
    database_url: str,
    settings: Settings,
    table: str,
    column: str,
    value: str,
    status: str,
    workflow_id: str,
) -> None:
    """What a job's workflow writes last: how the job ended; then its run closes (here it is
    terminated: no worker polls these queues)."""
    with psycopg.connect(libpq_url(database_url), autocommit=True) as connection:
        updated = connection.execute(
            f"UPDATE {table} SET status = %s, completed_at = now() WHERE {column} = %s",  # noqa: S608
            (status, value),
        ).rowcount
    assert updated == 1

    async def close_run() -> None:
        client = await connect_temporal(settings, lazy=False)
        await client.get_workflow_handle(workflow_id).terminate(reason=f"test: {status}")

    asyncio.run(close_run())


def assert_quota_refused(response: Any, max_retry_after: int) -> None:
    error = assert_error(response, 429, "RATE_LIMIT")
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= max_retry_after
    assert error["details"] == {"retry_after": retry_after}


def python_source(marker: int) -> str:
    return f"def f{marker}(a, b):\n    return a + b + {marker}\n"


def test_running_documentation_jobs_are_limited_per_account(
    quota_settings: Callable[..., Settings], database_url: str, redis_prefix: str
) -> None:
    settings = quota_settings(quota_running_doc_jobs=2, quota_retry_after_s=15)
    with api(settings) as client:
        user = DocsApi(client, register_on(client))
        project = user.create_project()

        def submit(marker: int) -> Any:
            return user.submit(project, "function_doc", "app/f.py", python_source(marker))

        first, second = submit(1), submit(2)
        assert (first.status_code, second.status_code) == (202, 202), first.text
        first_id, second_id = first.json()["job_id"], second.json()["job_id"]
        # Joining an identical running job takes no slot.
        joined = submit(1)
        assert joined.status_code == 202
        assert joined.json()["job_id"] == first_id
        # A third job is one too many; the slots live in Redis, under this session's prefix.
        assert_quota_refused(submit(3), max_retry_after=15)
        assert redis_keys(redis_prefix + "running:doc_jobs:")

        # Another account has slots of its own.
        other = DocsApi(client, register_on(client))
        other_project = other.create_project()
        taken = other.submit(other_project, "function_doc", "f.py", python_source(3))
        assert taken.status_code == 202, taken.text

        # The first job completes: asked again it is answered as it is, and its slot is free.
        record_end(
            database_url,
            settings,
            "ai_requests",
            "id",
            first_id,
            "completed",
            doc_workflow_id(uuid.UUID(first_id)),
        )
        answered = submit(1)
        assert answered.status_code == 202
        assert answered.json() | {"status_url": None} == {
            "job_id": first_id,
            "status": "completed",
            "status_url": None,
        }
        third = submit(3)
        assert third.status_code == 202, third.text

        # The second fails, and runs again when asked: in the slot it held, no second one.
        record_end(
            database_url,
            settings,
            "ai_requests",
            "id",
            second_id,
            "failed",
            doc_workflow_id(uuid.UUID(second_id)),
        )
        again = submit(2)
        assert again.status_code == 202, again.text
        assert again.json()["job_id"] == second_id
        assert_quota_refused(submit(4), max_retry_after=15)


def test_running_builds_are_limited_per_account(
    quota_settings: Callable[..., Settings], database_url: str
) -> None:
    settings = quota_settings(quota_running_builds=2)
    with api(settings) as client:
        user = PreviewApi(client, register_on(client))
        project = user.create_project()
        apps = [unique_app() for _ in range(3)]

        first, second = (user.build(project, files, wait=0) for files in apps[:2])
        assert (first.status_code, second.status_code) == (202, 202), first.text
        first_id = first.json()["build_id"]
        joined = user.build(project, apps[0], wait=0)
        assert joined.status_code == 202
        assert joined.json()["build_id"] == first_id
        assert_quota_refused(user.build(project, apps[2], wait=0), max_retry_after=15)

        # The first build fails: its slot is free for the third.
        record_end(
            database_url,
            settings,
            "preview_logs",
            "build_id",
            first_id,
            "failed",
            preview_workflow_id(first_id),
        )
        third = user.build(project, apps[2], wait=0)
        assert third.status_code == 202, third.text


def _insert_build(database_url: str, owner: Account, project_id: str) -> str:
    """A ready build of `owner`'s, as the build workflow records one."""
    build_id = uuid.uuid4().hex
    with psycopg.connect(libpq_url(database_url), autocommit=True) as connection:
        connection.execute(
            "INSERT INTO preview_logs (id, build_id, project_id, user_id, status, requested_at,"
            " completed_at, source_hash, entry_file, environment, platform)"
            " VALUES (%s, %s, %s, %s, 'ready', now(), now(), %s, 'index.js', 'production',"
            " 'ios')",
            (uuid.uuid4(), build_id, project_id, owner.id, "0" * 64),
        )
    return build_id


def test_new_shares_are_limited_per_account(
    make_settings: Callable[..., Settings],
    register: Callable[..., Account],
    database_url: str,
) -> None:
    settings = make_settings(quota_shares=2, quota_shares_window_s=3600)
    owner = register()
    recipients = [register() for _ in range(3)]
    with api(settings) as client:
        project = client.post("/api/v1/projects", json={"name": "p"}, headers=owner.headers)
        build_id = _insert_build(database_url, owner, project.json()["id"])

        def share(recipient: Account) -> Any:
            return client.post(
                f"/api/v1/preview/builds/{build_id}/share",
                json={"username": recipient.username},
                headers=owner.headers,
            )

        assert share(recipients[0]).status_code == 201
        assert share(recipients[0]).status_code == 201  # the same share again: not counted
        assert share(recipients[1]).status_code == 201
        assert_quota_refused(share(recipients[2]), max_retry_after=3600)
        # Nothing was stored for the refused share: the recipient has no notification.
        listed = client.get("/api/v1/notifications", headers=recipients[2].headers)
        assert listed.json()["items"] == []


@pytest.mark.parametrize("backend", ["redis", "memory"])
def test_a_lease_that_ends_frees_its_slot(backend: str, redis_prefix: str) -> None:
    """A job whose end is never recorded (its worker crashed, its workflow was terminated)
    holds its slot no longer than its lease."""

    async def scenario() -> None:
        client = aioredis.Redis.from_url(REDIS_URL)
        slots: RunningJobs = (
            RedisRunningJobs(client, redis_prefix + f"slots-{uuid.uuid4().hex[:6]}:")
            if backend == "redis"
            else MemoryRunningJobs()
        )
        try:
            assert (await slots.claim("k", "crashed", 1, 1)).added
            refused = await slots.claim("k", "next", 1, 1)
            assert not refused.granted
            assert [holder.job for holder in refused.holders] == ["crashed"]
            assert 0 < refused.holders[0].left_s <= 1
            await asyncio.sleep(1.2)
            assert (await slots.claim("k", "next", 1, 1)).added
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_replicas_cannot_both_take_the_last_slot(redis_prefix: str) -> None:
    """Twenty claims at once from two replicas (two Redis clients): exactly three win."""

    async def scenario() -> list[bool]:
        prefix = redis_prefix + f"race-{uuid.uuid4().hex[:6]}:"
        clients = [aioredis.Redis.from_url(REDIS_URL) for _ in range(2)]
        try:
            replicas = [RedisRunningJobs(client, prefix) for client in clients]
            claims = await asyncio.gather(
                *(replicas[i % 2].claim("account", f"job{i}", 3, 60) for i in range(20))
            )
            return [claim.granted for claim in claims]
        finally:
            for client in clients:
                await client.aclose()

    assert sum(asyncio.run(scenario())) == 3
