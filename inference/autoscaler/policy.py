"""The GPU autoscaler's policy: from what the sensors read to a replica count, with a reason.

Pure and deterministic: no I/O and no clock (the caller passes the time), so that a recorded trace
replays to the same decisions (`hivesync autoscaler replay`). Each evaluation applies the first
rule that fits:

1. Bounds: a count outside [min, max] is brought back at once (below the minimum, further up
   when the rules below ask for more).
2. From zero: work waits and no replica runs: up at once, even inside a cooldown (a pool at zero
   serves nothing, so nothing is gained by waiting).
3. Up: the backlog asks for more replicas than run (`ceil(backlog / target per replica)`, at
   most max) and exceeds what the running ones handle by more than the hysteresis; or work waits
   while the GPUs are busier than AUTOSCALER_GPU_BUSY_UTILIZATION (one more). At most
   AUTOSCALER_SCALE_UP_STEP replicas per change, or straight to what the backlog asks for once the
   oldest task has waited AUTOSCALER_URGENT_BACKLOG_AGE_S (urgent).
4. Idle: no work (no backlog, GPUs idle or unknown) for AUTOSCALER_IDLE_S: down to the minimum.
5. Excess: for a whole cooldown no reading needed every replica (backlog at or below what one
   fewer handles, less the hysteresis, and GPUs not busy): down one replica, never below one while
   work was seen within the idle time.
6. Otherwise hold.

After each change a cooldown (AUTOSCALER_COOLDOWN_S) holds every further change, except the
bounds, from-zero, and an urgent scale-up that continues a scale-up. So the policy never changes
direction inside a cooldown, except to leave zero when work waits.

How it copes with Temporal's figures. The backlog count and age come from DescribeTaskQueue:
approximate, and cached by the server for about 5 s, so one reading may lag a burst or a drain by
an evaluation, and a count may wobble from one reading to the next. Hence: going up reacts to one
reading (a stale zero costs at most one evaluation; a burst is acted on at the first reading that
shows it), while every step down needs a whole cooldown of readings that agree, and scaling to the
minimum needs IDLE_S without any backlog; the hysteresis band keeps a count that flaps around a
threshold from moving the pool; the cooldown gives a change time to show in the readings (a GPU
replica takes minutes to start) before the next one. A backlog with no poller is the normal state
of a pool at zero or starting (a gpu_tasks worker polls only while its model server answers), not
a reason to wait: pollers only annotate the reasons.

The policy keeps only the time and direction of the last change, and the last times work was seen
and every replica was needed; a new policy (the autoscaler restarted) takes its first reading as
the last time both were true, so it steps down only after a whole cooldown or idle time of its own
readings. A decided change that the next call's `current` does not show (the
actuator failed, or someone else set the count) is forgotten, so its cooldown does not hold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.config import Settings


@dataclass(frozen=True)
class Sensors:
    """One evaluation's reading of the gpu_tasks queue and the GPUs."""

    backlog: int  # tasks waiting in gpu_tasks (approximate)
    backlog_age_s: float  # how long the oldest of them has waited (0 when none)
    pollers: int  # gpu_tasks workers polling, i.e. with a model server that answers
    gpu_utilization: float | None  # 0..1 over the pool's GPUs; None when unknown


class Rule(StrEnum):
    """Which rule made a decision: stable codes for logs, metrics and tests."""

    BELOW_MIN = "below-min"
    ABOVE_MAX = "above-max"
    FROM_ZERO = "from-zero"
    BACKLOG = "backlog"
    URGENT = "urgent"
    GPU_BUSY = "gpu-busy"
    COOLDOWN = "cooldown"
    IDLE = "idle"
    EXCESS = "excess"
    HOLD = "hold"


@dataclass(frozen=True)
class Decision:
    desired: int
    reason: str  # for people: what was seen, the rule, "up 0 -> 2"
    cooldown_left_s: float  # until the cooldown of the last change ends (0 when none runs)
    rule: Rule


@dataclass(frozen=True)
class PolicyConfig:
    """The policy's settings (AUTOSCALER_* in core/config.py, where each is explained)."""

    min_replicas: int
    max_replicas: int
    target_backlog_per_replica: int
    urgent_backlog_age_s: float
    scale_up_step: int
    hysteresis: float
    cooldown_s: float
    idle_s: float
    gpu_busy_utilization: float
    gpu_idle_utilization: float

    def __post_init__(self) -> None:
        problems = []
        if not 0 <= self.min_replicas <= self.max_replicas:
            problems.append(f"min replicas {self.min_replicas} must be 0..max")
        if self.max_replicas < 1:
            problems.append(f"max replicas {self.max_replicas} must be at least 1")
        if self.target_backlog_per_replica < 1:
            problems.append("the target backlog per replica must be at least 1")
        if self.scale_up_step < 1:
            problems.append("the scale-up step must be at least 1")
        if not 0 <= self.hysteresis < 1:
            problems.append(f"hysteresis {self.hysteresis} must be 0 <= h < 1")
        if min(self.urgent_backlog_age_s, self.cooldown_s, self.idle_s) < 0:
            problems.append("the urgent age, the cooldown and the idle time cannot be negative")
        if not 0 <= self.gpu_idle_utilization < self.gpu_busy_utilization <= 1:
            problems.append("GPU utilisations must be 0 <= idle < busy <= 1")
        if problems:
            raise ValueError("autoscaler policy: " + "; ".join(problems))

    @classmethod
    def from_settings(cls, settings: Settings) -> PolicyConfig:
        return cls(
            min_replicas=settings.autoscaler_min_replicas,
            max_replicas=settings.autoscaler_max_replicas,
            target_backlog_per_replica=settings.autoscaler_target_backlog_per_replica,
            urgent_backlog_age_s=settings.autoscaler_urgent_backlog_age_s,
            scale_up_step=settings.autoscaler_scale_up_step,
            hysteresis=settings.autoscaler_hysteresis,
            cooldown_s=settings.autoscaler_cooldown_s,
            idle_s=settings.autoscaler_idle_s,
            gpu_busy_utilization=settings.autoscaler_gpu_busy_utilization,
            gpu_idle_utilization=settings.autoscaler_gpu_idle_utilization,
        )

    def needed(self, backlog: int) -> int:
        """Replicas the backlog asks for, at most max (the minimum is applied elsewhere)."""
        return min(self.max_replicas, math.ceil(backlog / self.target_backlog_per_replica))


@dataclass(frozen=True)
class _Change:
    t: float
    direction: int  # +1 up, -1 down


class Policy:
    """Decides one evaluation at a time; `t` must never go back."""

    def __init__(self, config: PolicyConfig) -> None:
        self.config = config
        self._last_t: float | None = None
        self._last_change: _Change | None = None
        # The change decided last, and the one before it, until `current` confirms it.
        self._unconfirmed: tuple[int, _Change | None] | None = None
        self._last_work_t = 0.0  # work was seen (backlog, or GPUs not idle)
        self._last_full_t = 0.0  # every running replica was needed

    def decide(self, t: float, current: int, sensors: Sensors) -> Decision:
        if current < 0:
            raise ValueError(f"current replicas {current} cannot be negative")
        if self._last_t is None:
            # A (re)started autoscaler knows nothing of the past: it assumes work was just seen,
            # so that it never scales down before a whole idle time / cooldown of readings.
            self._last_work_t = self._last_full_t = t
        elif t < self._last_t:
            raise ValueError(f"time went back: {t} after {self._last_t}")
        self._last_t = t
        if self._unconfirmed is not None:
            decided, previous = self._unconfirmed
            if current != decided:
                self._last_change = previous
            self._unconfirmed = None
        if self._works(sensors):
            self._last_work_t = t
        if self._needs_every_replica(current, sensors):
            self._last_full_t = t

        desired, rule, reason = self._choose(t, current, sensors)
        if desired != current:
            self._unconfirmed = (desired, self._last_change)
            self._last_change = _Change(t, 1 if desired > current else -1)
            self._last_full_t = t
        return Decision(desired, reason, self._cooldown_left(t), rule)

    def _works(self, sensors: Sensors) -> bool:
        gpu = sensors.gpu_utilization
        return sensors.backlog > 0 or (gpu is not None and gpu >= self.config.gpu_idle_utilization)

    def _gpu_busy(self, sensors: Sensors) -> bool:
        gpu = sensors.gpu_utilization
        return gpu is not None and gpu >= self.config.gpu_busy_utilization

    def _down_threshold(self, current: int) -> float:
        """The backlog that one replica fewer handles, less the hysteresis."""
        config = self.config
        return (current - 1) * config.target_backlog_per_replica * (1 - config.hysteresis)

    def _needs_every_replica(self, current: int, sensors: Sensors) -> bool:
        return sensors.backlog > self._down_threshold(current) or self._gpu_busy(sensors)

    def _cooldown_left(self, t: float) -> float:
        if self._last_change is None:
            return 0.0
        return max(0.0, self._last_change.t + self.config.cooldown_s - t)

    def _choose(self, t: float, current: int, sensors: Sensors) -> tuple[int, Rule, str]:
        """The decision's (desired, rule, reason): the first rule that fits, in the module's
        order."""
        config = self.config
        low, high = config.min_replicas, config.max_replicas
        backlog, target = sensors.backlog, config.target_backlog_per_replica
        hysteresis = config.hysteresis
        if current > high:
            return high, Rule.ABOVE_MAX, f"above the maximum {high}: down {current} -> {high}"
        cooldown_left = self._cooldown_left(t)
        cooling = f"cooldown {cooldown_left:.0f} s left: holds {current}"
        urgent = backlog > 0 and sensors.backlog_age_s >= config.urgent_backlog_age_s
        starting = "; no poller yet: the pool is starting" if sensors.pollers == 0 else ""

        # Up.
        wanted, why, rule = current, "", Rule.BACKLOG
        if backlog > current * target * (1 + hysteresis):
            wanted = config.needed(backlog)
            why = f"backlog {backlog} > {current} x {target} per replica + {hysteresis:.0%}"
        if backlog > 0 and self._gpu_busy(sensors) and current + 1 > wanted:
            wanted, rule = min(high, current + 1), Rule.GPU_BUSY
            why = f"GPUs {sensors.gpu_utilization:.0%} busy with backlog {backlog}"
        if wanted > current:
            last_direction = 0 if self._last_change is None else self._last_change.direction
            if current == 0:
                rule, why = Rule.FROM_ZERO, f"work waits with no replica: backlog {backlog}"
            elif cooldown_left > 0 and current >= low and not (urgent and last_direction == 1):
                reason = f"{why}, {cooling} (up to {wanted} after it){starting}"
                return current, Rule.COOLDOWN, reason
            elif urgent:
                rule = Rule.URGENT
            desired = wanted if urgent else min(wanted, current + config.scale_up_step)
            desired = max(desired, low)  # never below the minimum, whatever the step
            note = ""
            if urgent:
                note = f" (urgent: oldest task waited {sensors.backlog_age_s:.0f} s)"
            elif desired < wanted:
                note = f" (step {config.scale_up_step}; {wanted} wanted)"
            return desired, rule, f"{why}: up {current} -> {desired}{note}"

        if current < low:
            return low, Rule.BELOW_MIN, f"below the minimum {low}: up {current} -> {low}"

        # Down.
        idle_for = t - self._last_work_t
        if current > low and not self._works(sensors) and idle_for >= config.idle_s:
            if cooldown_left > 0:
                return current, Rule.COOLDOWN, f"no work for {idle_for:.0f} s, {cooling}"
            return low, Rule.IDLE, f"no work for {idle_for:.0f} s: down {current} -> {low}"
        # Work seen within the idle time keeps one replica: only the idle rule goes below it.
        excess_for = t - self._last_full_t
        excess = not self._needs_every_replica(current, sensors) and cooldown_left == 0
        if excess and current > max(low, 1) and excess_for >= config.cooldown_s:
            reason = (
                f"backlog <= {self._down_threshold(current):g} ({current - 1} x {target} per "
                f"replica - {hysteresis:.0%}) for {excess_for:.0f} s: "
                f"down {current} -> {current - 1}"
            )
            return current - 1, Rule.EXCESS, reason

        # Hold.
        if backlog == 0 and current > low:
            reason = f"no work for {idle_for:.0f} s of {config.idle_s:.0f} s: holds {current}"
        elif backlog == 0:
            reason = f"no work: holds {current}"
        elif why:  # more wanted, but the pool is at its maximum
            reason = f"{why}: holds the maximum {current}{starting}"
        else:
            reason = (
                f"backlog {backlog} fits {current} x {target} per replica + {hysteresis:.0%}: "
                f"holds {current}{starting}"
            )
        return current, Rule.HOLD, reason
