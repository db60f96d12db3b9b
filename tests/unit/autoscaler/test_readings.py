"""What the autoscaler's sensors make of Temporal's and Prometheus's answers."""

from __future__ import annotations

import pytest

from core.queues import LIVE_POLLER_S, QueueStats
from inference.autoscaler.sensors import Readings, utilization_from_answer


def stats(name: str, backlog: int, pollers: int, last_poll_age_s: float | None) -> QueueStats:
    return QueueStats(
        name=name,
        backlog=backlog,
        backlog_age_s=12.5 if backlog else 0.0,
        pollers=pollers,
        last_poll_age_s=last_poll_age_s,
        add_rate=0.0,
        dispatch_rate=0.0,
    )


def test_a_poller_not_seen_for_a_while_is_gone() -> None:
    assert stats("gpu_tasks", 0, 2, 1.0).live_pollers == 2
    assert stats("gpu_tasks", 0, 2, LIVE_POLLER_S + 1).live_pollers == 0  # still listed
    assert stats("gpu_tasks", 0, 0, None).live_pollers == 0


def test_the_policy_sees_gpu_tasks_only() -> None:
    readings = Readings(
        gpu_queue=stats("gpu_tasks", 40, 1, 3.0),
        cpu_queue=stats("cpu_tasks", 7, 3, 0.5),
        gpu_utilization=0.5,
    )
    sensors = readings.sensors
    assert (sensors.backlog, sensors.backlog_age_s, sensors.pollers) == (40, 12.5, 1)
    assert sensors.gpu_utilization == 0.5


def test_gpu_utilization_from_prometheus_answers() -> None:
    vector = {
        "status": "success",
        "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1.7e9, "0.42"]}]},
    }
    assert utilization_from_answer(vector) == pytest.approx(0.42)
    scalar = {"status": "success", "data": {"resultType": "scalar", "result": [1.7e9, "1.3"]}}
    assert utilization_from_answer(scalar) == 1.0  # clamped
    empty = {"status": "success", "data": {"resultType": "vector", "result": []}}
    assert utilization_from_answer(empty) is None  # no GPU reports (pool at zero)
    nan = {"status": "success", "data": {"resultType": "scalar", "result": [1.7e9, "NaN"]}}
    assert utilization_from_answer(nan) is None
    with pytest.raises(ValueError, match="several series"):
        utilization_from_answer(
            {
                "status": "success",
                "data": {
                    "resultType": "vector",
                    "result": [{"value": [0, "0.1"]}, {"value": [0, "0.2"]}],
                },
            }
        )
    with pytest.raises(ValueError, match="query failed"):
        utilization_from_answer({"status": "error", "error": "parse error"})
