"""Cleanup against the real servers: deleting a project (its running workflows cancelled, its
objects removed, sources that another project shares kept), and retention (builds and sources
past it expire, objects that no row names are swept, the schedule is created idempotently)."""

from __future__ import annotations

import asyncio
import io
import uuid
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from temporalio.client import Client, ScheduleDescription, ScheduleIntervalSpec

from api.app import create_app
from cli.processes import free_port
from contracts.cleanup import (
    RETENTION_WORKFLOW,
    CleanupSummary,
    RetentionSummary,
    project_cleanup_workflow_id,
)
from contracts.previews import preview_workflow_id
from core.config import Settings
from core.storage import Storage
from core.temporal import connect_temporal
from services.previews import layout
from services.previews.retention import ensure_retention_schedule, retention_schedule_id
from tests.fixtures.api import register_on
from tests.fixtures.previews import PreviewApi, alive, bundler_work_dir, slow_app, unique_app
from tests.fixtures.workers import ThreadWorker
from tests.helpers import assert_error, libpq_url


def text_zip(marker: str | None = None) -> bytes:
    """A small valid app as a zip (its sources are unique unless `marker` is shared)."""
    files = {
        path: content for path, content in unique_app(marker).items() if isinstance(content, str)
    }
    files["App.js"] = files["App.js"].replace("source={require('./assets/logo.png')}", "")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, content in sorted(files.items()):
            archive.writestr(zipfile.ZipInfo(path, (2020, 1, 1, 0, 0, 0)), content)
    return buffer.getvalue()


def built(api: PreviewApi, project_id: str, files: dict[str, Any]) -> str:
    """The id of a ready build of `files` (waiting past `wait=60` when Metro is slow)."""
    response = api.build(project_id, files)
    assert response.status_code in (200, 202), response.text
    build_id = str(response.json()["build_id"])
    if response.status_code == 202:
        status = api.wait_for(build_id, timeout_s=600)
        assert status["status"] == "ready", status
    return build_id


def with_temporal(settings: Settings, work: Callable[[Client], Any]) -> Any:
    async def run() -> Any:
        return await work(await connect_temporal(settings, lazy=False))

    return asyncio.run(run())


def cleanup_result(settings: Settings, project_id: str) -> CleanupSummary:
    async def read(client: Client) -> CleanupSummary:
        handle = client.get_workflow_handle(
            project_cleanup_workflow_id(uuid.UUID(project_id)), result_type=CleanupSummary
        )
        return CleanupSummary.model_validate(await handle.result())

    result: CleanupSummary = with_temporal(settings, read)
    return result


def query(database_url: str, statement: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(libpq_url(database_url), autocommit=True) as connection:
        cursor = connection.execute(statement.encode(), args)
        return cursor.fetchall() if cursor.description is not None else []


def keys_under(storage: Storage, prefix: str) -> list[str]:
    return [item.key for item in storage.list_objects(prefix)]


# --- deleting a project ------------------------------------------------------------------------


@pytest.mark.usefixtures("preview_worker")
def test_deleting_a_project_removes_its_rows_and_objects_but_not_shared_sources(
    preview_api: PreviewApi,
    other_api: PreviewApi,
    storage: Storage,
    preview_settings: Settings,
    database_url: str,
) -> None:
    project_id = preview_api.create_project()
    build_id = built(preview_api, project_id, unique_app())
    shared_marker = uuid.uuid4().hex
    own = preview_api.upload_sources(project_id, text_zip()).json()
    shared = preview_api.upload_sources(project_id, text_zip(shared_marker)).json()
    # Somebody else uploaded exactly the same files: one object, two rows.
    other_project = other_api.create_project()
    theirs = other_api.upload_sources(other_project, text_zip(shared_marker)).json()
    assert theirs["source_hash"] == shared["source_hash"]
    share = preview_api.client.post(
        f"/api/v1/preview/builds/{build_id}/share",
        json={"username": other_api.account.username},
        headers=preview_api.headers,
    )
    assert share.status_code == 201, share.text
    build_hash = query(
        database_url, "SELECT source_hash FROM preview_logs WHERE build_id = %s", build_id
    )[0][0]
    assert keys_under(storage, layout.build_prefix(build_id))

    deleted = preview_api.client.delete(
        f"/api/v1/projects/{project_id}", headers=preview_api.headers
    )

    assert deleted.status_code == 204, deleted.text
    # The rows went with the project, at once.
    for statement in (
        "SELECT 1 FROM preview_logs WHERE project_id = %s",
        "SELECT 1 FROM preview_sources WHERE project_id = %s",
        "SELECT 1 FROM ai_requests WHERE project_id = %s",
    ):
        assert query(database_url, statement, project_id) == []
    assert query(database_url, "SELECT 1 FROM preview_shares") == []
    assert_error(preview_api.status(build_id), 404, "NOT_FOUND")
    assert_error(other_api.status(build_id), 404, "NOT_FOUND")
    # The objects, once the cleanup workflow is done.
    summary = cleanup_result(preview_settings, project_id)
    assert summary.builds_deleted == 1
    assert (summary.sources_deleted, summary.sources_kept) == (2, 1)
    assert keys_under(storage, layout.build_prefix(build_id)) == []
    assert not storage.exists(layout.source_key(own["source_hash"]))
    assert not storage.exists(layout.source_key(build_hash))
    # The other project's copy of the shared sources is untouched and still builds.
    assert storage.exists(layout.source_key(shared["source_hash"]))
    rebuilt = other_api.build(other_project, source_id=theirs["source_id"], wait=0)
    assert rebuilt.status_code == 202, rebuilt.text
    assert other_api.wait_for(rebuilt.json()["build_id"], timeout_s=600)["status"] == "ready"


@pytest.fixture
def bundler_pids(preview_worker: ThreadWorker) -> list[int]:
    """The session worker's bundler processes, running (started if needed)."""
    assert preview_worker.running is not None
    pool = preview_worker.running.bundler
    assert pool is not None
    asyncio.run_coroutine_threadsafe(pool.start(), preview_worker.loop).result(timeout=120)
    return pool.pids


def test_deleting_a_project_while_its_build_runs_cancels_the_build(
    preview_api: PreviewApi,
    bundler_pids: list[int],
    storage: Storage,
    preview_settings: Settings,
    database_url: str,
) -> None:
    project_id = preview_api.create_project()
    accepted = preview_api.build(project_id, slow_app(), environment="development", wait=0)
    build_id = accepted.json()["build_id"]
    preview_api.wait_for(build_id, ("bundling",))

    deleted = preview_api.client.delete(
        f"/api/v1/projects/{project_id}", headers=preview_api.headers
    )

    assert deleted.status_code == 204, deleted.text
    summary = cleanup_result(preview_settings, project_id)
    assert summary.workflows_stopped == 1
    status = with_temporal(
        preview_settings,
        lambda client: client.get_workflow_handle(preview_workflow_id(build_id)).describe(),
    ).status
    assert status.name == "CANCELED"
    # Metro was stopped (its process group killed), nothing of the build is stored, and the
    # workflow's bookkeeping found no row to write or user to tell.
    for pid in bundler_pids:
        assert not alive(pid)
    assert keys_under(storage, layout.build_prefix(build_id)) == []
    assert query(database_url, "SELECT 1 FROM preview_logs WHERE build_id = %s", build_id) == []
    # The next build gets a fresh bundler.
    other_project = preview_api.create_project()
    built(preview_api, other_project, unique_app())


def test_deleting_a_project_with_the_job_queue_down_deletes_nothing(
    make_preview_settings: Callable[..., Settings], storage: Storage, database_url: str
) -> None:
    settings = make_preview_settings(temporal_address=f"127.0.0.1:{free_port()}")
    with TestClient(create_app(settings)) as client:
        api = PreviewApi(client, register_on(client))
        project_id = api.create_project()
        uploaded = api.upload_sources(project_id, text_zip())
        assert uploaded.status_code == 201, uploaded.text

        response = client.delete(f"/api/v1/projects/{project_id}", headers=api.headers)

        assert_error(response, 503, "SERVICE_UNAVAILABLE")
        assert client.get(f"/api/v1/projects/{project_id}", headers=api.headers).status_code == 200
    assert query(database_url, "SELECT 1 FROM preview_sources WHERE project_id = %s", project_id)
    assert storage.exists(layout.source_key(uploaded.json()["source_hash"]))


def test_deleting_an_empty_project_needs_no_job_queue(
    make_preview_settings: Callable[..., Settings],
) -> None:
    settings = make_preview_settings(temporal_address=f"127.0.0.1:{free_port()}")
    with TestClient(create_app(settings)) as client:
        api = PreviewApi(client, register_on(client))
        project_id = api.create_project()
        response = client.delete(f"/api/v1/projects/{project_id}", headers=api.headers)
        assert response.status_code == 204, response.text
        assert_error(
            client.get(f"/api/v1/projects/{project_id}", headers=api.headers), 404, "NOT_FOUND"
        )


# --- retention ---------------------------------------------------------------------------------


@pytest.fixture
def retention_settings(
    make_preview_settings: Callable[..., Settings], tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    """A worker of its own (own task queue) that expires after a day and sweeps orphans at
    once."""
    return make_preview_settings(
        temporal_task_queue_prefix=f"ret-{uuid.uuid4().hex[:8]}-",
        bundler_work_dir=bundler_work_dir(tmp_path_factory),
        build_retention_days=1,
        source_retention_days=1,
        orphan_grace_s=0,
    )


@pytest.fixture
def retention_worker(retention_settings: Settings) -> Iterator[ThreadWorker]:
    worker = ThreadWorker(retention_settings).start()
    try:
        yield worker
    finally:
        worker.stop()


def run_retention(settings: Settings) -> RetentionSummary:
    async def run(client: Client) -> RetentionSummary:
        result = await client.execute_workflow(
            RETENTION_WORKFLOW,
            id=f"retention-test-{uuid.uuid4().hex[:8]}",
            task_queue=settings.task_queue("cpu_tasks"),
            result_type=RetentionSummary,
        )
        return RetentionSummary.model_validate(result)

    result: RetentionSummary = with_temporal(settings, run)
    return result


@pytest.mark.usefixtures("preview_worker")
def test_builds_and_sources_past_their_retention_expire(
    retention_settings: Settings,
    retention_worker: ThreadWorker,
    preview_api: PreviewApi,
    storage: Storage,
    database_url: str,
) -> None:
    project_id = preview_api.create_project()
    old_files, new_files = unique_app(), unique_app()
    old_build = built(preview_api, project_id, old_files)
    new_build = built(preview_api, project_id, new_files)
    old_source = preview_api.upload_sources(project_id, text_zip()).json()
    new_source = preview_api.upload_sources(project_id, text_zip()).json()
    # Forty days pass for one build and one source.
    query(
        database_url,
        "UPDATE preview_logs SET requested_at = now() - interval '40 days', "
        "completed_at = now() - interval '40 days' WHERE build_id = %s",
        old_build,
    )
    query(
        database_url,
        "UPDATE preview_sources SET created_at = now() - interval '40 days' WHERE id = %s",
        old_source["source_id"],
    )
    # And objects that no row names: a deleted project's build, an upload never recorded.
    orphan_build = uuid.uuid4().hex
    storage.upload_bytes(layout.build_key(orphan_build, layout.BUNDLE), b"orphan")
    orphan_source = uuid.uuid4().hex * 2
    storage.upload_bytes(layout.source_key(orphan_source), b"orphan")

    summary = run_retention(retention_settings)

    assert summary.builds_expired >= 1
    assert summary.sources_expired >= 1
    assert summary.orphan_builds_deleted >= 1
    assert summary.orphan_sources_deleted >= 1
    assert query(database_url, "SELECT 1 FROM preview_logs WHERE build_id = %s", old_build) == []
    assert keys_under(storage, layout.build_prefix(old_build)) == []
    assert (
        query(database_url, "SELECT 1 FROM preview_sources WHERE id = %s", old_source["source_id"])
        == []
    )
    assert not storage.exists(layout.source_key(old_source["source_hash"]))
    assert keys_under(storage, layout.build_prefix(orphan_build)) == []
    assert not storage.exists(layout.source_key(orphan_source))
    # What is newer than the retention stays.
    assert preview_api.status(new_build).json()["status"] == "ready"
    assert storage.exists(layout.build_key(new_build, layout.METADATA))
    assert storage.exists(layout.source_key(new_source["source_hash"]))
    # Afterwards: an expired upload answers a clear error; the same files sent again rebuild.
    gone = preview_api.build(project_id, source_id=old_source["source_id"])
    assert_error(gone, 404, "NOT_FOUND")
    assert built(preview_api, project_id, old_files) == old_build
    assert storage.exists(layout.build_key(old_build, layout.METADATA))


def test_the_retention_schedule_is_created_once_and_updated(
    make_preview_settings: Callable[..., Settings],
) -> None:
    prefix = f"sched-{uuid.uuid4().hex[:8]}-"
    first = make_preview_settings(temporal_task_queue_prefix=prefix)
    second = make_preview_settings(
        temporal_task_queue_prefix=prefix, retention_sweep_interval_s=600
    )

    async def check(client: Client) -> ScheduleDescription:
        await ensure_retention_schedule(client, first)
        await ensure_retention_schedule(client, first)  # a second worker starting
        await ensure_retention_schedule(client, second)  # restarted with a new interval
        handle = client.get_schedule_handle(retention_schedule_id(first))
        description = await handle.describe()
        await handle.delete()
        return description

    description = with_temporal(first, check)
    intervals = description.schedule.spec.intervals
    assert intervals == [ScheduleIntervalSpec(every=intervals[0].every)]
    assert intervals[0].every.total_seconds() == 600
    assert description.schedule.action.workflow == RETENTION_WORKFLOW
    assert description.schedule.action.task_queue == first.task_queue("cpu_tasks")


def test_a_starting_cpu_worker_creates_the_schedule_unless_told_not_to(
    make_preview_settings: Callable[..., Settings], tmp_path_factory: pytest.TempPathFactory
) -> None:
    scheduling, not_scheduling = (
        make_preview_settings(
            temporal_task_queue_prefix=f"sched-{uuid.uuid4().hex[:8]}-",
            bundler_work_dir=bundler_work_dir(tmp_path_factory, name),
            retention_schedule=enabled,
        )
        for name, enabled in (("on", True), ("off", False))
    )
    for settings in (scheduling, not_scheduling):
        ThreadWorker(settings).start().stop()

    async def schedules(client: Client) -> list[str]:
        found = [schedule.id async for schedule in await client.list_schedules()]
        for settings in (scheduling, not_scheduling):
            if retention_schedule_id(settings) in found:
                await client.get_schedule_handle(retention_schedule_id(settings)).delete()
        return found

    found = with_temporal(scheduling, schedules)
    assert retention_schedule_id(scheduling) in found
    assert retention_schedule_id(not_scheduling) not in found
