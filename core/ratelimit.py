"""Fixed-window rate limiting and running-job slots, in Redis (shared by every API replica) or
in process (dev only)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis

from core.config import Settings


@dataclass(frozen=True, slots=True)
class Limit:
    key: str
    max_hits: int
    window_s: int


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    retry_after_s: int = 0


class RateLimiter(Protocol):
    async def hit(self, limits: Sequence[Limit]) -> Decision:
        """Count one hit against every limit; refused if any limit is over its budget."""
        ...

    async def reset(self, key: str) -> None: ...


# Counts a hit on every key and answers the longest wait among the keys over their budget
# (0 when all are within), atomically and in one round trip.
_HIT_SCRIPT = """
local wait_ms = 0
for i, key in ipairs(KEYS) do
  local max_hits = tonumber(ARGV[2 * i - 1])
  local window_ms = tonumber(ARGV[2 * i])
  local hits = redis.call('INCR', key)
  if hits == 1 then redis.call('PEXPIRE', key, window_ms) end
  if hits > max_hits then
    local ttl = redis.call('PTTL', key)
    if ttl < 0 then
      redis.call('PEXPIRE', key, window_ms)
      ttl = window_ms
    end
    if ttl > wait_ms then wait_ms = ttl end
  end
end
return wait_ms
"""


class RedisRateLimiter:
    def __init__(self, redis: Redis, key_prefix: str) -> None:
        self._redis = redis
        self._prefix = key_prefix + "ratelimit:"
        self._script = redis.register_script(_HIT_SCRIPT)

    async def hit(self, limits: Sequence[Limit]) -> Decision:
        keys = [self._prefix + limit.key for limit in limits]
        args: list[int] = []
        for limit in limits:
            args += [limit.max_hits, limit.window_s * 1000]
        wait_ms = int(await self._script(keys=keys, args=args))
        return _decision(wait_ms / 1000)

    async def reset(self, key: str) -> None:
        await self._redis.delete(self._prefix + key)


class MemoryRateLimiter:
    """Same semantics as the Redis limiter, for one process without Redis (`make dev` fallback).

    Not safe across processes or threads; the API runs it on its single event loop."""

    _PRUNE_EVERY = 1024

    def __init__(self) -> None:
        self._windows: dict[str, tuple[int, float]] = {}  # key -> (hits, window end)
        self._hits_since_prune = 0

    async def hit(self, limits: Sequence[Limit]) -> Decision:
        now = time.monotonic()
        self._maybe_prune(now)
        wait_s = 0.0
        for limit in limits:
            hits, ends_at = self._windows.get(limit.key, (0, 0.0))
            if ends_at <= now:
                hits, ends_at = 0, now + limit.window_s
            hits += 1
            self._windows[limit.key] = (hits, ends_at)
            if hits > limit.max_hits:
                wait_s = max(wait_s, ends_at - now)
        return _decision(wait_s)

    async def reset(self, key: str) -> None:
        self._windows.pop(key, None)

    def _maybe_prune(self, now: float) -> None:
        self._hits_since_prune += 1
        if self._hits_since_prune >= self._PRUNE_EVERY:
            self._hits_since_prune = 0
            self._windows = {k: v for k, v in self._windows.items() if v[1] > now}


def password_guess_limit(settings: Settings, account: str) -> Limit:
    """The budget of password guesses at one account from every address together: logins
    (`account` is the user id, or a digest of the login name when no user has it) and
    `current_password` checks share it."""
    return Limit(
        f"password:account:{account}",
        settings.login_rate_limit_per_account,
        settings.login_rate_limit_account_window_s,
    )


def _decision(wait_s: float) -> Decision:
    if wait_s <= 0:
        return Decision(allowed=True)
    return Decision(allowed=False, retry_after_s=max(1, math.ceil(wait_s)))


# --- Running-job slots ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SlotHolder:
    job: str
    held_s: float  # since the slot was taken
    left_s: float  # until its lease ends


@dataclass(frozen=True, slots=True)
class SlotClaim:
    """`granted`: the job holds a slot (`added`: taken now; else it held one already). When
    refused, the jobs that hold the slots, oldest lease first."""

    granted: bool
    added: bool = False
    holders: tuple[SlotHolder, ...] = ()


class RunningJobs(Protocol):
    """Slots for an account's running jobs of one kind: a set of job ids, each with a lease.

    A job takes a slot before it runs and frees it when it ends (`release`); a lease that ends
    frees its slot as well, so a job whose end is never reported cannot hold one forever."""

    async def claim(self, key: str, job: str, max_running: int, lease_s: int) -> SlotClaim: ...

    async def release(self, key: str, jobs: Sequence[str]) -> None: ...


# KEYS[1]: a sorted set of job ids scored by the end of their lease (ms, on Redis's clock, so
# that API replicas with skewed clocks agree). ARGV: job id, max running, lease (ms).
# Answers {1} when the job holds a slot already, {2} when it took a free one, and else
# {0, job, lease end - now, ...} for every holder, oldest lease first. Atomic: two replicas
# cannot both take the last slot.
_CLAIM_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return {1} end
local lease_ms = tonumber(ARGV[3])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + lease_ms, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], lease_ms)
  return {2}
end
local result = {0}
local holders = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #holders, 2 do
  table.insert(result, holders[i])
  table.insert(result, tonumber(holders[i + 1]) - now)
end
return result
"""


class RedisRunningJobs:
    def __init__(self, redis: Redis, key_prefix: str) -> None:
        self._redis = redis
        self._prefix = key_prefix + "running:"
        self._script = redis.register_script(_CLAIM_SCRIPT)

    async def claim(self, key: str, job: str, max_running: int, lease_s: int) -> SlotClaim:
        lease_ms = lease_s * 1000
        answer = await self._script(keys=[self._prefix + key], args=[job, max_running, lease_ms])
        if int(answer[0]) != 0:
            return SlotClaim(granted=True, added=int(answer[0]) == 2)
        holders = tuple(
            SlotHolder(
                job=_text(answer[i]),
                held_s=(lease_ms - int(answer[i + 1])) / 1000,
                left_s=int(answer[i + 1]) / 1000,
            )
            for i in range(1, len(answer), 2)
        )
        return SlotClaim(granted=False, holders=holders)

    async def release(self, key: str, jobs: Sequence[str]) -> None:
        if jobs:
            await self._redis.zrem(self._prefix + key, *jobs)


class MemoryRunningJobs:
    """Same semantics as the Redis slots, for one process without Redis (dev only)."""

    def __init__(self) -> None:
        self._slots: dict[str, dict[str, tuple[float, float]]] = {}  # key -> job -> (from, to)

    async def claim(self, key: str, job: str, max_running: int, lease_s: int) -> SlotClaim:
        now = time.monotonic()
        slots = {j: lease for j, lease in self._slots.get(key, {}).items() if lease[1] > now}
        self._slots[key] = slots
        if job in slots:
            return SlotClaim(granted=True)
        if len(slots) < max_running:
            slots[job] = (now, now + lease_s)
            return SlotClaim(granted=True, added=True)
        holders = tuple(
            SlotHolder(job=j, held_s=now - start, left_s=end - now)
            for j, (start, end) in sorted(slots.items(), key=lambda item: item[1][1])
        )
        return SlotClaim(granted=False, holders=holders)

    async def release(self, key: str, jobs: Sequence[str]) -> None:
        slots = self._slots.get(key, {})
        for job in jobs:
            slots.pop(job, None)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
