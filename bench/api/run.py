"""API benchmark: `python -m bench.api.run` (or `make bench`).

Starts `hivesync api` (one uvicorn worker, production settings) on a fresh Postgres database and
the machine's Redis, then drives it from other processes only:

- throughput and latency of `GET /health` and of an authenticated `GET /api/v1/projects` (a page
  of 20), with wrk, RUNS times each, interleaved; medians are reported;
- `/health` latency from a one-connection probe, idle and while rounds of 20 concurrent logins
  run (bcrypt cost 12), RUNS times each; medians are reported.

Targets (from the issue): list throughput >= 50% of /health's; /health p99 during logins <= 2x
its idle p99. The table prints each figure beside its baseline from the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from cli.processes import ManagedProcess, free_port

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent / "results"
POSTGRES_ADMIN_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
PASSWORD = "benchmark passphrase"  # noqa: S105 - the seeded account's
PROJECTS = 20
LOGIN_CONCURRENCY = 20


def run_json(command: list[str], timeout_s: float) -> dict[str, Any]:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=True)
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def wrk(url: str, seconds: int, connections: int, headers: dict[str, str]) -> dict[str, Any]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(HERE / "report.lua")]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    figures = run_json([*command, url], timeout_s=seconds + 30)
    if figures["errors"] or figures["non_2xx"]:
        raise SystemExit(f"wrk saw errors on {url}: {figures}")
    figures["rps"] = figures["requests"] / (figures["duration_us"] / 1e6)
    return figures


def probe(port: int, seconds: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(HERE / "probe.py"), str(port), "/health", str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )


def logins(port: int, username: str, seconds: float) -> subprocess.Popen[str]:
    command = [sys.executable, str(HERE / "logins.py"), str(port), username, PASSWORD]
    command += [str(LOGIN_CONCURRENCY), str(seconds)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def collect(process: subprocess.Popen[str]) -> dict[str, Any]:
    output, _ = process.communicate(timeout=300)
    if process.returncode != 0:
        raise SystemExit(f"{process.args!r} failed")
    return dict(json.loads(output.strip().splitlines()[-1]))


def seed(base_url: str) -> tuple[str, str]:
    username = f"bench{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=base_url, timeout=30) as client:
        registered = client.post(
            "/api/v1/auth/register",
            json={"email": f"{username}@example.com", "username": username, "password": PASSWORD},
        )
        registered.raise_for_status()
        token = registered.json()["access_token"]
        for index in range(PROJECTS):
            client.post(
                "/api/v1/projects",
                json={"name": f"project {index}", "config": {"entry": "index.js", "sdk": 54}},
                headers={"Authorization": f"Bearer {token}"},
            ).raise_for_status()
    return username, token


def median(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(run[key] for run in runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5, help="per wrk run")
    parser.add_argument("--probe-seconds", type=float, default=6.0)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (make bench does it)")

    RESULTS.mkdir(exist_ok=True)
    database = f"hivesync_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    database_url = (
        make_url(POSTGRES_ADMIN_URL)
        .set(drivername="postgresql+psycopg", database=database)
        .render_as_string(hide_password=False)
    )
    port = free_port()
    env = {
        **os.environ,
        "ENVIRONMENT": "production",
        "JWT_SECRET": uuid.uuid4().hex + uuid.uuid4().hex,
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "REDIS_KEY_PREFIX": f"hivesync-bench-{database}:",
        "LOG_TO_FILE": "false",
        "TEMPORAL_ADDRESS": "127.0.0.1:1",
        # The benchmark logs in from one address far more often than a person would.
        "LOGIN_RATE_LIMIT_PER_USER": "1000000",
        "LOGIN_RATE_LIMIT_PER_IP": "1000000",
    }
    migrate = [sys.executable, "-m", "cli", "migrate"]
    subprocess.run(migrate, env=env, check=True, capture_output=True, timeout=120)
    server = ManagedProcess(
        "api",
        [sys.executable, "-m", "cli", "api", "--port", str(port)],
        env=env,
        log_file=RESULTS / "api-server.log",
    ).start()
    try:
        server.wait_for_port("127.0.0.1", port, timeout_s=60)
        base_url = f"http://127.0.0.1:{port}"
        username, token = seed(base_url)
        auth = {"Authorization": f"Bearer {token}"}
        health_url, list_url = f"{base_url}/health", f"{base_url}/api/v1/projects"
        # Warm-up: connection pool, prepared statements, caches.
        wrk(health_url, 2, args.connections, {})
        wrk(list_url, 2, args.connections, auth)

        health_runs, list_runs, idle_runs, loaded_runs, login_runs = [], [], [], [], []
        for _ in range(args.runs):
            health_runs.append(wrk(health_url, args.seconds, args.connections, {}))
            list_runs.append(wrk(list_url, args.seconds, args.connections, auth))
            idle_runs.append(collect(probe(port, args.probe_seconds)))
            load = logins(port, username, args.probe_seconds)
            loaded_runs.append(collect(probe(port, args.probe_seconds)))
            login_runs.append(collect(load))
    finally:
        server.stop()
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
            )

    report(args, health_runs, list_runs, idle_runs, loaded_runs, login_runs)


def report(
    args: argparse.Namespace,
    health_runs: list[dict[str, Any]],
    list_runs: list[dict[str, Any]],
    idle_runs: list[dict[str, Any]],
    loaded_runs: list[dict[str, Any]],
    login_runs: list[dict[str, Any]],
) -> None:
    health_rps, list_rps = median(health_runs, "rps"), median(list_runs, "rps")
    idle_p99, loaded_p99 = median(idle_runs, "p99_ms"), median(loaded_runs, "p99_ms")
    throughput_ratio = list_rps / health_rps
    latency_ratio = loaded_p99 / idle_p99
    rows = [
        ("GET /health", health_rps, median(health_runs, "p50_us") / 1000,
         median(health_runs, "p99_us") / 1000),
        (f"GET /api/v1/projects (auth, {PROJECTS} items)", list_rps,
         median(list_runs, "p50_us") / 1000, median(list_runs, "p99_us") / 1000),
    ]  # fmt: skip
    lines = [
        "",
        f"API benchmark: 1 uvicorn worker, Postgres + Redis, {os.cpu_count()} CPUs; "
        f"medians of {args.runs} interleaved runs",
        "",
        f"throughput (wrk, {args.connections} connections, {args.seconds} s)"
        f"{'req/s':>16}{'p50 ms':>10}{'p99 ms':>10}",
    ]
    for name, rps, p50, p99 in rows:
        lines.append(f"  {name:<50}{rps:>10.0f}{p50:>10.2f}{p99:>10.2f}")
    lines += [
        f"  list / health throughput: {throughput_ratio:.2f}  (target >= 0.50: "
        f"{'met' if throughput_ratio >= 0.5 else 'NOT met'})",
        "",
        f"/health latency, one connection, {args.probe_seconds:g} s{'p50 ms':>27}{'p99 ms':>10}",
        f"  {'idle':<50}{median(idle_runs, 'p50_ms'):>10.2f}{idle_p99:>10.2f}",
        f"  {f'during rounds of {LOGIN_CONCURRENCY} concurrent logins':<50}"
        f"{median(loaded_runs, 'p50_ms'):>10.2f}{loaded_p99:>10.2f}",
        f"  during / idle p99: {latency_ratio:.2f}  (target <= 2.0: "
        f"{'met' if latency_ratio <= 2.0 else 'NOT met'})",
        f"  logins completed per run: {median(login_runs, 'logins'):.0f} "
        f"(median login {median(login_runs, 'p50_ms'):.0f} ms)",
        "",
    ]
    print("\n".join(lines))
    (RESULTS / "api.json").write_text(
        json.dumps(
            {
                "health": health_runs,
                "list": list_runs,
                "probe_idle": idle_runs,
                "probe_during_logins": loaded_runs,
                "logins": login_runs,
                "throughput_ratio": throughput_ratio,
                "p99_ratio": latency_ratio,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
