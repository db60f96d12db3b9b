"""Long-lived clients the API opens at start-up and closes at shutdown."""

from __future__ import annotations

import multiprocessing
from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client

from core.config import Settings, rate_limiter_problem
from core.db import create_engine, create_session_factory
from core.ratelimit import (
    MemoryRateLimiter,
    MemoryRunningJobs,
    RateLimiter,
    RedisRateLimiter,
    RedisRunningJobs,
    RunningJobs,
)
from core.redis import create_redis
from core.security import PasswordHasher
from core.storage import Storage
from core.temporal import connect_temporal
from services.notifications.hub import NotificationHub


@dataclass
class Resources:
    settings: Settings
    engine: AsyncEngine
    session_factory: async_sessionmaker[AsyncSession]
    read_session_factory: async_sessionmaker[AsyncSession]
    redis: Redis | None
    rate_limiter: RateLimiter
    running_jobs: RunningJobs  # the quotas' slots of running jobs
    password_hasher: PasswordHasher
    temporal: Client
    notification_hub: NotificationHub
    storage: Storage


def check_worker_processes(settings: Settings) -> None:
    """Refuse to start a production API worker that uvicorn spawned beside others (`uvicorn
    --workers N`, which WEB_CONCURRENCY may not tell) with the in-process rate limiter."""
    if multiprocessing.parent_process() is not None:
        problem = rate_limiter_problem(settings, api_workers=2)
        if problem:
            raise RuntimeError(problem)


async def open_resources(settings: Settings) -> Resources:
    check_worker_processes(settings)
    engine = create_engine(settings)
    redis = create_redis(settings) if settings.rate_limit_backend == "redis" else None
    limiter: RateLimiter = (
        RedisRateLimiter(redis, settings.redis_key_prefix) if redis else MemoryRateLimiter()
    )
    running: RunningJobs = (
        RedisRunningJobs(redis, settings.redis_key_prefix) if redis else MemoryRunningJobs()
    )
    return Resources(
        settings=settings,
        engine=engine,
        session_factory=create_session_factory(engine),
        read_session_factory=create_session_factory(engine, read_only=True),
        redis=redis,
        rate_limiter=limiter,
        running_jobs=running,
        password_hasher=PasswordHasher(settings.password_hash_concurrency),
        temporal=await connect_temporal(settings),
        notification_hub=NotificationHub(redis, settings.redis_key_prefix),
        storage=Storage(settings),
    )


async def close_resources(resources: Resources) -> None:
    await resources.notification_hub.close()
    resources.password_hasher.close()
    if resources.redis is not None:
        await resources.redis.aclose()
    await resources.engine.dispose()
