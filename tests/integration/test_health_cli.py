"""`hivesync health`, run as its own process, against real dependencies: the session's Postgres,
Redis, SeaweedFS and Temporal dev server, the tiny model served over HTTP; and against a Redis
and a Temporal of the test's own, running and then stopped, and queues that nobody polls.

With everything up, the autoscaler is the real `hivesync autoscaler` in dry-run (no cluster here),
reading the same Temporal."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from contracts.jobs import TaskQueue
from core.config import Settings
from core.queues import describe_queue
from tests.fixtures.autoscaler import start_autoscaler
from tests.fixtures.servers import OwnTemporal, PrivateRedis
from tests.fixtures.storage import SeaweedFS
from tests.fixtures.workers import QueuePoller, ThreadWorker, wait_until_polled
from tests.helpers import REDIS_URL, TEST_JWT_SECRET

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def autoscaler_status_url(
    tmp_path: Path, temporal_address: str, health_values: dict[str, Any]
) -> Iterator[str]:
    """The real `hivesync autoscaler`, dry-run without a cluster, on the test's queues: its
    /status URL once its first evaluation ran."""
    process, base_url = start_autoscaler(
        tmp_path,
        tmp_path / "autoscaler.out",
        TEMPORAL_ADDRESS=temporal_address,
        TEMPORAL_TASK_QUEUE_PREFIX=health_values["temporal_task_queue_prefix"],
        AUTOSCALER_INTERVAL_S="1",
    )
    try:
        yield f"{base_url}/status"
    finally:
        process.stop()


@pytest.fixture
def health_values(database_url: str, redis_prefix: str, seaweedfs: SeaweedFS) -> dict[str, Any]:
    """Settings (as keyword arguments) for the session's real dependencies, each test's own
    queues; no model server unless a test says so."""
    return {
        "environment": "test",
        "jwt_secret": TEST_JWT_SECRET,
        "database_url": database_url,
        "redis_url": REDIS_URL,
        "redis_key_prefix": redis_prefix,
        "r2_endpoint": seaweedfs.endpoint,
        "r2_access_key": seaweedfs.access_key,
        "r2_secret_key": seaweedfs.secret_key,
        "r2_bucket": seaweedfs.bucket,
        "temporal_task_queue_prefix": f"health-{uuid.uuid4().hex[:8]}-",
        "local_ai_enabled": False,
        "retention_schedule": False,
        "log_to_file": False,
    }


def run_health(
    tmp_path: Path, values: dict[str, Any], *options: str
) -> subprocess.CompletedProcess[str]:
    """`hivesync health` in a process of its own, configured by the environment only (no .env:
    it runs in an empty directory)."""
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    env.update(PYTHONPATH=str(ROOT), SECRETS_DIR=str(tmp_path / "no-secrets"))
    env.update({name.upper(): str(value).lower() if isinstance(value, bool) else str(value)
                for name, value in values.items()})  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "cli", "health", *options],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def checks_of(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    report = json.loads(result.stdout)
    checks = {check["name"]: check for check in report["checks"]}
    assert report["healthy"] == (result.returncode == 0)
    assert report["failing"] == [
        name for name, check in checks.items() if check["needed"] and check["status"] == "fail"
    ]
    return checks


def test_everything_up(
    tmp_path: Path,
    health_values: dict[str, Any],
    make_settings: Callable[..., Settings],
    temporal_address: str,
    tiny_model_url: str,
    autoscaler_status_url: str,
) -> None:
    values = {
        **health_values,
        "temporal_address": temporal_address,
        "local_ai_enabled": True,
        "local_ai_base_url": tiny_model_url,
        "autoscaler_status_url": autoscaler_status_url,
        # The gpu_tasks worker polls while its server answers, idle or not (no standby).
        "inference_worker_idle_s": 0,
    }
    settings = make_settings(**values)

    async def gpu_polled() -> None:
        client = await Client.connect(temporal_address)
        await wait_until_polled(client, settings.task_queue(TaskQueue.GPU))

    cpu = QueuePoller(settings, TaskQueue.CPU).start()
    gpu = ThreadWorker(settings, TaskQueue.GPU).start()  # the real gpu_tasks worker
    try:
        asyncio.run(gpu_polled())
        as_json = run_health(tmp_path, values, "--json")
        table = run_health(tmp_path, values)
    finally:
        gpu.stop()
        cpu.stop()

    assert as_json.returncode == 0, as_json.stdout + as_json.stderr
    checks = checks_of(as_json)
    assert list(checks) == [
        "database",
        "redis",
        "temporal",
        "queue:cpu_tasks",
        "queue:gpu_tasks",
        "storage",
        "model_server",
        "autoscaler",
    ]
    assert {name: check["status"] for name, check in checks.items()} == dict.fromkeys(checks, "ok")
    assert all(check["needed"] for check in checks.values())
    for kind in ("cpu_tasks", "gpu_tasks"):
        stats = checks[f"queue:{kind}"]["data"]
        assert stats["name"] == values["temporal_task_queue_prefix"] + kind
        assert stats["pollers"] >= 1
        assert stats["backlog"] == 0
    autoscaler = checks["autoscaler"]["data"]
    assert autoscaler["dry_run"] is True
    assert autoscaler["last_evaluation_ok"] is True
    assert stats["name"] in autoscaler["sensors"]["queues"]  # the same gpu_tasks
    assert checks["autoscaler"]["detail"] == (
        f"current {autoscaler['current']} -> desired {autoscaler['desired']}; "
        f"{autoscaler['reason']}; dry run"
    )

    assert table.returncode == 0, table.stdout + table.stderr
    assert "healthy: everything needed is up" in table.stdout
    for name in checks:
        assert name in table.stdout
    assert "fail" not in table.stdout
    assert table.stderr == ""


def test_redis_and_temporal_running_then_stopped(
    tmp_path: Path,
    health_values: dict[str, Any],
    make_settings: Callable[..., Settings],
    private_redis: PrivateRedis,
    own_temporal: OwnTemporal,
    seaweedfs: SeaweedFS,
) -> None:
    own_temporal.start()
    values = {
        **health_values,
        "redis_url": private_redis.url,
        "temporal_address": own_temporal.address,
    }
    poller = QueuePoller(make_settings(**values), TaskQueue.CPU).start()
    try:
        running = run_health(tmp_path, values, "--json")
    finally:
        poller.stop()
    assert running.returncode == 0, running.stdout + running.stderr
    checks = checks_of(running)
    for name in ("database", "redis", "temporal", "queue:cpu_tasks", "storage"):
        assert checks[name]["status"] == "ok", checks[name]
    for name in ("model_server", "autoscaler"):  # LOCAL_AI_ENABLED=false, no status URL
        assert checks[name]["status"] == "skipped"
        assert not checks[name]["needed"]

    private_redis.stop()
    for server in own_temporal.started:
        server.stop()
    stopped = run_health(tmp_path, values, "--json")
    assert stopped.returncode == 1, stopped.stdout + stopped.stderr
    checks = checks_of(stopped)
    assert json.loads(stopped.stdout)["failing"] == ["redis", "temporal", "queue:cpu_tasks"]
    assert checks["redis"]["detail"] == "redis is unavailable: connection refused"
    assert checks["temporal"]["detail"] == "temporal is unavailable: connection refused"
    assert checks["queue:cpu_tasks"]["detail"] == "temporal is down"
    assert checks["database"]["status"] == checks["storage"]["status"] == "ok"

    table = run_health(tmp_path, values)
    assert table.returncode == 1
    assert "NOT healthy: redis, temporal, queue:cpu_tasks" in table.stdout
    output = table.stdout + table.stderr + stopped.stdout + stopped.stderr
    assert "Traceback" not in output
    for secret_or_address in (
        seaweedfs.secret_key,
        str(private_redis.port),
        str(own_temporal.port),
    ):
        assert secret_or_address not in output


def test_queues_nobody_polls(
    tmp_path: Path,
    health_values: dict[str, Any],
    make_settings: Callable[..., Settings],
    temporal_address: str,
) -> None:
    """cpu_tasks with a workflow waiting and no worker; gpu_tasks polled by nobody at all."""
    values = {**health_values, "temporal_address": temporal_address, "local_ai_enabled": True}
    settings = make_settings(**values)
    queue = settings.task_queue(TaskQueue.CPU)

    async def send_and_wait_for_backlog() -> None:
        client = await Client.connect(temporal_address)
        await client.start_workflow(
            "DocPassWorkflow", id=f"health-{uuid.uuid4()}", task_queue=queue
        )
        for _ in range(60):  # Temporal refreshes its backlog count every few seconds
            if (await describe_queue(client, queue, include_workflow_tasks=True)).backlog:
                return
            await asyncio.sleep(0.5)
        raise AssertionError("the workflow task never showed in the backlog")

    asyncio.run(send_and_wait_for_backlog())
    result = run_health(tmp_path, values, "--json")
    assert result.returncode == 1
    checks = checks_of(result)
    assert checks["temporal"]["status"] == "ok"
    cpu, gpu = checks["queue:cpu_tasks"], checks["queue:gpu_tasks"]
    assert cpu["status"] == gpu["status"] == "fail"
    assert cpu["detail"].startswith("no worker polls it; 1 task(s) wait, the oldest ")
    assert cpu["data"]["backlog"] == 1
    assert gpu["detail"] == "no worker polls it"
    assert gpu["data"]["pollers"] == 0
    assert {"queue:cpu_tasks", "queue:gpu_tasks"} <= set(json.loads(result.stdout)["failing"])

    table = run_health(tmp_path, values)
    assert "no worker polls it; 1 task(s) wait" in table.stdout


def test_the_command_loads_no_gpu_stack() -> None:
    """It runs in the small CPU image: no torch, no Ray."""
    code = (
        "import sys; import cli.main, cli.health, services.health; "
        "print(sorted({'torch', 'ray', 'transformers'} & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "[]"
