"""The HiveSync stack as real processes, for the benchmarks (bench.preview, bench.docs).

A fresh Postgres database (migrated, dropped at the end), the machine's Redis under a key prefix
of its own (keys deleted at the end), an in-memory Temporal dev server, optionally SeaweedFS
verifying signatures, `hivesync api`; then, on demand, `hivesync worker --queue ...` processes
and `hivesync inference` (the local model on Ray Serve, on a Ray of its own whose processes are
found by their directory and stopped too). Everything is stopped by process group, in reverse
order of starting, whatever happens; `close()` undoes whatever was done, even half-way.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
import redis
from psycopg import sql
from sqlalchemy.engine import make_url

from cli import seaweedfs as weed
from cli.processes import ManagedProcess, free_port, processes_mentioning
from cli.temporal_server import dev_server_command

POSTGRES_ADMIN_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
BUCKET = "hivesync-bench"
WORKER_READY_TIMEOUT_S = 120.0
WORKER_STOP_TIMEOUT_S = 20.0
# Ray starts in ~10 s and a replica loads SmolLM2 in ~2 s (a GGUF conversion takes ~20 s more).
INFERENCE_READY_TIMEOUT_S = 240.0
# Serve and Ray shut down in ~5-10 s.
INFERENCE_STOP_TIMEOUT_S = 30.0
# Settings that would send the benchmark's requests elsewhere than to its own processes.
_INHERITED_OUT = (
    "R2_PUBLIC_ENDPOINT", "BUNDLER_WORK_DIR", "BUNDLER_CACHE_DIR",
    "OPENAI_API_KEY", "OPENAI_SECONDARY_API_KEY", "LOCAL_AI_BASE_URL",
)  # fmt: skip


@dataclass
class Worker:
    """One `hivesync worker --queue QUEUE` process, logging to `log_file`."""

    name: str
    queue: str
    process: ManagedProcess
    log_file: Path
    _stopped: bool = field(default=False, init=False)

    def start(self) -> None:
        self.process.start()

    def wait_until_ready(self, timeout_s: float = WORKER_READY_TIMEOUT_S) -> None:
        """Until it logs `worker started` (its warm-up is done, polling has begun)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.process.running():
                raise RuntimeError(f"{self.name} exited; see {self.log_file}")
            if self.log_file.exists() and '"worker started"' in self.log_file.read_text(
                errors="replace"
            ):
                return
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} did not start in {timeout_s:.0f} s; see {self.log_file}")

    def stop(self) -> None:
        """SIGTERM (the worker finishes or hands back its tasks), SIGKILL after a timeout."""
        if self._stopped:
            return
        self._stopped = True
        self.process.stop(timeout_s=WORKER_STOP_TIMEOUT_S)


AnyWorker = TypeVar("AnyWorker", bound=Worker)


@dataclass
class InferenceServer:
    """`hivesync inference`: the OpenAI-compatible API of the local model at `base_url`."""

    process: ManagedProcess
    port: int
    ray_dir: Path
    log_file: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def wait_until_ready(self, timeout_s: float = INFERENCE_READY_TIMEOUT_S) -> None:
        """Until /health answers 200: Ray and Serve are up and a replica has loaded the model."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.process.running():
                raise RuntimeError(f"the inference server exited; see {self.log_file}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise TimeoutError(f"the inference server did not start in {timeout_s:.0f} s")

    def stats(self) -> dict[str, Any]:
        """How the replica has batched requests so far (`GET /stats`)."""
        response = httpx.get(f"http://127.0.0.1:{self.port}/stats", timeout=10)
        response.raise_for_status()
        return dict(response.json())

    def stop(self) -> None:
        """SIGTERM (Serve, then Ray, shut down), then kill whatever of this Ray is left: its
        processes all name its directory on their command line."""
        self.process.stop(timeout_s=INFERENCE_STOP_TIMEOUT_S)
        for pid in processes_mentioning(str(self.ray_dir)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.ray_dir, ignore_errors=True)


class Stack:
    """Start with `start()`; `close()` undoes whatever was done, in reverse, even half-way.

    `env` is added to every process's environment (after the stack's own settings); without
    `storage` no SeaweedFS runs (nothing that is benchmarked then touches object storage).
    """

    def __init__(
        self,
        root: Path,
        logs: Path,
        *,
        storage: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.root = root
        self.logs = logs
        self.storage = storage
        self.extra_env = dict(env or {})
        self.database = f"hivesync_bench_{uuid.uuid4().hex[:8]}"
        self.redis_prefix = f"hivesync-bench-{self.database}:"
        self.queue_prefix = f"bench-{uuid.uuid4().hex[:8]}-"
        self.env: dict[str, str] = {}
        self.api_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.api_port}"
        self.workers: list[Worker] = []
        # Every process started, by name (temporal, seaweedfs, api, worker-N, inference).
        self.processes: dict[str, ManagedProcess] = {}
        self._cleanup = contextlib.ExitStack()
        self._worker_count = 0

    def start(self) -> Stack:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))
        self._cleanup.callback(self._drop_database)
        self._cleanup.callback(self._delete_redis_keys)
        database_url = (
            make_url(POSTGRES_ADMIN_URL)
            .set(drivername="postgresql+psycopg", database=self.database)
            .render_as_string(hide_password=False)
        )

        temporal_port = free_port()
        temporal = ManagedProcess(
            "temporal",
            dev_server_command(port=temporal_port, ui_port=None, db_file=None),
            log_file=self.logs / "temporal.log",
        ).start()
        self._cleanup.callback(temporal.stop)
        self.processes[temporal.name] = temporal

        self.env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "ENVIRONMENT": "production",
            "JWT_SECRET": uuid.uuid4().hex + uuid.uuid4().hex,
            "DATABASE_URL": database_url,
            "REDIS_URL": REDIS_URL,
            "REDIS_KEY_PREFIX": self.redis_prefix,
            "LOG_TO_FILE": "false",
            "BASE_URL": self.base_url,
            "TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
            "TEMPORAL_NAMESPACE": "default",
            "TEMPORAL_TASK_QUEUE_PREFIX": self.queue_prefix,
        }
        for name in _INHERITED_OUT:
            self.env.pop(name, None)
        if self.storage:
            self._start_storage()
        self.env.update(self.extra_env)
        migrate = [sys.executable, "-m", "cli", "migrate"]
        subprocess.run(migrate, env=self.env, check=True, capture_output=True, timeout=120)

        temporal.wait_for_port("127.0.0.1", temporal_port, timeout_s=60)
        api = ManagedProcess(
            "api",
            [sys.executable, "-m", "cli", "api", "--port", str(self.api_port)],
            env=self.env,
            log_file=self.logs / "api.log",
        ).start()
        self._cleanup.callback(api.stop)
        self.processes[api.name] = api
        api.wait_for_port("127.0.0.1", self.api_port, timeout_s=60)
        httpx.get(f"{self.base_url}/health", timeout=30).raise_for_status()

    def _start_storage(self) -> None:
        """SeaweedFS with a bucket, its endpoint and credentials in `self.env`."""
        weed_dir = self.root / "seaweedfs"
        ports = weed.WeedPorts.free()
        access_key, secret_key = weed.generate_credentials()
        identities = weed.write_identities(weed_dir / "identities.json", access_key, secret_key)
        (weed_dir / "data").mkdir(parents=True)
        (weed_dir / "logs").mkdir()
        seaweedfs = ManagedProcess(
            "seaweedfs",
            weed.mini_command(
                data_dir=weed_dir / "data",
                log_dir=weed_dir / "logs",
                identities_file=identities,
                ports=ports,
            ),
            env=weed.weed_env(),
            cwd=weed_dir / "data",
            log_file=self.logs / "seaweedfs.log",
        ).start()
        self._cleanup.callback(weed.remove_grpc_sockets, ports)
        self._cleanup.callback(seaweedfs.stop)
        self.processes[seaweedfs.name] = seaweedfs
        self.env.update(
            R2_ENDPOINT=weed.endpoint_url(ports),
            R2_ACCESS_KEY=access_key,
            R2_SECRET_KEY=secret_key,
            R2_BUCKET=BUCKET,
            R2_REGION="auto",
        )
        weed.wait_until_ready(ports, access_key, secret_key, timeout_s=60, alive=seaweedfs.running)
        weed.create_bucket(weed.endpoint_url(ports), access_key, secret_key, BUCKET)

    def worker(self, queue: str, *, env: Mapping[str, str] | None = None) -> Worker:
        """A `hivesync worker --queue QUEUE`, not started yet (see `launch`)."""
        self._worker_count += 1
        name = f"worker-{self._worker_count}"
        log_file = self.logs / f"{name}.log"
        process = ManagedProcess(
            name,
            [sys.executable, "-m", "cli", "worker", "--queue", queue],
            env={**self.env, **(env or {})},
            log_file=log_file,
        )
        return Worker(name, queue, process, log_file)

    def launch(self, worker: AnyWorker, *, wait: bool = True) -> AnyWorker:
        """Start a worker (stopped by `close()` at the latest), and wait until it polls."""
        self._cleanup.callback(worker.stop)
        worker.start()
        self.workers.append(worker)
        self.processes[worker.name] = worker.process
        if wait:
            worker.wait_until_ready()
        return worker

    def start_worker(self, queue: str, *, env: Mapping[str, str] | None = None) -> Worker:
        return self.launch(self.worker(queue, env=env))

    def start_inference(self, *, env: Mapping[str, str] | None = None) -> InferenceServer:
        """`hivesync inference` on a free port and a Ray directory of its own; not waited for
        (see `InferenceServer.wait_until_ready`). Workers started afterwards call it first
        (LOCAL_AI_BASE_URL)."""
        # Short: Ray puts Unix sockets under it, whose paths may not exceed 107 bytes.
        ray_dir = Path(tempfile.mkdtemp(prefix="hs-bench-ray-", dir="/tmp"))
        port = free_port()
        log_file = self.logs / "inference.log"
        process = ManagedProcess(
            "inference",
            [sys.executable, "-m", "cli", "inference"],
            env={
                **self.env,
                **(env or {}),
                "INFERENCE_PORT": str(port),
                "INFERENCE_RAY_DIR": str(ray_dir),
            },
            log_file=log_file,
        )
        server = InferenceServer(process, port, ray_dir, log_file)
        self._cleanup.callback(server.stop)
        process.start()
        self.processes[process.name] = process
        self.env["LOCAL_AI_BASE_URL"] = server.base_url
        return server

    def close(self) -> None:
        self._cleanup.close()

    def _drop_database(self) -> None:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(self.database)
                )
            )

    def _delete_redis_keys(self) -> None:
        client = redis.Redis.from_url(REDIS_URL)
        try:
            keys = list(client.scan_iter(match=self.redis_prefix + "*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()


def signed_in_client(base_url: str, *, timeout_s: float) -> httpx.Client:
    """A client of the running API, for a new account of its own."""
    client = httpx.Client(base_url=base_url, timeout=timeout_s)
    username = f"bench{uuid.uuid4().hex[:8]}"
    registered = client.post(
        "/api/v1/auth/register",
        json={
            "email": f"{username}@example.com",
            "username": username,
            "password": "benchmark passphrase",
        },
    )
    registered.raise_for_status()
    client.headers["Authorization"] = f"Bearer {registered.json()['access_token']}"
    return client
