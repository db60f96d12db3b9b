"""The GPU autoscaler's loop and its state: sensors -> policy -> actuator, every interval.

One evaluation reads the queues (and GPU use), reads the RayService's current floor, asks the
policy, and patches when the desired count differs from the current one. Nothing that fails
stops the loop: a failed reading skips that evaluation's decision (a blind reading never
scales), a failed patch is logged, counted and kept in the state's `last_error`, and the next
evaluation starts from what the RayService then says.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from temporalio.service import RPCError

from inference.autoscaler.actuator import ActuatorError, PatchOutcome, RayServiceActuator
from inference.autoscaler.metrics import AutoscalerMetrics
from inference.autoscaler.policy import Decision, Policy
from inference.autoscaler.sensors import QueueSensors, Readings

log = logging.getLogger("hivesync.autoscaler")


@dataclass(frozen=True)
class ErrorReport:
    at: str  # ISO 8601, UTC
    stage: str  # sensors | read | patch | internal
    reason: str
    message: str


class Autoscaler:
    """Runs evaluations and keeps what /status and /metrics report."""

    def __init__(
        self,
        sensors: QueueSensors,
        actuator: RayServiceActuator,
        policy: Policy,
        *,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sensors = sensors
        self.actuator = actuator
        self.policy = policy
        self.interval_s = interval_s
        self.clock = clock
        self.metrics = AutoscalerMetrics()
        self.evaluations = 0
        self.evaluated_at: datetime | None = None
        self.readings: Readings | None = None
        self.current: int | None = None
        self.decision: Decision | None = None
        self.last_patch: PatchOutcome | None = None
        self.last_change_at: datetime | None = None
        self.last_error: ErrorReport | None = None
        self.last_evaluation_ok = False

    async def run(self, stop: asyncio.Event) -> None:
        """Evaluate every interval until `stop` is set."""
        while not stop.is_set():
            try:
                await self.evaluate()
            except Exception as error:
                # A bug (or an answer nobody foresaw) is reported like any failure; the next
                # evaluation may well succeed, and scaling must not stop for one bad reading.
                log.exception("autoscaler evaluation crashed")
                self.metrics.evaluation_failures.labels(stage="internal").inc()
                self.last_error = ErrorReport(
                    datetime.now(UTC).isoformat(), "internal", type(error).__name__, str(error)
                )
                self.last_evaluation_ok = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.interval_s)

    async def evaluate(self) -> None:
        """One evaluation; never raises for a sensor, API or patch failure."""
        try:
            self.last_evaluation_ok = await self._evaluate()
        finally:
            self.evaluations += 1
            self.evaluated_at = datetime.now(UTC)
            self.metrics.last_evaluation.set(self.evaluated_at.timestamp())

    async def _evaluate(self) -> bool:
        try:
            readings = await self.sensors.read()
        except (RPCError, RuntimeError) as error:
            # RPCError: Temporal answered with an error; RuntimeError: the (lazy) client could
            # not connect at all.
            self._failed("sensors", "temporal", f"Temporal did not answer: {error}")
            return False
        self._observe(readings)
        try:
            floor = await self.actuator.read()
        except ActuatorError as error:
            self._failed("read", error.reason, str(error))
            return False
        self.current = floor.current
        self.metrics.current_replicas.set(floor.current)
        decision = self.policy.decide(self.clock(), floor.current, readings.sensors)
        self.decision = decision
        self.metrics.desired_replicas.set(decision.desired)
        self.metrics.cooldown_seconds.set(decision.cooldown_left_s)
        direction = _direction(floor.current, decision.desired)
        self.metrics.decisions.labels(direction=direction).inc()
        log.info(
            "autoscaler decision",
            extra={
                "current": floor.current,
                "desired": decision.desired,
                "rule": str(decision.rule),
                "reason": decision.reason,
                "cooldown_left_s": decision.cooldown_left_s,
                "backlog": readings.sensors.backlog,
                "backlog_age_s": readings.sensors.backlog_age_s,
                "pollers": readings.sensors.pollers,
                "gpu_utilization": readings.sensors.gpu_utilization,
            },
        )
        if direction == "hold":
            return True
        try:
            self.last_patch = await self.actuator.apply(floor, decision.desired)
        except ActuatorError as error:
            self.metrics.patch_failures.labels(reason=error.reason).inc()
            self._failed("patch", error.reason, str(error))
            return False
        self.last_change_at = datetime.now(UTC)
        return True

    def _observe(self, readings: Readings) -> None:
        self.readings = readings
        for stats in (readings.gpu_queue, readings.cpu_queue):
            self.metrics.observe_queue(stats, stats.live_pollers)
        utilization = readings.gpu_utilization
        self.metrics.gpu_utilization.set(float("nan") if utilization is None else utilization)

    def _failed(self, stage: str, reason: str, message: str) -> None:
        if stage != "patch":
            self.metrics.evaluation_failures.labels(stage=stage).inc()
        self.last_error = ErrorReport(datetime.now(UTC).isoformat(), stage, reason, message)
        log.error(
            "autoscaler evaluation failed",
            extra={"stage": stage, "reason": reason, "error": message},
        )

    @property
    def ready(self) -> bool:
        """Whether the first evaluation has run (whatever its outcome)."""
        return self.evaluations > 0

    def status(self) -> dict[str, Any]:
        """The state as /status shows it."""
        actuator = self.actuator
        readings = self.readings
        return {
            "dry_run": actuator.dry_run,
            "cluster": actuator.has_cluster,
            "note": None
            if actuator.has_cluster
            else "dry-run without a cluster: current is the last desired count",
            "target": asdict(actuator.target),
            "interval_s": self.interval_s,
            "evaluations": self.evaluations,
            "evaluated_at": _iso(self.evaluated_at),
            "last_evaluation_ok": self.last_evaluation_ok,
            "current": self.current,
            "desired": None if self.decision is None else self.decision.desired,
            "reason": None if self.decision is None else self.decision.reason,
            "rule": None if self.decision is None else str(self.decision.rule),
            "cooldown_left_s": None if self.decision is None else self.decision.cooldown_left_s,
            "sensors": None
            if readings is None
            else {
                **asdict(readings.sensors),
                "queues": {
                    stats.name: {**asdict(stats), "live_pollers": stats.live_pollers}
                    for stats in (readings.gpu_queue, readings.cpu_queue)
                },
            },
            "last_change_at": _iso(self.last_change_at),
            "last_patch": None if self.last_patch is None else asdict(self.last_patch),
            "last_error": None if self.last_error is None else asdict(self.last_error),
        }


def create_status_app(autoscaler: Autoscaler) -> Starlette:
    """/status (JSON state), /metrics (Prometheus), /health (200 once an evaluation ran)."""

    async def status(_: Request) -> JSONResponse:
        return JSONResponse(autoscaler.status())

    async def metrics(_: Request) -> Response:
        return Response(
            generate_latest(autoscaler.metrics.registry), media_type=CONTENT_TYPE_LATEST
        )

    async def health(_: Request) -> JSONResponse:
        if autoscaler.ready:
            return JSONResponse({"status": "ok", "evaluations": autoscaler.evaluations})
        return JSONResponse({"status": "starting"}, status_code=503)

    return Starlette(
        routes=[
            Route("/status", status),
            Route("/metrics", metrics),
            Route("/health", health),
        ]
    )


def _direction(current: int, desired: int) -> str:
    if desired > current:
        return "up"
    if desired < current:
        return "down"
    return "hold"


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
