"""What the running service reads of its child processes (the worker's Metro processes)."""

from __future__ import annotations

from pathlib import Path


def peak_rss_bytes(pid: int) -> int | None:
    """Peak resident memory of a running process (VmHWM, Linux), or None when it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return None
