"""A circuit breaker per AI provider, shared by every worker through Redis.

After `failures` failures in a row a provider is skipped for `cooloff_s`; then one call is let
through, and a single further failure opens it again (a success closes it). Counts live in
Redis so that one worker's discovery that a provider is down spares all the others the
timeout. Without Redis (single-process development) the state is kept in the process. While
Redis is unreachable the breaker stays closed (every provider is tried): model calls go on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

# KEYS[1] = the provider's hash; ARGV = threshold, now, cool-off, ttl.
# failures += 1; when failures >= threshold: open_until = now + cool-off.
_RECORD_FAILURE = """
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
if failures >= tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'open_until', tonumber(ARGV[2]) + tonumber(ARGV[3]))
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
return failures
"""


class Breaker(Protocol):
    async def is_open(self, provider: str) -> bool: ...

    async def record_failure(self, provider: str) -> None: ...

    async def record_success(self, provider: str) -> None: ...


class RedisBreaker:
    def __init__(
        self,
        redis: Redis,
        key_prefix: str,
        *,
        failures: int,
        cooloff_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.key_prefix = key_prefix
        self.failures = failures
        self.cooloff_s = cooloff_s
        self.clock = clock
        # The state outlives a cool-off by far, and disappears when nothing uses it.
        self.ttl_s = max(3600, int(cooloff_s * 10))

    def _key(self, provider: str) -> str:
        return f"{self.key_prefix}ai:breaker:{provider}"

    async def is_open(self, provider: str) -> bool:
        try:
            open_until = await self.redis.hget(self._key(provider), "open_until")
        except RedisError as exc:
            log.warning("circuit state unreadable (%s): trying %s", type(exc).__name__, provider)
            return False
        return open_until is not None and float(open_until) > self.clock()

    async def record_failure(self, provider: str) -> None:
        try:
            await self.redis.eval(
                _RECORD_FAILURE,
                1,
                self._key(provider),
                self.failures,
                self.clock(),
                self.cooloff_s,
                self.ttl_s,
            )
        except RedisError as exc:
            log.warning("failure of %s not counted (%s)", provider, type(exc).__name__)

    async def record_success(self, provider: str) -> None:
        try:
            await self.redis.delete(self._key(provider))
        except RedisError as exc:
            log.warning("success of %s not recorded (%s)", provider, type(exc).__name__)


class MemoryBreaker:
    """The same rules in the process, for a development run without Redis."""

    def __init__(
        self, *, failures: int, cooloff_s: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.failures = failures
        self.cooloff_s = cooloff_s
        self.clock = clock
        self._failures: dict[str, int] = {}
        self._open_until: dict[str, float] = {}

    async def is_open(self, provider: str) -> bool:
        return self._open_until.get(provider, 0.0) > self.clock()

    async def record_failure(self, provider: str) -> None:
        count = self._failures.get(provider, 0) + 1
        self._failures[provider] = count
        if count >= self.failures:
            self._open_until[provider] = self.clock() + self.cooloff_s

    async def record_success(self, provider: str) -> None:
        self._failures.pop(provider, None)
        self._open_until.pop(provider, None)
