"""The whole preview stack as real processes, for `bench.preview.run`.

A fresh Postgres database (migrated, dropped at the end), the machine's Redis under a key prefix
of its own (keys deleted at the end), an in-memory Temporal dev server, SeaweedFS verifying
signatures, `hivesync api` and any number of `hivesync worker --queue cpu_tasks` processes, each
with its own Metro work and cache directories. Everything is stopped by process group, and the
Metro processes of the workers (their own process groups) by PID, whatever happens.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis
from psycopg import sql
from sqlalchemy.engine import make_url

from core import seaweedfs as weed
from core.processes import ManagedProcess, free_port, peak_rss_bytes
from core.temporal import dev_server_command

POSTGRES_ADMIN_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
BUCKET = "hivesync-bench"
WORKER_READY_TIMEOUT_S = 120.0
SAMPLE_INTERVAL_S = 0.05


def _children(pid: int) -> list[int]:
    """Direct children of a process (of all its threads), from /proc."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        with contextlib.suppress(OSError, ValueError):
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
            found += [int(child) for child in text.split()]
    return found


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (tells a reused PID apart)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


@dataclass
class Worker:
    """One `hivesync worker` process and what it runs: its Metro processes are watched from a
    thread, which keeps the peak (VmHWM) of each, since a process may be recycled or killed
    before anyone asks."""

    name: str
    process: ManagedProcess
    log_file: Path
    work_dir: Path
    cache_dir: Path
    bundler_peaks: dict[tuple[int, int], int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _stopped: bool = False
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def watch(self) -> None:
        self._thread = threading.Thread(target=self._sample, name=f"{self.name}-rss", daemon=True)
        self._thread.start()

    def _bundler_tree(self) -> list[int]:
        """The worker's Node children (bundler/server.js) and everything they spawned."""
        pid = self.process.pid
        if pid is None:
            return []
        pending = [
            child
            for child in _children(pid)
            if b"server.js" in _read_bytes(f"/proc/{child}/cmdline")
        ]
        tree: list[int] = []
        while pending:
            current = pending.pop()
            tree.append(current)
            pending += _children(current)
        return tree

    def _sample(self) -> None:
        tree: list[int] = []
        last_scan = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now - last_scan > 0.25:
                tree, last_scan = self._bundler_tree(), now
            self._record(tree)
            self._stop.wait(SAMPLE_INTERVAL_S)

    def _record(self, pids: list[int]) -> None:
        for pid in pids:
            peak, started = peak_rss_bytes(pid), _start_time(pid)
            if peak is None or started is None:
                continue
            with self._lock:
                key = (pid, started)
                self.bundler_peaks[key] = max(peak, self.bundler_peaks.get(key, 0))

    def peak_rss_bytes(self) -> int:
        """The largest peak among the Metro processes this worker has run so far."""
        with self._lock:
            return max(self.bundler_peaks.values(), default=0)

    def bundler_pids(self) -> list[tuple[int, int]]:
        with self._lock:
            return list(self.bundler_peaks)

    def bundles(self) -> list[dict[str, Any]]:
        """The worker's `bundled` log records (one per Metro build that succeeded)."""
        records = []
        for line in self.log_file.read_text(errors="replace").splitlines():
            if '"bundled"' not in line:
                continue
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if record.get("message") == "bundled":
                    records.append(record)
        return records

    def wait_until_ready(self, timeout_s: float = WORKER_READY_TIMEOUT_S) -> None:
        """Until it logs `worker started` (its Metro processes answered, polling has begun)."""
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
        """SIGTERM (the worker closes its Metro processes), then kill whatever Metro is left."""
        if self._stopped:
            return
        self._stopped = True
        self._record(self._bundler_tree())
        self.process.stop(timeout_s=20)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for pid, started in self.bundler_pids():
            if _start_time(pid) == started:  # still that process, not a reused PID
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def _read_bytes(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError:
        return b""


class Stack:
    """Start with `start()`; `close()` undoes whatever was done, in reverse, even half-way."""

    def __init__(self, root: Path, logs: Path) -> None:
        self.root = root
        self.logs = logs
        self.database = f"hivesync_bench_{uuid.uuid4().hex[:8]}"
        self.redis_prefix = f"hivesync-bench-{self.database}:"
        self.queue_prefix = f"bench-{uuid.uuid4().hex[:8]}-"
        self.env: dict[str, str] = {}
        self.api_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.api_port}"
        self.workers: list[Worker] = []
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
            "R2_ENDPOINT": weed.endpoint_url(ports),
            "R2_ACCESS_KEY": access_key,
            "R2_SECRET_KEY": secret_key,
            "R2_BUCKET": BUCKET,
            "R2_REGION": "auto",
        }
        for name in ("R2_PUBLIC_ENDPOINT", "BUNDLER_WORK_DIR", "BUNDLER_CACHE_DIR"):
            self.env.pop(name, None)
        migrate = [sys.executable, "-m", "cli", "migrate"]
        subprocess.run(migrate, env=self.env, check=True, capture_output=True, timeout=120)

        temporal.wait_for_port("127.0.0.1", temporal_port, timeout_s=60)
        weed.wait_until_ready(ports, access_key, secret_key, timeout_s=60, alive=seaweedfs.running)
        weed.create_bucket(weed.endpoint_url(ports), access_key, secret_key, BUCKET)

        api = ManagedProcess(
            "api",
            [sys.executable, "-m", "cli", "api", "--port", str(self.api_port)],
            env=self.env,
            log_file=self.logs / "api.log",
        ).start()
        self._cleanup.callback(api.stop)
        api.wait_for_port("127.0.0.1", self.api_port, timeout_s=60)
        httpx.get(f"{self.base_url}/health", timeout=30).raise_for_status()

    def start_worker(self, work_dir: Path, cache_dir: Path) -> Worker:
        """A `hivesync worker` whose Metro works in `work_dir` with its cache in `cache_dir`,
        once it is ready to take builds."""
        self._worker_count += 1
        name = f"worker-{self._worker_count}"
        log_file = self.logs / f"{name}.log"
        env = {**self.env, "BUNDLER_WORK_DIR": str(work_dir), "BUNDLER_CACHE_DIR": str(cache_dir)}
        process = ManagedProcess(
            name,
            [sys.executable, "-m", "cli", "worker", "--queue", "cpu_tasks"],
            env=env,
            log_file=log_file,
        )
        worker = Worker(name, process, log_file, work_dir, cache_dir)
        self._cleanup.callback(worker.stop)
        process.start()
        worker.watch()
        worker.wait_until_ready()
        self.workers.append(worker)
        return worker

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


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
