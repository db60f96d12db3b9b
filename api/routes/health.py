"""Liveness and dependency checks, outside /api/v1 so that probes need no version."""

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel

from api.deps import ResourcesDep
from contracts.errors import ErrorCode
from services.health import check_database, check_redis, check_temporal

router = APIRouter(prefix="/health", tags=["health"])


class HealthStatus(BaseModel):
    status: Literal["ok"] = "ok"
    latency_ms: float | None = None


_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {
        "description": "The dependency is down",
        "content": {
            "application/json": {
                "example": {
                    "error": {
                        "code": ErrorCode.SERVICE_UNAVAILABLE,
                        "message": "database is unavailable: OperationalError",
                        "details": {"dependency": "database"},
                    }
                }
            }
        },
    }
}


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
