"""Liveness and dependency checks, outside /api/v1 so that probes need no version."""

from dataclasses import asdict
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.deps import ResourcesDep
from contracts.errors import ErrorCode
from services.health import (
    check_database,
    check_queues,
    check_redis,
    check_storage,
    check_temporal,
    require_polled,
)

router = APIRouter(prefix="/health", tags=["health"])


class HealthStatus(BaseModel):
    status: Literal["ok"] = "ok"
    latency_ms: float | None = None


class QueueState(BaseModel):
    """One task queue, from Temporal's DescribeTaskQueue (approximate, cached ~5 s there)."""

    kind: str = Field(description="cpu_tasks or gpu_tasks")
    name: str = Field(description="The queue's name in Temporal (with TEMPORAL_TASK_QUEUE_PREFIX)")
    backlog: int = Field(description="Tasks waiting for a worker")
    backlog_age_s: float = Field(description="How long the oldest of them has waited")
    pollers: int = Field(description="Workers that polled it recently")
    last_poll_age_s: float | None = Field(description="Since the last poll; null when none")
    add_rate: float = Field(description="Tasks added per second")
    dispatch_rate: float = Field(description="Tasks handed to workers per second")


class QueuesStatus(BaseModel):
    status: Literal["ok"] = "ok"
    latency_ms: float
    queues: list[QueueState]


def _unavailable(message: str, details: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    return {
        503: {
            "description": "The dependency is down",
            "content": {
                "application/json": {
                    "example": {
                        "error": {
                            "code": ErrorCode.SERVICE_UNAVAILABLE,
                            "message": message,
                            "details": details,
                        }
                    }
                }
            },
        }
    }


_UNAVAILABLE = _unavailable(
    "database is unavailable: connection refused", {"dependency": "database"}
)


@router.get("")
async def health() -> HealthStatus:
    """The process answers."""
    return HealthStatus()


@router.get("/db", responses=_UNAVAILABLE)
async def health_db(resources: ResourcesDep) -> HealthStatus:
    return HealthStatus(latency_ms=await check_database(resources.engine))


@router.get("/redis", responses=_UNAVAILABLE)
async def health_redis(resources: ResourcesDep) -> HealthStatus:
    return HealthStatus(latency_ms=await check_redis(resources.redis))


@router.get("/temporal", responses=_UNAVAILABLE)
async def health_temporal(resources: ResourcesDep) -> HealthStatus:
    return HealthStatus(latency_ms=await check_temporal(resources.temporal))


@router.get("/storage", responses=_UNAVAILABLE)
async def health_storage(resources: ResourcesDep) -> HealthStatus:
    """Object storage: a HEAD of the bucket (the store answers, accepts the credentials and has
    the bucket)."""
    return HealthStatus(latency_ms=await check_storage(resources.storage))


@router.get(
    "/queues",
    responses=_unavailable(
        "cpu_tasks: no worker polls it; 3 task(s) wait, the oldest 42 s",
        {"dependency": "queues", "queues": {"cpu_tasks": "no worker polls it; ..."}},
    ),
)
async def health_queues(resources: ResourcesDep) -> QueuesStatus:
    """Each task queue's backlog and pollers: cpu_tasks, and gpu_tasks when the local model is
    enabled. 503 when Temporal cannot answer (`details.dependency` "temporal"), or when no
    worker has polled one of them lately (`details.dependency` "queues", `details.queues` says
    which and why): what is sent there would wait until a worker comes. A backlog with live
    pollers is load, not a fault: 200."""
    latency_ms, reports = await check_queues(resources.temporal, resources.settings)
    require_polled(reports)
    return QueuesStatus(
        latency_ms=latency_ms,
        queues=[QueueState(kind=report.kind, **asdict(report.stats)) for report in reports],
    )
