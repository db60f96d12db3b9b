"""Preview builds when things go wrong: timeouts, cancellation, storage outages, a worker
killed mid-build. All against the real servers (see test_preview.py)."""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import sys
import uuid
import zipfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from temporalio.client import Client

from api.app import create_app
from cli.processes import ManagedProcess, free_port, processes_mentioning
from contracts.previews import preview_workflow_id as workflow_id
from core.config import Settings
from core.temporal import connect_temporal
from tests.fixtures.api import register_on
from tests.fixtures.previews import (
    PreviewApi,
    alive,
    bundler_work_dir,
    settings_env,
    slow_app,
    unique_app,
    wait_until,
)
from tests.fixtures.storage import SeaweedFS
from tests.fixtures.workers import ThreadWorker


def zip_of(files: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, content in files.items():
            if isinstance(content, str):
                archive.writestr(path, content)
    return buffer.getvalue()


def text_only_app() -> dict[str, Any]:
    """The example app without its image (so that it fits a plain zip of text files)."""
    files = {path: content for path, content in unique_app().items() if isinstance(content, str)}
    files["App.js"] = files["App.js"].replace("source={require('./assets/logo.png')}", "")
    return files


def with_temporal(settings: Settings, work: Callable[[Client], Awaitable[int]]) -> int:
    async def run() -> int:
        return await work(await connect_temporal(settings, lazy=False))

    return asyncio.run(run())


def pending_attempt(settings: Settings, build_id: str) -> int:
    """The attempt number of the build activity now pending (0 when none is)."""

    async def read(client: Client) -> int:
        description = await client.get_workflow_handle(workflow_id(build_id)).describe()
        pending = description.raw_description.pending_activities
        return pending[0].attempt if pending else 0

    return with_temporal(settings, read)


def activity_attempts(settings: Settings, build_id: str) -> int:
    """How many attempts the build activity took, from the workflow's history."""

    async def read(client: Client) -> int:
        attempts = 0
        handle = client.get_workflow_handle(workflow_id(build_id))
        async for event in handle.fetch_history_events():
            if event.HasField("activity_task_started_event_attributes"):
                attempts = max(attempts, event.activity_task_started_event_attributes.attempt)
        return attempts

    return with_temporal(settings, read)


@pytest.fixture
def bundler_pids(preview_worker: ThreadWorker) -> list[int]:
    """The worker's bundler processes, running (started if needed)."""
    assert preview_worker.running is not None
    pool = preview_worker.running.bundler
    assert pool is not None
    future = asyncio.run_coroutine_threadsafe(pool.start(), preview_worker.loop)
    future.result(timeout=120)
    return pool.pids


@pytest.mark.usefixtures("preview_worker")
def test_tiny_timeout_fails_the_build_and_kills_the_bundler(
    make_preview_settings: Callable[..., Settings], bundler_pids: list[int]
) -> None:
    settings = make_preview_settings(preview_max_timeout_ms=300)
    with TestClient(create_app(settings)) as client:
        api = PreviewApi(client, register_on(client))

        response = api.build(api.create_project(), slow_app())

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "PREVIEW_TIMEOUT"
    assert error["details"]["timeout_ms"] == 300
    assert "timed out" in error["message"]
    for pid in bundler_pids:
        assert not alive(pid)
    assert processes_mentioning(str(settings.bundler_work_dir)) == []
    assert activity_attempts(settings, error["details"]["build_id"]) == 1  # not retried


@pytest.mark.usefixtures("preview_worker")
def test_cancel_stops_the_bundler(preview_api: PreviewApi, bundler_pids: list[int]) -> None:
    project_id = preview_api.create_project()
    accepted = preview_api.build(project_id, slow_app(), environment="development", wait=0)
    build_id = accepted.json()["build_id"]
    preview_api.wait_for(build_id, ("bundling",))

    cancelled = preview_api.client.delete(
        f"/api/v1/preview/builds/{build_id}", headers=preview_api.headers
    )

    assert cancelled.status_code == 202, cancelled.text
    status = preview_api.wait_for(build_id)
    assert status["status"] == "cancelled", status
    for pid in bundler_pids:
        assert not alive(pid)
    again = preview_api.client.delete(
        f"/api/v1/preview/builds/{build_id}", headers=preview_api.headers
    )
    assert again.status_code == 409
    # Asking again builds it again.
    assert preview_api.build(project_id, unique_app()).status_code == 200


@pytest.mark.usefixtures("preview_worker")
def test_storage_down_is_retried_then_reported(
    preview_api: PreviewApi, seaweedfs: SeaweedFS, preview_settings: Settings
) -> None:
    project_id = preview_api.create_project()
    uploaded = preview_api.upload_sources(project_id, zip_of(text_only_app()))
    assert uploaded.status_code == 201, uploaded.text

    with seaweedfs.stopped():
        response = preview_api.build(project_id, source_id=uploaded.json()["source_id"])

    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "STORAGE_ERROR"
    assert "Storage could not download" in error["message"]
    assert_names_nothing_internal(response.text, seaweedfs)
    assert activity_attempts(preview_settings, error["details"]["build_id"]) == 5


def assert_names_nothing_internal(body: str, seaweedfs: SeaweedFS, *more: str) -> None:
    """No storage endpoint, bucket or secret, no path of this machine, no stack frame."""
    host = seaweedfs.endpoint.removeprefix("http://")
    for internal in (host, seaweedfs.bucket, seaweedfs.secret_key, *more):
        assert internal not in body, (internal, body)
    roots = "|".join(re.escape(entry.name) for entry in Path("/").iterdir())
    assert re.findall(rf"(?<![\w.:/-])/(?:{roots})/[\w.@+-]+", body) == [], body
    assert not re.search(r"(?:^|\\n)\s*at\s", body), body


@pytest.mark.parametrize("failure", ["wrong-secret", "unreachable"])
def test_storage_failure_on_source_upload_names_no_endpoint_or_bucket(
    make_preview_settings: Callable[..., Settings], seaweedfs: SeaweedFS, failure: str
) -> None:
    closed = f"127.0.0.1:{free_port()}"
    overrides: dict[str, Any] = (
        {"r2_secret_key": SecretStr("wrong-secret-key-0123456789")}
        if failure == "wrong-secret"
        else {"r2_endpoint": f"http://{closed}"}
    )
    with TestClient(create_app(make_preview_settings(**overrides))) as client:
        api = PreviewApi(client, register_on(client))

        response = api.upload_sources(api.create_project(), zip_of(text_only_app()))

    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "STORAGE_ERROR"
    assert error["details"]["operation"] in ("check", "upload")  # exists? then upload
    assert_names_nothing_internal(response.text, seaweedfs, closed, "wrong-secret-key")


@pytest.mark.usefixtures("preview_worker")
@pytest.mark.parametrize(
    "importer",
    ["import x from 'no-such-package';", "import x from '../../../../../../etc/hostname';"],
)
def test_metro_resolution_error_names_no_server_path(
    preview_api: PreviewApi, seaweedfs: SeaweedFS, importer: str
) -> None:
    files = {"index.js": f"{importer}\nconsole.log(x, '{uuid.uuid4().hex}');\n"}

    response = preview_api.build(preview_api.create_project(), files)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "PREVIEW_BUILD_FAILED"
    assert error["details"]["type"] == "resolution"
    assert error["details"]["file"] == "index.js"
    assert error["details"]["line"] == 1
    assert "Unable to resolve module" in error["details"]["message"]
    assert_names_nothing_internal(response.text, seaweedfs)


@pytest.mark.usefixtures("preview_worker")
def test_storage_back_during_the_retries_and_the_build_succeeds(
    preview_api: PreviewApi, seaweedfs: SeaweedFS, preview_settings: Settings
) -> None:
    project_id = preview_api.create_project()
    source_id = preview_api.upload_sources(project_id, zip_of(text_only_app())).json()["source_id"]

    with seaweedfs.stopped():
        accepted = preview_api.build(project_id, source_id=source_id, wait=0)
        assert accepted.status_code == 202, accepted.text
        build_id = accepted.json()["build_id"]
        wait_until(
            lambda: pending_attempt(preview_settings, build_id) >= 2,
            30,
            "the build activity to be retried",
        )

    status = preview_api.wait_for(build_id)
    assert status["status"] == "ready", status
    assert activity_attempts(preview_settings, build_id) >= 2


@pytest.fixture
def own_queue_settings(
    make_preview_settings: Callable[..., Settings],
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Settings:
    """Settings whose task queue no other worker of the session polls."""
    return make_preview_settings(
        temporal_task_queue_prefix=f"kill-{uuid.uuid4().hex[:8]}-",
        bundler_work_dir=bundler_work_dir(tmp_path_factory),
        log_dir=tmp_path / "logs",
    )


@pytest.fixture
def process_worker(own_queue_settings: Settings, tmp_path: Path) -> Iterator[ManagedProcess]:
    """`hivesync worker` as a real process."""
    log_file = tmp_path / "worker.out"
    worker = ManagedProcess(
        "worker",
        [sys.executable, "-m", "cli", "worker", "--queue", "cpu_tasks"],
        env=settings_env(own_queue_settings),
        log_file=log_file,
    ).start()
    try:
        wait_until(
            lambda: log_file.exists() and "worker started" in log_file.read_text(),
            120,
            "the worker process to start",
        )
        yield worker
    finally:
        worker.stop()


def test_worker_killed_while_bundling_another_finishes_the_build(
    own_queue_settings: Settings, process_worker: ManagedProcess
) -> None:
    assert process_worker.pid is not None
    with TestClient(create_app(own_queue_settings)) as client:
        api = PreviewApi(client, register_on(client))
        accepted = api.build(api.create_project(), slow_app(), environment="development", wait=0)
        build_id = accepted.json()["build_id"]
        api.wait_for(build_id, ("bundling",))
        bundlers = [
            pid for pid in processes_mentioning("server.js") if _parent(pid) == process_worker.pid
        ]
        assert len(bundlers) == 1

        os.kill(process_worker.pid, signal.SIGKILL)

        wait_until(lambda: not alive(bundlers[0]), 10, "the orphaned bundler to exit")
        replacement = ThreadWorker(own_queue_settings).start()
        try:
            status = api.wait_for(build_id, timeout_s=120)
        finally:
            replacement.stop()

    assert status["status"] == "ready", status
    assert activity_attempts(own_queue_settings, build_id) == 2


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])
