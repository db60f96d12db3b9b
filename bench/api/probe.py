"""Latency probe, run as its own process: GET a path over one keep-alive connection, one
request at a time, for a while; prints the latency percentiles as JSON."""

from __future__ import annotations

import http.client
import json
import sys
import time


def percentile(sorted_values: list[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, round(fraction * (len(sorted_values) - 1)))
    return sorted_values[index]


def main(port: int, path: str, duration_s: float) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies: list[float] = []
    deadline = time.perf_counter() + duration_s
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        latencies.append((time.perf_counter() - started) * 1000)
        if response.status != 200:
            raise SystemExit(f"probe got HTTP {response.status}")
    latencies.sort()
    print(
        json.dumps(
            {
                "requests": len(latencies),
                "p50_ms": percentile(latencies, 0.50),
                "p99_ms": percentile(latencies, 0.99),
                "max_ms": latencies[-1],
            }
        )
    )


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], float(sys.argv[3]))
