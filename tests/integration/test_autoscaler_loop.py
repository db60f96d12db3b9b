"""The GPU autoscaler's loop end to end: a real backlog in gpu_tasks (Temporal dev server), the
real policy, the real actuator and `kubernetes` client against the emulated API server, and the
state read through the status app (/status, /metrics, /health) over ASGI."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import httpx
from kmock import Server
from prometheus_client.parser import text_string_to_metric_families
from temporalio.worker import Worker

from contracts.jobs import TaskQueue
from core.config import Settings
from core.temporal import connect_temporal
from inference.autoscaler.actuator import RayServiceActuator, Target
from inference.autoscaler.policy import Policy, PolicyConfig
from inference.autoscaler.sensors import QueueSensors
from inference.autoscaler.service import Autoscaler, create_status_app
from tests.fixtures.gpu_calls import GpuCallWorkflow
from tests.fixtures.rayservice import (
    NAME,
    NAMESPACE,
    RayServiceApi,
    custom_objects_api,
    deployment_config,
)

WORKFLOWS = 40  # with 16 tasks per replica: 3 replicas; from zero, straight up


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics answer, by name and labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def wait_for_backlog(autoscaler: Autoscaler, backlog: int) -> None:
    """Temporal caches a queue's stats for ~5 s: read until they show the backlog."""
    deadline = time.monotonic() + 60
    while (await autoscaler.sensors.read()).gpu_queue.backlog < backlog:
        assert time.monotonic() < deadline, "the backlog never showed"
        await asyncio.sleep(0.5)


def test_the_loop_scales_from_zero_and_reports_refusals(
    make_settings: Callable[..., Settings], temporal_address: str
) -> None:
    settings = make_settings(
        temporal_address=temporal_address,
        temporal_task_queue_prefix=f"loop-{uuid.uuid4().hex[:8]}-",
        autoscaler_min_replicas=0,
        autoscaler_max_replicas=4,
        autoscaler_target_backlog_per_replica=16,
        autoscaler_scale_up_step=4,
    )
    gpu_queue = settings.task_queue(TaskQueue.GPU)
    cpu_queue = settings.task_queue(TaskQueue.CPU)
    config = PolicyConfig.from_settings(settings)

    async def main() -> None:
        client = await connect_temporal(settings, lazy=False)
        async with (
            RayServiceApi() as kmock,
            Server(kmock),
            httpx.AsyncClient() as http,
            Worker(client, task_queue=cpu_queue, workflows=[GpuCallWorkflow]),
        ):
            kmock.add_rayservice()
            target = Target(NAMESPACE, NAME, NAME, "LocalModel")
            actuator = RayServiceActuator(custom_objects_api(str(kmock.url)), target, dry_run=False)
            autoscaler = Autoscaler(
                QueueSensors(settings, client, http), actuator, Policy(config), interval_s=15
            )
            status_app = httpx.AsyncClient(
                transport=httpx.ASGITransport(create_status_app(autoscaler)),
                base_url="http://autoscaler",
            )
            assert (await status_app.get("/health")).status_code == 503

            for index in range(WORKFLOWS):
                await client.start_workflow(
                    GpuCallWorkflow.run,
                    args=[gpu_queue, f"call {index}"],
                    id=f"gpu-call-{uuid.uuid4().hex}",
                    task_queue=cpu_queue,
                )
            await wait_for_backlog(autoscaler, WORKFLOWS)

            # 1. The service account may not patch: the decision stands, the 403 is reported.
            kmock.verbs = {"get"}
            await autoscaler.evaluate()
            status = (await status_app.get("/status")).json()
            assert status["current"] == 0
            assert status["desired"] == 3
            assert status["rule"] == "from-zero"
            assert status["last_evaluation_ok"] is False
            assert status["last_error"]["stage"] == "patch"
            assert status["last_error"]["reason"] == "forbidden"
            assert "cannot patch" in status["last_error"]["message"]
            assert status["sensors"]["backlog"] >= WORKFLOWS
            assert status["sensors"]["pollers"] == 0
            assert status["sensors"]["queues"][gpu_queue]["backlog"] >= WORKFLOWS
            assert set(status["sensors"]["queues"]) == {gpu_queue, cpu_queue}
            assert status["last_patch"] is None
            assert (
                deployment_config(kmock.stored()["spec"]["serveConfigV2"])["autoscaling_config"][
                    "min_replicas"
                ]
                == 0
            )

            # 2. Someone else changes the RayService between our read and our patch: 409.
            kmock.verbs = {"get", "patch"}
            kmock.race_next_patch = True
            await autoscaler.evaluate()
            status = (await status_app.get("/status")).json()
            assert status["last_error"]["reason"] == "conflict"
            assert "has been modified" in status["last_error"]["message"]

            # 3. The next evaluation patches: the floor is 3 in the RayService.
            await autoscaler.evaluate()
            status = (await status_app.get("/status")).json()
            assert status["last_evaluation_ok"] is True
            assert status["last_patch"]["applied"] is True
            assert status["last_patch"]["desired"] == 3
            assert status["last_change_at"] is not None
            assert status["evaluations"] == 3
            assert (
                deployment_config(kmock.stored()["spec"]["serveConfigV2"])["autoscaling_config"][
                    "min_replicas"
                ]
                == 3
            )

            # 4. The floor now reads 3: inside the cooldown the decision holds.
            await autoscaler.evaluate()
            status = (await status_app.get("/status")).json()
            assert (status["current"], status["desired"]) == (3, 3)
            assert status["cooldown_left_s"] > 0
            assert (await status_app.get("/health")).status_code == 200

            metrics = await status_app.get("/metrics")
            assert metrics.headers["content-type"].startswith("text/plain")
            values = samples(metrics.text)
            assert values[("hivesync_autoscaler_desired_replicas", ())] == 3
            assert values[("hivesync_autoscaler_current_replicas", ())] == 3
            assert values[("hivesync_autoscaler_decisions_total", (("direction", "up"),))] == 3
            assert values[("hivesync_autoscaler_decisions_total", (("direction", "hold"),))] == 1
            for reason in ("forbidden", "conflict"):
                key = ("hivesync_autoscaler_patch_failures_total", (("reason", reason),))
                assert values[key] == 1
            backlog_key = ("hivesync_autoscaler_queue_backlog", (("task_queue", gpu_queue),))
            assert values[backlog_key] >= WORKFLOWS
            pollers_key = ("hivesync_autoscaler_queue_pollers", (("task_queue", cpu_queue),))
            assert values[pollers_key] >= 1
            assert ("hivesync_autoscaler_gpu_utilization", ()) in values
            await status_app.aclose()

    asyncio.run(main())


def test_an_unreachable_temporal_is_reported_and_the_loop_goes_on(
    make_settings: Callable[..., Settings],
) -> None:
    # Nothing listens on port 1. Dry-run without a cluster: nothing else is needed.
    settings = make_settings(temporal_address="127.0.0.1:1")

    async def main() -> None:
        target = Target(NAMESPACE, NAME, NAME, "LocalModel")
        async with httpx.AsyncClient() as http:
            autoscaler = Autoscaler(
                QueueSensors(settings, await connect_temporal(settings), http),
                RayServiceActuator(None, target, dry_run=True),
                Policy(PolicyConfig.from_settings(settings)),
                interval_s=0.01,
            )
            stop = asyncio.Event()
            running = asyncio.create_task(autoscaler.run(stop))
            while autoscaler.evaluations < 2:  # noqa: ASYNC110 (the loop sets no event)
                await asyncio.sleep(0.01)
            stop.set()
            await running
            status_app = httpx.AsyncClient(
                transport=httpx.ASGITransport(create_status_app(autoscaler)),
                base_url="http://autoscaler",
            )
            assert (await status_app.get("/health")).status_code == 200
            status = (await status_app.get("/status")).json()
            assert status["last_evaluation_ok"] is False
            assert status["last_error"]["stage"] == "sensors"
            assert "Temporal did not answer" in status["last_error"]["message"]
            assert status["desired"] is None  # a blind reading decides nothing
            values = samples((await status_app.get("/metrics")).text)
            failures = values[
                ("hivesync_autoscaler_evaluation_failures_total", (("stage", "sensors"),))
            ]
            assert failures >= 2
            await status_app.aclose()

    asyncio.run(main())
