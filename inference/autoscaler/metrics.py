"""The GPU autoscaler's metrics for Prometheus, in a registry of their own (one per loop)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from core.queues import QueueStats


class AutoscalerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.desired_replicas = Gauge(
            "hivesync_autoscaler_desired_replicas",
            "Replicas of the Serve deployment the policy asked for at the last evaluation",
            registry=registry,
        )
        self.current_replicas = Gauge(
            "hivesync_autoscaler_current_replicas",
            "The Serve deployment's floor (autoscaling_config.min_replicas) as last read",
            registry=registry,
        )
        self.cooldown_seconds = Gauge(
            "hivesync_autoscaler_cooldown_seconds",
            "Seconds left before the policy may change direction",
            registry=registry,
        )
        self.queue_backlog = Gauge(
            "hivesync_autoscaler_queue_backlog",
            "Tasks waiting in the Temporal task queue (approximate, cached ~5 s by Temporal)",
            ["task_queue"],
            registry=registry,
        )
        self.queue_backlog_age = Gauge(
            "hivesync_autoscaler_queue_backlog_age_seconds",
            "How long the oldest waiting task has waited (approximate)",
            ["task_queue"],
            registry=registry,
        )
        self.queue_pollers = Gauge(
            "hivesync_autoscaler_queue_pollers",
            "Workers that polled the task queue recently",
            ["task_queue"],
            registry=registry,
        )
        self.gpu_utilization = Gauge(
            "hivesync_autoscaler_gpu_utilization",
            "The GPU pool's mean utilisation, 0..1 (NaN when unknown or not configured)",
            registry=registry,
        )
        self.last_evaluation = Gauge(
            "hivesync_autoscaler_last_evaluation_timestamp_seconds",
            "When the last evaluation ended (Unix time)",
            registry=registry,
        )
        self.decisions = Counter(
            "hivesync_autoscaler_decisions",
            "Decisions by direction (up, down, hold)",
            ["direction"],
            registry=registry,
        )
        self.patch_failures = Counter(
            "hivesync_autoscaler_patch_failures",
            "RayService patches that failed, by reason (forbidden, conflict, not_found, "
            "rejected, unreachable, serve_config)",
            ["reason"],
            registry=registry,
        )
        self.evaluation_failures = Counter(
            "hivesync_autoscaler_evaluation_failures",
            "Evaluations that could not decide, by stage (sensors, read, internal)",
            ["stage"],
            registry=registry,
        )
        for direction in ("up", "down", "hold"):
            self.decisions.labels(direction=direction)
        self.gpu_utilization.set(float("nan"))

    def observe_queue(self, stats: QueueStats, pollers: int) -> None:
        self.queue_backlog.labels(task_queue=stats.name).set(stats.backlog)
        self.queue_backlog_age.labels(task_queue=stats.name).set(stats.backlog_age_s)
        self.queue_pollers.labels(task_queue=stats.name).set(pollers)
