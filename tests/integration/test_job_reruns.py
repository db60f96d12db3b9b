"""Idempotent jobs, for both kinds (services/jobs/lifecycle.py): an identical request for a job
that succeeded answers its stored result without a new workflow run; one for a job that failed
or was cancelled runs it again, as a new run of the same workflow id. What Temporal holds is
read from the dev server itself."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError

from api.app import create_app
from contracts.docs import doc_workflow_id
from contracts.previews import preview_workflow_id
from core.config import Settings
from core.temporal import connect_temporal
from tests.fixtures.api import register_on
from tests.fixtures.docs import DocsApi, DocsStack, StubProviders
from tests.fixtures.previews import PreviewApi, bundler_work_dir, unique_app
from tests.fixtures.workers import ThreadWorker

PYTHON = (Path(__file__).parents[1] / "data" / "docs" / "inventory.py").read_text()


def latest_run(settings: Settings, workflow_id: str) -> tuple[str, WorkflowExecutionStatus]:
    """The latest run of the workflow id once it has closed: (run id, status). A run records
    its outcome on the job's row a step before it closes, so a test that saw the outcome
    through the API may still find it running for a moment."""

    async def read() -> tuple[str, WorkflowExecutionStatus]:
        client = await connect_temporal(settings, lazy=False)
        handle = client.get_workflow_handle(workflow_id)
        with contextlib.suppress(WorkflowFailureError):
            await handle.result()
        description = await handle.describe()
        assert description.status is not None
        return description.run_id, description.status

    return asyncio.run(read())


def run_status(settings: Settings, workflow_id: str, run_id: str) -> WorkflowExecutionStatus:
    async def read() -> WorkflowExecutionStatus:
        client = await connect_temporal(settings, lazy=False)
        description = await client.get_workflow_handle(workflow_id, run_id=run_id).describe()
        assert description.status is not None
        return description.status

    return asyncio.run(read())


@pytest.mark.timeout(600)
def test_a_failed_build_runs_again_and_a_ready_one_is_answered_without_a_run(
    make_preview_settings: Callable[..., Settings],
    preview_settings: Settings,
    preview_client: TestClient,
    preview_worker: ThreadWorker,
) -> None:
    """The build fails (the API it was asked through allows Metro 100 ms); the same build asked
    through an API that allows the usual time runs again, as a new run, and gets ready; asked
    once more, it is answered from storage: no new run, no Metro."""
    api = PreviewApi(preview_client, register_on(preview_client))
    project_id = api.create_project()
    files = unique_app()
    with TestClient(create_app(make_preview_settings(preview_max_timeout_ms=100))) as hurried:
        failed = PreviewApi(hurried, api.account).build(project_id, files, wait=60)
    assert failed.status_code == 422, failed.text
    error = failed.json()["error"]
    assert error["code"] == "PREVIEW_TIMEOUT"
    build_id = error["details"]["build_id"]
    workflow_id = preview_workflow_id(build_id)
    failed_run, failed_status = latest_run(preview_settings, workflow_id)
    assert failed_status == WorkflowExecutionStatus.FAILED

    again = api.build(project_id, files, wait=0)
    assert again.status_code == 202, again.text
    assert again.json()["build_id"] == build_id
    assert again.json()["status"] == "queued"  # run anew, its last error forgotten
    ready = api.wait_for(build_id, timeout_s=240)
    assert ready["status"] == "ready", ready
    assert ready["error"] is None
    ready_run, ready_status = latest_run(preview_settings, workflow_id)
    assert ready_run != failed_run
    assert ready_status == WorkflowExecutionStatus.COMPLETED
    assert run_status(preview_settings, workflow_id, failed_run) == WorkflowExecutionStatus.FAILED
    metro_runs = preview_worker.bundler_builds

    answered = api.build(project_id, files, wait=0)
    assert answered.status_code == 200, answered.text  # the stored result, at once
    assert answered.json()["build_id"] == build_id
    assert latest_run(preview_settings, workflow_id) == (ready_run, ready_status)
    assert preview_worker.bundler_builds == metro_runs


@pytest.mark.timeout(900)
def test_a_cancelled_build_runs_again(
    make_preview_settings: Callable[..., Settings], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Cancelled while queued (no worker polls its task queue yet), the build is cancelled once
    a worker starts; asked again, it runs as a new run and gets ready."""
    settings = make_preview_settings(
        temporal_task_queue_prefix=f"rerun-{uuid.uuid4().hex[:8]}-",
        bundler_work_dir=bundler_work_dir(tmp_path_factory),
        # A worker of its own starts its Metro cold: room for a busy machine.
        preview_max_timeout_ms=600_000,
    )
    with TestClient(create_app(settings)) as client:
        api = PreviewApi(client, register_on(client))
        project_id = api.create_project()
        files = unique_app()
        accepted = api.build(project_id, files, wait=0)
        assert accepted.status_code == 202, accepted.text
        build_id = accepted.json()["build_id"]
        workflow_id = preview_workflow_id(build_id)
        cancelling = client.delete(f"/api/v1/preview/builds/{build_id}", headers=api.headers)
        assert cancelling.status_code == 202, cancelling.text

        worker = ThreadWorker(settings).start()
        try:
            cancelled = api.wait_for(build_id)
            assert cancelled["status"] == "cancelled", cancelled
            cancelled_run, cancelled_status = latest_run(settings, workflow_id)
            assert cancelled_status == WorkflowExecutionStatus.CANCELED

            again = api.build(project_id, files, wait=0)
            assert again.status_code == 202, again.text
            assert again.json() == {**accepted.json(), "status": "queued"}
            ready = api.wait_for(build_id, timeout_s=600)
            assert ready["status"] == "ready", ready
            # The row says ready a step before the run closes: read the run while the worker
            # that closes it still runs.
            rerun, rerun_status = latest_run(settings, workflow_id)
        finally:
            worker.stop()
    assert rerun != cancelled_run
    assert rerun_status == WorkflowExecutionStatus.COMPLETED
    assert run_status(settings, workflow_id, cancelled_run) == WorkflowExecutionStatus.CANCELED


def test_a_cancelled_documentation_job_runs_again_and_a_completed_one_is_answered_without_a_run(
    stub_docs: DocsApi, stub_providers: StubProviders, stub_docs_settings: Settings
) -> None:
    for stub in (stub_providers.local, stub_providers.primary, stub_providers.secondary):
        stub.behave("stall", stall_s=30)
    project_id = stub_docs.create_project()
    first = stub_docs.submit(project_id, "file_summary", "app/inventory.py", PYTHON)
    job_id = first.json()["job_id"]
    workflow_id = doc_workflow_id(uuid.UUID(job_id))
    stub_docs.wait_for(job_id, ("running",))
    cancelling = stub_docs.client.delete(f"/api/v1/docs/jobs/{job_id}", headers=stub_docs.headers)
    assert cancelling.status_code == 202, cancelling.text
    assert stub_docs.wait_for(job_id)["status"] == "cancelled"
    cancelled_run, cancelled_status = latest_run(stub_docs_settings, workflow_id)
    assert cancelled_status == WorkflowExecutionStatus.CANCELED

    stub_providers.reset()
    again = stub_docs.submit(project_id, "file_summary", "app/inventory.py", PYTHON)
    assert again.status_code == 202, again.text
    assert again.json() == {**first.json(), "status": "queued"}
    completed = stub_docs.wait_for(job_id)
    assert completed["status"] == "completed", completed
    completed_run, completed_status = latest_run(stub_docs_settings, workflow_id)
    assert completed_run != cancelled_run
    assert completed_status == WorkflowExecutionStatus.COMPLETED
    calls = sum(
        len(stub.requests)
        for stub in (stub_providers.local, stub_providers.primary, stub_providers.secondary)
    )

    answered = stub_docs.submit(project_id, "file_summary", "app/inventory.py", PYTHON)
    assert answered.status_code == 202, answered.text
    assert answered.json() == {**first.json(), "status": "completed"}
    assert latest_run(stub_docs_settings, workflow_id) == (completed_run, completed_status)
    assert calls == sum(
        len(stub.requests)
        for stub in (stub_providers.local, stub_providers.primary, stub_providers.secondary)
    )


@pytest.fixture
def stub_docs_settings(stub_docs_stack: DocsStack) -> Settings:
    return stub_docs_stack.settings
