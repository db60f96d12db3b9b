"""Dependency checks behind the /health routes: each answers its latency or raises
ServiceUnavailable with the reason."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from core.errors import ServiceUnavailable

log = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 3.0


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
            f"{name} is unavailable: {type(exc).__name__}", details={"dependency": name}
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
