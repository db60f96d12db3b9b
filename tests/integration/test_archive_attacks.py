"""Hostile source archives against the API as a real process (`hivesync api`, uvicorn) on the
real Postgres, Redis and SeaweedFS: each attack answers 422 (or 413) in the error shape, and
the API process's resident memory stays bounded while it does.

Memory is the process's peak RSS (`VmHWM`), reset before each upload through
`/proc/PID/clear_refs`, and also sampled every few milliseconds in case the reset is refused.
The figures are printed (`pytest -s`) as `archive-attack <name> ...`."""

from __future__ import annotations

import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from cli.processes import ManagedProcess, free_port
from tests.archives import COLLISION, make_tar, make_zip, metadata_attacks, tar_member
from tests.fixtures.storage import SeaweedFS
from tests.helpers import PASSWORD, REDIS_URL, TEST_JWT_SECRET, unique_name

# Growth of the API's peak RSS over its warm baseline that an attack may cause. The largest
# legitimate cost is the 50 MB of unpacked sources held in memory while they are checked.
RSS_MARGIN_BYTES = 150 * 1024 * 1024
MIB = 1024 * 1024
REPO_ROOT = Path(__file__).resolve().parents[2]
# Below the default 72 MB, above the largest attack here (a 44 MiB zip central directory).
UPLOAD_LIMIT = 48 * MIB


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def rss_bytes(pid: int) -> int:
    return _status_kib(pid, "VmRSS") * 1024


@dataclass
class PeakRss:
    """The peak RSS of `pid` while the block runs."""

    pid: int
    peak: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _hwm_reset: bool = False

    def __enter__(self) -> PeakRss:
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")  # resets VmHWM
            self._hwm_reset = True
        except OSError:
            self._hwm_reset = False
        self.peak = rss_bytes(self.pid)
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes(self.pid))
            time.sleep(0.005)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes(self.pid))
        if self._hwm_reset:
            self.peak = max(self.peak, _status_kib(self.pid, "VmHWM") * 1024)


@dataclass
class ApiProcess:
    process: ManagedProcess
    base_url: str

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=300)


@pytest.fixture(scope="module")
def api_process(
    database_url: str,
    redis_prefix: str,
    seaweedfs: SeaweedFS,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ApiProcess]:
    tmp_path = tmp_path_factory.mktemp("archive-attacks")
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        "SECRETS_DIR": str(tmp_path / "no-secrets"),
        "ENVIRONMENT": "test",
        "JWT_SECRET": TEST_JWT_SECRET,
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "REDIS_KEY_PREFIX": redis_prefix,
        "REGISTER_RATE_LIMIT_PER_IP": "10000",
        "LOG_TO_FILE": "false",
        "LOG_LEVEL": "WARNING",
        "TEMPORAL_ADDRESS": "127.0.0.1:1",
        "R2_ENDPOINT": seaweedfs.endpoint,
        "R2_ACCESS_KEY": seaweedfs.access_key,
        "R2_SECRET_KEY": seaweedfs.secret_key,
        "R2_BUCKET": seaweedfs.bucket,
        "R2_REGION": "auto",
        "MAX_SOURCE_UPLOAD_BYTES": str(UPLOAD_LIMIT),
    }
    api = ManagedProcess(
        "api",
        [sys.executable, "-m", "cli", "api", "--port", str(port)],
        env=env,
        cwd=REPO_ROOT,  # `python -m cli` imports this checkout's code
        log_file=tmp_path / "api.out",
    ).start()
    try:
        api.wait_for_port("127.0.0.1", port, timeout_s=120)
        yield ApiProcess(api, f"http://127.0.0.1:{port}")
    finally:
        api.stop()


@dataclass
class Uploader:
    client: httpx.Client
    token: str
    project_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def upload(self, archive: bytes, project_id: str | None = None) -> httpx.Response:
        return self.client.post(
            f"/api/v1/projects/{project_id or self.project_id}/sources",
            files={"file": ("sources.bin", archive, "application/octet-stream")},
            headers=self.headers,
        )


def _account(client: httpx.Client) -> Uploader:
    name = unique_name()
    registered = client.post(
        "/api/v1/auth/register",
        json={"email": f"{name}@example.com", "username": name, "password": PASSWORD},
    )
    assert registered.status_code == 201, registered.text
    token = registered.json()["access_token"]
    created = client.post(
        "/api/v1/projects", json={"name": "attacks"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert created.status_code == 201, created.text
    return Uploader(client, token, created.json()["id"])


def _assert_refused(response: httpx.Response, reason: str) -> None:
    assert response.status_code in (413, 422), response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    expected = "PAYLOAD_TOO_LARGE" if response.status_code == 413 else "PREVIEW_INVALID_SOURCE"
    assert body["error"]["code"] == expected
    assert re.search(reason, body["error"]["message"]), body["error"]["message"]
    assert "/tmp" not in response.text
    assert "Traceback" not in response.text


def _warm_baseline(api: ApiProcess, uploader: Uploader) -> int:
    """The API's RSS once it has handled a valid upload (storage client and parsers loaded)."""
    valid = make_zip({"index.js": b"console.log('warm');\n" + uuid.uuid4().bytes.hex().encode()})
    response = uploader.upload(valid)
    assert response.status_code == 201, response.text
    return rss_bytes(api.pid)


def test_archive_attacks_are_refused_with_bounded_memory(api_process: ApiProcess) -> None:
    attacks = metadata_attacks(full_size=True)
    with api_process.client() as client:
        uploader = _account(client)
        baseline = _warm_baseline(api_process, uploader)
        print(f"\narchive-attack baseline rss={baseline / MIB:.0f} MiB")
        peaks: dict[str, int] = {}
        for name, (archive, reason) in attacks.items():
            with PeakRss(api_process.pid) as peak:
                response = uploader.upload(archive)
            _assert_refused(response, reason)
            peaks[name] = peak.peak
            print(
                f"archive-attack {name}: upload={len(archive) / MIB:.1f} MiB "
                f"status={response.status_code} peak_rss={peak.peak / MIB:.0f} MiB "
                f"(+{(peak.peak - baseline) / MIB:.0f} MiB) "
                f"message={response.json()['error']['message']!r}"
            )
        # Still serving, and still accepting a valid upload.
        assert uploader.upload(make_zip({"index.js": b"1"})).status_code == 201
    over = {name: value for name, value in peaks.items() if value > baseline + RSS_MARGIN_BYTES}
    assert not over, {name: f"{value / MIB:.0f} MiB" for name, value in over.items()}


def test_path_collisions_are_refused_at_upload_and_inline(api_process: ApiProcess) -> None:
    """`a` and `a/b.js` together used to pass validation and fail on the worker five times."""
    with api_process.client() as client:
        uploader = _account(client)
        for archive in (
            make_zip({"a/b.js": b"1", "a": b"2"}),
            make_tar([tar_member("a"), tar_member("a/b.js")], {"a": b"1", "a/b.js": b"2"}),
            make_zip({"App.js": b"1", "app.js": b"2"}),
        ):
            _assert_refused(uploader.upload(archive), COLLISION)
        inline = client.post(
            "/api/v1/preview/build",
            json={
                "project_id": uploader.project_id,
                "target_platform": "ios",
                "entry_file": "a/b.js",
                "files": {"a": "1", "a/b.js": "2"},
            },
            headers=uploader.headers,
        )
        _assert_refused(inline, COLLISION)


def test_ownership_is_checked_before_anything_is_parsed(api_process: ApiProcess) -> None:
    """Another user's project: 404 for an archive bomb (a parse would answer 422) and for a
    documentation job whose content does not parse, with the API's memory unmoved."""
    attacks = metadata_attacks(full_size=True)
    with api_process.client() as client:
        owner = _account(client)
        stranger = _account(client)
        baseline = _warm_baseline(api_process, stranger)
        for name in ("tar-pax-bomb", "zip-central-directory-bomb"):
            with PeakRss(api_process.pid) as peak:
                response = stranger.upload(attacks[name][0], project_id=owner.project_id)
            assert response.status_code == 404, response.text
            assert response.json()["error"]["code"] == "NOT_FOUND"
            print(f"archive-attack {name} on another's project: peak_rss={peak.peak / MIB:.0f} MiB")
            assert peak.peak < baseline + RSS_MARGIN_BYTES
        docs = client.post(
            "/api/v1/docs/jobs",
            json={
                "project_id": owner.project_id,
                "file_path": "broken.py",
                "job_type": "file_summary",
                "content": "def broken(:\n" * 1000,
            },
            headers=stranger.headers,
        )
        assert docs.status_code == 404, docs.text
        assert docs.json()["error"]["code"] == "NOT_FOUND"
        mine = client.post(
            "/api/v1/docs/jobs",
            json={
                "project_id": stranger.project_id,
                "file_path": "broken.py",
                "job_type": "file_summary",
                "content": "def broken(:\n" * 1000,
            },
            headers=stranger.headers,
        )
        assert mine.status_code == 422, mine.text


def test_an_upload_over_the_limit_is_stopped_while_it_streams(api_process: ApiProcess) -> None:
    """Sent chunked (no Content-Length): the body is counted as it arrives and refused with a
    413 once past the limit; the API's memory does not grow with it."""
    boundary = "hivesync-attack"

    def body() -> Iterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="big.zip"\r\nContent-Type: application/zip\r\n\r\n'
        ).encode()
        for _ in range(UPLOAD_LIMIT // MIB + 16):
            yield b"PK" + b"\0" * (MIB - 2)
        yield f"\r\n--{boundary}--\r\n".encode()

    with api_process.client() as client:
        uploader = _account(client)
        baseline = _warm_baseline(api_process, uploader)
        with PeakRss(api_process.pid) as peak:
            response = client.post(
                f"/api/v1/projects/{uploader.project_id}/sources",
                content=body(),
                headers={
                    **uploader.headers,
                    "Content-Type": f"multipart/form-data; boundary={boundary}",
                },
            )
        _assert_refused(response, "larger than")
        assert response.status_code == 413
        print(
            f"archive-attack streamed-{UPLOAD_LIMIT // MIB + 16}MiB-upload: status=413 "
            f"peak_rss={peak.peak / MIB:.0f} MiB (+{(peak.peak - baseline) / MIB:.0f} MiB)"
        )
        assert peak.peak < baseline + RSS_MARGIN_BYTES
