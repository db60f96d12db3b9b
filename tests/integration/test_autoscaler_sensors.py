"""The GPU autoscaler's sensors against the real Temporal dev server: a real backlog in
gpu_tasks while no worker polls it, then a worker that drains it. Temporal caches a queue's
stats for about 5 s, so the readings are polled until they show the change (with a deadline)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable

import httpx
import pytest
from temporalio.worker import Worker

from contracts.jobs import TaskQueue
from core.config import Settings
from core.temporal import connect_temporal
from inference.autoscaler.sensors import QueueSensors, Readings
from tests.fixtures.gpu_calls import GpuCallWorkflow, gpu_call

WORKFLOWS = 6
DEADLINE_S = 60.0


async def read_until(
    sensors: QueueSensors, condition: Callable[[Readings], bool], what: str
) -> Readings:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        readings = await sensors.read()
        if condition(readings):
            return readings
        if time.monotonic() > deadline:
            raise AssertionError(f"never seen: {what}; last reading {readings}")
        await asyncio.sleep(0.5)


def test_backlog_and_pollers_of_gpu_tasks(
    make_settings: Callable[..., Settings], temporal_address: str
) -> None:
    settings = make_settings(
        temporal_address=temporal_address,
        temporal_task_queue_prefix=f"scaler-{uuid.uuid4().hex[:8]}-",
    )
    cpu_queue = settings.task_queue(TaskQueue.CPU)
    gpu_queue = settings.task_queue(TaskQueue.GPU)

    async def main() -> None:
        client = await connect_temporal(settings, lazy=False)
        async with (
            httpx.AsyncClient() as http,
            Worker(client, task_queue=cpu_queue, workflows=[GpuCallWorkflow]),
        ):
            sensors = QueueSensors(settings, client, http)
            handles = [
                await client.start_workflow(
                    GpuCallWorkflow.run,
                    args=[gpu_queue, f"call {index}"],
                    id=f"gpu-call-{uuid.uuid4().hex}",
                    task_queue=cpu_queue,
                )
                for index in range(WORKFLOWS)
            ]
            readings = await read_until(
                sensors,
                lambda r: r.gpu_queue.backlog >= WORKFLOWS,
                f"{WORKFLOWS} tasks waiting in {gpu_queue}",
            )
            assert readings.gpu_queue.name == gpu_queue
            assert readings.gpu_queue.pollers == 0
            assert readings.gpu_queue.last_poll_age_s is None
            # What the policy is given: the backlog, nobody to serve it, GPU use unknown.
            assert readings.sensors.backlog == readings.gpu_queue.backlog
            assert readings.sensors.backlog_age_s >= 0
            assert readings.sensors.pollers == 0
            assert readings.sensors.gpu_utilization is None
            # cpu_tasks (for /status and /metrics) has its workflow worker polling.
            assert readings.cpu_queue.name == cpu_queue
            assert readings.cpu_queue.pollers >= 1

            async with Worker(client, task_queue=gpu_queue, activities=[gpu_call]):
                results = await asyncio.gather(*(handle.result() for handle in handles))
                assert sorted(results) == [f"CALL {index}" for index in range(WORKFLOWS)]
                readings = await read_until(
                    sensors,
                    lambda r: r.gpu_queue.backlog == 0 and r.sensors.pollers >= 1,
                    f"{gpu_queue} drained, with a poller",
                )
                assert readings.gpu_queue.last_poll_age_s is not None
                assert readings.sensors.backlog_age_s == 0

    asyncio.run(main())


def test_an_unreachable_prometheus_gives_no_utilization_and_a_warning(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    # Nothing listens on port 1; Temporal (a lazy client) is not asked.
    settings = make_settings(autoscaler_prometheus_url="http://127.0.0.1:1")

    async def main() -> float | None:
        async with httpx.AsyncClient() as http:
            sensors = QueueSensors(settings, await connect_temporal(settings), http)
            return await sensors.gpu_utilization()

    with caplog.at_level(logging.WARNING, logger="hivesync.autoscaler"):
        assert asyncio.run(main()) is None
    assert "GPU utilisation unknown" in caplog.text
