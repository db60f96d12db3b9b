"""Login load, run as its own process: rounds of N concurrent logins for a while; prints how
many completed and their latency as JSON."""

from __future__ import annotations

import asyncio
import json
import sys
import time

import httpx


async def main(
    port: int, username: str, password: str, concurrency: int, duration_s: float
) -> None:
    latencies: list[float] = []
    rounds = 0
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits) as client:

        async def login() -> None:
            started = time.perf_counter()
            response = await client.post(
                "/api/v1/auth/login",
                json={"username": username, "password": password},
                timeout=120,
            )
            if response.status_code != 200:
                raise SystemExit(f"login got HTTP {response.status_code}: {response.text}")
            latencies.append((time.perf_counter() - started) * 1000)

        deadline = time.perf_counter() + duration_s
        while time.perf_counter() < deadline:
            await asyncio.gather(*(login() for _ in range(concurrency)))
            rounds += 1
    latencies.sort()
    print(
        json.dumps(
            {
                "logins": len(latencies),
                "rounds": rounds,
                "p50_ms": latencies[len(latencies) // 2],
                "max_ms": latencies[-1],
            }
        )
    )


if __name__ == "__main__":
    port, username, password, concurrency, duration = sys.argv[1:6]
    asyncio.run(main(int(port), username, password, int(concurrency), float(duration)))
