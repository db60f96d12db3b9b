"""The gpu_tasks worker's gate: it takes tasks only while its model server is ready.

A model call taken by a worker whose model server is down fails (connection errors, then
retries, then AI_ERROR), while the same call left in gpu_tasks simply waits there: the backlog
is what the GPU autoscaler reads to scale the pool up, and the call runs once a server answers
(or fails after INFERENCE_WAIT_TIMEOUT_S, its schedule-to-start timeout). So the worker runs
its Temporal Worker (polling) only while `GET /health` of its model server answers 200, and
shuts it down (no polling; running calls finish or fail and are retried) when it stops
answering. A Temporal Worker cannot be restarted: each time the server is back, a new one.

When it probes, so that a pool scaled to zero can stay there: on Ray Serve, `/health` goes
through a replica, and a request while the deployment sits at zero starts one. So the gate
probes while it polls and has had work lately, or while its queue has a backlog (read from
Temporal with `describe_queue`, which never touches the pool); a worker with no model call
for INFERENCE_WORKER_IDLE_S and nothing waiting stops polling and probing (standby). A task
that arrives then shows up as backlog (Temporal caches the figure for ~5 s), the gate probes,
and polls as soon as the server answers. INFERENCE_WORKER_IDLE_S=0 keeps it polling and
probing for good: for a model server that never scales to zero (`make dev`, compose).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import httpx
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
    Worker,
)

log = logging.getLogger("hivesync.worker")

# How often the gate looks (probe or backlog), and how long one probe may take: a busy replica
# still answers /health within milliseconds, a pool that is starting holds the request.
PROBE_INTERVAL_S = 2.0
PROBE_TIMEOUT_S = 5.0
# Failed probes in a row that stop the polling: one lost probe is not an outage.
FAILED_PROBES_TO_STOP = 2


def health_url(local_ai_base_url: str) -> str:
    """The model server's `/health`: LOCAL_AI_BASE_URL without its `/v1`."""
    return local_ai_base_url.rstrip("/").removesuffix("/v1") + "/health"


def http_probe(http: httpx.AsyncClient, url: str) -> Callable[[], Awaitable[bool]]:
    """True while `url` answers 200 (the model is loaded). httpx does not log these requests
    (one every PROBE_INTERVAL_S at INFO would drown the worker's log)."""
    logging.getLogger("httpx").addFilter(_NotTo(url))

    async def probe() -> bool:
        try:
            response = await http.get(url, timeout=PROBE_TIMEOUT_S)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    return probe


class _NotTo(logging.Filter):
    """Drops httpx's `HTTP Request: GET <url> ...` records for one URL."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        return not (isinstance(args, tuple) and len(args) > 1 and str(args[1]) == self.url)


class Poller(Protocol):
    """What the gate switches on and off: a Temporal Worker polling the queue (see
    TemporalPoller)."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    @property
    def in_flight(self) -> int: ...  # tasks being run now
    @property
    def last_active(self) -> float: ...  # monotonic time a task last ended (or it started)
    def check(self) -> None: ...  # raises what made the Worker fail, if it did


class ModelGate:
    """Runs `poller` only while `probe()` says the model server is ready (see the module's
    docstring for when it probes). `tick()` is one look; `run()` looks every PROBE_INTERVAL_S."""

    def __init__(
        self,
        poller: Poller,
        *,
        probe: Callable[[], Awaitable[bool]],
        backlog: Callable[[], Awaitable[int]],
        idle_s: float,
        queue_name: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.poller = poller
        self.queue_name = queue_name
        self.probe = probe
        self.backlog = backlog
        self.idle_s = idle_s
        self.clock = clock
        self.polling = False
        self.failed_probes = 0
        self.stopped_because: str | None = None  # why the last stop happened (for logs, tests)

    async def tick(self) -> None:
        if self.polling:
            self.poller.check()
            if self._idle() and await self._nothing_waits():
                await self._stop("idle: no model call to run")
                return
            if await self.probe():
                self.failed_probes = 0
                return
            self.failed_probes += 1
            if self.failed_probes >= FAILED_PROBES_TO_STOP:
                await self._stop("the model server does not answer")
            return
        if self.idle_s > 0 and await self._nothing_waits():
            return  # standby: leave a pool at zero alone until work waits
        if await self.probe():
            self.failed_probes = 0
            await self.poller.start()
            self.polling = True
            self.stopped_because = None
            # "worker started": what `make bench` and operators look for in the log.
            log.info("worker started", extra={"task_queue": self.queue_name})

    async def run(self) -> None:
        """Look every PROBE_INTERVAL_S until cancelled; then stop polling."""
        try:
            while True:
                try:
                    await self.tick()
                except PollerFailed:
                    raise
                except Exception as exc:
                    # Temporal not answering describe_queue, say: look again at the next tick.
                    log.warning("model gate: %s", exc)
                await asyncio.sleep(PROBE_INTERVAL_S)
        finally:
            if self.polling:
                await asyncio.shield(self._stop("worker stopping"))

    def _idle(self) -> bool:
        if self.idle_s <= 0 or self.poller.in_flight > 0:
            return False
        return self.clock() - self.poller.last_active >= self.idle_s

    async def _nothing_waits(self) -> bool:
        return await self.backlog() == 0

    async def _stop(self, reason: str) -> None:
        self.polling = False
        self.stopped_because = reason
        log.info("worker stops polling: %s", reason, extra={"task_queue": self.queue_name})
        await self.poller.stop()


class PollerFailed(RuntimeError):
    """The Temporal Worker itself failed: the process should end (and be restarted)."""


class _ActivityCounter(Interceptor):
    """Counts the activities a Worker is running, and when the last one ended."""

    def __init__(self) -> None:
        self.running = 0
        self.last_active = time.monotonic()

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _CountingInbound(next, self)


class _CountingInbound(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, counter: _ActivityCounter) -> None:
        super().__init__(next)
        self.counter = counter

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        self.counter.running += 1
        try:
            return await super().execute_activity(input)
        finally:
            self.counter.running -= 1
            self.counter.last_active = time.monotonic()


class TemporalPoller:
    """A Temporal Worker built by `make_worker(interceptors)` and run while started; a new one
    on every start (a Worker that was shut down cannot run again). Shutting down stops the
    polling at once and gives running activities the Worker's graceful shutdown timeout."""

    def __init__(self, make_worker: Callable[[list[Interceptor]], Worker]) -> None:
        self.make_worker = make_worker
        self.counter = _ActivityCounter()
        self.worker: Worker | None = None
        self._run: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.counter.last_active = time.monotonic()
        self.worker = self.make_worker([self.counter])
        self._run = asyncio.create_task(self.worker.run())

    async def stop(self) -> None:
        worker, run = self.worker, self._run
        self.worker, self._run = None, None
        if worker is None or run is None:
            return
        if not run.done():
            await worker.shutdown()
        try:
            await run
        except Exception as exc:
            log.warning("the worker ended with an error: %s", exc)

    @property
    def in_flight(self) -> int:
        return self.counter.running

    @property
    def last_active(self) -> float:
        return self.counter.last_active

    def check(self) -> None:
        run = self._run
        if run is not None and run.done() and not run.cancelled() and run.exception():
            raise PollerFailed("the Temporal worker failed") from run.exception()
