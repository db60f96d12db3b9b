"""`hivesync autoscaler`: the GPU autoscaler's loop, and `replay` to try its policy offline."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    help="The GPU autoscaler: sizes the GPU pool from gpu_tasks' backlog "
    "(without a subcommand: run it).",
    add_completion=False,
)


@app.callback(invoke_without_command=True)
def run(ctx: typer.Context) -> None:
    """Run the autoscaler: every AUTOSCALER_INTERVAL_S read gpu_tasks' backlog, decide and write
    the Serve deployment's floor; /status, /metrics and /health on AUTOSCALER_HOST:PORT."""
    if ctx.invoked_subcommand is not None:
        return
    # The loop and its status server: cli/autoscaler_service.py.
    from cli.autoscaler_service import run_autoscaler  # type: ignore[import-not-found,unused-ignore]
    from cli.main import _settings

    run_autoscaler(_settings())


@app.command("replay")
def replay_command(
    trace: Annotated[
        str, typer.Argument(metavar="TRACE.jsonl", help="The recorded trace; - reads stdin")
    ],
    current: Annotated[
        int | None,
        typer.Option(
            "--current", "--initial", min=0, help="Replicas before the first line (default: min)"
        ),
    ] = None,
    min_replicas: Annotated[
        int | None, typer.Option("--min", help="AUTOSCALER_MIN_REPLICAS")
    ] = None,
    max_replicas: Annotated[
        int | None, typer.Option("--max", help="AUTOSCALER_MAX_REPLICAS")
    ] = None,
    target_backlog: Annotated[
        int | None,
        typer.Option("--target-backlog", help="AUTOSCALER_TARGET_BACKLOG_PER_REPLICA"),
    ] = None,
    step: Annotated[int | None, typer.Option("--step", help="AUTOSCALER_SCALE_UP_STEP")] = None,
    urgent_age: Annotated[
        float | None, typer.Option("--urgent-age", help="AUTOSCALER_URGENT_BACKLOG_AGE_S")
    ] = None,
    hysteresis: Annotated[
        float | None, typer.Option("--hysteresis", help="AUTOSCALER_HYSTERESIS")
    ] = None,
    cooldown: Annotated[
        float | None, typer.Option("--cooldown", help="AUTOSCALER_COOLDOWN_S")
    ] = None,
    idle: Annotated[float | None, typer.Option("--idle", help="AUTOSCALER_IDLE_S")] = None,
    gpu_busy: Annotated[
        float | None, typer.Option("--gpu-busy", help="AUTOSCALER_GPU_BUSY_UTILIZATION")
    ] = None,
    gpu_idle: Annotated[
        float | None, typer.Option("--gpu-idle", help="AUTOSCALER_GPU_IDLE_UTILIZATION")
    ] = None,
) -> None:
    """Run the policy over a recorded trace and print its decisions, one JSON object a line
    ({"t", "current", "desired", "reason", "rule"}; each current is the previous desired).

    A trace line: {"t": s, "backlog": n, "backlog_age_s": s, "pollers": n, "gpu_utilization":
    0..1 or null}. Options override the AUTOSCALER_* settings."""
    from cli.main import _fail, _settings
    from inference.autoscaler.policy import PolicyConfig
    from inference.autoscaler.replay import TraceError, replay

    overrides: dict[str, Any] = {
        "min_replicas": min_replicas,
        "max_replicas": max_replicas,
        "target_backlog_per_replica": target_backlog,
        "scale_up_step": step,
        "urgent_backlog_age_s": urgent_age,
        "hysteresis": hysteresis,
        "cooldown_s": cooldown,
        "idle_s": idle,
        "gpu_busy_utilization": gpu_busy,
        "gpu_idle_utilization": gpu_idle,
    }
    try:
        config = replace(
            PolicyConfig.from_settings(_settings()),
            **{name: value for name, value in overrides.items() if value is not None},
        )
    except ValueError as error:
        _fail(str(error))

    def emit(lines: Iterable[str]) -> None:
        try:
            for decision in replay(lines, config, current=current):
                typer.echo(json.dumps(decision))
        except (TraceError, UnicodeDecodeError) as error:
            _fail(f"{trace}: {error}")

    if trace == "-":
        emit(sys.stdin)
        return
    try:
        with Path(trace).open(encoding="utf-8") as lines:
            emit(lines)
    except OSError as error:
        _fail(f"cannot read {trace}: {error.strerror}")
