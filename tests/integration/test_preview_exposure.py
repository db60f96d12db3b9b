"""What a preview build exposes: the environment its Node processes get, how its assets are
served, and what its failures tell the client. A real bundler pool (Metro) and the builder on
the real SeaweedFS, without Temporal (the API's view is in test_preview_failures.py)."""

from __future__ import annotations

import asyncio
import gzip
import io
import os
import re
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.preview import PreviewActivities
from contracts.errors import ErrorCode
from contracts.failures import job_error
from contracts.previews import BuildPhase, PreviewArtifacts, PreviewBuildInput
from core.errors import PreviewError
from core.storage import Storage
from services.previews import layout
from services.previews.builder import Builder
from services.previews.bundler import BUNDLER_ENV_NAMES, BundlerPool
from services.previews.sources import from_inline
from tests.fixtures.previews import METRO_CACHE, bundler_work_dir
from tests.fixtures.storage import SeaweedFS, storage_settings_for

# In the worker's environment while the bundlers start: none of it may reach them.
CANARIES = {
    "R2_SECRET_KEY": "canary-r2-secret-" + uuid.uuid4().hex,
    "JWT_SECRET": "canary-jwt-secret-" + uuid.uuid4().hex,
    "HIVESYNC_TEST_CANARY": "canary-other-" + uuid.uuid4().hex,
}
SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16">'
    b"<script>alert(document.domain)</script></svg>"
)
STACK_LINE = re.compile(r"^\s*at\s", re.MULTILINE)


def tiny_app(index: str) -> dict[str, str | bytes]:
    """An app without React (it bundles in seconds even with a cold Metro cache)."""
    return {"index.js": index, "assets/logo.svg": SVG}


def absolute_paths(text: str) -> list[str]:
    """Absolute paths under this machine's top-level directories found in `text`."""
    roots = "|".join(re.escape(entry.name) for entry in Path("/").iterdir())
    return re.findall(rf"(?<![\w.:/-])/(?:{roots})(?:/[\w.@+-]*)+", text)


@dataclass
class Rig:
    builder: Builder
    pool: BundlerPool
    storage: Storage
    loop: asyncio.AbstractEventLoop
    work_dir: Path

    def run_build(self, files: dict[str, str | bytes] | bytes) -> PreviewArtifacts:
        """Stores the sources (a file set, or a ready tar.gz) as the API does, then builds."""
        if isinstance(files, bytes):
            archive, source_hash = files, uuid.uuid4().hex + uuid.uuid4().hex
        else:
            sources = from_inline(files)
            archive, source_hash = sources.to_archive(), sources.source_hash
        self.storage.upload_bytes(layout.source_key(source_hash), archive)
        request = PreviewBuildInput(
            build_id=uuid.uuid4().hex,
            project_id=uuid.uuid4(),
            user_id=uuid.uuid4(),
            source_hash=source_hash,
            entry_file="index.js",
            platform="ios",
            environment="production",
            toolchain="test",
            timeout_ms=300_000,
            requested_at=datetime.now(UTC),
        )

        def on_phase(_phase: BuildPhase) -> None:
            pass

        return self.loop.run_until_complete(self.builder.build(request, on_phase))


@pytest.fixture(scope="module")
def rig(seaweedfs: SeaweedFS, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """A started bundler pool, spawned while the canaries are in this process's environment."""
    # At the depth of METRO_CACHE's warm entries (see there).
    work_dir = bundler_work_dir(tmp_path_factory, "hivesync-build-exposure")
    settings = storage_settings_for(
        seaweedfs, bundler_work_dir=work_dir, bundler_cache_dir=METRO_CACHE, bundler_processes=1
    )
    storage = Storage(settings)
    loop = asyncio.new_event_loop()
    saved = {name: os.environ.get(name) for name in CANARIES}
    os.environ.update(CANARIES)
    try:
        pool = BundlerPool(settings)
        loop.run_until_complete(pool.start())
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    try:
        yield Rig(Builder(storage, pool, {"metro": "test"}), pool, storage, loop, work_dir)
    finally:
        loop.run_until_complete(pool.close())
        loop.close()


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (Metro's transform workers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry.name))
    found: list[int] = []
    pending = [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def _assert_clean_environment(pid: int) -> None:
    environ = _environ(pid)
    for name, value in CANARIES.items():
        assert name not in environ, (pid, name)
        assert value not in "\0".join(environ.values()), (pid, name)
    extra = {name for name in environ if name not in BUNDLER_ENV_NAMES}
    # Node's own additions in Metro's workers (NODE_ENV, jest-worker's ids) are allowed.
    assert all(
        name.startswith(("LC_", "NODE_", "JEST_")) or name == "FORCE_COLOR" for name in extra
    ), extra


def test_bundlers_get_none_of_the_workers_secrets_and_still_build(rig: Rig) -> None:
    assert CANARIES["R2_SECRET_KEY"] not in os.environ.get("R2_SECRET_KEY", "")  # restored
    [pid] = rig.pool.pids
    _assert_clean_environment(pid)
    assert "PATH" in _environ(pid)

    artifacts = rig.run_build(
        tiny_app("const logo = require('./assets/logo.svg');\nconsole.log('hello', logo);\n")
    )

    assert artifacts.bundle_size > 0
    assert [Path(asset.path).name for asset in artifacts.assets] == ["logo.svg"]
    for process in [pid, *_descendants(pid)]:  # Metro's workers, if it runs any now
        _assert_clean_environment(process)


def test_built_svg_asset_is_a_download_and_objects_are_private(rig: Rig) -> None:
    artifacts = rig.run_build(
        tiny_app("const logo = require('./assets/logo.svg');\nconsole.log('svg', logo);\n")
    )
    [asset] = artifacts.assets
    svg_key = layout.build_key(artifacts.build_id, f"{layout.ASSETS}/{asset.path}")
    ttl = rig.storage.signed_url_ttl_s

    svg = httpx.get(rig.storage.get_signed_url(svg_key))
    assert svg.status_code == 200, svg.text
    assert svg.content == SVG
    assert svg.headers["content-type"] == "application/octet-stream"
    assert svg.headers["content-disposition"] == 'attachment; filename="logo.svg"'
    assert svg.headers["cache-control"] == f"private, max-age={ttl}"
    stored = rig.storage.client.head_object(Bucket=rig.storage.bucket, Key=svg_key)
    assert stored["ContentDisposition"] == 'attachment; filename="logo.svg"'
    assert stored["CacheControl"] == f"private, max-age={ttl}"

    # The preview app's bundle keeps its type.
    bundle = httpx.get(
        rig.storage.get_signed_url(layout.build_key(artifacts.build_id, layout.BUNDLE))
    )
    assert bundle.headers["content-type"] == "application/javascript; charset=utf-8"
    assert "content-disposition" not in bundle.headers
    assert bundle.headers["cache-control"] == f"private, max-age={ttl}"
    assert b"svg" in bundle.content


@pytest.mark.parametrize(
    "importer",
    [
        "import x from './nowhere';",
        "import x from 'no-such-package';",
        "import x from '../../../../../../../../etc/hostname';",
        "import x from '/etc/passwd';",
    ],
)
def test_metro_resolution_errors_name_no_server_path(rig: Rig, importer: str) -> None:
    with pytest.raises(PreviewError) as caught:
        rig.run_build(tiny_app(f"{importer}\nconsole.log(x);\n"))

    error = caught.value
    assert error.code == ErrorCode.PREVIEW_BUILD_FAILED
    assert error.details["type"] == "resolution"
    assert error.details["file"] == "index.js"
    assert error.details["line"] == 1
    shown = f"{error.message} {error.details}"
    assert absolute_paths(shown) == [], shown
    assert not STACK_LINE.search(error.details["message"]), error.details["message"]
    assert str(rig.work_dir) not in shown
    assert "hivesync-build-exposure" not in shown


def _tar_gz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as compressed,
        tarfile.open(fileobj=compressed, mode="w") as archive,
    ):
        for path, content in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def test_sources_that_cannot_be_written_name_only_source_paths(rig: Rig) -> None:
    """A file and a directory of the same name (past the API's checks, as stored sources):
    final, and the message names the source path, not the worker's workspace."""
    archive = _tar_gz({"index.js": b"console.log(1);\n", "a": b"file", "a/b.js": b"x"})

    with pytest.raises(PreviewError) as caught:
        rig.run_build(archive)

    error = caught.value
    assert error.code == ErrorCode.PREVIEW_INVALID_SOURCE
    assert error.details["path"] == "a"
    shown = f"{error.message} {error.details}"
    assert absolute_paths(shown) == [], shown
    assert str(rig.work_dir) not in shown


def test_a_worker_fault_is_retried_and_names_no_worker_path(
    seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    """The worker's own disk fails (here: its work directory lies under a file). The activity
    reports a retryable PREVIEW_ERROR whose message names no path of the worker."""
    blocker = tmp_path / "hivesync-build-blocked"
    blocker.write_text("a file where a directory should be")
    settings = storage_settings_for(
        seaweedfs, bundler_work_dir=blocker / "bundler", bundler_cache_dir=tmp_path / "cache"
    )
    pool = BundlerPool(settings)
    activities = PreviewActivities(
        Builder(Storage(settings), pool, {}), cast(Any, None), cast(Any, None)
    )
    request = PreviewBuildInput(
        build_id=uuid.uuid4().hex,
        project_id=uuid.uuid4(),
        user_id=uuid.uuid4(),
        source_hash="0" * 64,
        entry_file="index.js",
        platform="ios",
        environment="production",
        toolchain="test",
        timeout_ms=10_000,
        requested_at=datetime.now(UTC),
    )

    with pytest.raises(ApplicationError) as caught:
        asyncio.run(ActivityEnvironment().run(activities.build_preview, request))

    failure = caught.value
    assert not failure.non_retryable
    error = job_error(failure, ErrorCode.PREVIEW_ERROR)
    assert error.code == ErrorCode.PREVIEW_ERROR
    assert error.message.startswith("The preview build failed on the worker: ")
    assert "Not a directory" in error.message
    assert str(tmp_path) not in error.message
    assert absolute_paths(f"{error.message} {error.details}") == [], error.message
