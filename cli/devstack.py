"""`hivesync dev`: the whole service on one machine, on embedded defaults.

Picks the backing services (Postgres or SQLite, Redis or an in-process limiter, a running
Temporal or its own dev server), migrates, starts the API, and on Ctrl-C (or SIGTERM) stops
everything it started.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import sys
import time
from pathlib import Path
from types import FrameType

import psycopg
import redis
from psycopg import sql
from sqlalchemy.engine import make_url

from core.config import Settings
from core.logging import configure_logging, flush_logging
from core.processes import ManagedProcess, port_open
from core.temporal import dev_server_command
from migrations import runner

log = logging.getLogger("hivesync.dev")

_POLL_INTERVAL_S = 0.5


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
    ) -> None:
        self.settings = settings
        self.data_dir = data_dir
        self.api_port = api_port
        self.temporal_port = temporal_port
        self.temporal_ui_port = temporal_ui_port
        self.children: list[ManagedProcess] = []

    def run(self) -> int:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        configure_logging(self.settings, service="hivesync-dev")
        previous_handlers = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            env = self._environment()
            self._start_temporal(env)
            self._start_api(env)
            self._announce(env)
            return self._supervise()
        except _Stop:
            return 0
        except Exception:
            log.exception("dev stack failed")
            return 1
        finally:
            for sig, handler in previous_handlers.items():
                signal.signal(sig, handler)
            self._stop_children()
            flush_logging()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        # A second Ctrl-C must not interrupt the orderly shutdown that the first one starts.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        raise _Stop(signal.Signals(signum).name)

    # --- choosing the backing services --------------------------------------------------

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(ENVIRONMENT="development", HOST="127.0.0.1", PORT=str(self.api_port))
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
        self.children.append(server.start())
        server.wait_for_port("127.0.0.1", self.temporal_port, timeout_s=60)
        log.info(
            "Temporal dev server started",
            extra={"address": address, "ui": f"http://127.0.0.1:{self.temporal_ui_port}"},
        )

    def _start_api(self, env: dict[str, str]) -> None:
        api = ManagedProcess("api", [sys.executable, "-m", "cli", "api"], env=env)
        self.children.append(api.start())
        api.wait_for_port("127.0.0.1", self.api_port, timeout_s=60)

    def _announce(self, env: dict[str, str]) -> None:
        database = "SQLite" if env["DATABASE_URL"].startswith("sqlite") else "Postgres"
        limiter = "in-process" if env.get("RATE_LIMIT_BACKEND") == "memory" else "Redis"
        lines = [
            "",
            "HiveSync is running (Ctrl-C stops everything):",
            f"  API docs     http://127.0.0.1:{self.api_port}/docs",
            f"  Temporal UI  http://127.0.0.1:{self.temporal_ui_port}",
            f"  database     {database}; rate limiting {limiter}",
            "",
        ]
        print("\n".join(lines), file=sys.stderr, flush=True)

    def _supervise(self) -> int:
        while True:
            for child in self.children:
                if not child.running():
                    log.error("%s exited unexpectedly; stopping the dev stack", child.name)
                    return 1
            time.sleep(_POLL_INTERVAL_S)

    def _stop_children(self) -> None:
        for child in reversed(self.children):  # the API first, Temporal last
            child.stop()
            log.info("stopped %s", child.name)
        self.children.clear()


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
