"""Replaying the policy over a recorded trace (`hivesync autoscaler replay TRACE.jsonl`), so that
a change of policy or settings can be checked offline.

Input: one JSON object a line, `{"t": seconds, "backlog": int, "backlog_age_s": float,
"pollers": int, "gpu_utilization": float | null}` (gpu_utilization may be left out; blank lines
are skipped). Output: one object a line, `{"t": ..., "current": int, "desired": int, "reason":
str, "rule": str}`, where each line's `current` is the previous line's `desired`, as if the
actuator had applied every decision.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from typing import Any

from inference.autoscaler.policy import Policy, PolicyConfig, Sensors


class TraceError(ValueError):
    """A trace line that cannot be replayed; the message names the line."""


def replay(
    lines: Iterable[str], config: PolicyConfig, *, current: int | None = None
) -> Iterator[dict[str, Any]]:
    """The decisions over a trace, one output object per reading. `current` is the replica count
    before the first reading (default: the minimum). Raises TraceError on the first malformed
    line, after yielding the decisions before it."""
    policy = Policy(config)
    replicas = config.min_replicas if current is None else current
    if replicas < 0:
        raise TraceError(f"the initial replica count {replicas} cannot be negative")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        t, sensors = parse_line(line, number)
        try:
            decision = policy.decide(t, replicas, sensors)
        except ValueError as error:
            raise TraceError(f"line {number}: {error}") from None
        yield {
            "t": t,
            "current": replicas,
            "desired": decision.desired,
            "reason": decision.reason,
            "rule": decision.rule.value,
        }
        replicas = decision.desired


def parse_line(line: str, number: int) -> tuple[float, Sensors]:
    """One reading of a trace: its time and the sensors."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise TraceError(f"line {number}: not JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(record, dict):
        raise TraceError(f"line {number}: expected a JSON object, got {type(record).__name__}")
    missing = [key for key in ("t", "backlog", "backlog_age_s", "pollers") if key not in record]
    if missing:
        raise TraceError(f"line {number}: missing {', '.join(missing)}")

    def number_field(key: str, *, integer: bool = False) -> Any:
        value = record[key]
        kinds = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
            kind = "an integer" if integer else "a number"
            raise TraceError(f"line {number}: {key} must be {kind}, got {value!r}")
        if value < 0:
            raise TraceError(f"line {number}: {key} cannot be negative, got {value!r}")
        return value

    gpu = record.get("gpu_utilization")
    if gpu is not None:
        if isinstance(gpu, bool) or not isinstance(gpu, int | float) or not 0 <= gpu <= 1:
            raise TraceError(f"line {number}: gpu_utilization must be 0..1 or null, got {gpu!r}")
        gpu = float(gpu)
    sensors = Sensors(
        backlog=number_field("backlog", integer=True),
        backlog_age_s=float(number_field("backlog_age_s")),
        pollers=number_field("pollers", integer=True),
        gpu_utilization=gpu,
    )
    return number_field("t"), sensors
