"""The preview stack for `bench.preview.run`: the shared benchmark stack (bench/stack.py: Postgres,
Redis, Temporal, SeaweedFS verifying signatures, `hivesync api`) and any number of `hivesync
worker --queue cpu_tasks` processes, each with its own Metro work and cache directories, whose
Metro processes are watched for their peak memory. The Metro processes of a worker (their own
process groups) are stopped by PID, whatever happens.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.stack import Stack, Worker
from contracts.jobs import TaskQueue
from core.processes import peak_rss_bytes

SAMPLE_INTERVAL_S = 0.05


def _children(pid: int) -> list[int]:
    """Direct children of a process (of all its threads), from /proc."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        with contextlib.suppress(OSError, ValueError):
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
            found += [int(child) for child in text.split()]
    return found


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (tells a reused PID apart)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


@dataclass
class MetroWorker(Worker):
    """A cpu_tasks worker and what it runs: its Metro processes are watched from a thread,
    which keeps the peak (VmHWM) of each, since a process may be recycled or killed before
    anyone asks."""

    work_dir: Path = Path()
    cache_dir: Path = Path()
    bundler_peaks: dict[tuple[int, int], int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        super().start()
        self._thread = threading.Thread(target=self._sample, name=f"{self.name}-rss", daemon=True)
        self._thread.start()

    def _bundler_tree(self) -> list[int]:
        """The worker's Node children (bundler/server.js) and everything they spawned."""
        pid = self.process.pid
        if pid is None:
            return []
        pending = [
            child
            for child in _children(pid)
            if b"server.js" in _read_bytes(f"/proc/{child}/cmdline")
        ]
        tree: list[int] = []
        while pending:
            current = pending.pop()
            tree.append(current)
            pending += _children(current)
        return tree

    def _sample(self) -> None:
        tree: list[int] = []
        last_scan = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now - last_scan > 0.25:
                tree, last_scan = self._bundler_tree(), now
            self._record(tree)
            self._stop.wait(SAMPLE_INTERVAL_S)

    def _record(self, pids: list[int]) -> None:
        for pid in pids:
            peak, started = peak_rss_bytes(pid), _start_time(pid)
            if peak is None or started is None:
                continue
            with self._lock:
                key = (pid, started)
                self.bundler_peaks[key] = max(peak, self.bundler_peaks.get(key, 0))

    def peak_rss_bytes(self) -> int:
        """The largest peak among the Metro processes this worker has run so far."""
        with self._lock:
            return max(self.bundler_peaks.values(), default=0)

    def bundler_pids(self) -> list[tuple[int, int]]:
        with self._lock:
            return list(self.bundler_peaks)

    def bundles(self) -> list[dict[str, Any]]:
        """The worker's `bundled` log records (one per Metro build that succeeded)."""
        records = []
        for line in self.log_file.read_text(errors="replace").splitlines():
            if '"bundled"' not in line:
                continue
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if record.get("message") == "bundled":
                    records.append(record)
        return records

    def stop(self) -> None:
        """SIGTERM (the worker closes its Metro processes), then kill whatever Metro is left."""
        if self._stopped:
            return
        self._record(self._bundler_tree())
        super().stop()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for pid, started in self.bundler_pids():
            if _start_time(pid) == started:  # still that process, not a reused PID
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def _read_bytes(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError:
        return b""


class PreviewStack(Stack):
    """The shared stack, with SeaweedFS, and Metro workers on demand."""

    def start_metro_worker(self, work_dir: Path, cache_dir: Path) -> MetroWorker:
        """A cpu_tasks worker whose Metro works in `work_dir` with its cache in `cache_dir`,
        once it is ready to take builds."""
        env = {"BUNDLER_WORK_DIR": str(work_dir), "BUNDLER_CACHE_DIR": str(cache_dir)}
        plain = self.worker(TaskQueue.CPU, env=env)
        worker = MetroWorker(
            plain.name, plain.queue, plain.process, plain.log_file, work_dir, cache_dir
        )
        return self.launch(worker)
