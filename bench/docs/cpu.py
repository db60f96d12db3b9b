"""Where the CPU time goes while the docs benchmark runs: CPU seconds (user + system) of each
part of the stack, from /proc (Linux), and of the whole machine.

A part is a process and everything it spawned; the inference server's tree is split into the
Serve replica (the process that runs the model, `ray::ServeReplica...`) and the rest of Ray
(GCS, raylet, Serve's controller and proxy...). Processes that exited between two readings are
not counted; nothing of the stack exits while a measurement runs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path

TICKS_PER_S = os.sysconf("SC_CLK_TCK")
INFERENCE = "inference"  # the name of the `hivesync inference` tree, split in two:
REPLICA = "ray replica (the model)"
RAY = "ray, other processes"
MACHINE = "whole machine"


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (field 3 is the first)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def _parents() -> dict[int, int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None:
                parents[int(entry.name)] = int(fields[1])
    return parents


def _tree(root: int, parents: Mapping[int, int]) -> list[int]:
    found, frontier = [root], [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        found += children
        frontier += children
    return found


def _seconds(pid: int) -> float:
    fields = _stat(pid)
    if fields is None:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S  # utime, stime


def _is_replica(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return b"ServeReplica" in Path(f"/proc/{pid}/cmdline").read_bytes()
    return False


def machine_seconds() -> float:
    """CPU seconds that every CPU of the machine has spent busy since boot."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / TICKS_PER_S


def cpu_seconds(roots: Mapping[str, int]) -> dict[str, float]:
    """CPU seconds so far of each process tree (by the name of its root), and of the whole
    machine."""
    parents = _parents()
    seconds: dict[str, float] = {}
    for name, root in roots.items():
        for pid in _tree(root, parents):
            part = name
            if name == INFERENCE:
                part = REPLICA if _is_replica(pid) else RAY
            seconds[part] = seconds.get(part, 0.0) + _seconds(pid)
    seconds[MACHINE] = machine_seconds()
    return seconds


def delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    return {name: after[name] - before.get(name, 0.0) for name in after}
