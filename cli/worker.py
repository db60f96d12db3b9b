"""`hivesync worker --queue cpu_tasks`: a Temporal worker for preview builds."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

from temporalio.worker import Worker

from activities.preview import PreviewActivities
from core.config import Settings
from core.db import create_engine, create_session_factory
from core.logging import configure_logging, flush_logging
from core.redis import create_redis
from core.storage import Storage
from core.temporal import connect_temporal
from services.notifications.hub import NotificationHub
from services.previews.builder import Builder
from services.previews.bundler import BundlerPool
from services.previews.toolchain import toolchain_versions
from workflows.contracts import CPU_TASK_QUEUE
from workflows.preview import PreviewBuildWorkflow

log = logging.getLogger("hivesync.worker")

QUEUES = (CPU_TASK_QUEUE,)


@dataclass(frozen=True)
class RunningWorker:
    worker: Worker
    bundler: BundlerPool


@asynccontextmanager
async def open_worker(settings: Settings, queue: str) -> AsyncIterator[RunningWorker]:
    """A worker polling `queue` (a kind from QUEUES), with its bundlers warm, until the block
    ends; then it finishes or hands back its tasks and stops its bundlers."""
    client = await connect_temporal(settings, lazy=False)
    engine = create_engine(settings)
    redis = create_redis(settings) if settings.rate_limit_backend == "redis" else None
    bundler = BundlerPool(settings)
    try:
        await bundler.start()
        activities = PreviewActivities(
            Builder(Storage(settings), bundler, toolchain_versions(settings.bundler_dir)),
            create_session_factory(engine),
            NotificationHub(redis, settings.redis_key_prefix),
        )
        worker = Worker(
            client,
            task_queue=settings.task_queue(queue),
            workflows=[PreviewBuildWorkflow],
            activities=[
                activities.build_preview,
                activities.record_preview_outcome,
                activities.notify_preview_outcome,
            ],
            # A few builds more than there are bundlers wait here for one (heartbeating);
            # the rest wait in Temporal's queue, where the backlog is visible. The extra
            # slots also keep the quick bookkeeping activities moving.
            max_concurrent_activities=settings.bundler_processes + 4,
            graceful_shutdown_timeout=timedelta(seconds=10),
            # Heartbeats carry the build's phase (read by the API) and bring cancellation back:
            # send them within a second rather than at 80% of the heartbeat timeout.
            max_heartbeat_throttle_interval=timedelta(seconds=1),
            default_heartbeat_throttle_interval=timedelta(seconds=1),
        )
        async with worker:
            log.info("worker started", extra={"task_queue": settings.task_queue(queue)})
            yield RunningWorker(worker, bundler)
            log.info("worker stopping")
    finally:
        await bundler.close()
        if redis is not None:
            await redis.aclose()
        await engine.dispose()


async def run_worker(settings: Settings, queue: str) -> None:
    """Run until SIGINT or SIGTERM."""
    configure_logging(settings, service="hivesync-worker")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with open_worker(settings, queue):
            await stop.wait()
    finally:
        log.info("worker stopped")
        flush_logging()
