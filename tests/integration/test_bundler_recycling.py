"""The worker's Metro processes replaced: after BUNDLER_MAX_BUILDS builds, above
BUNDLER_MAX_RSS_MB, and when one dies mid-build (the build is retried on a fresh process and
the next build works). Real worker, Temporal, SeaweedFS and Metro; each test has a worker (and
task queue) of its own, so that its settings apply."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from temporalio.client import Client

from api.app import create_app
from contracts.previews import preview_workflow_id
from core.config import Settings
from core.temporal import connect_temporal
from services.previews.bundler import BundlerPool
from tests.fixtures.api import register_on
from tests.fixtures.previews import (
    PreviewApi,
    alive,
    bundler_work_dir,
    slow_app,
    unique_app,
    wait_until,
)
from tests.fixtures.workers import ThreadWorker

StartWorker = Callable[..., tuple[PreviewApi, ThreadWorker]]


@pytest.fixture
def own_worker(
    make_preview_settings: Callable[..., Settings], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StartWorker]:
    """Start a worker with these settings on a queue of its own, and an API that uses it."""
    started: list[tuple[TestClient, ThreadWorker]] = []

    def start(**overrides: Any) -> tuple[PreviewApi, ThreadWorker]:
        settings = make_preview_settings(
            temporal_task_queue_prefix=f"rec-{uuid.uuid4().hex[:8]}-",
            bundler_work_dir=bundler_work_dir(tmp_path_factory),
            # Metro's hard timeout is not what these tests are about: room for a busy machine.
            preview_max_timeout_ms=600_000,
            **overrides,
        )
        worker = ThreadWorker(settings).start()
        client = TestClient(create_app(settings))
        client.__enter__()
        started.append((client, worker))
        return PreviewApi(client, register_on(client)), worker

    yield start
    for client, worker in started:
        client.__exit__(None, None, None)
        worker.stop()


def pool_of(worker: ThreadWorker) -> BundlerPool:
    assert worker.running is not None
    assert worker.running.bundler is not None
    return worker.running.bundler


def build_ready(api: PreviewApi, files: dict[str, Any]) -> str:
    response = api.build(api.create_project(), files, wait=0)
    assert response.status_code == 202, response.text
    build_id = str(response.json()["build_id"])
    status = api.wait_for(build_id, timeout_s=600)
    assert status["status"] == "ready", status.get("error")
    return build_id


def test_bundler_is_replaced_after_max_builds(own_worker: StartWorker) -> None:
    api, worker = own_worker(bundler_max_builds=2)
    pool = pool_of(worker)
    [first] = pool.pids

    build_ready(api, unique_app())
    assert pool.pids == [first]  # one build: kept
    build_ready(api, unique_app())
    wait_until(lambda: not alive(first), 30, "the worn-out bundler to exit")
    build_ready(api, unique_app())  # on a fresh process

    [second] = pool.pids
    assert second != first
    assert alive(second)  # a fresh process counts its own builds: one so far, kept
    assert worker.bundler_builds == 3


def test_bundler_is_replaced_above_max_rss(own_worker: StartWorker) -> None:
    # An idle Metro process holds ~70 MB, and more after any build.
    api, worker = own_worker(bundler_max_rss_mb=64)
    pool = pool_of(worker)
    [first] = pool.pids

    build_ready(api, unique_app())

    wait_until(lambda: not alive(first), 30, "the bundler above its memory limit to exit")
    build_ready(api, unique_app())  # and the next build starts a fresh one
    assert first not in pool.pids
    assert worker.bundler_builds == 2


def test_bundler_killed_mid_build_the_build_is_retried_and_the_next_works(
    own_worker: StartWorker,
) -> None:
    api, worker = own_worker()
    pool = pool_of(worker)
    [node] = pool.pids
    response = api.build(api.create_project(), slow_app(3000), environment="development", wait=0)
    build_id = response.json()["build_id"]
    api.wait_for(build_id, ("bundling",))

    os.kill(node, signal.SIGKILL)

    status = api.wait_for(build_id, timeout_s=600)
    assert status["status"] == "ready", status.get("error")
    assert activity_attempts(worker.settings, build_id) == 2
    assert not alive(node)
    build_ready(api, unique_app())
    assert node not in pool.pids


def activity_attempts(settings: Settings, build_id: str) -> int:
    async def read() -> int:
        client: Client = await connect_temporal(settings, lazy=False)
        attempts = 0
        async for event in client.get_workflow_handle(
            preview_workflow_id(build_id)
        ).fetch_history_events():
            if event.HasField("activity_task_started_event_attributes"):
                attempts = max(attempts, event.activity_task_started_event_attributes.attempt)
        return attempts

    return asyncio.run(read())
