"""The health report's pure parts: when a queue is a problem, what the autoscaler's state says,
failure reasons in words, which checks decide the exit status."""

from __future__ import annotations

import socket
from dataclasses import replace

import pytest

from core.config import Settings
from core.errors import StorageError
from core.queues import LIVE_POLLER_S, QueueStats
from core.storage import ObjectNotFound
from services.health import (
    CheckResult,
    CheckStatus,
    HealthReport,
    describe_autoscaler,
    failure_reason,
    model_server_health_url,
    queue_problem,
    watched_queues,
)

POLLED = QueueStats(
    name="cpu_tasks",
    backlog=0,
    backlog_age_s=0.0,
    pollers=2,
    last_poll_age_s=4.0,
    add_rate=0.0,
    dispatch_rate=0.0,
)


def test_a_polled_queue_is_fine_even_with_a_backlog() -> None:
    assert queue_problem(POLLED) is None
    assert queue_problem(replace(POLLED, backlog=500, backlog_age_s=120.0)) is None
    # An idle worker's long poll lasts about a minute: not yet stale.
    assert queue_problem(replace(POLLED, last_poll_age_s=65.0)) is None


def test_a_queue_nobody_polls() -> None:
    nobody = replace(POLLED, pollers=0, last_poll_age_s=None)
    assert queue_problem(nobody) == "no worker polls it"
    assert queue_problem(replace(nobody, backlog=3, backlog_age_s=42.4)) == (
        "no worker polls it; 3 task(s) wait, the oldest 42 s"
    )


def test_pollers_that_stopped_polling_are_gone() -> None:
    """Temporal lists a stopped worker's pollers for minutes after its last poll."""
    stale = replace(POLLED, last_poll_age_s=LIVE_POLLER_S + 30)
    assert queue_problem(stale) == "no worker polled it for 120 s (its workers are gone)"


def test_watched_queues() -> None:
    local = Settings(_env_file=None, local_ai_enabled=True)
    remote = Settings(_env_file=None, local_ai_enabled=False)
    assert watched_queues(local) == ["cpu_tasks", "gpu_tasks"]
    assert watched_queues(remote) == ["cpu_tasks"]


@pytest.mark.parametrize(
    ("base_url", "health_url"),
    [
        ("http://127.0.0.1:8010/v1", "http://127.0.0.1:8010/health"),
        ("http://inference:8010/v1/", "http://inference:8010/health"),
        ("http://gpu.internal/serve/v1", "http://gpu.internal/serve/health"),
    ],
)
def test_model_server_health_url(base_url: str, health_url: str) -> None:
    settings = Settings(_env_file=None, local_ai_base_url=base_url)
    assert model_server_health_url(settings) == health_url


def test_autoscaler_state_in_words() -> None:
    state = {
        "last_decision": {"current": 0, "desired": 1, "reason": "work waits: scale from zero"},
        "last_error": "patch refused: 409 Conflict",
        "dry_run": False,
        "cooldown_left_s": 0,
    }
    assert describe_autoscaler(state) == (
        "current 0 -> desired 1; work waits: scale from zero",
        "patch refused: 409 Conflict",
    )
    flat = {"current": 2, "desired": 2, "reason": "steady", "dry_run": True}
    assert describe_autoscaler(flat) == ("current 2 -> desired 2; steady; dry run", None)
    assert describe_autoscaler({}) == ("no decision yet", None)


def test_failure_reasons_say_what_happened_and_not_where() -> None:
    wrapped = RuntimeError("Error 111 connecting to 10.0.0.5:6379")
    wrapped.__cause__ = ConnectionRefusedError(111, "Connect call failed ('10.0.0.5', 6379)")
    assert failure_reason(wrapped) == "connection refused"
    assert failure_reason(socket.gaierror(-2, "Name or service not known")) == "unknown host"
    assert failure_reason(ValueError('password authentication failed for user "x"')) == (
        "authentication failed"
    )
    assert failure_reason(KeyError("db.internal:5432")) == "KeyError"
    assert failure_reason(ObjectNotFound("Not in storage")) == "the bucket does not exist"
    assert failure_reason(StorageError("Storage could not check bucket: Could not connect")) == (
        "Storage could not check bucket: Could not connect"
    )


def test_only_needed_checks_decide() -> None:
    report = HealthReport(
        [
            CheckResult("database", CheckStatus.OK, True, "postgresql", 3.0),
            CheckResult("model_server", CheckStatus.SKIPPED, False, "not used"),
            CheckResult("autoscaler", CheckStatus.WARN, True, "last error: 403"),
        ]
    )
    assert report.healthy
    failed = HealthReport(
        [*report.checks, CheckResult("redis", CheckStatus.FAIL, True, "connection refused")]
    )
    assert not failed.healthy
    assert failed.as_dict()["failing"] == ["redis"]
