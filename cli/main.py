"""`hivesync` subcommands. Each loads settings first and exits with a clear message when the
configuration is unusable (e.g. production without a strong JWT_SECRET)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from pydantic import ValidationError

from cli.autoscaler import app as autoscaler_app
from contracts.jobs import TaskQueue
from core.config import Settings, load_settings, rate_limiter_problem

app = typer.Typer(help="HiveSync backend", no_args_is_help=True, add_completion=False)
app.add_typer(autoscaler_app, name="autoscaler")


def _fail(message: str) -> NoReturn:
    typer.secho(f"hivesync: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def _settings(env_file: Path | None = None) -> Settings:
    try:
        return load_settings() if env_file is None else load_settings(_env_file=env_file)
    except ValidationError as exc:
        problems = "; ".join(
            error["msg"].removeprefix("Value error, ")
            if not error["loc"]
            else f"{str(error['loc'][0]).upper()}: {error['msg']}"
            for error in exc.errors()
        )
        _fail(f"configuration error: {problems}")


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="Bind address (default: HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: PORT)")] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Worker processes (default: WEB_CONCURRENCY)")
    ] = None,
) -> None:
    """Serve the HTTP API with uvicorn."""
    import uvicorn

    settings = _settings()
    workers = workers or settings.web_concurrency
    problem = rate_limiter_problem(settings, workers)
    if problem:
        _fail(f"configuration error: {problem}")
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        log_config=None,  # the app configures JSON logging
        access_log=False,  # the request middleware writes the access log
        server_header=False,
    )


@app.command()
def migrate(
    revision: Annotated[str, typer.Argument(help="Target revision")] = "head",
    downgrade: Annotated[bool, typer.Option("--downgrade", help="Revert down to REVISION")] = False,
) -> None:
    """Apply the database migrations (or revert them with --downgrade)."""
    from migrations import runner

    settings = _settings()
    if downgrade:
        runner.downgrade(settings.sqlalchemy_url, revision)
    else:
        runner.upgrade(settings.sqlalchemy_url, revision)
    typer.echo(f"database at revision {revision}")


@app.command()
def worker(
    queue: Annotated[str, typer.Option(help="Temporal task queue")] = TaskQueue.CPU.value,
) -> None:
    """Run a Temporal worker: workflows, preview builds and light steps on cpu_tasks; calls to
    the local model on gpu_tasks."""
    import asyncio

    from cli.worker import QUEUES, run_worker

    if queue not in QUEUES:
        _fail(f"unknown queue {queue!r}; choose one of: {', '.join(QUEUES)}")
    asyncio.run(run_worker(_settings(), queue))


@app.command()
def health(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON instead of a table")
    ] = False,
    env_file: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="Settings file read instead of ./.env (`hivesync dev` writes .data/dev.env)",
        ),
    ] = None,
) -> None:
    """Check what the service depends on, all at once: Postgres, Redis, Temporal, object
    storage, each task queue's backlog and pollers, the model server and the autoscaler. Exit
    status 0 when everything needed is up, 1 when not (2: the configuration is unusable)."""
    import asyncio

    from cli.health import print_table, report_json, run_health

    report = asyncio.run(run_health(_settings(env_file)))
    if as_json:
        typer.echo(report_json(report))
    else:
        print_table(report)
    raise typer.Exit(code=0 if report.healthy else 1)


@app.command()
def inference(
    host: Annotated[str | None, typer.Option(help="Bind address (default: INFERENCE_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: INFERENCE_PORT)")] = None,
    num_cpus: Annotated[
        int | None, typer.Option(min=1, help="CPUs Ray may use (default: all of this machine's)")
    ] = None,
    ray_dir: Annotated[
        Path | None,
        typer.Option(
            help="Ray's directory, logs in session_latest/logs (default: INFERENCE_RAY_DIR)"
        ),
    ] = None,
) -> None:
    """Serve the local model (LOCAL_AI_MODEL_PATH, or the embedded SmolLM2) with Ray Serve on a
    local Ray: an OpenAI-compatible API at http://INFERENCE_HOST:INFERENCE_PORT/v1."""
    from cli.inference import default_options, run_inference_server
    from inference.server.models import ModelNotFoundError, model_source

    settings = _settings()
    try:
        model_source(settings.local_ai_model_path)  # fail here, not in a Ray replica
    except ModelNotFoundError as error:
        _fail(str(error))
    options = default_options(settings)
    options = replace(
        options,
        host=host or options.host,
        port=port or options.port,
        num_cpus=num_cpus or options.num_cpus,
        ray_dir=(ray_dir or options.ray_dir).expanduser().resolve(),
    )
    raise typer.Exit(code=run_inference_server(settings, options))


@app.command()
def dev(
    api_port: Annotated[int | None, typer.Option(help="API port (default: PORT)")] = None,
    temporal_port: Annotated[int, typer.Option(help="Temporal frontend port")] = 7233,
    temporal_ui_port: Annotated[int, typer.Option(help="Temporal web UI port")] = 8233,
    s3_port: Annotated[
        int,
        typer.Option(
            min=1,
            max=55000,
            help="SeaweedFS's S3 port; it takes the next 8 too, and this + 10008 "
            "(unused when R2_ENDPOINT is set)",
        ),
    ] = 8333,
    inference_port: Annotated[
        int | None,
        typer.Option(help="The local model server's port (default: INFERENCE_PORT)"),
    ] = None,
    autoscaler_port: Annotated[
        int | None,
        typer.Option(help="The GPU autoscaler's status port (default: AUTOSCALER_PORT)"),
    ] = None,
    data_dir: Annotated[
        Path, typer.Option(help="Local state (SQLite, Temporal, SeaweedFS, bundler)")
    ] = Path(".data"),
) -> None:
    """Run everything locally: migrations, a Temporal dev server with its UI, SeaweedFS as
    object storage, the local model on Ray Serve, a cpu_tasks worker (Metro), a gpu_tasks
    worker (model calls), the GPU autoscaler in dry-run (no Kubernetes here) and the API. Uses
    Postgres and Redis when reachable, else SQLite and an in-process rate limiter; R2_ENDPOINT
    when it is set; no model with LOCAL_AI_ENABLED=false."""
    from cli.devstack import DevStack

    settings = _settings()
    if settings.is_production:
        _fail("`hivesync dev` is for development; unset ENVIRONMENT=production")
    stack = DevStack(
        settings,
        data_dir=data_dir.resolve(),
        api_port=api_port or settings.port,
        temporal_port=temporal_port,
        temporal_ui_port=temporal_ui_port,
        s3_port=s3_port,
        inference_port=inference_port or settings.inference_port,
        autoscaler_port=autoscaler_port or settings.autoscaler_port,
    )
    raise typer.Exit(code=stack.run())
