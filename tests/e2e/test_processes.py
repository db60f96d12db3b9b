"""The service as real processes: `hivesync api` (uvicorn) and `hivesync dev` (the whole local
stack), driven over HTTP and stopped with signals like an operator or Ctrl-C would."""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cli.processes import (
    ChildRecord,
    ManagedProcess,
    free_port,
    port_open,
    process_start_time,
    processes_mentioning,
)
from cli.seaweedfs import WeedPorts
from tests.fixtures.models import MODEL_CACHE
from tests.fixtures.previews import METRO_CACHE
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


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_s3_port() -> int:
    """A first port for `--s3-port` whose SeaweedFS ports (it, the next 8, and +10008) are
    free; below the ephemeral range, so that `free_port()` elsewhere never hands them out."""
    for _ in range(200):
        first = random.randint(15_000, 22_000)
        if all(_bindable(port) for port in WeedPorts.consecutive(first).all()):
            return first
    raise RuntimeError("no free range of ports for SeaweedFS")


def _run_dev(
    tmp_path: Path,
    extra_env: dict[str, str],
    ports: dict[str, int] | None = None,
    output_name: str = "dev.out",
) -> tuple[ManagedProcess, dict[str, int], Path]:
    ports = ports or {
        "api": free_port(),
        "temporal": free_port(),
        "ui": free_port(),
        "s3": _free_s3_port(),
        "inference": free_port(),
        "autoscaler": free_port(),
    }
    data_dir = tmp_path / "data"
    command = [
        sys.executable, "-m", "cli", "dev",
        "--api-port", str(ports["api"]),
        "--temporal-port", str(ports["temporal"]),
        "--temporal-ui-port", str(ports["ui"]),
        "--s3-port", str(ports["s3"]),
        "--inference-port", str(ports["inference"]),
        "--autoscaler-port", str(ports["autoscaler"]),
        "--data-dir", str(data_dir),
    ]  # fmt: skip
    output = tmp_path / output_name
    dev = ManagedProcess(
        "dev", command, env={**_base_env(tmp_path), **extra_env}, log_file=output
    ).start()
    # Announced once every part is up: the workers polling with Metro warm, the model loaded.
    deadline = time.monotonic() + 240
    while "HiveSync is running" not in output.read_text(errors="replace"):
        assert dev.running(), f"hivesync dev exited:\n{output.read_text(errors='replace')}"
        assert time.monotonic() < deadline, "hivesync dev did not start in 240 s"
        time.sleep(0.1)
    return dev, ports, output


def _stop_like_ctrl_c(dev: ManagedProcess, ports: dict[str, int], data_dir: Path) -> None:
    assert dev.process is not None
    dev.process.send_signal(signal.SIGINT)
    assert dev.process.wait(timeout=60) == 0
    for name, port in ports.items():
        assert not port_open("127.0.0.1", port), f"{name} still listening on {port}"
    assert processes_mentioning(str(data_dir)) == []
    # SeaweedFS's gRPC sockets in /tmp are removed.
    s3_ports = WeedPorts.consecutive(ports["s3"])
    assert not [
        socket_file
        for socket_file in Path("/tmp").glob("seaweedfs-*-grpc-*.sock")
        if int(socket_file.stem.rsplit("-", 1)[1]) in s3_ports.all()
    ]


# A two-file app; the text is unique to each run, so that Metro really bundles it.
def _tiny_app(marker: str) -> dict[str, str]:
    return {
        "index.js": (
            "import {AppRegistry} from 'react-native';\n"
            "import App from './App';\n"
            "AppRegistry.registerComponent('E2E', () => App);\n"
        ),
        "App.js": (
            "import React from 'react';\n"
            "import {Text} from 'react-native';\n"
            f"export default function App() {{ return <Text>{marker}</Text>; }}\n"
        ),
    }


def _account_with_project(client: httpx.Client, project: str) -> tuple[dict[str, str], str]:
    """A new account's auth headers and a project of its own."""
    name = unique_name()
    token = client.post(
        "/api/v1/auth/register",
        json={"email": f"{name}@example.com", "username": name, "password": PASSWORD},
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    created = client.post("/api/v1/projects", json={"name": project}, headers=headers)
    return headers, str(created.json()["id"])


def _build_and_download_preview(base_url: str) -> None:
    """The README's flow (examples/hello-rn): register, create a project, build with
    ?wait=60, download the bundle through the signed URL, check it against the manifest."""
    with httpx.Client(base_url=base_url, timeout=90) as client:
        headers, project_id = _account_with_project(client, "tiny")
        marker = f"dev stack e2e {uuid.uuid4().hex}"
        built = client.post(
            "/api/v1/preview/build",
            params={"wait": 60},
            headers=headers,
            json={
                "project_id": project_id,
                "target_platform": "ios",
                "entry_file": "index.js",
                "environment": "production",
                "files": _tiny_app(marker),
            },
        )
        if built.status_code == 202:  # a cold Metro cache on a busy machine: poll, as clients do
            built = _poll_until_ready(client, built.json()["status_url"], headers)
        assert built.status_code == 200, built.text
        ready = built.json()
        download = httpx.get(ready["url"], timeout=30)  # decodes the stored gzip
        assert download.status_code == 200
        assert download.headers["content-encoding"] == "gzip"
        assert marker.encode() in download.content
        manifest = client.get(
            "/api/v1/preview/manifest", headers={"Authorization": f"Preview {ready['token']}"}
        )
        assert manifest.status_code == 200, manifest.text
        assert manifest.json()["bundle"]["sha256"] == hashlib.sha256(download.content).hexdigest()


def _stop_dev(dev: ManagedProcess, *work_dirs: Path) -> None:
    """Stop `hivesync dev` (a no-op once the test stopped it like Ctrl-C). When a failed test
    leaves it to be killed before it could stop its children (each in a session of its own),
    they are killed here (any process naming one of `work_dirs`), so that no Temporal,
    SeaweedFS, Ray or Metro outlives the test."""
    dev.stop()
    for work_dir in work_dirs:
        for pid in processes_mentioning(f"{work_dir}/"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _poll_until_ready(
    client: httpx.Client, status_url: str, headers: dict[str, str], timeout_s: float = 180
) -> httpx.Response:
    """The build's status once it has ended (or as it is after `timeout_s`)."""
    deadline = time.monotonic() + timeout_s
    while True:
        read = client.get(status_url, headers=headers)
        if read.json()["status"] in ("ready", "failed", "cancelled"):
            return read
        assert time.monotonic() < deadline, read.text
        time.sleep(0.5)


def _document_a_file(base_url: str) -> None:
    """A documentation job answered by the embedded SmolLM2 on Ray Serve."""
    content = "def mean(values):\n    return sum(values) / len(values)\n"
    with httpx.Client(base_url=base_url, timeout=30) as client:
        headers, project_id = _account_with_project(client, "doc")
        accepted = client.post(
            "/api/v1/docs/jobs",
            headers=headers,
            json={
                "project_id": project_id,
                "job_type": "function_doc",
                "file_path": "stats.py",
                "content": content,
            },
        )
        assert accepted.status_code == 202, accepted.text
        deadline = time.monotonic() + 180
        while True:
            job = client.get(accepted.json()["status_url"], headers=headers).json()
            if job["status"] in ("completed", "failed", "cancelled"):
                break
            assert time.monotonic() < deadline, job
            time.sleep(0.2)
    assert job["status"] == "completed", job
    result = job["result"]
    assert result["provider"] == "local"
    documented = ast.get_docstring(ast.parse(result["patched_content"]).body[0]) or ""
    assert len(documented.split()) >= 3, documented


def test_dev_stack_on_postgres_and_redis(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, redis_prefix_e2e: str
) -> None:
    database = f"hivesync_e2e_{uuid.uuid4().hex[:8]}"
    # At the depth of the preview tests' work dir, so that the shared Metro cache is warm.
    bundler_dir = tmp_path_factory.mktemp("bundler")
    dev, ports, output = _run_dev(
        tmp_path,
        {
            "POSTGRES_DB": database,
            "REDIS_KEY_PREFIX": redis_prefix_e2e,
            "BUNDLER_WORK_DIR": str(bundler_dir),
            "BUNDLER_CACHE_DIR": str(METRO_CACHE),
            # The embedded model, converted once for every test session.
            "INFERENCE_CACHE_DIR": str(MODEL_CACHE),
        },
    )
    try:
        base_url = f"http://127.0.0.1:{ports['api']}"
        assert httpx.get(f"{base_url}/docs").status_code == 200
        assert httpx.get(f"http://127.0.0.1:{ports['ui']}/").status_code == 200
        for dependency in ("db", "redis", "temporal"):
            response = httpx.get(f"{base_url}/health/{dependency}", timeout=10)
            assert response.status_code == 200, (dependency, response.text)
        _register_login_create_list(base_url)
        _build_and_download_preview(base_url)
        _document_a_file(base_url)
        # The autoscaler (dry run) has watched the gpu_tasks queue that the job went through.
        status = httpx.get(f"http://127.0.0.1:{ports['autoscaler']}/status", timeout=10).json()
        assert status["dry_run"] is True
        assert status["last_evaluation_ok"] is True, status["last_error"]
        # `hivesync health` from another shell, on the settings the stack wrote for it.
        dev_env = tmp_path / "data" / "dev.env"
        assert dev_env.stat().st_mode & 0o777 == 0o600
        health = subprocess.run(
            [sys.executable, "-m", "cli", "health", "--json", "--env-file", str(dev_env)],
            env=_base_env(tmp_path),
            cwd=Path(__file__).resolve().parents[2],  # this checkout's `cli`
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert health.returncode == 0, health.stdout + health.stderr
        report = json.loads(health.stdout)
        assert {check["name"]: check["status"] for check in report["checks"]} == {
            "database": "ok",
            "redis": "ok",
            "temporal": "ok",
            "queue:cpu_tasks": "ok",
            "queue:gpu_tasks": "ok",
            "storage": "ok",
            "model_server": "ok",
            "autoscaler": "ok",
        }
        # One SeaweedFS and one warm Metro, both gone after Ctrl-C.
        assert len(processes_mentioning(f"-dir={tmp_path / 'data' / 'seaweedfs'} ")) == 1
        assert len(processes_mentioning(f"--workspace {bundler_dir}/")) == 1
        _stop_like_ctrl_c(dev, ports, tmp_path / "data")
        assert processes_mentioning(f"{bundler_dir}/") == []
    finally:
        _stop_dev(dev, tmp_path, bundler_dir)
        drop_database(database)
    text = output.read_text()
    assert "using Postgres" in text
    assert "using Redis for rate limiting" in text
    assert "SeaweedFS started" in text
    assert "worker polling" in text
    assert "local model ready" in text
    assert "healthy: everything needed is up" in text  # the report under the banner
    # The autoscaler, the API and the workers stop first, then the model server, SeaweedFS,
    # then Temporal.
    stopped = [line for line in text.splitlines() if '"message": "stopped ' in line]
    assert [json.loads(line)["message"] for line in stopped] == [
        "stopped autoscaler",
        "stopped api",
        "stopped worker gpu_tasks",
        "stopped worker cpu_tasks",
        "stopped inference",
        "stopped seaweedfs",
        "stopped temporal",
    ]
    # SeaweedFS's generated credentials are kept for the next run, readable by the owner only.
    identities = tmp_path / "data" / "seaweedfs" / "identities.json"
    assert identities.stat().st_mode & 0o777 == 0o600
    secret_key = json.loads(identities.read_text())["identities"][0]["credentials"][0]
    assert secret_key["secretKey"] not in text
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
            "LOCAL_AI_ENABLED": "false",  # no model server: this test is about the fallbacks
        },
    )
    try:
        base_url = f"http://127.0.0.1:{ports['api']}"
        _register_login_create_list(base_url)
        assert httpx.get(f"{base_url}/health/db").status_code == 200
        assert httpx.get(f"{base_url}/health/redis").status_code == 503
        _stop_like_ctrl_c(dev, ports, tmp_path / "data")
    finally:
        _stop_dev(dev, tmp_path)
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


def _descendants(pid: int) -> set[int]:
    """Every process below `pid` (children, their children...), whatever their session."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    pending = [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            if child not in found:
                found.add(child)
                pending.append(child)
    return found


def _running(pids: set[int]) -> set[int]:
    return {pid for pid in pids if process_start_time(pid) is not None}


def test_dev_stack_killed_hard_leaves_nothing_running(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """SIGKILL gives `hivesync dev` no chance to stop its children: they stop by themselves
    (each gets SIGTERM from Linux when it dies), and a second `hivesync dev` starts on the
    same ports and data dir."""
    closed = free_port()
    bundler_dir = tmp_path_factory.mktemp("bundler")  # at the depth of the warm Metro cache
    env = {
        "POSTGRES_PORT": str(closed),
        "REDIS_URL": f"redis://127.0.0.1:{closed}/0",
        "DB_CONNECT_TIMEOUT_S": "1",
        "LOCAL_AI_ENABLED": "false",
        "BUNDLER_WORK_DIR": str(bundler_dir),
        "BUNDLER_CACHE_DIR": str(METRO_CACHE),
    }
    data_dir = tmp_path / "data"
    dev, ports, _ = _run_dev(tmp_path, env)
    second: ManagedProcess | None = None
    try:
        assert dev.process is not None
        tree = _descendants(dev.process.pid)
        # Temporal, SeaweedFS, the worker (with its Metro) and the API.
        assert len(processes_mentioning(f"--db-filename {data_dir}/temporal.db")) == 1
        assert len(processes_mentioning(f"-dir={data_dir / 'seaweedfs'} ")) == 1
        assert len(processes_mentioning(f"--workspace {bundler_dir}/")) == 1
        assert len(tree) >= 5

        dev.process.send_signal(signal.SIGKILL)
        dev.process.wait(timeout=30)
        deadline = time.monotonic() + 120  # the worker finishes gracefully: seconds
        while _running(tree) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _running(tree) == set(), [
            Path(f"/proc/{pid}/cmdline").read_bytes() for pid in _running(tree)
        ]
        assert processes_mentioning(str(data_dir)) == []
        assert processes_mentioning(f"{bundler_dir}/") == []

        second, _, output = _run_dev(tmp_path, env, ports=ports, output_name="dev2.out")
        base_url = f"http://127.0.0.1:{ports['api']}"
        _register_login_create_list(base_url)
        assert "stopped what a killed hivesync dev left running" not in output.read_text()
        _stop_like_ctrl_c(second, ports, data_dir)
    finally:
        _stop_dev(dev, tmp_path, bundler_dir)
        if second is not None:
            _stop_dev(second, tmp_path, bundler_dir)


def test_the_next_run_reclaims_recorded_children(tmp_path: Path) -> None:
    """What a killed supervisor recorded and is still running (here: a child that ignores the
    signal it got) is stopped by the next one; a pid now used by another process is left."""
    ready = tmp_path / "ignoring"
    code = (
        "import pathlib, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "pathlib.Path(sys.argv[1]).touch(); time.sleep(600)"
    )
    ignoring = ManagedProcess("stubborn", [sys.executable, "-c", code, str(ready)]).start()
    stranger = ManagedProcess("stranger", ["sleep", "600"]).start()
    record = ChildRecord(tmp_path / "children.json")
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert time.monotonic() < deadline, "the child never ignored SIGTERM"
            time.sleep(0.05)
        record.write([ignoring, stranger])
        assert stranger.pid is not None
        entries = json.loads(record.path.read_text())
        entries[1]["start_time"] -= 1  # as if the pid had been reused since
        record.path.write_text(json.dumps(entries))

        assert record.reclaim(timeout_s=2) == ["stubborn"]
        assert ignoring.process is not None
        assert ignoring.process.wait(timeout=10) == -signal.SIGKILL
        assert stranger.running()
        assert not record.path.exists()
        assert record.reclaim() == []
    finally:
        ignoring.stop()
        stranger.stop()
