"""Every error has the documented shape: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

from fastapi.testclient import TestClient

from api.app import create_app
from core.config import Settings
from core.logging import flush_logging
from tests.helpers import Account, assert_error

Register = Callable[..., Account]


def test_unknown_route_is_not_found(client: TestClient) -> None:
    error = assert_error(client.get("/api/v1/nothing-here"), 404, "NOT_FOUND")
    assert error["message"] == "Not found"


def test_wrong_method_is_method_not_allowed(client: TestClient) -> None:
    response = client.delete("/api/v1/auth/login")
    assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["Allow"] == "POST"


def test_validation_error_lists_the_failing_fields(client: TestClient) -> None:
    response = client.post(
        "/api/v1/auth/register", json={"email": "nope", "username": "x", "password": "secret!!"}
    )
    error = assert_error(response, 422, "VALIDATION_ERROR")
    fields = {item["field"]: item for item in error["details"]["fields"]}
    assert set(fields) == {"email", "username"}
    assert fields["email"]["location"] == "body"
    assert all(item["message"] and item["type"] for item in fields.values())
    assert "secret!!" not in response.text


def test_malformed_json_is_a_validation_error(client: TestClient) -> None:
    response = client.post(
        "/api/v1/auth/login", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_error(response, 422, "VALIDATION_ERROR")


def test_conflict(client: TestClient, register: Register) -> None:
    account = register()
    response = client.post(
        "/api/v1/auth/register",
        json={"email": account.email, "username": account.username, "password": "whatever123"},
    )
    error = assert_error(response, 409, "CONFLICT")
    assert error["details"] == {"fields": ["email", "username"]}


def test_body_over_the_limit_is_refused(client: TestClient, settings: Settings) -> None:
    oversized = b"{" + b" " * settings.max_request_body_bytes + b"}"
    response = client.post(
        "/api/v1/auth/login", content=oversized, headers={"Content-Type": "application/json"}
    )
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")


def test_streamed_body_over_the_limit_is_refused(client: TestClient, settings: Settings) -> None:
    """No Content-Length (chunked upload): counted while it arrives."""

    def chunks() -> Iterator[bytes]:
        for _ in range(settings.max_request_body_bytes // 65536 + 2):
            yield b" " * 65536

    response = client.post(
        "/api/v1/auth/login", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in {key.lower() for key in response.request.headers}
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")


def test_internal_error_carries_the_request_id_and_nothing_else(
    make_settings: Callable[..., Settings], log_dir: Path
) -> None:
    settings = make_settings()
    secret = settings.jwt_secret_bytes.decode()
    app = create_app(settings)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError(f"database password is {secret}")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom", headers={"X-Request-ID": "req-500-check"})
    error = assert_error(response, 500, "INTERNAL_ERROR")
    assert error["message"] == "Internal server error"
    assert error["details"] == {"request_id": "req-500-check"}
    assert response.headers["X-Request-ID"] == "req-500-check"
    assert "Traceback" not in response.text
    assert "RuntimeError" not in response.text
    assert secret not in response.text

    # The traceback goes to the log, with the secret masked.
    flush_logging()
    lines = [json.loads(line) for line in (log_dir / "hivesync-api.log").read_text().splitlines()]
    logged = [line for line in lines if line["request_id"] == "req-500-check"]
    assert any("RuntimeError" in line.get("exception", "") for line in logged)
    assert any(line.get("status") == 500 for line in logged)
    assert secret not in json.dumps(logged)


def test_request_id_is_echoed_or_generated(client: TestClient) -> None:
    given = client.get("/health", headers={"X-Request-ID": "abc-123.def"})
    assert given.headers["X-Request-ID"] == "abc-123.def"
    generated = client.get("/health")
    assert len(generated.headers["X-Request-ID"]) == 32
    # Ids that could forge log lines or headers are replaced.
    for unsafe in ("a" * 200, "has space", 'quote"', "semi;colon"):
        response = client.get("/health", headers={"X-Request-ID": unsafe})
        assert response.headers["X-Request-ID"] != unsafe
    error_response = client.get("/missing", headers={"X-Request-ID": "on-errors-too"})
    assert error_response.headers["X-Request-ID"] == "on-errors-too"
