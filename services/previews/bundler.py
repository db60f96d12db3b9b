"""Long-lived Metro processes (`bundler/server.js`) on one worker, kept warm between builds.

Each process owns a workspace (`<work dir>/workspaces/<host>-<pid>-<n>`, siblings so that they
share the transform cache in `<work dir>/cache`) and does one build at a time. A build borrows
a process with `BundlerPool.workspace()`, which gives it a fresh slot `apps/<slot>` for the
sources and `out/<slot>` for the bundle, removed when the build ends whatever happens.

A process is replaced when it dies, after `BUNDLER_MAX_BUILDS` builds, above
`BUNDLER_MAX_RSS_MB`, and when a build overruns its hard timeout or is cancelled: then its
whole process group is killed at once. The protocol is in `bundler/README.md`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

from contracts.errors import ErrorCode
from core.config import Settings
from core.errors import PreviewError
from core.processes import peak_rss_bytes

log = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 90.0
CLOSE_TIMEOUT_S = 5.0
# Answers are small, but a Metro error's code frame can be long.
MAX_LINE_BYTES = 16 * 1024 * 1024
STDERR_TAIL_LINES = 40
# The only variables a bundler process (and Metro's workers) inherits from the worker, whose
# environment holds the service's secrets (JWT_SECRET, R2_SECRET_KEY, database passwords, ...):
# what Node needs to run (PATH, HOME, a temporary directory, the locale and time zone, the
# operator's NODE_OPTIONS) and the bundler's debug switch. LC_* are kept too.
BUNDLER_ENV_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "TMPDIR",
        "TMP",
        "TEMP",
        "LANG",
        "LANGUAGE",
        "TZ",
        "NODE_OPTIONS",
        "HIVESYNC_BUNDLER_DEBUG",
    }
)


class BundlerUnavailable(Exception):
    """The bundler process died or could not start: the build may succeed on a retry."""


@dataclass(frozen=True)
class BundleResult:
    bundle_bytes: int
    assets: list[str]  # relative to the build's assets directory
    duration_ms: int  # inside Metro
    rss_bytes: int


class BundlerProcess:
    """One `node bundler/server.js`, in its own process group."""

    def __init__(self, settings: Settings, workspace: Path, cache_dir: Path) -> None:
        self.settings = settings
        self.workspace = workspace
        self.cache_dir = cache_dir
        self.builds = 0
        self.rss_bytes = 0
        self._process: asyncio.subprocess.Process | None = None
        self._stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        self._stderr_task: asyncio.Task[None] | None = None
        self._next_id = 0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    def worn_out(self) -> bool:
        """Time for a fresh process (Metro's memory grows slowly with every graph)."""
        return (
            self.builds >= self.settings.bundler_max_builds
            or self.rss_bytes > self.settings.bundler_max_rss_mb * 1024 * 1024
        )

    async def start(self) -> None:
        """Spawn the process and wait for its first answer (sent once Metro is ready)."""
        node = shutil.which("node")
        server = self.settings.bundler_dir / "server.js"
        if node is None:
            raise BundlerUnavailable("Node.js is not installed (the bundler needs `node`)")
        if not (self.settings.bundler_dir / "node_modules" / "metro").is_dir():
            raise BundlerUnavailable(
                "the bundler toolchain is not installed: "
                f"run `npm ci` in {self.settings.bundler_dir}"
            )
        self.workspace.mkdir(parents=True, exist_ok=True)
        self.builds = 0  # a fresh process: it has done no build yet
        self._process = await asyncio.create_subprocess_exec(
            node,
            str(server),
            "--workspace",
            str(self.workspace),
            "--cache-dir",
            str(self.cache_dir),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group: killed as one
            limit=MAX_LINE_BYTES,
            env=bundler_env(os.environ),
        )
        assert self._process.stderr is not None
        self._stderr_task = asyncio.create_task(
            self._drain_stderr(self._process.pid, self._process.stderr)
        )
        try:
            await self.request({"type": "ping"}, timeout_s=STARTUP_TIMEOUT_S)
        except BaseException:
            await self.kill()
            raise
        log.info("bundler started", extra={"pid": self.pid, "workspace": str(self.workspace)})

    async def request(self, body: dict[str, Any], *, timeout_s: float) -> dict[str, Any]:
        """Send one request and wait for its answer. Raises TimeoutError (the process is left
        running: the caller decides) or BundlerUnavailable when the process dies."""
        process = self._process
        if process is None or process.stdin is None or process.stdout is None:
            raise BundlerUnavailable("the bundler is not running")
        self._next_id += 1
        request_id = f"r{self._next_id}"
        line = json.dumps({"id": request_id, **body}) + "\n"
        try:
            process.stdin.write(line.encode())
            await process.stdin.drain()
            async with asyncio.timeout(timeout_s):
                answer_line = await process.stdout.readline()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise self._died() from exc
        if not answer_line:
            raise self._died()
        answer: dict[str, Any] = json.loads(answer_line)
        if answer.get("id") != request_id:
            await self.kill()
            raise BundlerUnavailable(f"the bundler answered {answer.get('id')!r}, not {request_id}")
        self.rss_bytes = int(answer.get("rssBytes") or 0)
        return answer

    def _died(self) -> BundlerUnavailable:
        tail = "\n".join(self._stderr_tail)
        log.error("bundler %s exited unexpectedly; stderr tail:\n%s", self.pid, tail)
        return BundlerUnavailable("the bundler process exited unexpectedly")

    def peak_rss_bytes(self) -> int | None:
        """The process's peak resident memory so far (VmHWM), on Linux."""
        return None if self.pid is None else peak_rss_bytes(self.pid)

    async def kill(self) -> None:
        """SIGKILL the whole process group now and reap the process."""
        process = self._process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        await self._finish()

    async def close(self) -> None:
        """Let the process answer what it was asked and exit; kill it if it takes too long."""
        process = self._process
        if process is None:
            return
        if process.stdin is not None and not process.stdin.is_closing():
            process.stdin.close()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await process.wait()
        except TimeoutError:
            pass
        await self.kill()

    async def _finish(self) -> None:
        if self._stderr_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._stderr_task, timeout=2)
            self._stderr_task = None
        self._process = None

    async def _drain_stderr(self, pid: int, stream: asyncio.StreamReader) -> None:
        """Keep the pipe flowing; log the process's lines and keep the last few for errors."""
        while True:
            try:
                raw = await stream.readline()
            except (ValueError, asyncio.LimitOverrunError):
                continue  # one enormous line: skip it
            if not raw:
                return
            line = raw.decode(errors="replace").rstrip()
            self._stderr_tail.append(line)
            log.debug("bundler %s: %s", pid, line)


@dataclass(frozen=True)
class Workspace:
    """One build's directories, inside the workspace of the process that builds it."""

    process: BundlerProcess
    slot: str

    @property
    def app_dir(self) -> Path:
        return self.process.workspace / "apps" / self.slot

    @property
    def out_dir(self) -> Path:
        return self.process.workspace / "out" / self.slot

    @property
    def bundle_path(self) -> Path:
        return self.out_dir / "bundle.js"

    @property
    def assets_dir(self) -> Path:
        return self.out_dir / "assets"


class BundlerPool:
    """`BUNDLER_PROCESSES` bundler processes; a build waits for a free one."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.bundler_work_dir.resolve()
        self.cache_dir = (settings.bundler_cache_dir or self.root / "cache").resolve()
        host = socket.gethostname().replace("/", "_")
        self._workspace_prefix = f"{host}-"
        self._idle: asyncio.Queue[BundlerProcess] = asyncio.Queue()
        self._all = [
            BundlerProcess(
                settings, self.root / "workspaces" / f"{host}-{os.getpid()}-{index}", self.cache_dir
            )
            for index in range(settings.bundler_processes)
        ]
        for process in self._all:
            self._idle.put_nowait(process)
        self.builds_started = 0  # Metro runs requested through this pool, failed ones included

    async def start(self) -> None:
        """Remove what dead workers left behind, then warm every process up."""
        await asyncio.to_thread(self._remove_stale_workspaces)
        await asyncio.gather(*(process.start() for process in self._all if not process.running))

    async def close(self) -> None:
        await asyncio.gather(*(process.close() for process in self._all))
        for process in self._all:
            await asyncio.to_thread(shutil.rmtree, process.workspace, True)

    def peak_rss_bytes(self) -> int:
        """The largest peak resident memory among the running processes."""
        return max((process.peak_rss_bytes() or 0 for process in self._all), default=0)

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self._all if process.pid is not None]

    @contextlib.asynccontextmanager
    async def workspace(self) -> AsyncIterator[Workspace]:
        """A running process and a fresh slot in its workspace, for one build."""
        process = await self._idle.get()
        workspace = Workspace(process, uuid.uuid4().hex[:16])
        try:
            if not process.running:
                await process.start()
            workspace.app_dir.mkdir(parents=True)
            yield workspace
        finally:
            await asyncio.to_thread(shutil.rmtree, workspace.app_dir, True)
            await asyncio.to_thread(shutil.rmtree, workspace.out_dir, True)
            if process.running and process.worn_out():
                log.info(
                    "recycling bundler",
                    extra={"pid": process.pid, "builds": process.builds, "rss": process.rss_bytes},
                )
                await process.close()
            self._idle.put_nowait(process)

    async def bundle(
        self,
        workspace: Workspace,
        *,
        entry_file: str,
        platform: str,
        production: bool,
        timeout_s: float,
    ) -> BundleResult:
        """Bundle the sources in `workspace.app_dir`. Past `timeout_s`, or when the caller is
        cancelled, the process group is killed (the next build starts a fresh one)."""
        process = workspace.process
        self.builds_started += 1
        process.builds += 1
        started = time.monotonic()
        try:
            answer = await process.request(
                {
                    "type": "build",
                    "appDir": str(workspace.app_dir),
                    "entryFile": entry_file,
                    "platform": platform,
                    "dev": not production,
                    "minify": production,
                    "bundleOut": str(workspace.bundle_path),
                    "assetsDir": str(workspace.assets_dir),
                },
                timeout_s=timeout_s,
            )
        except TimeoutError:
            await process.kill()
            limit_ms = round(timeout_s * 1000)
            raise PreviewError(
                f"Preview bundle timed out after {limit_ms} ms",
                code=ErrorCode.PREVIEW_TIMEOUT,
                details={"timeout_ms": limit_ms},
            ) from None
        except asyncio.CancelledError:
            await asyncio.shield(process.kill())
            raise
        except BundlerUnavailable:
            await process.kill()
            raise
        if not answer.get("ok"):
            raise _build_failed(answer.get("error") or {}, self.server_paths(workspace))
        log.info(
            "bundled",
            extra={
                "pid": process.pid,
                "platform": platform,
                "bundle_bytes": answer["bundleBytes"],
                "metro_ms": answer["durationMs"],
                "wall_ms": round((time.monotonic() - started) * 1000),
            },
        )
        return BundleResult(
            bundle_bytes=int(answer["bundleBytes"]),
            assets=list(answer["assets"]),
            duration_ms=int(answer["durationMs"]),
            rss_bytes=int(answer["rssBytes"]),
        )

    def server_paths(self, workspace: Workspace | None = None) -> list[Path]:
        """Directories of this worker that client-facing text must not name (see scrub_paths):
        the build's sources first (paths inside it become source-relative)."""
        paths = [self.root, self.cache_dir, self.settings.bundler_dir.resolve()]
        if workspace is not None:
            paths[:0] = [workspace.app_dir, workspace.process.workspace]
        return paths

    def _remove_stale_workspaces(self) -> None:
        """Workspaces of processes on this host that no longer run (a killed worker's)."""
        parent = self.root / "workspaces"
        if not parent.is_dir():
            return
        for entry in parent.iterdir():
            if not entry.name.startswith(self._workspace_prefix):
                continue
            pid_text = entry.name[len(self._workspace_prefix) :].split("-")[0]
            if pid_text.isdigit() and not _alive(int(pid_text)):
                shutil.rmtree(entry, ignore_errors=True)


def bundler_env(parent: Mapping[str, str]) -> dict[str, str]:
    """What a bundler process gets of `parent`'s environment: BUNDLER_ENV_NAMES and LC_*."""
    return {
        name: value
        for name, value in parent.items()
        if name in BUNDLER_ENV_NAMES or name.startswith("LC_")
    }


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_STACK_LINE = re.compile(r"^\s*at\s.*(?:\n|$)", re.MULTILINE)
_PATH_PART = r"[^\s'\"()\[\]{}<>,;:|/]"


@cache
def _absolute_path_pattern() -> re.Pattern[str] | None:
    """Absolute paths that start with one of this machine's top-level directories (so that a
    regex literal in user code such as /abc/g is left alone)."""
    try:
        names = sorted(entry.name for entry in Path("/").iterdir())
    except OSError:
        return None
    names = [re.escape(name) for name in names if re.fullmatch(r"[\w.-]+", name)]
    if not names:
        return None
    return re.compile(rf"(?<![\w.:/-])/(?:{'|'.join(names)})(?!{_PATH_PART})(?:/{_PATH_PART}*)*")


def scrub_paths(text: str, roots: list[Path]) -> str:
    """`text` fit for clients: paths inside `roots` (in order: the first that contains a path
    wins) made relative to that root, any other absolute path cut to its last part, stack
    frame lines removed. Logs keep the original."""
    for root in roots:
        text = text.replace(f"{root}{os.sep}", "").replace(str(root), ".")
    text = _STACK_LINE.sub("", text)
    pattern = _absolute_path_pattern()
    if pattern is not None:
        text = pattern.sub(lambda match: PurePosixPath(match[0]).name or "/", text)
    return text.rstrip()


def _build_failed(error: dict[str, Any], roots: list[Path]) -> PreviewError:
    """Metro's error as the client sees it: message, and file, line and column when known.
    bundler/server/errors.js already removes stacks and server paths; this makes sure."""
    kind = str(error.get("type") or "internal")
    message = scrub_paths(str(error.get("message") or ""), roots)
    message = message or "Metro failed without a message"
    first_line = message.splitlines()[0]
    file = error.get("file")
    if not isinstance(file, str) or file.startswith("/") or ".." in file.split("/"):
        file = None
    return PreviewError(
        f"Preview build failed: {first_line}",
        code=ErrorCode.PREVIEW_BUILD_FAILED,
        details={
            "type": kind,
            "file": file,
            "line": error.get("line"),
            "column": error.get("column"),
            "message": message,
        },
    )
