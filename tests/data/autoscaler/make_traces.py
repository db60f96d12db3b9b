"""Writes the autoscaler's test traces (`python tests/data/autoscaler/make_traces.py`): what the
sensors read every 15 s in five situations. Seeded, so that the files come out the same.

Replay does not feed decisions back into the readings, so each trace tells one story whatever
the policy does: these are the readings of a pool that followed a sensible policy."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

INTERVAL_S = 15
HERE = Path(__file__).parent


def reading(
    t: int, backlog: int, age_s: float, pollers: int, gpu: float | None = None
) -> dict[str, Any]:
    return {
        "t": t,
        "backlog": backlog,
        "backlog_age_s": round(age_s, 1),
        "pollers": pollers,
        "gpu_utilization": None if gpu is None else round(gpu, 2),
    }


def burst() -> Iterator[dict[str, Any]]:
    """500 tasks at t=72 into a pool at zero. Temporal's cached count still says 0 at t=75 and
    500 from t=90; replicas answer from t=255 (2) and t=375 (4) and drain the queue; then
    25 minutes without work."""
    backlog = 0
    for t in range(0, 3600, INTERVAL_S):
        if t == 90:
            backlog = 500
        pollers = 0 if t < 255 else 2 if t < 375 else 4
        if pollers and backlog:
            backlog = max(0, backlog - 12 * pollers)
            last_busy = t
        age = t - 72 if backlog else 0
        gpu = None if not pollers else 0.92 if backlog or t == last_busy + INTERVAL_S else 0.0
        yield reading(t, backlog, age, pollers, gpu)
        if t > 2400 and not backlog:
            return


def steady() -> Iterator[dict[str, Any]]:
    """An hour of steady load: about 28 tasks waiting (two replicas' worth), GPUs 55-75% busy."""
    rng = random.Random(7)
    for t in range(0, 3600, INTERVAL_S):
        backlog = max(0, round(rng.gauss(28, 4)))
        yield reading(t, backlog, rng.uniform(5, 25), 2, rng.uniform(0.55, 0.75))


def trickle() -> Iterator[dict[str, Any]]:
    """A task every 2 minutes for 40 minutes, each done within a reading; then 20 quiet minutes."""
    for t in range(0, 3600, INTERVAL_S):
        arrives = t < 2400 and t % 120 == 0
        running = t < 2400 and t % 120 == 15
        yield reading(t, 1 if arrives else 0, 4 if arrives else 0, 1, 0.3 if running else 0.0)


def idle_night() -> Iterator[dict[str, Any]]:
    """Four quiet hours after a day's work (replayed from 2 replicas), with one straggler at
    t=7200."""
    for t in range(0, 4 * 3600, INTERVAL_S):
        straggler = t == 7200
        yield reading(t, 1 if straggler else 0, 10 if straggler else 0, 2, 0.0)


def flapping() -> Iterator[dict[str, Any]]:
    """An hour of a noisy backlog jumping around 32 (2 replicas x 16) every reading, between 18
    and 46: a policy without hysteresis would flip between 2 and 3 replicas all along. No
    Prometheus (GPU use unknown)."""
    rng = random.Random(11)
    for t in range(0, 3600, INTERVAL_S):
        swing = rng.randint(6, 14) * rng.choice((-1, 1))
        yield reading(t, 32 + swing, rng.uniform(2, 20), 3, None)


def main() -> None:
    for story in (burst, steady, trickle, idle_night, flapping):
        lines = [json.dumps(line) for line in story()]
        (HERE / f"{story.__name__}.jsonl").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
