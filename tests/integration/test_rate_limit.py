"""Login rate limiting on the real Redis: per (client address, login name), per address and per
account; password checks share the account's budget; a Redis outage fails closed."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from fastapi.testclient import TestClient
from httpx2 import Response

from api.app import create_app
from cli.processes import ManagedProcess, free_port
from core.config import Settings
from tests.helpers import PASSWORD, Account, assert_error, libpq_url, redis_keys, unique_name

Register = Callable[..., Account]


@contextmanager
def api_client(settings: Settings, address: str = "203.0.113.7") -> Iterator[TestClient]:
    with TestClient(create_app(settings), client=(address, 40000)) as client:
        yield client


def _login(client: TestClient, username: str, password: str) -> Response:
    return client.post("/api/v1/auth/login", json={"username": username, "password": password})


def test_too_many_attempts_get_429_then_recover(
    make_settings: Callable[..., Settings], register: Register, redis_prefix: str
) -> None:
    account = register()
    # A window long enough for four bcrypt checks on a busy machine, short enough to wait out.
    settings = make_settings(
        login_rate_limit_per_user=3, login_rate_limit_per_ip=50, login_rate_limit_window_s=8
    )
    with api_client(settings) as client:
        for _ in range(3):
            assert_error(_login(client, account.username, "wrong password"), 401, "AUTH_ERROR")
        limited = _login(client, account.username, "wrong password")
        error = assert_error(limited, 429, "RATE_LIMIT")
        retry_after = int(limited.headers["Retry-After"])
        assert 1 <= retry_after <= 8
        assert error["details"] == {"retry_after": retry_after}
        # Even the right password waits: guessing must not be confirmed during the lockout.
        assert_error(_login(client, account.username, PASSWORD), 429, "RATE_LIMIT")
        # The counters live in Redis, under this session's prefix.
        assert redis_keys(redis_prefix + "ratelimit:login:")

        time.sleep(retry_after + 0.2)
        recovered = _login(client, account.username, PASSWORD)
        assert recovered.status_code == 200


def test_limit_is_per_address_and_login_name(
    make_settings: Callable[..., Settings], register: Register
) -> None:
    account = register()
    settings = make_settings(login_rate_limit_per_user=2, login_rate_limit_per_ip=50)
    with (
        api_client(settings, "198.51.100.1") as first,
        api_client(settings, "198.51.100.2") as other,
    ):
        for _ in range(2):
            _login(first, account.username, "wrong password")
        assert_error(_login(first, account.username, PASSWORD), 429, "RATE_LIMIT")
        # The same account from another address, and another account from the first address,
        # are not locked out.
        assert _login(other, account.username, PASSWORD).status_code == 200
        second = register()
        assert _login(first, second.username, PASSWORD).status_code == 200


def test_limit_per_address_covers_every_login_name(
    make_settings: Callable[..., Settings], register: Register
) -> None:
    account = register()
    settings = make_settings(login_rate_limit_per_user=50, login_rate_limit_per_ip=4)
    with api_client(settings) as client:
        for _ in range(4):
            _login(client, unique_name(), "wrong password")
        assert_error(_login(client, account.username, PASSWORD), 429, "RATE_LIMIT")


def test_a_successful_login_resets_the_account_counter(
    make_settings: Callable[..., Settings], register: Register
) -> None:
    account = register()
    settings = make_settings(login_rate_limit_per_user=3, login_rate_limit_per_ip=50)
    with api_client(settings) as client:
        for _ in range(2):
            _login(client, account.username, "typo")
        assert _login(client, account.username, PASSWORD).status_code == 200
        for _ in range(2):
            assert_error(_login(client, account.username, "typo"), 401, "AUTH_ERROR")


def test_counters_are_shared_by_api_replicas(
    make_settings: Callable[..., Settings], register: Register
) -> None:
    """Two app instances (two replicas) count against the same Redis budget."""
    account = register()
    settings = make_settings(login_rate_limit_per_user=4, login_rate_limit_per_ip=50)
    with api_client(settings) as replica_a, api_client(settings) as replica_b:
        for replica in (replica_a, replica_b, replica_a, replica_b):
            assert_error(_login(replica, account.username, "wrong"), 401, "AUTH_ERROR")
        assert_error(_login(replica_b, account.username, PASSWORD), 429, "RATE_LIMIT")
        assert_error(_login(replica_a, account.username, PASSWORD), 429, "RATE_LIMIT")


def test_registration_is_limited_per_address(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(register_rate_limit_per_ip=2)
    with api_client(settings) as client:
        for attempt in range(3):
            name = unique_name()
            response = client.post(
                "/api/v1/auth/register",
                json={"email": f"{name}@example.com", "username": name, "password": PASSWORD},
            )
            if attempt < 2:
                assert response.status_code == 201
            else:
                assert_error(response, 429, "RATE_LIMIT")
                assert int(response.headers["Retry-After"]) > 0


def test_in_process_limiter_when_redis_is_not_used(
    make_settings: Callable[..., Settings], register: Register, redis_prefix: str
) -> None:
    account = register()
    settings = make_settings(
        rate_limit_backend="memory",
        redis_key_prefix=redis_prefix + "memory-check:",
        login_rate_limit_per_user=2,
    )
    with api_client(settings) as client:
        for _ in range(2):
            _login(client, account.username, "wrong")
        assert_error(_login(client, account.username, PASSWORD), 429, "RATE_LIMIT")
    assert redis_keys(redis_prefix + "memory-check:") == []


def test_per_account_limit_holds_across_addresses_and_login_names(
    make_settings: Callable[..., Settings], register: Register
) -> None:
    """Rotating client addresses (and the account's username and email) gives no more guesses
    at one account than its own budget."""
    account = register()
    bystander = register()
    settings = make_settings(
        login_rate_limit_per_account=4, login_rate_limit_per_user=50, login_rate_limit_per_ip=50
    )
    logins = [account.username, account.email, account.username.upper(), account.email]
    for index, login in enumerate(logins):
        with api_client(settings, f"198.51.100.{10 + index}") as client:
            assert_error(_login(client, login, "wrong password"), 401, "AUTH_ERROR")
    with api_client(settings, "198.51.100.99") as fresh:
        limited = _login(fresh, account.email, PASSWORD)
        error = assert_error(limited, 429, "RATE_LIMIT")
        retry_after = int(limited.headers["Retry-After"])
        assert 1 <= retry_after <= settings.login_rate_limit_account_window_s
        assert error["details"] == {"retry_after": retry_after}
        # Another account is not affected.
        assert _login(fresh, bystander.username, PASSWORD).status_code == 200


def test_current_password_checks_share_the_account_budget(
    make_settings: Callable[..., Settings], register: Register
) -> None:
    """A stolen token gives no unlimited guesses at the password through PATCH /users/me."""
    account = register()
    settings = make_settings(login_rate_limit_per_account=3, login_rate_limit_per_user=50)
    with api_client(settings) as client:

        def change(current: str) -> Response:
            return client.patch(
                "/api/v1/users/me",
                json={"password": "a brand new passphrase", "current_password": current},
                headers=account.headers,
            )

        for _ in range(3):
            assert_error(change("a guess"), 403, "AUTH_ERROR")
        limited = change(PASSWORD)
        assert_error(limited, 429, "RATE_LIMIT")
        assert int(limited.headers["Retry-After"]) >= 1
        # The same budget guards logins from any address.
        with api_client(settings, "192.0.2.50") as elsewhere:
            assert_error(_login(elsewhere, account.username, PASSWORD), 429, "RATE_LIMIT")


@contextmanager
def private_redis() -> Iterator[tuple[int, ManagedProcess]]:
    """A redis-server of this test's own on a free port (the shared one is never stopped)."""
    port = free_port()
    server = ManagedProcess(
        "redis",
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--loglevel", "warning"],
    ).start()  # fmt: skip
    try:
        server.wait_for_port("127.0.0.1", port, timeout_s=30)
        yield port, server
    finally:
        server.stop()


def test_redis_down_fails_closed(
    make_settings: Callable[..., Settings], register: Register, database_url: str
) -> None:
    """Redis stopped: logins, registrations, password checks and quota-guarded requests answer
    503 in the error shape (no unlimited guesses, nothing stored), then work once it is back."""
    account = register()
    with private_redis() as (port, server):
        settings = make_settings(redis_url=f"redis://127.0.0.1:{port}/0")
        with api_client(settings) as client:
            assert _login(client, account.username, PASSWORD).status_code == 200
            project = client.post("/api/v1/projects", json={"name": "p"}, headers=account.headers)
            assert project.status_code == 201
            server.stop()

            answers = {
                "login": _login(client, account.username, PASSWORD),
                "wrong password": _login(client, account.username, "guess"),
                "register": client.post(
                    "/api/v1/auth/register",
                    json={"email": "new@example.com", "username": "newcomer", "password": PASSWORD},
                ),
                "password check": client.patch(
                    "/api/v1/users/me",
                    json={"email": "changed@example.com", "current_password": PASSWORD},
                    headers=account.headers,
                ),
                "documentation job (quota)": client.post(
                    "/api/v1/docs/jobs",
                    json={
                        "project_id": project.json()["id"],
                        "job_type": "function_doc",
                        "file_path": "f.py",
                        "content": "def f():\n    return 1\n",
                    },
                    headers=account.headers,
                ),
            }
            for what, answer in answers.items():
                error = assert_error(answer, 503, "SERVICE_UNAVAILABLE")
                assert error["details"]["dependency"] == "redis", what
                assert answer.headers["Retry-After"] == "5", what
                assert "127.0.0.1" not in answer.text, what
            # Nothing half-done: no account registered, the email unchanged.
            with psycopg.connect(libpq_url(database_url)) as connection:
                names = connection.execute("SELECT username, email FROM users").fetchall()
            assert ("newcomer", "new@example.com") not in names
            assert (account.username, account.email) in names

            server.start()
            server.wait_for_port("127.0.0.1", port)
            assert _login(client, account.username, PASSWORD).status_code == 200
