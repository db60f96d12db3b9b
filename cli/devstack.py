"""`hivesync dev`: the whole service on one machine, on embedded defaults.

Picks the backing services (Postgres or SQLite, Redis or an in-process limiter, a running
Temporal or its own dev server, the configured S3 endpoint or its own SeaweedFS), migrates,
starts a preview worker (warm Metro) and the API, and on Ctrl-C (or SIGTERM) stops everything
it started: the API and the worker first, then SeaweedFS, then Temporal.

Killed outright (SIGKILL, a supervisor's short grace period) it cannot stop them: Linux then
sends each child SIGTERM (PR_SET_PDEATHSIG), and the next `hivesync dev` on the same data dir
stops whatever is still running from the children it recorded there (`children.json`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import httpx
import psycopg
import redis
from psycopg import sql
from sqlalchemy.engine import make_url
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue as TaskQueueRef
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from cli import seaweedfs as weed
from cli.processes import ChildRecord, ManagedProcess, port_open
from cli.temporal_server import dev_server_command
from contracts.jobs import TaskQueue
from core.config import Settings
from core.logging import configure_logging, flush_logging
from migrations import runner

log = logging.getLogger("hivesync.dev")

_POLL_INTERVAL_S = 0.5
# The worker warms Metro up before it polls: seconds with a warm cache, ~15 s with a cold one.
_WORKER_START_TIMEOUT_S = 120.0
# A worker that is finishing a build gets this long before it is killed.
_WORKER_STOP_TIMEOUT_S = 30.0
# Ray starts in ~10 s; the first run also converts the embedded GGUF model (~20 s).
_INFERENCE_START_TIMEOUT_S = 240.0
# Serve and Ray shut down in ~5-10 s.
_INFERENCE_STOP_TIMEOUT_S = 30.0


class _Stop(Exception):
    """Raised by the signal handler to leave the supervision loop."""


class DevStack:
    def __init__(
        self,
        settings: Settings,
        *,
        data_dir: Path,
        api_port: int,
        temporal_port: int,
        temporal_ui_port: int,
        s3_port: int = 8333,
        inference_port: int = 8010,
        autoscaler_port: int = 8020,
    ) -> None:
        self.settings = settings
        self.data_dir = data_dir
        self.api_port = api_port
        self.temporal_port = temporal_port
        self.temporal_ui_port = temporal_ui_port
        self.s3_port = s3_port
        self.inference_port = inference_port
        self.autoscaler_port = autoscaler_port
        self.children: list[ManagedProcess] = []
        # What to do once a child has stopped (by name): e.g. remove the sockets it left.
        self._after_stop: dict[str, Callable[[], None]] = {}
        self._storage_note = ""
        self._workers: dict[str, ManagedProcess] = {}
        self._inference: ManagedProcess | None = None
        self._inference_note = "disabled (LOCAL_AI_ENABLED=false)"
        self._autoscaler_note = "not started (no local model)"
        self._stop_signal: str | None = None
        self._record = ChildRecord(data_dir / "children.json")

    def run(self) -> int:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        configure_logging(self.settings, service="hivesync-dev")
        # Readiness probes (SeaweedFS's master) would log every attempt at INFO.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        reclaimed = self._record.reclaim()
        if reclaimed:
            log.warning("stopped what a killed hivesync dev left running: %s", ", ".join(reclaimed))
        previous_handlers = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            env = self._environment()
            steps = (
                self._start_temporal,
                self._start_storage,
                self._start_inference,  # loads the model while the rest starts
                self._start_workers,  # the cpu worker warms Metro up meanwhile
                self._start_api,
                # The gpu_tasks worker polls only once its model server answers.
                self._wait_for_inference,
                self._wait_for_workers,
                self._start_autoscaler,
                self._write_dev_env,
                self._announce,
                self._report_health,
            )
            for step in steps:
                self._check_stop()
                step(env)
            return self._supervise()
        except _Stop:
            return 0
        except Exception:
            log.exception("dev stack failed")
            return 1
        finally:
            # A second Ctrl-C must not interrupt the orderly shutdown that the first one starts.
            for sig in previous_handlers:
                signal.signal(sig, signal.SIG_IGN)
            self._stop_children()
            for sig, handler in previous_handlers.items():
                signal.signal(sig, handler)
            flush_logging()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        self._stop_signal = signal.Signals(signum).name
        # Interrupts whatever is waiting. Where Python swallows it (raised in a weakref
        # callback during garbage collection, say), the next step or the supervision loop
        # sees the flag instead.
        raise _Stop(self._stop_signal)

    def _check_stop(self) -> None:
        if self._stop_signal is not None:
            raise _Stop(self._stop_signal)

    # --- choosing the backing services --------------------------------------------------

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(ENVIRONMENT="development", HOST="127.0.0.1", PORT=str(self.api_port))
        if "base_url" not in self.settings.model_fields_set:
            env["BASE_URL"] = f"http://127.0.0.1:{self.api_port}"  # in the API's status URLs
        if self.settings.jwt_secret_generated:
            env["JWT_SECRET"] = self._persistent_jwt_secret()
        env["DATABASE_URL"] = self._database_url()
        runner.upgrade(env["DATABASE_URL"])
        log.info("database migrated")
        if not self._redis_reachable():
            env["RATE_LIMIT_BACKEND"] = "memory"
        return env

    def _persistent_jwt_secret(self) -> str:
        """A random secret kept in the data dir, so that dev tokens survive restarts."""
        path = self.data_dir / "jwt_secret"
        if not path.exists():
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        return path.read_text().strip()

    def _database_url(self) -> str:
        url = self.settings.sqlalchemy_url
        if url.startswith("sqlite"):
            log.info("using SQLite from the configuration", extra={"database_url": url})
            return url
        try:
            _ensure_postgres_database(url, self.settings.db_connect_timeout_s)
        except psycopg.Error as exc:
            fallback = f"sqlite+aiosqlite:///{self.data_dir / 'hivesync.db'}"
            log.warning(
                "Postgres is not reachable (%s): falling back to SQLite at %s",
                str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                fallback,
            )
            return fallback
        log.info("using Postgres", extra={"database": make_url(url).database})
        return url

    def _redis_reachable(self) -> bool:
        if self.settings.rate_limit_backend == "memory":
            log.info("rate limiting in process (RATE_LIMIT_BACKEND=memory)")
            return False
        client = redis.Redis.from_url(
            self.settings.redis_dsn, socket_connect_timeout=2, socket_timeout=2
        )
        try:
            client.ping()
        except redis.RedisError as exc:
            log.warning(
                "Redis is not reachable (%s): falling back to the in-process rate limiter", exc
            )
            return False
        finally:
            client.close()
        log.info("using Redis for rate limiting")
        return True

    # --- children ------------------------------------------------------------------------

    def _start_temporal(self, env: dict[str, str]) -> None:
        address = f"127.0.0.1:{self.temporal_port}"
        env["TEMPORAL_ADDRESS"] = address
        env["TEMPORAL_NAMESPACE"] = "default"
        if port_open("127.0.0.1", self.temporal_port):
            log.info("using the Temporal server already listening on %s", address)
            return
        server = ManagedProcess(
            "temporal",
            dev_server_command(
                port=self.temporal_port,
                ui_port=self.temporal_ui_port,
                db_file=self.data_dir / "temporal.db",
            ),
            log_file=self.data_dir / "temporal.log",
        )
        self._launch(server)
        server.wait_for_port("127.0.0.1", self.temporal_port, timeout_s=60)
        _wait_for_200(
            f"http://127.0.0.1:{self.temporal_ui_port}", alive=server.running, timeout_s=60
        )
        log.info(
            "Temporal dev server started",
            extra={"address": address, "ui": f"http://127.0.0.1:{self.temporal_ui_port}"},
        )

    def _start_storage(self, env: dict[str, str]) -> None:
        """The configured S3 endpoint (R2_ENDPOINT), else a SeaweedFS of our own; either way the
        children get R2_ENDPOINT, R2_ACCESS_KEY, R2_SECRET_KEY, R2_BUCKET and R2_REGION."""
        settings = self.settings
        env.update(R2_BUCKET=settings.r2_bucket, R2_REGION=settings.r2_region)
        if settings.r2_endpoint:
            env["R2_ENDPOINT"] = settings.r2_endpoint
            for name, value in (
                ("R2_ACCESS_KEY", settings.r2_access_key),
                ("R2_SECRET_KEY", settings.r2_secret_key),
            ):
                if value is not None:
                    env[name] = value.get_secret_value()
            log.info(
                "using the S3 endpoint from the configuration",
                extra={"endpoint": settings.r2_endpoint, "bucket": settings.r2_bucket},
            )
            self._storage_note = f"{settings.r2_endpoint} (R2_ENDPOINT)"
            return

        ports = weed.WeedPorts.consecutive(self.s3_port)
        busy = [port for port in ports.all() if port_open(weed.HOST, port, timeout_s=0.2)]
        if busy:
            raise RuntimeError(
                f"cannot start SeaweedFS on ports {self.s3_port}-{ports.admin} and "
                f"{ports.admin_grpc}: {', '.join(map(str, busy))} in use "
                "(choose others with --s3-port, or set R2_ENDPOINT)"
            )
        root = self.data_dir / "seaweedfs"
        log_dir = root / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        identities = root / "identities.json"
        access_key, secret_key = _storage_credentials(identities)
        server = ManagedProcess(
            "seaweedfs",
            weed.mini_command(
                data_dir=root, log_dir=log_dir, identities_file=identities, ports=ports
            ),
            env=weed.weed_env(),
            cwd=root,
            log_file=log_dir / "weed.out",
        )
        self._after_stop[server.name] = lambda: weed.remove_grpc_sockets(ports)
        weed.remove_grpc_sockets(ports)  # left by a SeaweedFS that was killed
        self._launch(server)
        weed.wait_until_ready(ports, access_key, secret_key, timeout_s=60, alive=server.running)
        endpoint = weed.endpoint_url(ports)
        weed.create_bucket(endpoint, access_key, secret_key, settings.r2_bucket)
        env.update(R2_ENDPOINT=endpoint, R2_ACCESS_KEY=access_key, R2_SECRET_KEY=secret_key)
        log.info(
            "SeaweedFS started",
            extra={"endpoint": endpoint, "bucket": settings.r2_bucket, "data_dir": str(root)},
        )
        self._storage_note = f"{endpoint} (SeaweedFS in {root})"

    def _start_inference(self, env: dict[str, str]) -> None:
        """The local model on Ray Serve (`hivesync inference`), unless LOCAL_AI_ENABLED is off
        or a server already listens on its port."""
        if not self.settings.local_ai_enabled:
            log.info("local model disabled (LOCAL_AI_ENABLED=false)")
            return
        base_url = f"http://127.0.0.1:{self.inference_port}/v1"
        env["LOCAL_AI_BASE_URL"] = base_url
        env["INFERENCE_PORT"] = str(self.inference_port)
        self._inference_note = f"{base_url} (SmolLM2-135M-Instruct unless LOCAL_AI_MODEL_PATH)"
        if port_open("127.0.0.1", self.inference_port):
            log.info("using the local model server already listening", extra={"url": base_url})
            self._inference_note = f"{base_url} (already running)"
            return
        if "inference_cache_dir" not in self.settings.model_fields_set:
            env["INFERENCE_CACHE_DIR"] = str(self.data_dir / "models")
        self._inference = ManagedProcess(
            "inference", [sys.executable, "-m", "cli", "inference"], env=env
        )
        self._launch(self._inference)

    def _wait_for_inference(self, _env: dict[str, str]) -> None:
        """Until the model server (ours, or the one already listening) answers /health: the
        gpu_tasks worker polls only then."""
        if not self.settings.local_ai_enabled:
            return
        server = self._inference
        health = f"http://127.0.0.1:{self.inference_port}/health"
        _wait_for_200(
            health,
            alive=server.running if server is not None else lambda: True,
            timeout_s=_INFERENCE_START_TIMEOUT_S,
        )
        log.info("local model ready", extra={"url": health})

    def _start_workers(self, env: dict[str, str]) -> None:
        """A cpu_tasks worker (workflows, Metro, light steps) and, with the local model, a
        gpu_tasks worker for its calls; each polls once ready (`_wait_for_workers`)."""
        metro = self.settings.bundler_dir / "node_modules" / "metro"
        if not metro.is_dir():
            raise RuntimeError(
                f"the bundler toolchain is missing: run `npm ci` in {self.settings.bundler_dir} "
                "(`make dev` does)"
            )
        if "bundler_work_dir" in self.settings.model_fields_set:
            log.info(
                "bundling in BUNDLER_WORK_DIR from the configuration",
                extra={"bundler_work_dir": str(self.settings.bundler_work_dir)},
            )
        else:
            env["BUNDLER_WORK_DIR"] = str(self.data_dir / "bundler")
        queues = [TaskQueue.CPU]
        if self.settings.local_ai_enabled:
            queues.append(TaskQueue.GPU)
        for queue in queues:
            command = [sys.executable, "-m", "cli", "worker", "--queue", queue]
            worker_env = env
            if queue == TaskQueue.GPU and "inference_worker_idle_s" not in (
                self.settings.model_fields_set
            ):
                # This model server never scales to zero: poll (and probe it) for good, so that
                # a job never waits for the worker to notice its backlog.
                worker_env = {**env, "INFERENCE_WORKER_IDLE_S": "0"}
            worker = ManagedProcess(f"worker {queue}", command, env=worker_env)
            self._workers[queue] = worker
            self._launch(worker)

    def _wait_for_workers(self, _env: dict[str, str]) -> None:
        """Wait until each worker polls its task queue (Metro is warm by then; the gpu_tasks
        worker polls once its model server answers, so this follows `_wait_for_inference`)."""
        for queue, worker in self._workers.items():
            assert worker.pid is not None
            task_queue = self.settings.task_queue(queue)
            asyncio.run(
                _wait_for_poller(
                    f"127.0.0.1:{self.temporal_port}",
                    task_queue,
                    identity=f"{worker.pid}@",
                    alive=worker.running,
                    timeout_s=_WORKER_START_TIMEOUT_S,
                )
            )
            log.info("worker polling", extra={"task_queue": task_queue, "pid": worker.pid})

    def _start_autoscaler(self, env: dict[str, str]) -> None:
        """With the local model: the GPU autoscaler in dry-run (there is no Kubernetes here), so
        that its decisions on the real gpu_tasks backlog can be watched at /status; ready once
        its first evaluation ran."""
        if not self.settings.local_ai_enabled:
            return
        env.update(
            AUTOSCALER_DRY_RUN="true",
            AUTOSCALER_HOST="127.0.0.1",
            AUTOSCALER_PORT=str(self.autoscaler_port),
            AUTOSCALER_STATUS_URL=f"http://127.0.0.1:{self.autoscaler_port}/status",
        )
        autoscaler = ManagedProcess(
            "autoscaler", [sys.executable, "-m", "cli", "autoscaler"], env=env
        )
        self._launch(autoscaler)
        autoscaler.wait_for_port("127.0.0.1", self.autoscaler_port, timeout_s=60)
        _wait_for_200(
            f"http://127.0.0.1:{self.autoscaler_port}/health",
            alive=autoscaler.running,
            timeout_s=60,
        )
        self._autoscaler_note = f"{env['AUTOSCALER_STATUS_URL']} (dry run)"
        log.info("autoscaler ready", extra={"url": env["AUTOSCALER_STATUS_URL"]})

    def _start_api(self, env: dict[str, str]) -> None:
        """The API, once it answers and reaches its database and Temporal."""
        api = ManagedProcess("api", [sys.executable, "-m", "cli", "api"], env=env)
        self._launch(api)
        api.wait_for_port("127.0.0.1", self.api_port, timeout_s=60)
        for path in ("/health", "/health/db", "/health/temporal"):
            _wait_for_200(
                f"http://127.0.0.1:{self.api_port}{path}", alive=api.running, timeout_s=60
            )
        log.info("API ready", extra={"url": f"http://127.0.0.1:{self.api_port}"})

    @property
    def dev_env_file(self) -> Path:
        return self.data_dir / "dev.env"

    def _write_dev_env(self, env: dict[str, str]) -> None:
        """The settings the children run with (generated storage keys and JWT secret included),
        readable by this user only: `hivesync health --env-file .data/dev.env` checks this
        stack from another shell."""
        fields = {name.upper() for name in Settings.model_fields}
        lines = [
            f"{name}={_dotenv_quoted(value)}"
            for name, value in sorted(env.items())
            if name in fields and "\n" not in value
        ]
        self.dev_env_file.touch(mode=0o600)
        self.dev_env_file.chmod(0o600)
        self.dev_env_file.write_text("\n".join(lines) + "\n")

    def _report_health(self, _env: dict[str, str]) -> None:
        """`hivesync health` of the stack just started, printed under the banner."""
        from cli.health import print_table, run_health

        report = asyncio.run(run_health(Settings(_env_file=self.dev_env_file)))
        print_table(report)
        if not report.healthy:
            log.warning("not every part is healthy", extra={"failing": report.failing})

    def _announce(self, env: dict[str, str]) -> None:
        database = "SQLite" if env["DATABASE_URL"].startswith("sqlite") else "Postgres"
        limiter = "in-process" if env.get("RATE_LIMIT_BACKEND") == "memory" else "Redis"
        lines = [
            "",
            "HiveSync is running (Ctrl-C stops everything):",
            f"  API docs     http://127.0.0.1:{self.api_port}/docs",
            f"  Temporal UI  http://127.0.0.1:{self.temporal_ui_port}",
            f"  S3 storage   {self._storage_note}, bucket {env['R2_BUCKET']}",
            f"  workers      {', '.join(self.settings.task_queue(q) for q in self._workers)}",
            f"  local model  {self._inference_note}",
            f"  autoscaler   {self._autoscaler_note}",
            f"  database     {database}; rate limiting {limiter}",
            f"  health       hivesync health --env-file {_relative(self.dev_env_file)}",
            "",
        ]
        print("\n".join(lines), file=sys.stderr, flush=True)

    def _launch(self, child: ManagedProcess) -> None:
        """Start a child that dies with this process, and record it for the next run (called
        from the main thread: Linux signals the child when the thread that forked it exits)."""
        child.die_with_parent = signal.SIGTERM
        self.children.append(child)
        child.start()
        self._record.write(self.children)

    def _supervise(self) -> int:
        while self._stop_signal is None:
            for child in self.children:
                if not child.running():
                    log.error("%s exited unexpectedly; stopping the dev stack", child.name)
                    return 1
            time.sleep(_POLL_INTERVAL_S)
        return 0

    def _stop_children(self) -> None:
        # Started as Temporal, SeaweedFS, the model server, workers, API, autoscaler: so the
        # autoscaler, the API and the workers stop first, then the model server, SeaweedFS,
        # and Temporal last.
        for child in reversed(self.children):
            timeout_s = 10.0
            if child.name.startswith("worker"):
                timeout_s = _WORKER_STOP_TIMEOUT_S
            elif child.name == "inference":
                timeout_s = _INFERENCE_STOP_TIMEOUT_S
            child.stop(timeout_s=timeout_s)
            after_stop = self._after_stop.pop(child.name, None)
            if after_stop is not None:
                after_stop()
            log.info("stopped %s", child.name)
        self.children.clear()
        self._record.clear()


def _dotenv_quoted(value: str) -> str:
    """A value as a double-quoted .env string (backslashes and quotes escaped)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _relative(path: Path) -> Path:
    """`path` from the working directory when it lies below it (shorter to type)."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def _storage_credentials(identities: Path) -> tuple[str, str]:
    """The SeaweedFS credentials kept in its identities file (mode 0600), generated the first
    time so that restarts (and objects signed before them) keep working."""
    try:
        config = json.loads(identities.read_text(encoding="utf-8"))
        credential = config["identities"][0]["credentials"][0]
        return str(credential["accessKey"]), str(credential["secretKey"])
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        log.warning("unreadable %s (%s): generating new credentials", identities, exc)
    access_key, secret_key = weed.generate_credentials()
    weed.write_identities(identities, access_key, secret_key)
    log.info("generated SeaweedFS credentials", extra={"identities_file": str(identities)})
    return access_key, secret_key


def _wait_for_200(url: str, *, alive: Callable[[], bool], timeout_s: float) -> None:
    """Wait until `url` answers 200; fail early when `alive()` says its process has exited."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"the process behind {url} exited (its output says why)")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(_POLL_INTERVAL_S)
    raise TimeoutError(f"{url} did not answer 200 in {timeout_s:.0f} s")


async def _wait_for_poller(
    address: str,
    task_queue: str,
    *,
    identity: str,
    alive: Callable[[], bool],
    timeout_s: float,
) -> None:
    """Wait until a poller whose identity starts with `identity` (`<pid>@`, the SDK's default)
    polls `task_queue` for activities; fail early when `alive()` says that it has exited."""
    client = await Client.connect(address, namespace="default")
    request = DescribeTaskQueueRequest(
        namespace="default",
        task_queue=TaskQueueRef(name=task_queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("the worker exited before polling (its output says why)")
        response = await client.workflow_service.describe_task_queue(request)
        if any(poller.identity.startswith(identity) for poller in response.pollers):
            return
        await asyncio.sleep(_POLL_INTERVAL_S)
    raise TimeoutError(f"the worker did not poll {task_queue} in {timeout_s:.0f} s")


def _ensure_postgres_database(url: str, timeout_s: float) -> None:
    """Connect to the configured database, creating it when the server is up but the database
    does not exist yet."""
    target = make_url(url).set(drivername="postgresql")
    database = target.database or "hivesync"
    timeout = max(1, round(timeout_s))
    conninfo = target.render_as_string(hide_password=False)
    try:
        psycopg.connect(conninfo, connect_timeout=timeout).close()
        return
    except psycopg.OperationalError as exc:
        if "does not exist" not in str(exc):
            raise
    maintenance = target.set(database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(maintenance, connect_timeout=timeout, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    log.info("created Postgres database %s", database)
