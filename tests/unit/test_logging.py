from __future__ import annotations

import json
import logging
import sys

from core.logging import (
    JsonFormatter,
    Redactor,
    RequestContext,
    bind_request_context,
    reset_request_context,
)


def test_redacts_secret_shapes() -> None:
    redactor = Redactor(["configured-secret-value"])
    jwt_text = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJlLXZhbHVl"
    cases = {
        f"token {jwt_text} used": jwt_text,
        "Authorization: Bearer abcdefghijklmnopqrstuvwxyz0123": "abcdefghijklmnopqrstuvwxyz0123",
        "GET /manifest?token=opaque-value-1&x=1": "opaque-value-1",
        '{"password": "hunter2hunter2"}': "hunter2hunter2",
        "current_password='pa55word!'": "pa55word!",
        "api_key: sk-live-123456": "sk-live-123456",
        "hash $2b$12$" + "a" * 53: "a" * 53,
        "postgresql://user:pg-pass-77@db/hs": "pg-pass-77",
        "boom configured-secret-value boom": "configured-secret-value",
    }
    for text, secret in cases.items():
        redacted = redactor.text(text)
        assert secret not in redacted, text
        assert "REDACTED" in redacted


def test_ordinary_prose_is_left_alone() -> None:
    redactor = Redactor([])
    for text in (
        "Running upgrade -> 0001, users and preview logs.",
        "login failed",
        "GET /api/v1/projects 200",
        "password must be at least 8 characters",
    ):
        assert redactor.text(text) == text


def test_sensitive_keys_are_masked_whatever_the_value() -> None:
    redactor = Redactor([])
    assert redactor.value("password", "anything") == "[REDACTED]"
    assert redactor.value("Authorization", "x") == "[REDACTED]"
    assert redactor.value("headers", {"cookie": "c", "accept": "json"}) == {
        "cookie": "[REDACTED]",
        "accept": "json",
    }
    assert redactor.value("status", 200) == 200


def _record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("test", logging.WARNING, __file__, 1, message, None, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_formatter_writes_one_json_object_per_record() -> None:
    formatter = JsonFormatter("svc", Redactor(["s3cr3t-value"]))
    record = _record("hello s3cr3t-value", request_id="r1", user_id="u1", path="/x", token="t")
    entry = json.loads(formatter.format(record))
    assert entry["service"] == "svc"
    assert entry["level"] == "WARNING"
    assert entry["request_id"] == "r1"
    assert entry["user_id"] == "u1"
    assert entry["message"] == "hello [REDACTED]"
    assert entry["path"] == "/x"
    assert entry["token"] == "[REDACTED]"
    assert entry["timestamp"].endswith("+00:00")


def test_a_client_chosen_value_cannot_split_a_log_line() -> None:
    """NEL and the Unicode line and paragraph separators pass through JSON unescaped, and line
    readers end lines at them (a fuzzed request path did, breaking the log's one-line records)."""
    formatter = JsonFormatter("svc", Redactor([]))
    path = "/api/v1/projects/a\x85b\u2028c\u2029d\nforged é"
    line = formatter.format(_record("request", path=path))
    assert len(line.splitlines()) == 1
    assert json.loads(line)["path"] == path


def test_formatter_redacts_tracebacks() -> None:
    formatter = JsonFormatter("svc", Redactor(["s3cr3t-value"]))
    try:
        raise RuntimeError("leaked s3cr3t-value")
    except RuntimeError:
        record = _record("failed")
        record.exc_info = sys.exc_info()
    entry = json.loads(formatter.format(record))
    assert "RuntimeError: leaked [REDACTED]" in entry["exception"]


def test_request_context_binding() -> None:
    from core.logging import current_request_context

    assert current_request_context() is None
    token = bind_request_context(RequestContext(request_id="abc"))
    try:
        context = current_request_context()
        assert context is not None
        assert context.request_id == "abc"
    finally:
        reset_request_context(token)
    assert current_request_context() is None
