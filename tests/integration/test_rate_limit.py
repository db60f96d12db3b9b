"""Login rate limiting on the real Redis: per (client address, login name) and per address."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from fastapi.testclient import TestClient
from httpx2 import Response

from api.app import create_app
from core.config import Settings
from tests.helpers import PASSWORD, Account, assert_error, redis_keys, unique_name

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
