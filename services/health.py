"""Dependency checks: one per dependency behind the /health routes (each answers its latency or
raises ServiceUnavailable with the reason), and `collect_report`, which runs every check at
once for `hivesync health`.

What the report checks, and which checks are *needed* (a failed needed check makes the report,
and the command's exit status, say "not healthy"):

- database, temporal, storage: always needed;
- redis: needed unless RATE_LIMIT_BACKEND=memory (then skipped: nothing uses it);
- the task queues: `cpu_tasks` (its workflow tasks counted in) always, `gpu_tasks` when the
  local model is enabled; a queue fails when no worker has polled it lately, whatever waits in
  it (a backlog with live pollers is load, not a fault: it is shown, not failed);
- the model server (GET /health beside LOCAL_AI_BASE_URL's /v1): needed when LOCAL_AI_ENABLED,
  else skipped;
- the autoscaler (AUTOSCALER_STATUS_URL): needed when set, else skipped. Its last error (a
  refused patch, say) is a warning: the autoscaler answers, the report shows what it said.

Every check has CHECK_TIMEOUT_S. A failure says why in words (the kind of error and, where it
is known, "connection refused", "timed out", ...): never an address, a credential or a trace;
the log keeps the exception.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

import httpx
import sqlalchemy as sa
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from contracts.jobs import TaskQueue
from core.config import Settings
from core.db import create_engine
from core.errors import AppError, ServiceUnavailable
from core.queues import QueueStats, describe_queue
from core.redis import create_redis
from core.storage import ObjectNotFound, Storage
from core.temporal import connect_temporal

log = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 3.0

# Words for the usual failures, looked for in the exception chain's messages (which may name
# hosts and ports, so they are never shown themselves).
_REASONS = (
    ("connection refused", "connection refused"),
    ("name or service not known", "unknown host"),
    ("temporary failure in name resolution", "unknown host"),
    ("nodename nor servname", "unknown host"),
    ("password authentication failed", "authentication failed"),
    ("authentication", "authentication failed"),
    ("noauth", "authentication required"),
    ("timed out", "timed out"),
    ("timeout", "timed out"),
    ("connection reset", "connection reset"),
    ("ssl", "TLS failed"),
)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def failure_reason(exc: BaseException) -> str:
    """What went wrong, safe to show: in words where the failure is a usual one ("connection
    refused", "unknown host", ...), else the error's kind."""
    if isinstance(exc, ObjectNotFound):
        return "the bucket does not exist"
    if isinstance(exc, AppError):  # messages written for clients (StorageError, ...)
        return exc.message
    chain = list(_chain(exc))
    for item in chain:
        if isinstance(item, ConnectionRefusedError):
            return "connection refused"
        if isinstance(item, socket.gaierror):
            return "unknown host"
        if isinstance(item, TimeoutError):
            return "timed out"
    text = " ".join(str(item) for item in chain).lower()
    words = next((words for needle, words in _REASONS if needle in text), None)
    return words or type(exc).__name__


async def _timed(name: str, check: Awaitable[Any]) -> float:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            await check
    except TimeoutError:
        raise ServiceUnavailable(
            f"{name} did not answer within {CHECK_TIMEOUT_S:g} s", details={"dependency": name}
        ) from None
    except Exception as exc:
        log.warning("%s health check failed: %s", name, exc)
        raise ServiceUnavailable(
            f"{name} is unavailable: {failure_reason(exc)}", details={"dependency": name}
        ) from None
    return round((time.perf_counter() - started) * 1000, 2)


async def check_database(engine: AsyncEngine) -> float:
    async def select_one() -> None:
        async with engine.connect() as connection:
            await connection.execute(sa.text("SELECT 1"))

    return await _timed("database", select_one())


async def check_redis(redis: Redis | None) -> float:
    if redis is None:
        raise ServiceUnavailable(
            "redis is not configured (in-process rate limiting is in use)",
            details={"dependency": "redis"},
        )
    return await _timed("redis", redis.ping())


async def check_temporal(client: Client) -> float:
    return await _timed(
        "temporal", client.service_client.check_health(timeout=timedelta(seconds=CHECK_TIMEOUT_S))
    )


async def check_storage(storage: Storage) -> float:
    """A HEAD of the bucket (in a thread: boto3 blocks)."""
    return await _timed("storage", asyncio.to_thread(storage.check_bucket))


def model_server_health_url(settings: Settings) -> str:
    """The model server's GET /health: LOCAL_AI_BASE_URL without its /v1."""
    base = settings.local_ai_base_url.rstrip("/").removesuffix("/v1")
    return f"{base}/health"


async def check_model_server(http: httpx.AsyncClient, settings: Settings) -> float:
    """200 once the model is loaded; 503 while it loads."""

    async def get() -> None:
        response = await http.get(model_server_health_url(settings))
        if response.status_code != 200:
            loading = response.status_code == 503
            raise ServiceUnavailable(
                f"model server answered HTTP {response.status_code}"
                + (": the model is still loading" if loading else ""),
                details={"dependency": "model_server"},
            )

    return await _timed("model_server", get())


# --- task queues ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueReport:
    """One task queue as the health checks see it: Temporal's stats, and what is wrong."""

    kind: str  # cpu_tasks | gpu_tasks
    stats: QueueStats  # stats.name is the queue's full name (TEMPORAL_TASK_QUEUE_PREFIX + kind)
    problem: str | None  # None when a worker polls it


def watched_queues(settings: Settings) -> list[TaskQueue]:
    """The queues that must be polled: cpu_tasks always, gpu_tasks when the local model is on
    (otherwise model calls run on cpu_tasks and nothing is sent to gpu_tasks)."""
    return [TaskQueue.CPU, *([TaskQueue.GPU] if settings.local_ai_enabled else [])]


def queue_problem(stats: QueueStats) -> str | None:
    """Why nobody takes the queue's tasks, or None when a worker polled it lately."""
    waiting = (
        f"; {stats.backlog} task(s) wait, the oldest {stats.backlog_age_s:.0f} s"
        if stats.backlog
        else ""
    )
    if stats.pollers == 0:
        return "no worker polls it" + waiting
    if stats.live_pollers == 0:  # listed, but silent for longer than LIVE_POLLER_S
        since = "" if stats.last_poll_age_s is None else f" for {stats.last_poll_age_s:.0f} s"
        return f"no worker polled it{since} (its workers are gone)" + waiting
    return None


async def check_queues(client: Client, settings: Settings) -> tuple[float, list[QueueReport]]:
    """Each watched queue's stats and problem. Raises ServiceUnavailable (dependency
    "temporal") when Temporal cannot answer."""
    reports: list[QueueReport] = []

    async def describe_all() -> None:
        stats = await asyncio.gather(
            *(
                describe_queue(
                    client,
                    settings.task_queue(kind),
                    include_workflow_tasks=kind == TaskQueue.CPU,
                )
                for kind in watched_queues(settings)
            )
        )
        for kind, queue in zip(watched_queues(settings), stats, strict=True):
            reports.append(QueueReport(kind.value, queue, queue_problem(queue)))

    latency_ms = await _timed("temporal", describe_all())
    return latency_ms, reports


def require_polled(reports: list[QueueReport]) -> None:
    """Raises ServiceUnavailable (dependency "queues") naming each queue nobody polls."""
    problems = {report.kind: report.problem for report in reports if report.problem}
    if problems:
        raise ServiceUnavailable(
            "; ".join(f"{kind}: {problem}" for kind, problem in problems.items()),
            details={"dependency": "queues", "queues": problems},
        )


# --- autoscaler ----------------------------------------------------------------------------------


async def autoscaler_state(http: httpx.AsyncClient, url: str) -> tuple[float, dict[str, Any]]:
    """The autoscaler's /status JSON object."""
    state: dict[str, Any] = {}

    async def get() -> None:
        response = await http.get(url)
        if response.status_code != 200:
            raise ServiceUnavailable(
                f"autoscaler answered HTTP {response.status_code}",
                details={"dependency": "autoscaler"},
            )
        body = response.json()
        if not isinstance(body, dict):
            raise ServiceUnavailable(
                "autoscaler's status is not a JSON object", details={"dependency": "autoscaler"}
            )
        state.update(body)

    latency_ms = await _timed("autoscaler", get())
    return latency_ms, state


def describe_autoscaler(state: dict[str, Any]) -> tuple[str, str | None]:
    """(its last decision in words, its last error or None), from /status: the decision's
    `desired`, `current` and `reason` at the top level or under `last_decision`, and
    `last_error`."""
    decision = state.get("last_decision")
    decision = decision if isinstance(decision, dict) else state
    parts = []
    if decision.get("current") is not None or decision.get("desired") is not None:
        parts.append(f"current {decision.get('current', '?')} -> desired {decision.get('desired')}")
    if decision.get("reason"):
        parts.append(str(decision["reason"]))
    if state.get("dry_run"):
        parts.append("dry run")
    cooldown = state.get("cooldown_left_s")
    if isinstance(cooldown, int | float) and cooldown > 0:
        parts.append(f"cooldown {cooldown:.0f} s left")
    error = state.get("last_error") or decision.get("error")
    return ("; ".join(parts) or "no decision yet"), (str(error) if error else None)


# --- the whole report ----------------------------------------------------------------------------


class CheckStatus(StrEnum):
    OK = "ok"
    WARN = "warn"  # up, with something worth reading (never changes the exit status)
    FAIL = "fail"
    SKIPPED = "skipped"  # not configured or not used


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: CheckStatus
    needed: bool
    detail: str  # what was found, or why it failed, in words
    latency_ms: float | None = None
    data: dict[str, Any] = field(default_factory=dict)  # queue stats, autoscaler state


@dataclass(frozen=True)
class HealthReport:
    checks: list[CheckResult]

    @property
    def failing(self) -> list[str]:
        """The needed checks that failed."""
        return [c.name for c in self.checks if c.needed and c.status is CheckStatus.FAIL]

    @property
    def healthy(self) -> bool:
        return not self.failing

    def as_dict(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "failing": self.failing,
            "checks": [asdict(check) for check in self.checks],
        }


async def _result(name: str, needed: bool, check: Awaitable[float], found: str) -> CheckResult:
    try:
        latency_ms = await check
    except ServiceUnavailable as exc:
        return CheckResult(name, CheckStatus.FAIL, needed, exc.message)
    return CheckResult(name, CheckStatus.OK, needed, found, latency_ms)


def _skipped(name: str, why: str) -> CheckResult:
    return CheckResult(name, CheckStatus.SKIPPED, False, why)


async def _tcp_reachable(address: str) -> str | None:
    """None when something accepts a TCP connection at host:port, else why not. Temporal's
    client is asked only then: after a failed connect its native runtime may abort the process
    at exit (sdk-python#300)."""
    host, _, port = address.rpartition(":")
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            _, writer = await asyncio.open_connection(host.strip("[]"), int(port))
    except TimeoutError:
        return f"temporal did not answer within {CHECK_TIMEOUT_S:g} s"
    except (OSError, ValueError) as exc:
        return f"temporal is unavailable: {failure_reason(exc)}"
    writer.close()
    await writer.wait_closed()
    return None


def _queue_result(report: QueueReport, latency_ms: float) -> CheckResult:
    stats = report.stats
    polled = (
        f"{stats.pollers} poller(s), last poll {stats.last_poll_age_s:.0f} s ago"
        if stats.last_poll_age_s is not None
        else f"{stats.pollers} poller(s)"
    )
    backlog = f"backlog {stats.backlog}" + (
        f" (oldest {stats.backlog_age_s:.0f} s)" if stats.backlog else ""
    )
    return CheckResult(
        name=f"queue:{report.kind}",
        status=CheckStatus.FAIL if report.problem else CheckStatus.OK,
        needed=True,
        detail=report.problem or f"{backlog}; {polled}",
        latency_ms=latency_ms,
        data=asdict(stats),
    )


async def _temporal_and_queues(settings: Settings) -> list[CheckResult]:
    queue_names = [f"queue:{kind.value}" for kind in watched_queues(settings)]

    def down(why: str) -> list[CheckResult]:
        return [
            CheckResult("temporal", CheckStatus.FAIL, True, why),
            *(
                CheckResult(name, CheckStatus.FAIL, True, "temporal is down")
                for name in queue_names
            ),
        ]

    unreachable = await _tcp_reachable(settings.temporal_address)
    if unreachable:
        return down(unreachable)
    client = await connect_temporal(settings, lazy=True)
    namespace = f"namespace {settings.temporal_namespace}"
    temporal = await _result("temporal", True, check_temporal(client), namespace)
    if temporal.status is CheckStatus.FAIL:
        return down(temporal.detail)
    try:
        latency_ms, reports = await check_queues(client, settings)
    except ServiceUnavailable as exc:
        return [
            temporal,
            *(CheckResult(n, CheckStatus.FAIL, True, exc.message) for n in queue_names),
        ]
    return [temporal, *(_queue_result(report, latency_ms) for report in reports)]


async def _database(settings: Settings) -> CheckResult:
    engine = create_engine(settings)
    try:
        return await _result("database", True, check_database(engine), engine.dialect.name)
    finally:
        await engine.dispose()


async def _redis(settings: Settings) -> CheckResult:
    if settings.rate_limit_backend != "redis":
        return _skipped("redis", "not used: RATE_LIMIT_BACKEND=memory")
    redis = create_redis(settings)
    try:
        return await _result("redis", True, check_redis(redis), "PING answered")
    finally:
        await redis.aclose()


async def _storage(settings: Settings) -> CheckResult:
    storage = Storage(settings, connect_timeout_s=CHECK_TIMEOUT_S, read_timeout_s=CHECK_TIMEOUT_S)
    try:
        return await _result(
            "storage", True, check_storage(storage), f"bucket {settings.r2_bucket}"
        )
    finally:
        storage.client.close()


async def _model_server(settings: Settings) -> CheckResult:
    if not settings.local_ai_enabled:
        return _skipped("model_server", "not used: LOCAL_AI_ENABLED=false")
    async with httpx.AsyncClient(timeout=CHECK_TIMEOUT_S) as http:
        return await _result(
            "model_server", True, check_model_server(http, settings), "model loaded"
        )


async def _autoscaler(settings: Settings) -> CheckResult:
    if not settings.autoscaler_status_url:
        return _skipped("autoscaler", "not configured: AUTOSCALER_STATUS_URL is unset")
    async with httpx.AsyncClient(timeout=CHECK_TIMEOUT_S) as http:
        try:
            latency_ms, state = await autoscaler_state(http, settings.autoscaler_status_url)
        except ServiceUnavailable as exc:
            return CheckResult("autoscaler", CheckStatus.FAIL, True, exc.message)
    decision, error = describe_autoscaler(state)
    if error:
        return CheckResult(
            "autoscaler",
            CheckStatus.WARN,
            True,
            f"{decision}; last error: {error}",
            latency_ms,
            state,
        )
    return CheckResult("autoscaler", CheckStatus.OK, True, decision, latency_ms, state)


async def _guarded(
    name: str, check: Awaitable[CheckResult | list[CheckResult]]
) -> CheckResult | list[CheckResult]:
    """The check's result; a failed check (not an exception) should anything unforeseen go
    wrong in it (a malformed URL in the settings, say), so that one check never ends the
    report with a trace."""
    try:
        return await check
    except Exception as exc:
        log.warning("%s health check broke", name, exc_info=True)
        return CheckResult(name, CheckStatus.FAIL, True, f"the check failed: {type(exc).__name__}")


async def collect_report(settings: Settings) -> HealthReport:
    """Every check at once, each within CHECK_TIMEOUT_S, each on a client of its own."""
    checks: dict[str, Awaitable[CheckResult | list[CheckResult]]] = {
        "database": _database(settings),
        "redis": _redis(settings),
        "temporal": _temporal_and_queues(settings),
        "storage": _storage(settings),
        "model_server": _model_server(settings),
        "autoscaler": _autoscaler(settings),
    }
    outcomes = await asyncio.gather(*(_guarded(name, check) for name, check in checks.items()))
    results: list[CheckResult] = []
    for outcome in outcomes:
        results.extend(outcome if isinstance(outcome, list) else [outcome])
    return HealthReport(results)
