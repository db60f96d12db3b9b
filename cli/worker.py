"""`hivesync worker --queue cpu_tasks|gpu_tasks`: a Temporal worker."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio.worker import Interceptor, Worker

from activities.docs import DocActivities
from activities.preview import PreviewActivities
from activities.retention import CleanupActivities
from cli.model_gate import ModelGate, TemporalPoller, health_url, http_probe
from contracts.jobs import TaskQueue
from core.config import Settings
from core.db import create_engine, create_session_factory
from core.logging import configure_logging, flush_logging
from core.queues import describe_queue
from core.redis import create_redis
from core.storage import Storage
from core.temporal import connect_temporal
from inference.client.engine import AIEngine, create_http_client
from inference.client.engine import create_engine as create_ai_engine
from services.notifications.hub import NotificationHub
from services.previews.builder import Builder
from services.previews.bundler import BundlerPool
from services.previews.cleanup import PreviewCleanup
from services.previews.retention import ensure_retention_schedule
from services.previews.toolchain import toolchain_versions
from workflows.docs import DocPassWorkflow
from workflows.preview import PreviewBuildWorkflow
from workflows.retention import ProjectCleanupWorkflow, RetentionWorkflow

log = logging.getLogger("hivesync.worker")

QUEUES = (TaskQueue.CPU, TaskQueue.GPU)


@dataclass(frozen=True)
class RunningWorker:
    worker: Worker | None  # cpu_tasks; gpu_tasks makes a new one each time its gate opens
    gate: ModelGate | None  # gpu_tasks only
    gate_run: asyncio.Task[None] | None  # the gate's loop; it ends only if the Worker failed
    bundler: BundlerPool | None  # cpu_tasks only
    engine: AIEngine


@asynccontextmanager
async def open_worker(settings: Settings, queue: str) -> AsyncIterator[RunningWorker]:
    """A worker polling `queue` (a kind from QUEUES) until the block ends; then it finishes or
    hands back its tasks and stops its bundlers.

    cpu_tasks runs the job workflows, preview builds (with warm Metro processes) and the light
    steps of documentation jobs, and model calls too when the local model is disabled; and
    the cleanup workflows, whose retention schedule it creates (or updates) on start.
    gpu_tasks runs only the model calls that go to the local model first, and polls only while
    its model server is ready (cli/model_gate.py): until then the calls wait in the queue."""
    client = await connect_temporal(settings, lazy=False)
    engine = create_engine(settings)
    redis = create_redis(settings) if settings.rate_limit_backend == "redis" else None
    http = create_http_client(settings)
    ai_engine = create_ai_engine(settings, http, redis)
    hub = NotificationHub(redis, settings.redis_key_prefix)
    sessions = create_session_factory(engine)
    docs = DocActivities(ai_engine, sessions, hub, max_tasks=settings.docs_max_model_calls)
    bundler = BundlerPool(settings) if queue == TaskQueue.CPU else None
    try:
        if bundler is not None:
            await bundler.start()
            storage = Storage(settings)
            previews = PreviewActivities(
                Builder(storage, bundler, toolchain_versions(settings.bundler_dir)),
                sessions,
                hub,
            )
            cleanup = CleanupActivities(PreviewCleanup(sessions, storage, settings), sessions)
            options: dict[str, Any] = {
                "workflows": [
                    PreviewBuildWorkflow,
                    DocPassWorkflow,
                    ProjectCleanupWorkflow,
                    RetentionWorkflow,
                ],
                "activities": [
                    *cleanup.all,
                    previews.build_preview,
                    previews.record_preview_outcome,
                    previews.notify_preview_outcome,
                    docs.plan_doc_job,
                    docs.generate_doc_text,
                    docs.assemble_doc_job,
                    docs.record_doc_outcome,
                    docs.notify_doc_outcome,
                ],
                # A few builds more than there are bundlers wait here for one (heartbeating);
                # the rest wait in Temporal's queue, where the backlog is visible. The other
                # slots keep the quick steps and model calls moving.
                "max_concurrent_activities": settings.bundler_processes + 8,
            }
        else:
            options = {
                "activities": [docs.generate_doc_text],
                # Enough calls in flight to fill the local model's batches, no more: the rest
                # wait in gpu_tasks, whose backlog drives the GPU autoscaler.
                "max_concurrent_activities": settings.inference_max_batch_size * 2,
            }
        task_queue = settings.task_queue(queue)

        def make_worker(interceptors: list[Interceptor]) -> Worker:
            return Worker(
                client,
                task_queue=task_queue,
                graceful_shutdown_timeout=timedelta(seconds=settings.worker_shutdown_grace_s),
                # Heartbeats carry a build's phase (read by the API) and bring cancellation
                # back: send them within a second rather than at 80% of the heartbeat timeout.
                max_heartbeat_throttle_interval=timedelta(seconds=1),
                default_heartbeat_throttle_interval=timedelta(seconds=1),
                interceptors=interceptors,
                **options,
            )

        if queue == TaskQueue.GPU:

            async def backlog() -> int:
                return (await describe_queue(client, task_queue)).backlog

            gate = ModelGate(
                TemporalPoller(make_worker),
                probe=http_probe(http, health_url(settings.local_ai_base_url)),
                backlog=backlog,
                idle_s=settings.inference_worker_idle_s,
                queue_name=task_queue,
            )
            gate_run = asyncio.create_task(gate.run())
            log.info(
                "worker waiting for its model server",
                extra={"task_queue": task_queue, "health": health_url(settings.local_ai_base_url)},
            )
            try:
                yield RunningWorker(None, gate, gate_run, bundler, ai_engine)
                log.info("worker stopping")
            finally:
                gate_run.cancel()
                await asyncio.gather(gate_run, return_exceptions=True)
        else:
            worker = make_worker([])
            if settings.retention_schedule:
                await ensure_retention_schedule(client, settings)
            async with worker:
                log.info("worker started", extra={"task_queue": task_queue})
                yield RunningWorker(worker, None, None, bundler, ai_engine)
                log.info("worker stopping")
    finally:
        if bundler is not None:
            await bundler.close()
        await http.aclose()
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
        async with open_worker(settings, queue) as running:
            waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(stop.wait())]
            if running.gate_run is not None:
                waits.append(running.gate_run)
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            waits[0].cancel()
            if running.gate_run is not None and running.gate_run in done:
                running.gate_run.result()  # raises what ended it
    finally:
        log.info("worker stopped")
        flush_logging()
