"""The gpu_tasks worker's gate (cli/model_gate.py): when it polls, when it probes the model
server (a real HTTP server here, answering 200 or 503) and when it leaves it alone."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from cli.model_gate import (
    FAILED_PROBES_TO_STOP,
    ModelGate,
    PollerFailed,
    health_url,
    http_probe,
)

IDLE_S = 60.0


class Health:
    """A model server's /health on a real port: 200 when `ready`, else 503; counts requests."""

    def __init__(self) -> None:
        self.ready = False
        self.requests = 0
        health = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                health.requests += 1
                self.send_response(200 if health.ready else 503)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class RecordingPoller:
    """Stands in for the Temporal Worker: records the gate's starts and stops."""

    def __init__(self) -> None:
        self.starts = 0
        self.stops = 0
        self.in_flight = 0
        self.last_active = 0.0
        self.failure: BaseException | None = None

    async def start(self) -> None:
        self.starts += 1

    async def stop(self) -> None:
        self.stops += 1

    def check(self) -> None:
        if self.failure is not None:
            raise PollerFailed("failed") from self.failure


class Scene:
    def __init__(self, health: Health, idle_s: float) -> None:
        self.health = health
        self.poller = RecordingPoller()
        self.backlog = 0
        self.now = 0.0
        self.idle_s = idle_s
        self.gate: ModelGate | None = None

    async def ticks(self, *steps: str) -> list[tuple[bool, int]]:
        """Run the gate one tick per step ("tick", or "wait" to pass the idle time first);
        after each, (polling, probes the server got so far)."""
        async with httpx.AsyncClient() as http:

            async def backlog() -> int:
                return self.backlog

            probe = http_probe(http, health_url(self.health.base_url))
            if self.gate is None:
                self.gate = ModelGate(
                    self.poller,
                    probe=probe,
                    backlog=backlog,
                    idle_s=self.idle_s,
                    clock=lambda: self.now,
                )
            gate = self.gate
            gate.probe = probe  # this run's HTTP client
            seen = []
            for step in steps:
                if step == "wait":
                    self.now += self.idle_s
                await gate.tick()
                seen.append((gate.polling, self.health.requests))
            return seen

    def run(self, *steps: str) -> list[tuple[bool, int]]:
        return asyncio.run(self.ticks(*steps))


@pytest.fixture(scope="module")
def server() -> Iterator[Health]:
    health = Health()
    yield health
    health.server.shutdown()


@pytest.fixture
def health(server: Health) -> Health:
    server.ready = False
    server.requests = 0
    return server


def test_health_url_is_the_base_url_without_v1() -> None:
    assert health_url("http://inference:8010/v1") == "http://inference:8010/health"
    assert health_url("http://127.0.0.1:8010/v1/") == "http://127.0.0.1:8010/health"
    assert health_url("http://ray-head:8000") == "http://ray-head:8000/health"


def test_always_on_polls_only_while_the_server_answers(health: Health) -> None:
    scene = Scene(health, idle_s=0)
    assert scene.run("tick", "tick") == [(False, 1), (False, 2)]  # 503: loading
    health.ready = True
    assert scene.run("tick", "wait", "wait") == [(True, 3), (True, 4), (True, 5)]
    assert scene.poller.starts == 1

    health.ready = False  # one failed probe is not an outage; two in a row are
    seen = scene.run(*["tick"] * FAILED_PROBES_TO_STOP)
    assert [polling for polling, _ in seen] == [True] * (FAILED_PROBES_TO_STOP - 1) + [False]
    assert scene.poller.stops == 1
    assert scene.gate is not None
    assert scene.gate.stopped_because == "the model server does not answer"

    health.ready = True  # back: a new Worker polls
    assert scene.run("tick")[-1][0] is True
    assert scene.poller.starts == 2


def test_standby_probes_only_while_work_waits(health: Health) -> None:
    health.ready = True
    scene = Scene(health, idle_s=IDLE_S)
    # Nothing waits: the pool (at zero, say) is not touched, however long.
    assert scene.run("tick", "wait", "tick") == [(False, 0), (False, 0), (False, 0)]
    health.ready = False
    scene.backlog = 2  # work waits: probe; the server is still starting
    assert scene.run("tick", "tick") == [(False, 1), (False, 2)]
    health.ready = True
    assert scene.run("tick") == [(True, 3)]
    assert scene.poller.starts == 1


def test_an_idle_worker_stops_polling_and_probing(health: Health) -> None:
    health.ready = True
    scene = Scene(health, idle_s=IDLE_S)
    scene.backlog = 1
    scene.run("tick")
    scene.backlog = 0
    # A call in flight: not idle, however long it runs.
    scene.poller.in_flight = 1
    assert scene.run("wait", "wait") == [(True, 2), (True, 3)]
    scene.poller.in_flight = 0
    scene.poller.last_active = scene.now
    assert scene.run("tick") == [(True, 4)]  # idle for less than IDLE_S
    # Idle for IDLE_S, but work waits (the queue's figure lags): keep polling.
    scene.backlog = 1
    assert scene.run("wait") == [(True, 5)]
    scene.backlog = 0
    assert scene.run("tick", "wait", "tick") == [(False, 5), (False, 5), (False, 5)]
    assert scene.poller.stops == 1
    assert scene.gate is not None
    assert scene.gate.stopped_because == "idle: no model call to run"


def test_a_failed_worker_ends_the_gate(health: Health) -> None:
    health.ready = True
    scene = Scene(health, idle_s=0)
    scene.run("tick")
    scene.poller.failure = RuntimeError("worker crashed")
    with pytest.raises(PollerFailed):
        scene.run("tick")
