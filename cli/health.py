"""`hivesync health`: the report of services/health.py as a table, or as JSON for machines."""

from __future__ import annotations

import json
import logging

from rich.console import Console
from rich.table import Table

from core.config import Settings
from services.health import CheckStatus, HealthReport, collect_report

_STYLES = {
    CheckStatus.OK: "green",
    CheckStatus.WARN: "yellow",
    CheckStatus.FAIL: "bold red",
    CheckStatus.SKIPPED: "dim",
}


async def run_health(settings: Settings) -> HealthReport:
    """The report; the checks' own log lines (which name hosts) stay out of the output."""
    root = logging.getLogger()
    quiet = logging.NullHandler()
    if not root.handlers:
        root.addHandler(quiet)
    try:
        return await collect_report(settings)
    finally:
        root.removeHandler(quiet)


def report_json(report: HealthReport) -> str:
    return json.dumps(report.as_dict(), indent=2)


def print_table(report: HealthReport, console: Console | None = None) -> None:
    if console is None:
        console = Console()
        if not console.is_terminal:  # piped or captured: no terminal width to fit
            console.width = max(console.width, 120)
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("check", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("needed", no_wrap=True)
    table.add_column("ms", justify="right", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for check in report.checks:
        table.add_row(
            check.name,
            f"[{_STYLES[check.status]}]{check.status.value}[/]",
            "yes" if check.needed else "no",
            "" if check.latency_ms is None else f"{check.latency_ms:.0f}",
            check.detail,
            end_section=False,
        )
    console.print(table, markup=True, highlight=False)
    if report.healthy:
        console.print("[green]healthy[/]: everything needed is up")
    else:
        console.print(f"[bold red]NOT healthy[/]: {', '.join(report.failing)}")
