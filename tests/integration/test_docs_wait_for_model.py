"""Documentation jobs wait in gpu_tasks while no model server is ready (issue 10): the gpu_tasks
worker polls only while its server answers /health, so a job sent while the server is down
completes once it starts, and one that waits longer than INFERENCE_WAIT_TIMEOUT_S fails with
AI_ERROR saying so. Real Temporal dev server, Postgres and Redis; the model server is the real
OpenAI-compatible app serving a tiny random-weight model."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from temporalio.api.enums.v1 import EventType, RetryState, TimeoutType
from temporalio.client import Client

from api.app import create_app
from cli.processes import free_port
from contracts.docs import GENERATE_DOC_TEXT, doc_workflow_id
from contracts.jobs import TaskQueue
from core.config import Settings
from core.queues import QueueStats, describe_queue
from tests.fixtures.api import register_on
from tests.fixtures.docs import DocsApi, DocsStack, docs_stack
from tests.fixtures.models import serve_openai_app
from tests.fixtures.workers import ThreadWorker
from tests.helpers import delete_redis_keys

SOURCE = "def add(a, b):\n    return a + b\n"
# Long enough for the test to start the model server; the failing test sets its own.
WAIT_TIMEOUT_S = 120.0


@pytest.fixture(scope="module")
def stack(
    make_settings: Callable[..., Settings],
    temporal_address: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DocsStack]:
    """The API and a cpu_tasks worker; each test runs its own gpu_tasks worker."""
    with docs_stack(
        make_settings,
        temporal_address,
        tmp_path_factory.mktemp("docs-wait"),
        queues=(TaskQueue.CPU,),
        inference_wait_timeout_s=WAIT_TIMEOUT_S,
    ) as docs:
        yield docs


@pytest.fixture(autouse=True)
def _closed_circuits(redis_prefix: str) -> None:
    delete_redis_keys(redis_prefix + "ai:")


@contextmanager
def gpu_worker(settings: Settings, model_port: int) -> Iterator[ThreadWorker]:
    """A gpu_tasks worker whose model server is (to be) on `model_port`, as on a GPU pool that
    may sit at zero: it probes the server only while work waits, or while it polls and has had
    work in the last INFERENCE_WORKER_IDLE_S."""
    update = {
        "local_ai_base_url": f"http://127.0.0.1:{model_port}/v1",
        "inference_worker_idle_s": 120.0,
    }
    worker = ThreadWorker(settings.model_copy(update=update), TaskQueue.GPU).start()
    try:
        yield worker
    finally:
        worker.stop()


def gpu_queue_stats(settings: Settings) -> QueueStats:
    async def read() -> QueueStats:
        client = await Client.connect(settings.temporal_address)
        return await describe_queue(client, settings.task_queue(TaskQueue.GPU))

    return asyncio.run(read())


def wait_for_backlog(settings: Settings, job: Callable[[], dict[str, Any]]) -> QueueStats:
    """The gpu queue's stats once they show the job's model call waiting (Temporal refreshes
    them every few seconds)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert job()["status"] in ("queued", "running")
        stats = gpu_queue_stats(settings)
        if stats.backlog > 0:
            return stats
        time.sleep(0.5)
    raise AssertionError("the model call never showed up as backlog in gpu_tasks")


def is_polling(worker: ThreadWorker) -> bool:
    assert worker.running is not None
    assert worker.running.gate is not None
    return worker.running.gate.polling


def test_a_job_sent_while_the_model_server_is_down_completes_once_it_starts(
    stack: DocsStack, tiny_model_dir: Path
) -> None:
    model_port = free_port()
    docs = stack.api()
    with gpu_worker(stack.settings, model_port) as worker:
        response = docs.submit(docs.create_project(), "file_summary", "calc.py", SOURCE)
        assert response.status_code == 202, response.text
        job_id = response.json()["job_id"]

        # The call waits in gpu_tasks: nobody polls it, the backlog is there for the autoscaler.
        stats = wait_for_backlog(stack.settings, lambda: docs.job(job_id).json())
        assert stats.pollers == 0
        assert not is_polling(worker)

        with serve_openai_app(tiny_model_dir, port=model_port):
            job = docs.wait_for(job_id, timeout_s=60)
            assert job["status"] == "completed", job
            assert job["result"]["provider"] == "local"
            assert is_polling(worker)


def test_a_job_with_no_model_server_fails_after_the_wait_timeout(
    stack: DocsStack, temporal_address: str
) -> None:
    settings = stack.settings.model_copy(update={"inference_wait_timeout_s": 3.0})
    with (
        gpu_worker(stack.settings, free_port()) as worker,
        TestClient(create_app(settings)) as client,
    ):
        docs = DocsApi(client, register_on(client))
        job = docs.run("file_summary", "calc.py", SOURCE, timeout_s=60)
        assert not is_polling(worker)

    assert job["status"] == "failed", job
    error = job["error"]
    assert error["code"] == "AI_ERROR"
    assert error["message"].startswith("No model server was ready within 3 s"), error
    assert error["details"] == {
        "task_queue": settings.task_queue(TaskQueue.GPU),
        "waited_s": 3.0,
    }

    # Temporal timed the call out before any worker took it, and did not retry it (a
    # schedule-to-start timeout is final, whatever the retry policy's attempts).
    async def timeouts() -> list[Any]:
        client = await Client.connect(temporal_address)
        handle = client.get_workflow_handle(doc_workflow_id(uuid.UUID(job["job_id"])))
        history = await handle.fetch_history()
        scheduled = {
            event.event_id
            for event in history.events
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
            and event.activity_task_scheduled_event_attributes.activity_type.name
            == GENERATE_DOC_TEXT
        }
        assert scheduled
        started = [
            event
            for event in history.events
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
            and event.activity_task_started_event_attributes.scheduled_event_id in scheduled
        ]
        assert started == []
        return [
            event.activity_task_timed_out_event_attributes
            for event in history.events
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT
        ]

    [timed_out] = asyncio.run(timeouts())
    assert timed_out.failure.timeout_failure_info.timeout_type == (
        TimeoutType.TIMEOUT_TYPE_SCHEDULE_TO_START
    )
    # RETRY_STATE_TIMEOUT: Temporal retries only start-to-close and heartbeat timeouts.
    assert timed_out.retry_state == RetryState.RETRY_STATE_TIMEOUT
