"""What the GPU autoscaler sees: the task queues' backlog and pollers, and the GPUs' use.

The backlog of `gpu_tasks` is the demand for the GPU pool that Ray Serve cannot see (it waits in
Temporal until a worker with a ready model server takes it). Temporal's figures are approximate
and cached by the server for about 5 s, so one reading may lag a burst by that much; the policy
decides on each evaluation's reading alone and leans on its hysteresis and cooldown rather than
on any single figure, and a reading that failed is not replaced by a guess (the evaluation is
skipped). `cpu_tasks` is read for /status and /metrics only.

GPU use comes from Prometheus (`AUTOSCALER_GPU_QUERY`, a 0..1 fraction) when
`AUTOSCALER_PROMETHEUS_URL` is set; an unset URL, a failed query or an empty answer (no GPU
pod running) gives None, which the policy treats as unknown.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import httpx
from temporalio.client import Client

from contracts.jobs import TaskQueue
from core.config import Settings
from core.queues import QueueStats, describe_queue
from inference.autoscaler.policy import Sensors

log = logging.getLogger("hivesync.autoscaler")

PROMETHEUS_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Readings:
    """One evaluation's view of the queues and the GPUs."""

    gpu_queue: QueueStats
    cpu_queue: QueueStats
    gpu_utilization: float | None  # 0..1; None when unknown

    @property
    def sensors(self) -> Sensors:
        """What the policy decides on: gpu_tasks' backlog, its live pollers, the GPUs' use."""
        return Sensors(
            backlog=self.gpu_queue.backlog,
            backlog_age_s=self.gpu_queue.backlog_age_s,
            pollers=self.gpu_queue.live_pollers,
            gpu_utilization=self.gpu_utilization,
        )


class QueueSensors:
    """Reads both task queues through one Temporal client, and GPU use through Prometheus."""

    def __init__(self, settings: Settings, client: Client, http: httpx.AsyncClient) -> None:
        self.client = client
        self.http = http
        self.gpu_queue = settings.task_queue(TaskQueue.GPU)
        self.cpu_queue = settings.task_queue(TaskQueue.CPU)
        self.prometheus_url = settings.autoscaler_prometheus_url
        self.gpu_query = settings.autoscaler_gpu_query

    async def read(self) -> Readings:
        """Raises temporalio's RPCError when Temporal cannot answer; never fails on
        Prometheus."""
        gpu_queue = await describe_queue(self.client, self.gpu_queue)
        # The workflows themselves run on cpu_tasks: its workflow tasks count as work too.
        cpu_queue = await describe_queue(self.client, self.cpu_queue, include_workflow_tasks=True)
        return Readings(gpu_queue, cpu_queue, await self.gpu_utilization())

    async def gpu_utilization(self) -> float | None:
        if not self.prometheus_url:
            return None
        url = self.prometheus_url.rstrip("/") + "/api/v1/query"
        try:
            response = await self.http.get(
                url, params={"query": self.gpu_query}, timeout=PROMETHEUS_TIMEOUT_S
            )
            response.raise_for_status()
            return utilization_from_answer(response.json())
        except (httpx.HTTPError, ValueError, LookupError, TypeError, AttributeError) as error:
            log.warning(
                "GPU utilisation unknown: Prometheus did not answer the query",
                extra={"prometheus_url": self.prometheus_url, "error": str(error)},
            )
            return None


def utilization_from_answer(answer: Any) -> float | None:
    """The value of Prometheus's answer to an instant query (a one-sample vector or a scalar),
    clamped to 0..1; None for an empty vector (no GPU reports yet). Raises ValueError for an
    answer of another shape or a failed query."""
    if not isinstance(answer, dict) or answer.get("status") != "success":
        raise ValueError(f"query failed: {str(answer)[:200]}")
    data = answer.get("data") or {}
    result = data.get("result")
    if data.get("resultType") == "scalar" and isinstance(result, list):
        sample = result
    elif data.get("resultType") == "vector" and isinstance(result, list):
        if not result:
            return None
        if len(result) > 1:
            raise ValueError("the query answers several series; aggregate it (avg, max)")
        sample = result[0].get("value")
    else:
        raise ValueError(f"unexpected result type {data.get('resultType')!r}")
    value = float(sample[1])
    if math.isnan(value):
        return None
    return min(1.0, max(0.0, value))
