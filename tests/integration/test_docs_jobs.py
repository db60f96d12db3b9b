"""Documentation jobs at their limits and in their faults, through the API, the real Temporal
dev server and `hivesync worker`'s workers, with providers that are real HTTP servers speaking
OpenAI's protocol: a 0.9 MB file (bounded prompts and payloads, the per-job cap of model
calls), the worker's event loop kept free while such a file is planned, a provider's
Retry-After as Temporal's retry delay, OpenAI-only mode, a cancellation reaching the model
call in flight, a project deleted under a running job, and the gate that refuses a result
which cannot be made into valid edits (INVALID_RESULT)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.docs import DocActivities
from api.app import create_app
from contracts.docs import (
    GENERATE_DOC_TEXT,
    NOTIFY_DOC_OUTCOME,
    PLAN_DOC_JOB,
    RECORD_DOC_OUTCOME,
    AssembleInput,
    DocJobType,
    GeneratedText,
    doc_workflow_id,
)
from contracts.jobs import TaskQueue
from core.config import Settings
from core.db import create_engine, create_session_factory
from core.temporal import connect_temporal
from inference.client.engine import create_engine as create_ai_engine
from services.docs.planning import MAX_PLAN_BYTES, MAX_PROMPT_CHARS, plan_tasks
from services.notifications.hub import NotificationHub
from tests.fixtures.api import register_on
from tests.fixtures.docs import DocsApi, DocsStack, StubProviders
from tests.fixtures.large_sources import hostile_python
from tests.fixtures.previews import METRO_CACHE
from tests.fixtures.workers import ThreadWorker
from tests.helpers import delete_redis_keys
from tests.unit.docs.samples import TYPESCRIPT

HOSTILE = hostile_python()
PYTHON = (Path(__file__).parents[1] / "data" / "docs" / "inventory.py").read_text()
TEMPORAL_PAYLOAD_LIMIT = 2 * 1024 * 1024
STUBS = ("local", "primary", "secondary")


def every_stub(providers: StubProviders, mode: str, **options: Any) -> None:
    for name in STUBS:
        getattr(providers, name).behave(mode, **options)


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.05)


def history_events(settings: Settings, workflow_id: str) -> list[Any]:
    async def fetch() -> list[Any]:
        client = await connect_temporal(settings, lazy=False)
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        return list(history.events)

    return asyncio.run(fetch())


def scheduled_activities(events: list[Any]) -> list[str]:
    return [
        event.activity_task_scheduled_event_attributes.activity_type.name
        for event in events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]


# --- a 0.9 MB file -----------------------------------------------------------------------------


def test_a_09_mb_file_is_documented_within_its_bounds(
    stub_docs: DocsApi, stub_docs_stack: DocsStack, stub_providers: StubProviders
) -> None:
    """Every prompt within MAX_PROMPT_CHARS, at most DOCS_MAX_MODEL_CALLS calls, every payload
    far under Temporal's 2 MB; the job completes and says what it left out."""
    stub_providers.local.behave(text="Computes the value from its inputs.")

    job = stub_docs.run("full_file_pass", "app/big.py", HOSTILE, timeout_s=600)

    assert job["status"] == "completed", job
    requests = stub_providers.local.requests
    calls = stub_docs_stack.settings.docs_max_model_calls
    assert len(requests) == calls == 200
    prompts = [sum(len(m["content"]) for m in r["body"]["messages"]) for r in requests]
    assert max(prompts) <= MAX_PROMPT_CHARS
    summary = job["result"]["summary"]
    assert "more items left out: over the job's limits" in summary, summary
    assert job["result"]["edits"]
    events = history_events(stub_docs_stack.settings, doc_workflow_id(uuid.UUID(job["job_id"])))
    sizes = [event.ByteSize() for event in events]
    assert max(sizes) < TEMPORAL_PAYLOAD_LIMIT / 3
    planned = next(
        event.event_id
        for event in events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and event.activity_task_scheduled_event_attributes.activity_type.name == PLAN_DOC_JOB
    )
    plan = next(
        event
        for event in events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
        and event.activity_task_completed_event_attributes.scheduled_event_id == planned
    )
    assert plan.ByteSize() <= MAX_PLAN_BYTES + 4096


def test_the_workers_loop_stays_free_while_a_09_mb_file_is_planned(
    stub_docs: DocsApi, stub_docs_stack: DocsStack
) -> None:
    """Planning and assembly (seconds of CPU here, Python's parser holding the GIL for seconds
    at a time) run in processes of their own: a heartbeat-like coroutine on the cpu_tasks
    worker's loop keeps its pace. A liveness bound, far under the 15 s after which a preview
    build's heartbeat times out, not a benchmark. (The beat starts once the API accepted the
    file: in this test the API's own check of it runs in the same process.)"""
    worker = stub_docs_stack.workers[0]
    assert worker.queue == TaskQueue.CPU
    stop = threading.Event()
    lags: list[float] = []

    async def beat() -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            before = loop.time()
            await asyncio.sleep(0.05)
            lags.append(loop.time() - before - 0.05)

    response = stub_docs.submit(stub_docs.create_project(), "full_file_pass", "big.py", HOSTILE)
    assert response.status_code == 202, response.text
    beating = asyncio.run_coroutine_threadsafe(beat(), worker.loop)
    try:
        job = stub_docs.wait_for(response.json()["job_id"], timeout_s=600)
    finally:
        stop.set()
        beating.result(timeout=30)

    assert job["status"] == "completed", job
    assert len(lags) > 20
    assert max(lags) < 2.0, f"the worker's loop stalled {max(lags):.1f} s"


# --- model calls ----------------------------------------------------------------------------


def test_retry_after_becomes_temporals_retry_delay(
    stub_docs: DocsApi, stub_docs_stack: DocsStack, stub_providers: StubProviders
) -> None:
    """All providers answer 429 with `Retry-After: 7` (more than the engine waits itself):
    Temporal's next attempt is scheduled 7 s later instead of the policy's 2 s; then it
    completes."""
    stub_providers.local.behave("error", status=503)  # up (the gpu_tasks worker polls), failing
    stub_providers.primary.then("rate_limit", retry_after="7")
    stub_providers.secondary.then("rate_limit", retry_after="7")
    project_id = stub_docs.create_project()
    response = stub_docs.submit(project_id, "file_summary", "src/cart.ts", TYPESCRIPT)
    job_id = response.json()["job_id"]

    async def retry_interval() -> float:
        client = await connect_temporal(stub_docs_stack.settings, lazy=False)
        handle = client.get_workflow_handle(doc_workflow_id(uuid.UUID(job_id)))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            description = await handle.describe()
            for pending in description.raw_description.pending_activities:
                if pending.activity_type.name == GENERATE_DOC_TEXT and pending.attempt >= 2:
                    failure = pending.last_failure.application_failure_info
                    assert failure.next_retry_delay.ToTimedelta().total_seconds() == 7
                    return float(pending.current_retry_interval.ToTimedelta().total_seconds())
            await asyncio.sleep(0.05)
        raise AssertionError("the model call was never retried")

    assert asyncio.run(retry_interval()) == pytest.approx(7, abs=0.01)  # not 2 s
    job = stub_docs.wait_for(job_id)
    assert job["status"] == "completed", job
    assert job["result"]["provider"] == "openai"


def test_an_answer_of_megabytes_is_read_within_bounds(
    stub_docs: DocsApi, stub_providers: StubProviders
) -> None:
    """A provider ignoring `max_tokens` answers 3 MB: the first MAX_ANSWER_CHARS are read and
    kept, so that the answer never swells a Temporal payload past its 2 MB limit."""
    stub_providers.local.behave(text="Keeps the stock of the shop. " * 100_000)

    job = stub_docs.run("file_summary", "app/inventory.py", PYTHON)

    assert job["status"] == "completed", job
    assert "Keeps the stock of the shop." in job["result"]["patched_content"]
    assert len(job["result"]["patched_content"]) < len(PYTHON) + 1000


def test_cancelling_a_job_stops_the_model_call_in_flight(
    stub_docs: DocsApi, stub_providers: StubProviders
) -> None:
    """The call on gpu_tasks heartbeats; the cancellation reaches it and closes its HTTP
    request, and nothing asks a provider afterwards. Every provider stalls: the stub stack's
    2 s request timeout may pass before the cancellation arrives on a loaded machine, and then
    the call is at the next provider, which must be closed just the same (the openai-only test
    below has no such race: its timeout is 60 s)."""
    every_stub(stub_providers, "stall", stall_s=60)
    stubs = (stub_providers.local, stub_providers.primary, stub_providers.secondary)
    project_id = stub_docs.create_project()
    job_id = stub_docs.submit(project_id, "file_summary", "app/inventory.py", PYTHON)
    job_id_value = job_id.json()["job_id"]
    wait_until(lambda: len(stub_providers.local.requests) == 1, 120, "the model call")

    cancelled = stub_docs.client.delete(
        f"/api/v1/docs/jobs/{job_id_value}", headers=stub_docs.headers
    )

    assert cancelled.status_code == 202, cancelled.text
    assert stub_docs.wait_for(job_id_value)["status"] == "cancelled"
    wait_until(
        lambda: all(stub.disconnects == len(stub.requests) for stub in stubs),
        30,
        "every request closed",
    )
    asked = [len(stub.requests) for stub in stubs]
    time.sleep(3)  # longer than the stub stack's request timeout: a new attempt would show
    assert [len(stub.requests) for stub in stubs] == asked
    every_stub(stub_providers, "answer")


# --- OpenAI only ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def openai_only_stack(
    make_settings: Callable[..., Settings],
    temporal_address: str,
    stub_providers: StubProviders,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DocsStack]:
    """No local model: the API sends model calls to cpu_tasks, whose worker asks OpenAI (the
    stubs) only. No gpu_tasks worker runs at all. Requests may take 60 s."""
    settings = make_settings(
        temporal_address=temporal_address,
        temporal_task_queue_prefix=f"docs-openai-{uuid.uuid4().hex[:8]}-",
        bundler_work_dir=tmp_path_factory.mktemp("docs-openai-bundler"),
        bundler_cache_dir=METRO_CACHE,
        base_url="http://testserver",
        local_ai_enabled=False,
        local_ai_base_url=stub_providers.local.base_url,
        openai_api_key="sk-primary-test",
        openai_base_url=stub_providers.primary.base_url,
        openai_secondary_api_key="sk-secondary-test",
        openai_secondary_base_url=stub_providers.secondary.base_url,
        ai_request_timeout_s=60.0,
    )
    with TestClient(create_app(settings)) as client:
        worker = ThreadWorker(settings, TaskQueue.CPU).start()
        try:
            yield DocsStack(settings, client, [worker])
        finally:
            worker.stop()


@pytest.fixture
def openai_only(
    openai_only_stack: DocsStack, stub_providers: StubProviders, redis_prefix: str
) -> DocsApi:
    stub_providers.reset()
    delete_redis_keys(redis_prefix + "ai:")
    return DocsApi(openai_only_stack.client, register_on(openai_only_stack.client))


def test_openai_only_mode_documents_on_cpu_tasks(
    openai_only: DocsApi, stub_providers: StubProviders
) -> None:
    stub_providers.primary.behave(text="Adds the item to the cart.")

    job = openai_only.run("function_doc", "src/cart.ts", TYPESCRIPT)

    assert job["status"] == "completed", job
    assert job["result"]["provider"] == "openai"
    assert job["result"]["edits"]
    assert stub_providers.primary.requests
    assert stub_providers.local.requests == []  # configured, but disabled


def test_openai_only_cancellation_closes_the_openai_request(
    openai_only: DocsApi, stub_providers: StubProviders
) -> None:
    """With a 60 s request timeout, only the cancellation can close the stalled request."""
    stub_providers.primary.behave("stall", stall_s=120)
    project_id = openai_only.create_project()
    response = openai_only.submit(project_id, "file_summary", "src/cart.ts", TYPESCRIPT)
    job_id = response.json()["job_id"]
    wait_until(lambda: len(stub_providers.primary.requests) == 1, 120, "the model call")

    cancelled = openai_only.client.delete(
        f"/api/v1/docs/jobs/{job_id}", headers=openai_only.headers
    )

    assert cancelled.status_code == 202, cancelled.text
    assert openai_only.wait_for(job_id)["status"] == "cancelled"
    wait_until(lambda: stub_providers.primary.disconnects == 1, 30, "the call closed")
    assert stub_providers.secondary.requests == []


# --- a project deleted under its job -----------------------------------------------------------


def test_a_project_deleted_while_its_job_runs(
    stub_docs: DocsApi, stub_docs_stack: DocsStack, stub_providers: StubProviders
) -> None:
    """The job ends (its workflow closes, failed as JOB_NOT_FOUND or cancelled) without
    retrying its bookkeeping, and nobody is told about a job in a project that is gone."""
    every_stub(stub_providers, "stall", stall_s=30)
    project_id = stub_docs.create_project()
    job_id = stub_docs.submit(project_id, "file_summary", "app/inventory.py", PYTHON)
    job_id_value = job_id.json()["job_id"]
    wait_until(lambda: len(stub_providers.local.requests) == 1, 120, "the model call")

    deleted = stub_docs.client.delete(f"/api/v1/projects/{project_id}", headers=stub_docs.headers)
    assert deleted.status_code == 204, deleted.text
    every_stub(stub_providers, "answer")

    async def closed() -> WorkflowExecutionStatus | None:
        client = await connect_temporal(stub_docs_stack.settings, lazy=False)
        handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(
            doc_workflow_id(uuid.UUID(job_id_value))
        )
        with suppress(WorkflowFailureError):
            await asyncio.wait_for(handle.result(), timeout=120)
        return (await handle.describe()).status

    status = asyncio.run(closed())
    assert status in (WorkflowExecutionStatus.FAILED, WorkflowExecutionStatus.CANCELED)
    assert stub_docs.job(job_id_value).status_code == 404
    events = history_events(stub_docs_stack.settings, doc_workflow_id(uuid.UUID(job_id_value)))
    activities = scheduled_activities(events)
    assert activities.count(RECORD_DOC_OUTCOME) <= 1
    assert NOTIFY_DOC_OUTCOME not in activities or status == WorkflowExecutionStatus.CANCELED
    notifications = stub_docs.client.get("/api/v1/notifications", headers=stub_docs.headers)
    assert [
        item
        for item in notifications.json()["items"]
        if item["payload"].get("job_id") == job_id_value
    ] == []


# --- INVALID_RESULT ------------------------------------------------------------------------------


def test_a_result_that_cannot_be_made_into_valid_edits_is_invalid_result(
    stub_docs: DocsApi, stub_docs_stack: DocsStack, stub_providers: StubProviders
) -> None:
    """The gate behind the reader: a rename to `using` (TypeScript's resource declaration,
    which the reader let through before it knew the word) breaks the file. Assembly on the
    real database refuses it as INVALID_RESULT, not retried, AI_ERROR for the client, and
    stores nothing."""
    every_stub(stub_providers, "answer", text="")
    project_id = stub_docs.create_project()
    response = stub_docs.submit(project_id, "variable_rename", "src/cart.ts", TYPESCRIPT)
    job_id = uuid.UUID(response.json()["job_id"])
    failed = stub_docs.wait_for(str(job_id))
    assert failed["status"] == "failed", failed
    tasks = plan_tasks(DocJobType.VARIABLE_RENAME, "typescript", TYPESCRIPT, file_path="a.ts")
    answer = GeneratedText(
        task_id=tasks[0].task_id,
        text="using - holds the resource",
        raw_text="using",
        provider="local",
        model="local",
        tokens_in=1,
        tokens_out=1,
        latency_ms=1,
    )
    request = AssembleInput(job_id=job_id, tasks=tasks, generated=[answer], duration_ms=1)

    async def assemble() -> BaseException | None:
        settings = stub_docs_stack.settings
        engine = create_engine(settings)
        try:
            activities = DocActivities(
                create_ai_engine(settings, None, None, []),  # type: ignore[arg-type]
                create_session_factory(engine),
                NotificationHub(None, settings.redis_key_prefix),
            )
            try:
                await ActivityEnvironment().run(activities.assemble_doc_job, request)
            except ApplicationError as error:
                return error
            return None
        finally:
            await engine.dispose()

    error = asyncio.run(assemble())

    assert isinstance(error, ApplicationError), error
    assert error.type == "INVALID_RESULT"
    assert error.non_retryable
    assert error.details[0]["code"] == "AI_ERROR"
    assert "could not be made into valid edits" in error.message
    assert "breaks the file" in error.message
    again = stub_docs.job(str(job_id)).json()
    assert again["status"] == "failed"
    assert again["result"] is None
