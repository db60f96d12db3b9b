"""The in-process rate limiter is refused in production when more than one API worker runs:
its counters (rate limits and quotas) would be multiplied by the number of workers."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from api.resources import check_worker_processes
from cli.main import app as cli
from core.config import Settings

STRONG_SECRET = "k" * 48
PRODUCTION: dict[str, Any] = {"environment": "production", "jwt_secret": STRONG_SECRET}


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("ENVIRONMENT", "JWT_SECRET", "RATE_LIMIT_BACKEND", "WEB_CONCURRENCY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path / "no-secrets"))
    monkeypatch.chdir(tmp_path)


def test_memory_limiter_with_several_production_workers_is_refused() -> None:
    with pytest.raises(ValidationError, match="RATE_LIMIT_BACKEND=memory"):
        settings(**PRODUCTION, rate_limit_backend="memory", web_concurrency=2)


@pytest.mark.parametrize(
    "values",
    [
        {**PRODUCTION, "rate_limit_backend": "memory", "web_concurrency": 1},
        {**PRODUCTION, "rate_limit_backend": "redis", "web_concurrency": 8},
        {"environment": "development", "rate_limit_backend": "memory", "web_concurrency": 4},
    ],
)
def test_accepted_combinations(values: dict[str, Any]) -> None:
    settings(**values)


def test_cli_refuses_workers_beyond_one_with_the_memory_limiter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("JWT_SECRET", STRONG_SECRET)
    monkeypatch.setenv("RATE_LIMIT_BACKEND", "memory")
    result = CliRunner().invoke(cli, ["api", "--workers", "3"])
    assert result.exit_code == 2
    assert "RATE_LIMIT_BACKEND=memory" in result.output
    assert "3 API workers" in result.output

    monkeypatch.setenv("WEB_CONCURRENCY", "2")
    result = CliRunner().invoke(cli, ["api"])
    assert result.exit_code == 2
    assert "RATE_LIMIT_BACKEND=memory" in result.output


def _start_worker(values: dict[str, Any], answers: multiprocessing.Queue[str]) -> None:
    try:
        check_worker_processes(settings(**values))
    except RuntimeError as exc:
        answers.put(f"refused: {exc}")
    else:
        answers.put("started")


@pytest.mark.parametrize(
    ("backend", "expected"),
    [("memory", "refused: RATE_LIMIT_BACKEND=memory"), ("redis", "started")],
)
def test_a_spawned_worker_refuses_the_memory_limiter(backend: str, expected: str) -> None:
    """`uvicorn --workers N` spawns each worker with multiprocessing, whatever WEB_CONCURRENCY
    says: such a worker refuses to start with the memory limiter in production."""
    context = multiprocessing.get_context("spawn")
    answers: multiprocessing.Queue[str] = context.Queue()
    worker = context.Process(
        target=_start_worker, args=({**PRODUCTION, "rate_limit_backend": backend}, answers)
    )
    worker.start()
    try:
        assert answers.get(timeout=120).startswith(expected)
    finally:
        worker.join(timeout=30)
    # The one process of a single-worker server is no spawned child: it starts.
    check_worker_processes(settings(**PRODUCTION, rate_limit_backend="memory"))
