"""Logs are JSON lines with the request context, and never carry a password, token or secret."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from core.config import Settings
from core.logging import flush_logging
from tests.helpers import Account, libpq_url

Register = Callable[..., Account]
REQUIRED_FIELDS = {"timestamp", "level", "service", "request_id", "user_id", "message"}


def _log_lines(log_dir: Path) -> list[dict[str, object]]:
    flush_logging()
    return [
        json.loads(line)
        for line in (log_dir / "hivesync-api.log").read_text(encoding="utf-8").splitlines()
    ]


def test_log_lines_carry_the_request_context(
    client: TestClient, register: Register, log_dir: Path
) -> None:
    account = register()
    response = client.get(
        "/api/v1/users/me", headers={**account.headers, "X-Request-ID": "ctx-check-1"}
    )
    assert response.status_code == 200
    lines = _log_lines(log_dir)
    for line in lines:
        assert set(line) >= REQUIRED_FIELDS, line
        assert line["service"] == "hivesync-api"
    access = [line for line in lines if line["request_id"] == "ctx-check-1"]
    assert len(access) == 1
    assert access[0]["user_id"] == account.id
    assert access[0]["status"] == 200
    assert access[0]["path"] == "/api/v1/users/me"
    assert isinstance(access[0]["duration_ms"], float)
    assert access[0]["duration_ms"] >= 0


def test_no_secret_reaches_the_logs(
    client: TestClient, register: Register, settings: Settings, log_dir: Path, database_url: str
) -> None:
    import psycopg

    password = "Unmistakable-Passphrase-9731"
    account = register(password=password)
    login = client.post(
        "/api/v1/auth/login", json={"username": account.username, "password": password}
    )
    token = login.json()["access_token"]
    client.post(
        "/api/v1/auth/login", json={"username": account.username, "password": "Wrong-Guess-42"}
    )
    client.patch(
        "/api/v1/users/me",
        json={"password": "Another-Passphrase-5521", "current_password": password},
        headers={"Authorization": f"Bearer {token}"},
    )
    # A token in a query string (the preview manifest will accept one) is masked too.
    client.get(f"/health?token={token}")
    with psycopg.connect(libpq_url(database_url)) as connection:
        row = connection.execute("SELECT password_hash FROM users WHERE id = %s", (account.id,))
        password_hash = row.fetchone()[0]  # type: ignore[index]

    flush_logging()
    text = (log_dir / "hivesync-api.log").read_text(encoding="utf-8")
    for secret in (
        password,
        "Wrong-Guess-42",
        "Another-Passphrase-5521",
        token,
        account.token,
        token.split(".")[2],  # the signature alone
        password_hash,
        settings.jwt_secret_bytes.decode(),
    ):
        assert secret not in text
    assert "login succeeded" in text
    assert "login failed" in text
