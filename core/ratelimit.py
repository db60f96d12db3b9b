"""Fixed-window rate limiting, in Redis (shared by every API replica) or in process (dev only)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis


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


def _decision(wait_s: float) -> Decision:
    if wait_s <= 0:
        return Decision(allowed=True)
    return Decision(allowed=False, retry_after_s=max(1, math.ceil(wait_s)))
