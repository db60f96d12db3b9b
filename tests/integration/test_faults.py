"""Faults of the servers the service depends on, each caused for real: a Redis of the test's own
stopped while builds and documentation jobs end, a Temporal dev server (on a database file)
killed and started again in the middle of a build. The shared Redis and Postgres of the
machine are never touched."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from temporalio.client import Client

from api.app import create_app
from api.resources import Resources
from contracts.docs import doc_workflow_id
from contracts.previews import preview_workflow_id
from core.config import Settings
from services.notifications.schemas import NotificationRead, NotificationType
from services.notifications.service import NotificationService
from tests.fixtures.api import register_on
from tests.fixtures.openai_stub import StubOpenAI
from tests.fixtures.previews import PreviewApi, slow_app, unique_app
from tests.fixtures.servers import OwnTemporal, PrivateRedis
from tests.fixtures.workers import ThreadWorker

SOURCE = "def mean(values):\n    return sum(values) / len(values)\n"


def _workflow_result(address: str, workflow_id: str, timeout_s: float = 180) -> Any:
    """The result of a workflow's latest run, once it has ended (raises if it failed)."""

    async def read() -> Any:
        client = await Client.connect(address)
        handle = client.get_workflow_handle(workflow_id)
        return await asyncio.wait_for(handle.result(), timeout_s)

    return asyncio.run(read())


def _notifications(api: PreviewApi) -> list[dict[str, Any]]:
    response = api.client.get("/api/v1/notifications?limit=100", headers=api.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def _about(items: list[dict[str, Any]], kind: str, key: str, value: str) -> list[dict[str, Any]]:
    return [item for item in items if item["type"] == kind and item["payload"].get(key) == value]


def _notify(client: TestClient, user_id: str, payload: dict[str, Any]) -> NotificationRead:
    """A notification sent by the API's own service, on the API's event loop."""
    app: FastAPI = client.app  # type: ignore[assignment]
    resources: Resources = app.state.resources

    async def send() -> NotificationRead:
        async with resources.session_factory() as session:
            service = NotificationService(session, resources.notification_hub)
            return await service.notify(uuid.UUID(user_id), NotificationType.ERROR_ALERT, payload)

    assert client.portal is not None
    return client.portal.call(send)


def test_redis_down_jobs_complete_and_notify_once(
    make_preview_settings: Callable[..., Settings],
    private_redis: PrivateRedis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The worker's Redis is down while a build and a documentation job end: both complete,
    each is announced by exactly one stored notification (the publish fails, nothing is stored
    twice), and once Redis is back a socket replaying from the start gets each once."""
    provider = StubOpenAI("openai").start()
    common: dict[str, Any] = {
        "temporal_task_queue_prefix": f"faults-{uuid.uuid4().hex[:8]}-",
        "local_ai_enabled": False,
        "openai_api_key": "sk-test",
        "openai_base_url": provider.base_url,
    }
    # The API keeps the shared Redis (logins need it); the worker has the one that goes down.
    api_settings = make_preview_settings(**common)
    worker_settings = make_preview_settings(**common, redis_url=private_redis.url)
    worker = ThreadWorker(worker_settings).start()
    try:
        with TestClient(create_app(api_settings)) as client:
            api = PreviewApi(client, register_on(client))
            project_id = api.create_project()
            private_redis.stop()
            caplog.set_level(logging.WARNING, logger="services.notifications.service")

            built = api.build(project_id, unique_app(), wait=60)
            assert built.status_code in (200, 202), built.text
            build_id = built.json()["build_id"]
            submitted = client.post(
                "/api/v1/docs/jobs",
                headers=api.headers,
                json={
                    "project_id": project_id,
                    "job_type": "function_doc",
                    "file_path": "stats.py",
                    "content": SOURCE,
                },
            )
            assert submitted.status_code == 202, submitted.text
            job_id = submitted.json()["job_id"]

            # Each workflow ends only after its notify activity succeeded: no retry is left
            # that could store another notification.
            address = api_settings.temporal_address
            _workflow_result(address, preview_workflow_id(build_id))
            _workflow_result(address, doc_workflow_id(uuid.UUID(job_id)))
            assert api.wait_for(build_id)["status"] == "ready"
            job = client.get(f"/api/v1/docs/jobs/{job_id}", headers=api.headers).json()
            assert job["status"] == "completed", job
            assert "stored but not pushed" in caplog.text  # the publishes did fail

            items = _notifications(api)
            assert len(_about(items, "preview.ready", "build_id", build_id)) == 1
            assert len(_about(items, "docs.completed", "job_id", job_id)) == 1
            assert len(items) == 2

            private_redis.start()
            items = _notifications(api)
            assert len(items) == 2
            with client.websocket_connect(
                "/api/v1/notifications/ws?after=0", headers=api.headers
            ) as socket:
                replayed = [socket.receive_json(), socket.receive_json()]
                marker = _notify(client, api.account.id, {"marker": "after"})
                assert socket.receive_json()["id"] == marker.id  # no third copy came first
            assert [item["id"] for item in replayed] == [item["id"] for item in items]
    finally:
        worker.stop()
        provider.stop()


def test_temporal_restarted_mid_build_the_build_completes(
    make_preview_settings: Callable[..., Settings],
    own_temporal: OwnTemporal,
) -> None:
    """Killed (SIGKILL) while a build bundles, then started again on the same database file:
    the worker and the API reconnect by themselves and the build completes."""
    server = own_temporal.start()
    settings = make_preview_settings(
        temporal_address=own_temporal.address,
        temporal_task_queue_prefix=f"restart-{uuid.uuid4().hex[:8]}-",
    )
    worker = ThreadWorker(settings).start()
    try:
        with TestClient(create_app(settings)) as client:
            api = PreviewApi(client, register_on(client))
            project_id = api.create_project()
            accepted = api.build(project_id, slow_app(), wait=0)
            assert accepted.status_code == 202, accepted.text
            build_id = accepted.json()["build_id"]
            running = api.wait_for(build_id, ("bundling", "uploading", "ready"), timeout_s=120)
            assert running["status"] != "ready"  # Metro takes seconds over this app

            assert server.process is not None
            os.killpg(server.process.pid, signal.SIGKILL)  # no graceful shutdown
            server.process.wait(timeout=30)
            own_temporal.start()  # the same port, the same database file

            ready = _status_once_back(api, build_id, timeout_s=300)
            assert ready["status"] == "ready", ready
            bundle = httpx2.get(ready["url"], timeout=30)
            assert bundle.status_code == 200
            # The API's client reconnected too: a new build runs end to end.
            again = api.build(project_id, unique_app(), wait=60)
            assert again.status_code in (200, 202), again.text
            again_status = _status_once_back(api, again.json()["build_id"], timeout_s=180)
            assert again_status["status"] == "ready", again_status
    finally:
        worker.stop()


def _status_once_back(api: PreviewApi, build_id: str, timeout_s: float) -> dict[str, Any]:
    """The build's status once it has ended; answers other than 200 are tolerated while the
    service reconnects."""
    deadline = time.monotonic() + timeout_s
    last: httpx2.Response | None = None
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx2.HTTPError):
            last = api.status(build_id)
            if last.status_code == 200 and last.json()["status"] in ("ready", "failed"):
                body: dict[str, Any] = last.json()
                return body
        time.sleep(0.5)
    raise AssertionError(f"build {build_id} did not end: {last.text if last else None}")
