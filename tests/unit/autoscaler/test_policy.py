"""The autoscaler's policy, rule by rule, over the recorded traces in tests/data/autoscaler/ and
over seeded random traces, with its promises checked on every decision."""

from __future__ import annotations

import itertools
import json
import math
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from inference.autoscaler.policy import Decision, Policy, PolicyConfig, Rule, Sensors
from inference.autoscaler.replay import parse_line, replay

TRACES = Path(__file__).parents[2] / "data" / "autoscaler"

# The defaults of the AUTOSCALER_* settings (test_replay.py's test_settings_give_the_tests_config
# checks it).
CONFIG = PolicyConfig(
    min_replicas=0,
    max_replicas=4,
    target_backlog_per_replica=16,
    urgent_backlog_age_s=60,
    scale_up_step=2,
    hysteresis=0.25,
    cooldown_s=180,
    idle_s=900,
    gpu_busy_utilization=0.85,
    gpu_idle_utilization=0.05,
)


def sensors(
    backlog: int = 0, age: float = 0, pollers: int = 1, gpu: float | None = None
) -> Sensors:
    return Sensors(backlog=backlog, backlog_age_s=age, pollers=pollers, gpu_utilization=gpu)


@dataclass(frozen=True)
class Step:
    t: float
    sensors: Sensors
    current: int
    desired: int
    reason: str
    rule: str


def replay_trace(
    name: str, config: PolicyConfig = CONFIG, current: int | None = None
) -> list[Step]:
    lines = (TRACES / f"{name}.jsonl").read_text().splitlines()
    readings = [parse_line(line, number)[1] for number, line in enumerate(lines, start=1)]
    decisions = list(replay(lines, config, current=current))
    assert len(decisions) == len(readings)
    return [
        Step(d["t"], s, d["current"], d["desired"], d["reason"], d["rule"])
        for d, s in zip(decisions, readings, strict=True)
    ]


def changes(steps: list[Step]) -> list[Step]:
    return [step for step in steps if step.desired != step.current]


def check_promises(config: PolicyConfig, steps: list[Step]) -> None:
    """What the policy promises on every decision, whatever the trace."""
    last_change: tuple[float, int] | None = None
    last_work_t = steps[0].t
    for step in steps:
        backlog, current, desired = step.sensors.backlog, step.current, step.desired
        where = f"t={step.t}: {step.reason}"
        assert config.min_replicas <= desired <= config.max_replicas, where
        if backlog > 0:
            assert desired >= 1, f"zero while work waits, {where}"
            if desired < current:
                assert desired >= config.needed(backlog), f"below what is needed, {where}"
        if desired != current:
            direction = 1 if desired > current else -1
            if last_change is not None and step.t - last_change[0] < config.cooldown_s:
                # The one exception: leaving zero as soon as work waits.
                assert direction == last_change[1] or (current == 0 and backlog > 0), (
                    f"direction changed inside the cooldown, {where}"
                )
            last_change = (step.t, direction)
            assert step.rule not in {Rule.HOLD, Rule.COOLDOWN}, where
            assert f"-> {desired}" in step.reason, where
        else:
            assert step.rule in {Rule.HOLD, Rule.COOLDOWN}, where
        gpu = step.sensors.gpu_utilization
        if backlog > 0 or (gpu is not None and gpu >= config.gpu_idle_utilization):
            last_work_t = step.t
        elif step.t - last_work_t >= config.idle_s + config.cooldown_s:
            assert desired == config.min_replicas, (
                f"not at the minimum after the idle time, {where}"
            )


# The recorded traces.


def test_burst_scales_up_at_the_first_reading_that_shows_it() -> None:
    steps = replay_trace("burst")
    check_promises(CONFIG, steps)
    by_t = {step.t: step for step in steps}
    # Temporal's cached count still said 0 at t=75; the burst shows at t=90 and is acted on there.
    assert by_t[75].reason == "no work: holds 0"
    assert (by_t[90].current, by_t[90].desired, by_t[90].rule) == (0, 2, "from-zero")
    assert (
        by_t[90].reason == "work waits with no replica: backlog 500: up 0 -> 2 (step 2; 4 wanted)"
    )
    assert by_t[105].reason == (
        "backlog 500 > 2 x 16 per replica + 25%, cooldown 165 s left: holds 2 (up to 4 after it); "
        "no poller yet: the pool is starting"
    )
    # Once the oldest task has waited a minute: straight to the maximum, inside the cooldown.
    assert (by_t[135].desired, by_t[135].rule) == (4, "urgent")
    assert by_t[135].reason == (
        "backlog 500 > 2 x 16 per replica + 25%: up 2 -> 4 (urgent: oldest task waited 63 s)"
    )
    assert (
        by_t[150].reason
        == "backlog 500 > 4 x 16 per replica + 25%: holds the maximum 4; no poller yet: the pool "
        "is starting"
    )
    # Drained by t=465 (GPUs busy one reading longer): one replica fewer per cooldown, and zero
    # once nothing was seen for the idle time.
    assert [(s.t, s.current, s.desired, s.rule) for s in changes(steps)] == [
        (90, 0, 2, "from-zero"),
        (135, 2, 4, "urgent"),
        (660, 4, 3, "excess"),
        (840, 3, 2, "excess"),
        (1020, 2, 1, "excess"),
        (1380, 1, 0, "idle"),
    ]
    assert by_t[660].reason == "backlog <= 36 (3 x 16 per replica - 25%) for 180 s: down 4 -> 3"
    assert by_t[1380].reason == "no work for 900 s: down 1 -> 0"
    last_work = max(s.t for s in steps if s.sensors.backlog or s.sensors.gpu_utilization)
    assert last_work + CONFIG.idle_s == 1380
    assert steps[-1].desired == 0


def test_steady_load_is_met_once_and_held() -> None:
    steps = replay_trace("steady")
    check_promises(CONFIG, steps)
    assert [(s.t, s.current, s.desired, s.reason) for s in changes(steps)] == [
        (0, 0, 2, "work waits with no replica: backlog 27: up 0 -> 2")
    ]
    assert all(s.rule == "hold" for s in steps[1:])
    assert steps[1].reason == "backlog 30 fits 2 x 16 per replica + 25%: holds 2"


def test_trickle_keeps_one_replica_then_idles_to_zero() -> None:
    steps = replay_trace("trickle")
    check_promises(CONFIG, steps)
    assert max(s.desired for s in steps) == 1
    assert [(s.t, s.current, s.desired, s.rule) for s in changes(steps)] == [
        (0, 0, 1, "from-zero"),
        (3195, 1, 0, "idle"),  # the last task ran at t=2295 (GPU busy), + 900 s
    ]
    by_t = {step.t: step for step in steps}
    assert by_t[3180].reason == "no work for 885 s of 900 s: holds 1"


def test_idle_night_goes_to_the_minimum_and_wakes_for_a_straggler() -> None:
    steps = replay_trace("idle_night", current=2)
    check_promises(CONFIG, steps)
    assert [(s.t, s.current, s.desired, s.rule) for s in changes(steps)] == [
        (180, 2, 1, "excess"),
        (900, 1, 0, "idle"),  # a restarted policy counts its idle time from its first reading
        (7200, 0, 1, "from-zero"),
        (8100, 1, 0, "idle"),
    ]
    # With a minimum of 1 the night never goes below it, and the straggler changes nothing.
    steps = replay_trace("idle_night", replace(CONFIG, min_replicas=1), current=2)
    check_promises(replace(CONFIG, min_replicas=1), steps)
    assert [(s.t, s.desired) for s in changes(steps)] == [(180, 1)]


def test_flapping_backlog_moves_the_pool_at_most_twice() -> None:
    steps = replay_trace("flapping")
    check_promises(CONFIG, steps)
    assert [(s.t, s.current, s.desired, s.rule) for s in changes(steps)] == [
        (0, 0, 2, "from-zero"),
        (240, 2, 3, "backlog"),
    ]
    # The trace does flap: following ceil(backlog / 16) at every reading would change the
    # replicas dozens of times.
    naive = [math.ceil(s.sensors.backlog / 16) for s in steps]
    assert sum(a != b for a, b in itertools.pairwise(naive)) > 50


# Rule by rule.


def test_from_zero_inside_the_cooldown_of_a_scale_down() -> None:
    policy = Policy(replace(CONFIG, idle_s=60))
    assert policy.decide(0, 1, sensors()).desired == 1
    down = policy.decide(60, 1, sensors())
    assert (down.desired, down.rule, down.cooldown_left_s) == (0, Rule.IDLE, 180)
    up = policy.decide(75, 0, sensors(backlog=3, pollers=0))
    assert (up.desired, up.rule) == (1, Rule.FROM_ZERO)
    assert up.reason == "work waits with no replica: backlog 3: up 0 -> 1"


def test_urgent_from_zero_goes_straight_to_what_the_backlog_asks() -> None:
    decision = Policy(CONFIG).decide(0, 0, sensors(backlog=500, age=75, pollers=0))
    assert decision == Decision(
        4,
        "work waits with no replica: backlog 500: up 0 -> 4 (urgent: oldest task waited 75 s)",
        180,
        Rule.FROM_ZERO,
    )


def test_hysteresis_band() -> None:
    policy = Policy(CONFIG)
    assert policy.decide(0, 2, sensors(backlog=40)).desired == 2  # 2 x 16 + 25%
    assert policy.decide(15, 2, sensors(backlog=41)).desired == 3
    policy = Policy(CONFIG)
    for t in range(0, 181, 15):  # 13 is over 1 x 16 - 25%: nothing to take away
        assert policy.decide(t, 2, sensors(backlog=13)).desired == 2
    # From t=195 the backlog is below it; a whole cooldown after the last reading over it, one
    # replica goes.
    for t in range(195, 346, 15):
        assert policy.decide(t, 2, sensors(backlog=12)).desired == 2
    decision = policy.decide(360, 2, sensors(backlog=12))
    assert decision.reason == "backlog <= 12 (1 x 16 per replica - 25%) for 180 s: down 2 -> 1"


def test_bounds_are_restored_at_once() -> None:
    config = replace(CONFIG, min_replicas=1)
    assert Policy(config).decide(0, 0, sensors()) == Decision(
        1, "below the minimum 1: up 0 -> 1", 180, Rule.BELOW_MIN
    )
    # Below the minimum with work waiting: as far up as the other rules ask, and no cooldown.
    policy = Policy(replace(CONFIG, min_replicas=3))
    decision = policy.decide(0, 0, sensors(backlog=500, pollers=0))
    assert (decision.desired, decision.rule) == (3, Rule.FROM_ZERO)
    decision = policy.decide(15, 1, sensors(backlog=500, pollers=0))
    assert decision.reason == "backlog 500 > 1 x 16 per replica + 25%: up 1 -> 3 (step 2; 4 wanted)"
    decision = Policy(config).decide(0, 7, sensors(backlog=900))
    assert (decision.desired, decision.reason) == (4, "above the maximum 4: down 7 -> 4")


def test_busy_gpus_warrant_one_more_replica_and_no_step_down() -> None:
    policy = Policy(CONFIG)
    decision = policy.decide(0, 2, sensors(backlog=5, gpu=0.9))
    assert (decision.desired, decision.rule) == (3, Rule.GPU_BUSY)
    assert decision.reason == "GPUs 90% busy with backlog 5: up 2 -> 3"
    for t in range(15, 3600, 15):  # busy GPUs with nothing waiting: no more, no fewer
        assert policy.decide(t, 3, sensors(gpu=0.9)).desired == 3


def test_an_unapplied_change_holds_no_cooldown() -> None:
    policy = Policy(CONFIG)
    assert policy.decide(0, 1, sensors(backlog=100)).desired == 3
    # The actuator failed: the pool is still at 1, so the policy tries again at once.
    again = policy.decide(15, 1, sensors(backlog=100))
    assert (again.desired, again.rule) == (3, Rule.BACKLOG)
    # Applied this time: the next reading is inside its cooldown.
    held = policy.decide(30, 3, sensors(backlog=100))
    assert (held.desired, held.rule, held.cooldown_left_s) == (3, Rule.COOLDOWN, 165)


def test_time_never_goes_back() -> None:
    policy = Policy(CONFIG)
    policy.decide(30, 0, sensors())
    with pytest.raises(ValueError, match="time went back"):
        policy.decide(15, 0, sensors())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"min_replicas": 5}, "min replicas 5 must be 0..max"),
        ({"max_replicas": 0, "min_replicas": 0}, "max replicas 0 must be at least 1"),
        ({"hysteresis": 1.0}, "hysteresis 1.0 must be 0 <= h < 1"),
        ({"gpu_idle_utilization": 0.9}, "GPU utilisations must be 0 <= idle < busy <= 1"),
        ({"cooldown_s": -1}, "cannot be negative"),
    ],
)
def test_config_is_validated(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(CONFIG, **change)


# Random traces: the promises hold whatever the readings and the settings.


def random_config(rng: random.Random) -> PolicyConfig:
    low = rng.choice([0, 0, 1, 2])
    busy = rng.uniform(0.5, 1)
    return PolicyConfig(
        min_replicas=low,
        max_replicas=rng.randint(max(low, 1), 8),
        target_backlog_per_replica=rng.randint(1, 40),
        urgent_backlog_age_s=rng.choice([0, 30, 60, 300]),
        scale_up_step=rng.randint(1, 4),
        hysteresis=rng.choice([0, 0.1, 0.25, 0.5]),
        cooldown_s=rng.choice([0, 15, 60, 180, 600]),
        idle_s=rng.choice([0, 30, 300, 900]),
        gpu_busy_utilization=busy,
        gpu_idle_utilization=rng.uniform(0, busy - 0.01),
    )


def random_trace(rng: random.Random, length: int) -> list[str]:
    """Readings in regimes (quiet, burst, steady, noisy) that change every few minutes."""
    lines, t, backlog = [], 0.0, 0
    regime = "quiet"
    for _ in range(length):
        if rng.random() < 0.05:
            regime = rng.choice(["quiet", "burst", "steady", "noisy"])
        if regime == "quiet":
            backlog = 0 if rng.random() < 0.9 else rng.randint(0, 2)
        elif regime == "burst":
            backlog = (
                rng.randint(100, 1000) if backlog == 0 else max(0, backlog - rng.randint(0, 80))
            )
        elif regime == "steady":
            backlog = max(0, round(rng.gauss(30, 5)))
        else:
            backlog = rng.randint(0, 80)
        gpu = None if rng.random() < 0.3 else round(rng.random(), 2)
        reading = {
            "t": round(t, 1),
            "backlog": backlog,
            "backlog_age_s": round(rng.uniform(0, 400), 1) if backlog else 0,
            "pollers": rng.randint(0, 4),
            "gpu_utilization": gpu,
        }
        lines.append(json.dumps(reading))
        t += rng.choice([15, 15, 15, 1, 60, 0.5, 300])
    return lines


@pytest.mark.parametrize("seed", range(40))
def test_promises_hold_on_random_traces(seed: int) -> None:
    rng = random.Random(seed)
    config = random_config(rng)
    lines = random_trace(rng, 300)
    current = rng.randint(config.min_replicas, config.max_replicas)
    decisions = list(replay(lines, config, current=current))
    readings = [parse_line(line, number)[1] for number, line in enumerate(lines, start=1)]
    steps = [
        Step(d["t"], s, d["current"], d["desired"], d["reason"], d["rule"])
        for d, s in zip(decisions, readings, strict=True)
    ]
    check_promises(config, steps)
    # Replaying is deterministic.
    assert list(replay(lines, config, current=current)) == decisions
