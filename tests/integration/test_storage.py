"""core.storage against a real SeaweedFS that verifies signatures (no mocks)."""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import SecretStr

from contracts.errors import ErrorCode
from core.config import Settings
from core.errors import StorageError
from core.storage import ObjectNotFound, Storage, content_headers
from tests.fixtures.storage import SeaweedFS, storage_settings_for


def _head(storage: Storage, key: str) -> dict[str, object]:
    return dict(storage.client.head_object(Bucket=storage.bucket, Key=key))


def _replace_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


def test_bytes_round_trip_keeps_headers(storage: Storage, storage_prefix: str) -> None:
    key = storage_prefix + "bundle.js"
    data = gzip.compress(b"console.log('hello');\n" * 100)

    storage.upload_bytes(
        key,
        data,
        content_type="application/javascript; charset=utf-8",
        content_encoding="gzip",
        cache_control="public, max-age=31536000, immutable",
    )

    assert storage.get_bytes(key) == data  # stored as given, not decoded
    head = _head(storage, key)
    assert head["ContentType"] == "application/javascript; charset=utf-8"
    assert head["ContentEncoding"] == "gzip"
    assert head["CacheControl"] == "public, max-age=31536000, immutable"
    assert head["ContentLength"] == len(data)


def test_file_round_trip(storage: Storage, storage_prefix: str, tmp_path: Path) -> None:
    key = storage_prefix + "assets/logo.png"
    source = tmp_path / "logo.png"
    data = os.urandom(3 * 1024 * 1024 + 17)  # several reads, not a round size
    source.write_bytes(data)

    storage.upload_file(key, source, content_type="image/png", content_encoding="identity")
    target = tmp_path / "out" / "logo.png"
    target.parent.mkdir()
    storage.download_file(key, target)

    assert target.read_bytes() == data
    head = _head(storage, key)
    assert head["ContentType"] == "image/png"
    assert head["ContentEncoding"] == "identity"


def test_upload_overwrites(storage: Storage, storage_prefix: str) -> None:
    key = storage_prefix + "metadata.json"
    storage.upload_bytes(key, b"{}", content_type="application/json")
    storage.upload_bytes(key, b'{"v": 2}', content_type="application/json")
    assert storage.get_bytes(key) == b'{"v": 2}'


def test_missing_key_is_object_not_found(
    storage: Storage, storage_prefix: str, tmp_path: Path
) -> None:
    key = storage_prefix + "missing"

    with pytest.raises(ObjectNotFound) as caught:
        storage.get_bytes(key)
    assert isinstance(caught.value, StorageError)
    assert caught.value.code == ErrorCode.NOT_FOUND
    assert isinstance(caught.value.__cause__, ClientError)

    target = tmp_path / "missing"
    with pytest.raises(ObjectNotFound):
        storage.download_file(key, target)
    assert not target.exists()
    assert storage.exists(key) is False


def test_exists_and_delete(storage: Storage, storage_prefix: str) -> None:
    key = storage_prefix + "sources.tar.gz"
    storage.upload_bytes(key, b"archive", content_type="application/gzip")
    assert storage.exists(key) is True

    storage.delete_file(key)
    assert storage.exists(key) is False
    storage.delete_file(key)  # deleting a missing key is not an error
    with pytest.raises(ObjectNotFound):
        storage.get_bytes(key)


def test_delete_prefix(storage: Storage, storage_prefix: str) -> None:
    build = storage_prefix + "builds/abc/"
    inside = [build + name for name in ("bundle.js", "metadata.json", "assets/a.png", "assets/b")]
    # Same leading characters, other "directories": they stay.
    outside = [storage_prefix + "builds/abcd/bundle.js", storage_prefix + "builds/ab"]
    for key in inside + outside:
        storage.upload_bytes(key, key.encode())

    assert storage.delete_prefix(build) == len(inside)

    assert not any(storage.exists(key) for key in inside)
    assert all(storage.exists(key) for key in outside)
    assert storage.delete_prefix(build) == 0
    with pytest.raises(ValueError, match="empty"):
        storage.delete_prefix("")


def test_presigned_url_downloads_exact_bytes(storage: Storage, storage_prefix: str) -> None:
    # SeaweedFS (unlike S3/R2) replaces application/octet-stream by a guess from the name's
    # extension: ".bin" keeps it.
    key = storage_prefix + "bundle with spaces+plus.bin"
    data = os.urandom(100_000)
    storage.upload_bytes(key, data, content_type="application/octet-stream")

    url = storage.get_signed_url(key, expires_in=60)

    response = httpx.get(url)  # no credentials: the URL carries the signature
    assert response.status_code == 200, response.text
    assert response.content == data
    assert response.headers["content-type"] == "application/octet-stream"
    assert "X-Amz-Signature=" in url
    assert "X-Amz-Expires=60" in url


def test_presigned_url_default_ttl(storage: Storage, storage_settings: Settings) -> None:
    url = storage.get_signed_url("any/key")
    assert f"X-Amz-Expires={storage_settings.signed_url_ttl_s}" in url


def test_gzip_object_through_presigned_url(storage: Storage, storage_prefix: str) -> None:
    key = storage_prefix + "bundle.js"
    text = b"var x = 1;\n" * 1000
    storage.upload_bytes(
        key, gzip.compress(text), content_type="text/javascript", content_encoding="gzip"
    )

    response = httpx.get(storage.get_signed_url(key, expires_in=60))

    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    assert response.content == text  # httpx decodes what the server marked as gzip


def test_expired_presigned_url_is_refused(storage: Storage, storage_prefix: str) -> None:
    key = storage_prefix + "bundle.js"
    storage.upload_bytes(key, b"soon gone")
    url = storage.get_signed_url(key, expires_in=1)

    time.sleep(2.5)  # X-Amz-Date has a resolution of one second

    response = httpx.get(url)
    assert response.status_code == 403, response.text
    assert "AccessDenied" in response.text
    assert b"soon gone" not in response.content


def test_tampered_presigned_urls_are_refused(storage: Storage, storage_prefix: str) -> None:
    key = storage_prefix + "bundle.js"
    other = storage_prefix + "other.js"
    storage.upload_bytes(key, b"signed")
    storage.upload_bytes(other, b"not signed")
    url = storage.get_signed_url(key, expires_in=60)
    assert httpx.get(url).status_code == 200

    signature = dict(parse_qsl(urlsplit(url).query))["X-Amz-Signature"]
    flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    tampered = {
        "signature": _replace_query(url, **{"X-Amz-Signature": flipped}),
        "key": url.replace("/bundle.js?", "/other.js?"),
        "expiry": _replace_query(url, **{"X-Amz-Expires": "604800"}),
    }
    assert tampered["key"] != url
    for what, bad_url in tampered.items():
        response = httpx.get(bad_url)
        assert response.status_code == 403, (what, response.text)
        assert b"signed" not in response.content, what

    assert httpx.get(url.split("?")[0]).status_code == 403  # anonymous
    # The signature parameter dropped: 400 MissingFields (AWS answers 400 too).
    assert httpx.get(url.split("&X-Amz-Signature=")[0]).status_code in (400, 403)


def test_signed_for_the_public_endpoint(
    seaweedfs: SeaweedFS, storage: Storage, storage_prefix: str
) -> None:
    """R2_PUBLIC_ENDPOINT: the URL names (and the signature covers) the host clients use."""
    key = storage_prefix + "bundle.js"
    storage.upload_bytes(key, b"public")
    public_endpoint = f"http://localhost:{seaweedfs.ports.s3}"
    public = Storage(storage_settings_for(seaweedfs, r2_public_endpoint=public_endpoint))

    url = public.get_signed_url(key, expires_in=60)

    assert url.startswith(f"{public_endpoint}/{seaweedfs.bucket}/{storage_prefix}")
    response = httpx.get(url)
    assert response.status_code == 200, response.text
    assert response.content == b"public"
    # The same signature sent to another host name does not verify.
    other_host = url.replace(public_endpoint, seaweedfs.endpoint)
    assert httpx.get(other_host).status_code == 403


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("r2_secret_key", "wrong-secret-key-0123456789", "SignatureDoesNotMatch"),
        ("r2_access_key", "NOSUCHACCESSKEY00000", "InvalidAccessKeyId"),
    ],
)
def test_wrong_credentials_raise_storage_error(
    seaweedfs: SeaweedFS,
    storage: Storage,
    storage_prefix: str,
    field: str,
    value: str,
    code: str,
) -> None:
    key = storage_prefix + "bundle.js"
    storage.upload_bytes(key, b"exists")
    wrong = Storage(storage_settings_for(seaweedfs, **{field: SecretStr(value)}))

    operations: dict[str, Callable[[], object]] = {
        "upload": lambda: wrong.upload_bytes(key, b"x"),
        "get": lambda: wrong.get_bytes(key),
        "exists": lambda: wrong.exists(key),
        "delete": lambda: wrong.delete_file(key),
    }
    for name, operation in operations.items():
        with pytest.raises(StorageError) as caught:
            operation()
        error = caught.value
        assert not isinstance(error, ObjectNotFound), name
        assert error.code == ErrorCode.STORAGE_ERROR
        assert isinstance(error.__cause__, ClientError), name
        if name != "exists":  # HEAD answers carry no error code, only the status
            assert code in error.message, (name, error.message)
        assert "403" in error.message, (name, error.message)
        assert error.details["status"] == 403
        _assert_says_nothing_internal(error, seaweedfs, key, value)
    assert storage.get_bytes(key) == b"exists"  # nothing was changed


def _assert_says_nothing_internal(
    error: StorageError, seaweedfs: SeaweedFS, key: str, *secrets: str
) -> None:
    """What a client may read of a storage error: no endpoint, bucket, key or credential."""
    shown = f"{error.message} {error.details}"
    host = seaweedfs.endpoint.removeprefix("http://")
    for internal in (host, str(seaweedfs.ports.s3), seaweedfs.bucket, key, seaweedfs.secret_key):
        assert internal not in shown, (internal, shown)
    for secret in secrets:
        assert secret not in shown, shown


def test_storage_errors_are_logged_with_where_they_happened(
    seaweedfs: SeaweedFS, storage_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Clients get the generic error; the operator's log names endpoint, bucket and key."""
    wrong = Storage(storage_settings_for(seaweedfs, r2_secret_key=SecretStr("wrong-" + "x" * 30)))
    key = storage_prefix + "logged.js"

    with caplog.at_level(logging.WARNING, logger="core.storage"), pytest.raises(StorageError):
        wrong.upload_bytes(key, b"x")

    logged = caplog.text
    assert seaweedfs.endpoint in logged
    assert f"{seaweedfs.bucket}/{key}" in logged
    assert "SignatureDoesNotMatch" in logged


def test_missing_bucket(seaweedfs: SeaweedFS, storage_prefix: str) -> None:
    bucket = f"hivesync-test-{uuid.uuid4().hex[:8]}"
    storage = Storage(storage_settings_for(seaweedfs, r2_bucket=bucket))
    key = storage_prefix + "x"

    with pytest.raises(StorageError) as caught:
        storage.upload_bytes(key, b"x")  # no bucket is created behind our back
    assert not isinstance(caught.value, ObjectNotFound)
    assert "NoSuchBucket" in caught.value.message
    assert bucket not in f"{caught.value.message} {caught.value.details}"

    storage.ensure_bucket()
    storage.ensure_bucket()  # idempotent
    storage.upload_bytes(key, b"x")
    assert storage.get_bytes(key) == b"x"

    storage.delete_prefix(storage_prefix)
    storage.client.delete_bucket(Bucket=bucket)


def test_server_stopped_then_restarted(
    seaweedfs: SeaweedFS, storage: Storage, storage_prefix: str, tmp_path: Path
) -> None:
    kept = storage_prefix + "kept.js"
    storage.upload_bytes(kept, b"survives a restart")
    source = tmp_path / "upload.bin"
    source.write_bytes(b"file")

    operations: dict[str, Callable[[], object]] = {
        "upload_bytes": lambda: storage.upload_bytes(storage_prefix + "new", b"x"),
        "upload_file": lambda: storage.upload_file(storage_prefix + "new", source),
        "download_file": lambda: storage.download_file(kept, tmp_path / "out.bin"),
        "get_bytes": lambda: storage.get_bytes(kept),
        "exists": lambda: storage.exists(kept),
        "delete_file": lambda: storage.delete_file(kept),
        "delete_prefix": lambda: storage.delete_prefix(storage_prefix),
        "ensure_bucket": storage.ensure_bucket,
    }
    durations: dict[str, float] = {}
    with seaweedfs.stopped():
        for name, operation in operations.items():
            started = time.perf_counter()
            with pytest.raises(StorageError) as caught:
                operation()
            durations[name] = time.perf_counter() - started
            error = caught.value
            assert not isinstance(error, ObjectNotFound), name
            assert isinstance(error.__cause__, BotoCoreError), name
            assert "Could not connect" in error.message, error.message
            key = kept if "download" in name or name in ("get_bytes", "exists") else ""
            _assert_says_nothing_internal(error, seaweedfs, key or storage_prefix)
        assert not (tmp_path / "out.bin").exists()
        # Signing needs no server.
        assert storage.get_signed_url(kept, expires_in=60).startswith(seaweedfs.endpoint)
    print(  # shown with `pytest -s`: how fast a stopped store fails
        "storage stopped: "
        + ", ".join(f"{name} {seconds * 1000:.1f} ms" for name, seconds in durations.items())
    )

    assert storage.get_bytes(kept) == b"survives a restart"
    storage.upload_bytes(storage_prefix + "after", b"works again")
    assert storage.get_bytes(storage_prefix + "after") == b"works again"
    assert httpx.get(storage.get_signed_url(kept, expires_in=60)).content == b"survives a restart"


class _StubServer:
    """A loopback TCP server that counts connections and answers each with `reply` (None:
    accept and never answer). Shows what botocore does on its own: it must not retry."""

    def __init__(self, reply: bytes | None) -> None:
        self.reply = reply
        self.connections = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stopping = threading.Event()
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            if self.reply is None:
                self.held.append(conn)
                continue
            with conn:
                conn.settimeout(2)
                with contextlib.suppress(OSError):
                    conn.recv(65536)
                    conn.sendall(self.reply)

    def close(self) -> None:
        self.stopping.set()
        self.thread.join()
        for conn in self.held:
            conn.close()
        self.sock.close()


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", "HTTP 503"),
        (b"", "Connection was closed"),
        (None, "Read timeout"),
    ],
    ids=["503", "closed", "read-timeout"],
)
def test_failures_are_storage_errors_without_retries(
    seaweedfs: SeaweedFS, reply: bytes | None, expected: str
) -> None:
    server = _StubServer(reply)
    try:
        settings = storage_settings_for(seaweedfs, r2_endpoint=f"http://127.0.0.1:{server.port}")
        storage = Storage(settings, read_timeout_s=0.5)
        with pytest.raises(StorageError) as caught:
            storage.get_bytes("some/key")
        assert expected in caught.value.message, caught.value.message
        assert f"127.0.0.1:{server.port}" not in f"{caught.value.message} {caught.value.details}"
        assert not isinstance(caught.value, ObjectNotFound)
        assert isinstance(caught.value.__cause__, ClientError | BotoCoreError)
        assert server.connections == 1  # no retry inside botocore
    finally:
        server.close()


def _get(url: str) -> httpx.Response:
    response = httpx.get(url)
    assert response.status_code == 200, response.text
    return response


def test_objects_are_private_by_default(
    storage: Storage, storage_settings: Settings, storage_prefix: str
) -> None:
    key = storage_prefix + "metadata.json"
    storage.upload_bytes(key, b"{}", content_type="application/json")
    expected = f"private, max-age={storage_settings.signed_url_ttl_s}"
    assert _head(storage, key)["CacheControl"] == expected
    assert _get(storage.get_signed_url(key)).headers["cache-control"] == expected


def test_signed_urls_are_private_whatever_was_stored(storage: Storage, storage_prefix: str) -> None:
    """An object stored as cacheable by anyone for a year (as builds were): its signed URL
    still forbids shared caches and lets the client keep it only as long as the URL lives."""
    key = storage_prefix + "bundle.js"
    storage.upload_bytes(
        key,
        b"var a = 1;",
        content_type="application/javascript; charset=utf-8",
        cache_control="public, max-age=31536000, immutable",
    )

    response = _get(storage.get_signed_url(key, expires_in=60))

    assert response.headers["cache-control"] == "private, max-age=60"
    assert response.headers["content-type"] == "application/javascript; charset=utf-8"
    assert "content-disposition" not in response.headers


SCRIPT_CAPABLE = ["logo.svg", "icon.SVGZ", "page.html", "page.htm", "doc.xhtml", "feed.xml",
                  "style.xsl", "manual.pdf", "data.yaml", "no-extension"]  # fmt: skip
INLINE = {
    "logo.png": "image/png",
    "photo.jpeg": "image/jpeg",
    "font.ttf": "font/ttf",
    "clip.mp4": "video/mp4",
    "strings.json": "application/json",
    "bundle.js": "application/javascript; charset=utf-8",
}


@pytest.mark.parametrize("name", SCRIPT_CAPABLE)
def test_script_capable_content_is_served_as_a_download(
    storage: Storage, storage_prefix: str, name: str
) -> None:
    """As the builder stores assets, and read back through a signed URL: never rendered by a
    browser on the storage origin."""
    key = f"{storage_prefix}assets/{name}"
    headers = content_headers(name)
    storage.upload_bytes(
        key,
        b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        content_type=headers.content_type,
        content_disposition=headers.disposition,
    )
    stored = _head(storage, key)
    assert stored["ContentDisposition"] == f'attachment; filename="{name}"'

    response = _get(storage.get_signed_url(key, expires_in=60))

    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-disposition"] == f'attachment; filename="{name}"'
    assert response.headers["cache-control"] == "private, max-age=60"


def test_svg_stored_with_its_type_is_still_a_download(
    storage: Storage, storage_prefix: str
) -> None:
    """Objects stored before these rules (image/svg+xml, inline), and stores that guess types
    from names (SeaweedFS does): the signed URL itself asks for a download, and the signature
    covers that request."""
    key = storage_prefix + "assets/old.svg"
    storage.upload_bytes(key, b"<svg/>", content_type="image/svg+xml")
    url = storage.get_signed_url(key, expires_in=60)

    response = _get(url)
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-disposition"] == 'attachment; filename="old.svg"'

    for parameter in ("response-content-disposition", "response-content-type"):
        parts = urlsplit(url)
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != parameter]
        stripped = urlunsplit(parts._replace(query=urlencode(query)))
        assert httpx.get(stripped).status_code == 403, parameter


@pytest.mark.parametrize(("name", "content_type"), INLINE.items())
def test_inert_content_keeps_its_type(
    storage: Storage, storage_prefix: str, name: str, content_type: str
) -> None:
    key = f"{storage_prefix}assets/{name}"
    headers = content_headers(name)
    assert headers.disposition is None
    storage.upload_bytes(key, b"data", content_type=headers.content_type)

    response = _get(storage.get_signed_url(key, expires_in=60))

    assert response.headers["content-type"] == content_type
    assert "content-disposition" not in response.headers


def test_brotli_bundle_keeps_the_javascript_type(storage: Storage, storage_prefix: str) -> None:
    key = storage_prefix + "bundle.js.br"
    storage.upload_bytes(
        key, b"\x0b\x01\x80", content_type=content_headers("bundle.js").content_type,
        content_encoding="br",
    )  # fmt: skip
    assert content_headers(key).disposition is None
    response = httpx.get(storage.get_signed_url(key, expires_in=60))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/javascript; charset=utf-8"
