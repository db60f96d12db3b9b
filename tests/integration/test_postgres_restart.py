"""Postgres restarted or stopped under a running API: the API answers 503 in the error shape
while the database is away and answers again once it is back, without a restart of its own.

The shared Postgres of the test run is never stopped: each test here runs a private cluster
(initdb + pg_ctl on a free port in a temporary directory), stopped by its own pg_ctl."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from cli.processes import free_port
from core.config import Settings
from migrations import runner
from tests.fixtures.api import register_on
from tests.helpers import assert_error


def _postgres_bin() -> Path:
    """The directory of initdb and pg_ctl: $TEST_POSTGRES_BIN, the newest
    /usr/lib/postgresql/*/bin, or the PATH."""
    if configured := os.environ.get("TEST_POSTGRES_BIN"):
        return Path(configured)
    installed = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda path: int(path.split("/")[4])
    )
    if installed:
        return Path(installed[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise RuntimeError("initdb not found: install PostgreSQL or set TEST_POSTGRES_BIN")
    return Path(initdb).parent


class PrivatePostgres:
    """A throwaway cluster that trusts local connections. Postgres refuses to run as root, so
    under root its commands run as the `postgres` account."""

    def __init__(self) -> None:
        self.bin = _postgres_bin()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="hivesync-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.user: int | None = None
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            self.user = account.pw_uid
            os.chown(self.root, account.pw_uid, account.pw_gid)

    def _run(self, *command: str) -> None:
        # Output to a file, not a pipe: a server pg_ctl starts could hold a pipe open forever.
        with (self.root / "pg_ctl.out").open("ab") as output:
            subprocess.run(
                [str(self.bin / command[0]), *command[1:]],
                check=True,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                user=self.user,
                cwd=self.root,
                timeout=120,
            )

    def init(self) -> PrivatePostgres:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")
        return self

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c full_page_writes=off"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def restart(self) -> None:
        """A fast restart (as on a failover or an upgrade): every open connection is cut."""
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-m", "fast", "-w", "restart"
        )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def url(self, database: str, driver: str = "postgresql+psycopg") -> str:
        return f"{driver}://postgres@127.0.0.1:{self.port}/{database}"

    def remove(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivatePostgres]:
    """A private cluster with the application's database, migrated to head."""
    cluster = PrivatePostgres().init()
    try:
        cluster.start()
        with psycopg.connect(cluster.url("postgres", "postgresql"), autocommit=True) as admin:
            admin.execute("CREATE DATABASE hivesync")
        runner.upgrade(cluster.url("hivesync"))
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture
def running_postgres(private_postgres: PrivatePostgres) -> PrivatePostgres:
    """The private cluster, started again if a test left it stopped."""
    with contextlib.suppress(subprocess.CalledProcessError):
        private_postgres.start()  # fails when it runs already
    return private_postgres


def _api(
    make_settings: Callable[..., Settings], cluster: PrivatePostgres, **overrides: Any
) -> TestClient:
    settings = make_settings(database_url=cluster.url("hivesync"), **overrides)
    return TestClient(create_app(settings), raise_server_exceptions=False)


def _assert_database_unavailable(response: Any, cluster: PrivatePostgres) -> None:
    error = assert_error(response, 503, "SERVICE_UNAVAILABLE")
    assert error["details"]["dependency"] == "database"
    for internal in (str(cluster.port), "127.0.0.1", "psycopg", "hivesync"):  # nothing leaks
        assert internal not in response.text


def test_postgres_restarted_the_api_answers_without_a_restart(
    make_settings: Callable[..., Settings], running_postgres: PrivatePostgres
) -> None:
    """With `db_pool_pre_ping` (the default) a restart costs no failed request: each pooled
    connection is checked before use and replaced when the server cut it."""
    assert Settings.model_fields["db_pool_pre_ping"].default is True
    with _api(make_settings, running_postgres) as client:
        account = register_on(client)
        headers = {"Authorization": f"Bearer {account.token}"}
        assert client.get("/api/v1/users/me", headers=headers).status_code == 200
        assert (
            client.post("/api/v1/projects", json={"name": "before"}, headers=headers).status_code
            == 201
        )

        running_postgres.restart()

        assert client.get("/api/v1/users/me", headers=headers).status_code == 200
        assert client.get("/api/v1/projects", headers=headers).status_code == 200
        created = client.post("/api/v1/projects", json={"name": "after"}, headers=headers)
        assert created.status_code == 201, created.text
        assert client.get("/health/db").status_code == 200


def test_postgres_down_is_a_503_and_back_is_served_again(
    make_settings: Callable[..., Settings], running_postgres: PrivatePostgres
) -> None:
    with _api(make_settings, running_postgres, db_connect_timeout_s=2) as client:
        account = register_on(client)
        headers = {"Authorization": f"Bearer {account.token}"}
        assert client.get("/api/v1/projects", headers=headers).status_code == 200

        running_postgres.stop()
        try:
            _assert_database_unavailable(
                client.get("/api/v1/projects", headers=headers), running_postgres
            )
            _assert_database_unavailable(
                client.post("/api/v1/projects", json={"name": "lost"}, headers=headers),
                running_postgres,
            )
            _assert_database_unavailable(client.get("/health/db"), running_postgres)
            listed = client.get("/api/v1/projects", headers=headers)
            assert listed.headers["Retry-After"] == "5"  # the API's own routes: retry shortly
        finally:
            running_postgres.start()

        listed = client.get("/api/v1/projects", headers=headers)
        assert listed.status_code == 200, listed.text
        assert listed.json()["total"] == 0  # the refused write left nothing behind
        created = client.post("/api/v1/projects", json={"name": "back"}, headers=headers)
        assert created.status_code == 201, created.text


def test_without_pre_ping_a_restart_costs_one_request_per_pooled_connection(
    make_settings: Callable[..., Settings], running_postgres: PrivatePostgres
) -> None:
    """`DB_POOL_PRE_PING=false` trades that for a round trip less per request: the request
    that finds its connection cut answers 503 (retryable), and that error makes the pool drop
    every connection older than the restart, so the next request is served."""
    with _api(
        make_settings, running_postgres, db_pool_pre_ping=False, db_pool_size=1, db_max_overflow=0
    ) as client:
        account = register_on(client)
        headers = {"Authorization": f"Bearer {account.token}"}
        assert client.get("/api/v1/users/me", headers=headers).status_code == 200

        running_postgres.restart()

        _assert_database_unavailable(
            client.get("/api/v1/users/me", headers=headers), running_postgres
        )
        assert client.get("/api/v1/users/me", headers=headers).status_code == 200
