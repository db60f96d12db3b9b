from __future__ import annotations

import asyncio

from core.ratelimit import Limit, MemoryRateLimiter


def test_memory_limiter_counts_and_recovers() -> None:
    async def scenario() -> None:
        limiter = MemoryRateLimiter()
        limits = [Limit("ip", 10, 60), Limit("pair", 2, 1)]
        assert (await limiter.hit(limits)).allowed
        assert (await limiter.hit(limits)).allowed
        refused = await limiter.hit(limits)
        assert not refused.allowed
        assert refused.retry_after_s == 1
        await asyncio.sleep(1.05)
        assert (await limiter.hit(limits)).allowed

    asyncio.run(scenario())


def test_memory_limiter_reports_the_longest_wait_and_resets() -> None:
    async def scenario() -> None:
        limiter = MemoryRateLimiter()
        limits = [Limit("short", 1, 5), Limit("long", 1, 30)]
        await limiter.hit(limits)
        refused = await limiter.hit(limits)
        assert refused.retry_after_s == 30
        await limiter.reset("long")
        await limiter.reset("short")
        assert (await limiter.hit(limits)).allowed

    asyncio.run(scenario())
