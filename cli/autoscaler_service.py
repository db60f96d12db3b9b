"""`hivesync autoscaler`: the GPU autoscaler's loop, with /status, /metrics and /health served
on AUTOSCALER_HOST:AUTOSCALER_PORT. SIGINT or SIGTERM ends the current evaluation's wait, stops
the HTTP server and exits."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator

import httpx
import typer
import uvicorn

from core.config import Settings
from core.logging import configure_logging, flush_logging
from core.temporal import connect_temporal
from inference.autoscaler.actuator import NoClusterError, RayServiceActuator, Target, load_api
from inference.autoscaler.policy import Policy, PolicyConfig
from inference.autoscaler.sensors import QueueSensors
from inference.autoscaler.service import Autoscaler, create_status_app

log = logging.getLogger("hivesync.autoscaler")


class _StatusServer(uvicorn.Server):
    """uvicorn without its own signal handling: this process's handlers stop it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def build_autoscaler(settings: Settings, http: httpx.AsyncClient) -> Autoscaler:
    """The loop's parts from the settings. Raises NoClusterError without a cluster (unless
    dry-run)."""
    config = PolicyConfig.from_settings(settings)
    api, source = load_api(settings.autoscaler_dry_run)
    actuator = RayServiceActuator(
        api,
        Target.from_settings(settings),
        dry_run=settings.autoscaler_dry_run,
        initial=config.min_replicas,
    )
    log.info(
        "autoscaler configured",
        extra={
            "kubernetes": source,
            "dry_run": settings.autoscaler_dry_run,
            "target": actuator.target.describe(),
        },
    )
    client = await connect_temporal(settings)
    return Autoscaler(
        QueueSensors(settings, client, http),
        actuator,
        Policy(config),
        interval_s=settings.autoscaler_interval_s,
    )


async def serve_autoscaler(settings: Settings, stop: asyncio.Event) -> None:
    """The loop and the status server until `stop` is set."""
    async with httpx.AsyncClient() as http:
        autoscaler = await build_autoscaler(settings, http)
        server = _StatusServer(
            uvicorn.Config(
                create_status_app(autoscaler),
                host=settings.autoscaler_host,
                port=settings.autoscaler_port,
                log_config=None,
                access_log=False,
                server_header=False,
                lifespan="off",
            )
        )
        serving = asyncio.create_task(server.serve())
        evaluating = asyncio.create_task(autoscaler.run(stop))
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({serving, evaluating, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.set()
            server.should_exit = True
            await asyncio.gather(serving, evaluating, stopping, return_exceptions=True)
        for task in (evaluating, serving):
            error = None if task.cancelled() else task.exception()
            if error is not None:
                raise error


def run_autoscaler(settings: Settings) -> None:
    """Run until SIGINT or SIGTERM. Without a cluster (and not in dry-run) it logs why and exits
    with status 2."""
    configure_logging(settings, service="hivesync-autoscaler")

    async def main() -> None:
        stop = asyncio.Event()
        running = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            running.add_signal_handler(sig, stop.set)
        await serve_autoscaler(settings, stop)

    try:
        asyncio.run(main())
    except NoClusterError as error:
        log.error("autoscaler cannot start", extra={"error": str(error)})
        typer.secho(f"hivesync autoscaler: {error}", fg=typer.colors.RED, err=True)
        flush_logging()
        raise SystemExit(2) from error
    finally:
        log.info("autoscaler stopped")
        flush_logging()
