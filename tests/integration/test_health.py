"""Health routes against the real dependencies, and against dependencies that are down."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from cli.processes import free_port
from contracts.jobs import TaskQueue
from core.config import Settings
from tests.fixtures.storage import SeaweedFS
from tests.fixtures.workers import QueuePoller
from tests.helpers import assert_error


def test_process_health(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "latency_ms": None}


@pytest.mark.parametrize("dependency", ["db", "redis"])
def test_dependency_up(client: TestClient, dependency: str) -> None:
    response = client.get(f"/health/{dependency}")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["latency_ms"] > 0


def test_temporal_up(make_settings: Callable[..., Settings], temporal_address: str) -> None:
    with TestClient(create_app(make_settings(temporal_address=temporal_address))) as client:
        response = client.get("/health/temporal")
    assert response.status_code == 200, response.text
    assert response.json()["latency_ms"] > 0


def test_dependencies_down(make_settings: Callable[..., Settings]) -> None:
    closed = free_port()
    settings = make_settings(
        database_url=f"postgresql+psycopg://postgres@127.0.0.1:{closed}/nothing",
        redis_url=f"redis://127.0.0.1:{closed}/0",
        temporal_address=f"127.0.0.1:{closed}",
        r2_endpoint=f"http://127.0.0.1:{closed}",
        r2_access_key="access-key",
        r2_secret_key="secret-key-value",
        db_connect_timeout_s=1,
    )
    with TestClient(create_app(settings)) as client:
        assert client.get("/health").status_code == 200  # the process itself is fine
        for dependency, name in (
            ("db", "database"),
            ("redis", "redis"),
            ("temporal", "temporal"),
            ("storage", "storage"),
            ("queues", "temporal"),
        ):
            response = client.get(f"/health/{dependency}")
            error = assert_error(response, 503, "SERVICE_UNAVAILABLE")
            assert error["details"] == {"dependency": name}
            assert str(closed) not in error["message"]  # no connection strings leak
            assert "secret-key-value" not in response.text


def test_redis_health_without_redis(make_settings: Callable[..., Settings]) -> None:
    with TestClient(create_app(make_settings(rate_limit_backend="memory"))) as client:
        error = assert_error(client.get("/health/redis"), 503, "SERVICE_UNAVAILABLE")
    assert "in-process" in error["message"]


def test_requests_needing_a_dependency_that_is_down_get_503(
    make_settings: Callable[..., Settings], client: TestClient
) -> None:
    """Not a 500: the client may retry. Login fails closed without its rate limiter."""
    name = "downcheck"
    client.post(
        "/api/v1/auth/register",
        json={"email": f"{name}@example.com", "username": name, "password": "long enough pw"},
    )
    closed = free_port()
    no_redis = make_settings(redis_url=f"redis://127.0.0.1:{closed}/0")
    with TestClient(create_app(no_redis)) as down:
        response = down.post(
            "/api/v1/auth/login", json={"username": name, "password": "long enough pw"}
        )
    error = assert_error(response, 503, "SERVICE_UNAVAILABLE")
    assert error["details"]["dependency"] == "redis"
    assert response.headers["Retry-After"] == "5"

    no_database = make_settings(
        database_url=f"postgresql+psycopg://postgres@127.0.0.1:{closed}/x", db_connect_timeout_s=1
    )
    token = client.post(
        "/api/v1/auth/login", json={"username": name, "password": "long enough pw"}
    ).json()["access_token"]
    with TestClient(create_app(no_database)) as down:
        response = down.get("/api/v1/projects", headers={"Authorization": f"Bearer {token}"})
    assert assert_error(response, 503, "SERVICE_UNAVAILABLE")["details"]["dependency"] == (
        "database"
    )


def _storage(seaweedfs: SeaweedFS, **overrides: Any) -> dict[str, Any]:
    return {
        "r2_endpoint": seaweedfs.endpoint,
        "r2_access_key": seaweedfs.access_key,
        "r2_secret_key": seaweedfs.secret_key,
        "r2_bucket": seaweedfs.bucket,
        **overrides,
    }


def test_storage_up(make_settings: Callable[..., Settings], seaweedfs: SeaweedFS) -> None:
    with TestClient(create_app(make_settings(**_storage(seaweedfs)))) as client:
        response = client.get("/health/storage")
    assert response.status_code == 200, response.text
    assert response.json()["latency_ms"] > 0


def test_storage_without_its_bucket(
    make_settings: Callable[..., Settings], seaweedfs: SeaweedFS
) -> None:
    settings = make_settings(**_storage(seaweedfs, r2_bucket="no-such-bucket"))
    with TestClient(create_app(settings)) as client:
        error = assert_error(client.get("/health/storage"), 503, "SERVICE_UNAVAILABLE")
    assert error["message"] == "storage is unavailable: the bucket does not exist"
    assert error["details"] == {"dependency": "storage"}


def test_queues_polled_and_not(
    make_settings: Callable[..., Settings], temporal_address: str
) -> None:
    """503 while no worker polls cpu_tasks, 200 with the stats once one does."""
    prefix = f"health-{uuid.uuid4().hex[:8]}-"
    settings = make_settings(
        temporal_address=temporal_address,
        temporal_task_queue_prefix=prefix,
        local_ai_enabled=False,  # model calls run on cpu_tasks: gpu_tasks is not watched
    )
    with TestClient(create_app(settings)) as client:
        error = assert_error(client.get("/health/queues"), 503, "SERVICE_UNAVAILABLE")
        assert error["message"] == "cpu_tasks: no worker polls it"
        assert error["details"] == {
            "dependency": "queues",
            "queues": {"cpu_tasks": "no worker polls it"},
        }
        poller = QueuePoller(settings, TaskQueue.CPU).start()
        try:
            response = client.get("/health/queues")
        finally:
            poller.stop()
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert body["latency_ms"] > 0
    [queue] = body["queues"]
    assert queue["kind"] == "cpu_tasks"
    assert queue["name"] == f"{prefix}cpu_tasks"
    assert queue["pollers"] == 1
    assert queue["backlog"] == 0
    assert 0 <= queue["last_poll_age_s"] < 60


def test_gpu_tasks_must_be_polled_when_the_local_model_is_on(
    make_settings: Callable[..., Settings], temporal_address: str
) -> None:
    settings = make_settings(
        temporal_address=temporal_address,
        temporal_task_queue_prefix=f"health-{uuid.uuid4().hex[:8]}-",
        local_ai_enabled=True,
    )
    poller = QueuePoller(settings, TaskQueue.CPU).start()
    try:
        with TestClient(create_app(settings)) as client:
            error = assert_error(client.get("/health/queues"), 503, "SERVICE_UNAVAILABLE")
    finally:
        poller.stop()
    assert error["details"]["queues"] == {"gpu_tasks": "no worker polls it"}
