"""The service as real processes: `hivesync api` (uvicorn) and `hivesync dev` (the whole local
stack), driven over HTTP and stopped with signals like an operator or Ctrl-C would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.processes import ManagedProcess, free_port, port_open
from tests.helpers import (
    PASSWORD,
    REDIS_URL,
    TEST_JWT_SECRET,
    delete_redis_keys,
    drop_database,
    unique_name,
)

pytestmark = pytest.mark.e2e


def _base_env(tmp_path: Path) -> dict[str, str]:
    """A clean environment: nothing from the developer's shell but PATH and HOME."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "SECRETS_DIR": str(tmp_path / "no-secrets"),
        "LOG_DIR": str(tmp_path / "logs"),
    }


def _register_login_create_list(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        name = unique_name()
        registered = client.post(
            "/api/v1/auth/register",
            json={"email": f"{name}@example.com", "username": name, "password": PASSWORD},
        )
        assert registered.status_code == 201, registered.text
        token = client.post(
            "/api/v1/auth/login", json={"username": name, "password": PASSWORD}
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        created = client.post("/api/v1/projects", json={"name": "e2e"}, headers=headers)
        assert created.status_code == 201, created.text
        listed = client.get("/api/v1/projects", headers=headers).json()
        assert [item["name"] for item in listed["items"]] == ["e2e"]


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


@pytest.fixture
def redis_prefix_e2e() -> Iterator[str]:
    prefix = f"hivesync-e2e-{uuid.uuid4().hex[:8]}:"
    yield prefix
    delete_redis_keys(prefix)


def test_api_process_in_production_mode(
    database_url: str, redis_prefix_e2e: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **_base_env(tmp_path),
        "ENVIRONMENT": "production",
        "JWT_SECRET": TEST_JWT_SECRET,
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "REDIS_KEY_PREFIX": redis_prefix_e2e,
        "LOG_TO_FILE": "false",
        "TEMPORAL_ADDRESS": "127.0.0.1:1",
    }
    output = tmp_path / "api.out"
    api = ManagedProcess(
        "api", [sys.executable, "-m", "cli", "api", "--port", str(port)], env=env, log_file=output
    ).start()
    try:
        api.wait_for_port("127.0.0.1", port, timeout_s=60)
        base_url = f"http://127.0.0.1:{port}"
        _register_login_create_list(base_url)
        echoed = httpx.get(f"{base_url}/health", headers={"X-Request-ID": "e2e-req-1"})
        assert echoed.headers["X-Request-ID"] == "e2e-req-1"
        assert "server" not in echoed.headers  # no version banner

        assert api.process is not None
        api.process.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal it caught.
        assert api.process.wait(timeout=20) in (0, -signal.SIGTERM)
    finally:
        api.stop()

    lines = [json.loads(line) for line in output.read_text().splitlines() if line.strip()]
    messages = [line["message"] for line in lines]
    assert "api started" in messages
    assert "api stopped" in messages
    assert all(line["service"] == "hivesync-api" for line in lines)
    assert PASSWORD not in output.read_text()
    assert not (tmp_path / "logs").exists()  # LOG_TO_FILE=false


def _run_dev(
    tmp_path: Path, extra_env: dict[str, str]
) -> tuple[ManagedProcess, dict[str, int], Path]:
    ports = {"api": free_port(), "temporal": free_port(), "ui": free_port()}
    data_dir = tmp_path / "data"
    command = [
        sys.executable, "-m", "cli", "dev",
        "--api-port", str(ports["api"]),
        "--temporal-port", str(ports["temporal"]),
        "--temporal-ui-port", str(ports["ui"]),
        "--data-dir", str(data_dir),
    ]  # fmt: skip
    output = tmp_path / "dev.out"
    dev = ManagedProcess(
        "dev", command, env={**_base_env(tmp_path), **extra_env}, log_file=output
    ).start()
    dev.wait_for_port("127.0.0.1", ports["api"], timeout_s=120)
    return dev, ports, output


def _stop_like_ctrl_c(dev: ManagedProcess, ports: dict[str, int], data_dir: Path) -> None:
    assert dev.process is not None
    dev.process.send_signal(signal.SIGINT)
    assert dev.process.wait(timeout=60) == 0
    for name, port in ports.items():
        assert not port_open("127.0.0.1", port), f"{name} still listening on {port}"
    assert _processes_mentioning(str(data_dir)) == []


def test_dev_stack_on_postgres_and_redis(tmp_path: Path, redis_prefix_e2e: str) -> None:
    database = f"hivesync_e2e_{uuid.uuid4().hex[:8]}"
    dev, ports, output = _run_dev(
        tmp_path, {"POSTGRES_DB": database, "REDIS_KEY_PREFIX": redis_prefix_e2e}
    )
    try:
        base_url = f"http://127.0.0.1:{ports['api']}"
        assert httpx.get(f"{base_url}/docs").status_code == 200
        assert httpx.get(f"http://127.0.0.1:{ports['ui']}/").status_code == 200
        for dependency in ("db", "redis", "temporal"):
            response = httpx.get(f"{base_url}/health/{dependency}", timeout=10)
            assert response.status_code == 200, (dependency, response.text)
        _register_login_create_list(base_url)
        _stop_like_ctrl_c(dev, ports, tmp_path / "data")
    finally:
        dev.stop()
        drop_database(database)
    text = output.read_text()
    assert "using Postgres" in text
    assert "using Redis for rate limiting" in text
    # The generated dev secret is kept for the next run (and never logged).
    secret = (tmp_path / "data" / "jwt_secret").read_text()
    assert len(secret) >= 32
    assert secret not in text


def test_dev_stack_falls_back_without_postgres_and_redis(tmp_path: Path) -> None:
    closed = free_port()
    dev, ports, output = _run_dev(
        tmp_path,
        {
            "POSTGRES_PORT": str(closed),
            "REDIS_URL": f"redis://127.0.0.1:{closed}/0",
            "DB_CONNECT_TIMEOUT_S": "1",
        },
    )
    try:
        base_url = f"http://127.0.0.1:{ports['api']}"
        _register_login_create_list(base_url)
        assert httpx.get(f"{base_url}/health/db").status_code == 200
        assert httpx.get(f"{base_url}/health/redis").status_code == 503
        _stop_like_ctrl_c(dev, ports, tmp_path / "data")
    finally:
        dev.stop()
    text = output.read_text()
    assert "falling back to SQLite" in text
    assert "falling back to the in-process rate limiter" in text
    assert (tmp_path / "data" / "hivesync.db").exists()


def test_cli_refuses_production_without_a_strong_secret(tmp_path: Path) -> None:
    env = {**_base_env(tmp_path), "ENVIRONMENT": "production", "JWT_SECRET": "change-me"}
    result = subprocess.run(
        [sys.executable, "-m", "cli", "api"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "JWT_SECRET" in result.stderr
    assert "default/example value" in result.stderr
