"""Object storage (Cloudflare R2, AWS S3, MinIO, SeaweedFS) through a synchronous boto3 client.

Callers run these methods in threads (`asyncio.to_thread`). Every failure of the store (refused
connection, timeout, 5xx, access denied, bad signature) raises `StorageError`, with the botocore
exception as `__cause__`; a missing object raises its subclass `ObjectNotFound`. botocore does
not retry: retries belong to Temporal's activity retry policy.

Objects are private: clients reach them only through signed URLs. Each object and each signed
URL says `Cache-Control: private, max-age=<the URL's lifetime>`, so that no shared cache keeps
an answer and serves it after the signature expired; the client's own cache may keep it as long
as the URL was valid. Content that a browser could run script from (SVG, HTML, XML, anything not
on a short list of inert types) is stored and signed as a download: `application/octet-stream`
with `Content-Disposition: attachment`, so that the storage origin never renders it. S3's API
cannot store other response headers (`X-Content-Type-Options: nosniff`): add that at the CDN.

A `StorageError`'s message and details reach clients: they say what failed (the operation, the
store's error code and HTTP status, or the kind of network failure) but never the endpoint, the
bucket, the key or the store's own message; the log line written here keeps those.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any, NamedTuple, cast

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from pydantic import SecretStr

from contracts.errors import ErrorCode
from core.config import Settings
from core.errors import StorageError

if TYPE_CHECKING:
    from types_boto3_s3.client import S3Client
    from types_boto3_s3.literals import BucketLocationConstraintType

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 20.0
# DeleteObjects takes at most this many keys per request.
DELETE_BATCH = 1000
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
# Regions in which CreateBucket must not name a location constraint.
_NO_LOCATION_CONSTRAINT = frozenset({"", "auto", "us-east-1"})
# botocore's network failures as clients may read them (their own text names the endpoint URL).
# Most specific first: ConnectTimeoutError is also an EndpointConnectionError.
_NETWORK_FAILURES: tuple[tuple[type[BotoCoreError], str], ...] = (
    (ConnectTimeoutError, "Connect timeout"),
    (ReadTimeoutError, "Read timeout"),
    (ConnectionClosedError, "Connection was closed"),
    (EndpointConnectionError, "Could not connect"),
    (NoCredentialsError, "No credentials"),
)


# What browsers may render inline: types they run no script from (by name, a compression suffix
# looked through). Everything else is a download.
INLINE_CONTENT_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".mp3": "audio/mpeg",
    ".m4a": "audio/mp4",
    ".aac": "audio/aac",
    ".wav": "audio/wav",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".json": "application/json",
    # Script is run only where a page includes it (then in that page's origin), never when
    # opened: the preview app's bundle keeps its type.
    ".js": "application/javascript; charset=utf-8",
}
DOWNLOAD_CONTENT_TYPE = "application/octet-stream"
_ENCODING_SUFFIXES = frozenset({".br", ".gz"})
_UNSAFE_FILENAME_CHARS = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class ContentHeaders:
    """How an object is served: its type, and `attachment` when browsers must not render it."""

    content_type: str
    disposition: str | None = None


def content_headers(name: str) -> ContentHeaders:
    """The headers for an object named `name` (a key or a path: only its last part counts)."""
    path = PurePosixPath(name)
    suffix = path.suffix.lower()
    if suffix in _ENCODING_SUFFIXES:
        suffix = PurePosixPath(path.stem).suffix.lower()
    inline = INLINE_CONTENT_TYPES.get(suffix)
    if inline is not None:
        return ContentHeaders(inline)
    filename = _UNSAFE_FILENAME_CHARS.sub("_", path.name) or "download"
    return ContentHeaders(DOWNLOAD_CONTENT_TYPE, f'attachment; filename="{filename}"')


class StoredObject(NamedTuple):
    key: str
    size: int
    last_modified: datetime


class ObjectNotFound(StorageError):
    """The key does not exist in the bucket."""

    status_code = 404
    default_code = ErrorCode.NOT_FOUND


def make_s3_client(
    *,
    endpoint_url: str | None,
    access_key: str | None,
    secret_key: str | None,
    region: str,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
    read_timeout_s: float = READ_TIMEOUT_S,
) -> S3Client:
    """A SigV4 client with short timeouts and no retries; path-style addressing when an endpoint
    is given (R2, MinIO, SeaweedFS). Without keys, boto3's default credential chain applies."""
    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": "path" if endpoint_url else "auto"},
        connect_timeout=connect_timeout_s,
        read_timeout=read_timeout_s,
        # total_max_attempts counts the first request: 1 means no retry at all
        # (retries={"max_attempts": 1} would still allow one retry).
        retries={"mode": "standard", "total_max_attempts": 1},
        # Checksums only where the API requires them (DeleteObjects): S3-compatible stores do
        # not all accept the trailing checksums that botocore sends by default.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    # A session of its own: boto3's default session is not safe to share between threads.
    session = boto3.session.Session()
    return session.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=config,
    )


class Storage:
    """One bucket of the configured store. Building it makes no network call."""

    def __init__(
        self,
        settings: Settings,
        *,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        read_timeout_s: float = READ_TIMEOUT_S,
    ) -> None:
        self.bucket = settings.r2_bucket
        self.region = settings.r2_region
        self.endpoint = settings.r2_endpoint  # for log lines only

        def client(endpoint_url: str | None) -> S3Client:
            return make_s3_client(
                endpoint_url=endpoint_url,
                access_key=_secret(settings.r2_access_key),
                secret_key=_secret(settings.r2_secret_key),
                region=settings.r2_region,
                connect_timeout_s=connect_timeout_s,
                read_timeout_s=read_timeout_s,
            )

        self.client = client(settings.r2_endpoint)
        # Presigned URLs are signed for the host that clients download from.
        public = settings.r2_public_endpoint
        self._signer = client(public) if public and public != settings.r2_endpoint else self.client
        self.signed_url_ttl_s = settings.signed_url_ttl_s

    @property
    def private_cache_control(self) -> str:
        """Objects' Cache-Control unless the caller gives one: no shared cache may keep them,
        the client's own no longer than a signed URL lives (S3 cannot say "until the URL
        expires"; each signed URL says that itself, see `get_signed_url`)."""
        return f"private, max-age={self.signed_url_ttl_s}"

    def upload_file(
        self,
        key: str,
        path: Path | str,
        content_type: str | None = None,
        content_encoding: str | None = None,
        cache_control: str | None = None,
        content_disposition: str | None = None,
    ) -> None:
        """One PUT, streamed from the file (up to 5 GB)."""
        with Path(path).open("rb") as body:
            self._put(key, body, content_type, content_encoding, cache_control, content_disposition)

    def upload_bytes(
        self,
        key: str,
        data: bytes,
        content_type: str | None = None,
        content_encoding: str | None = None,
        cache_control: str | None = None,
        content_disposition: str | None = None,
    ) -> None:
        self._put(key, data, content_type, content_encoding, cache_control, content_disposition)

    def download_file(self, key: str, path: Path | str) -> None:
        """Writes the object to `path`; nothing is left there when the download fails."""
        target = Path(path)
        with self._errors("download", key):
            response = self.client.get_object(Bucket=self.bucket, Key=key)
            try:
                with target.open("wb") as out:
                    shutil.copyfileobj(response["Body"], out, 1024 * 1024)
            except BaseException:
                target.unlink(missing_ok=True)
                raise
            finally:
                response["Body"].close()

    def get_bytes(self, key: str) -> bytes:
        with self._errors("download", key):
            response = self.client.get_object(Bucket=self.bucket, Key=key)
            with contextlib.closing(response["Body"]) as body:
                return body.read()

    def exists(self, key: str) -> bool:
        try:
            with self._errors("check", key):
                self.client.head_object(Bucket=self.bucket, Key=key)
        except ObjectNotFound:
            return False
        return True

    def delete_file(self, key: str) -> None:
        """Deleting a missing key is not an error."""
        with self._errors("delete", key):
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def delete_prefix(self, prefix: str) -> int:
        """Deletes every key that starts with `prefix`; returns how many there were."""
        if not prefix:
            raise ValueError("refusing to delete a whole bucket: the prefix is empty")
        deleted = 0
        with self._errors("delete", prefix + "*"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix, PaginationConfig={"PageSize": DELETE_BATCH}
            )
            for page in pages:
                keys = [item["Key"] for item in page.get("Contents", [])]
                if not keys:
                    continue
                response = self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True},
                )
                errors = response.get("Errors", [])
                if errors:
                    first = errors[0]
                    log.warning(
                        "storage %s: could not delete %d object(s) under %s/%s, e.g. %r: %s %s",
                        self.endpoint,
                        len(errors),
                        self.bucket,
                        prefix,
                        first.get("Key"),
                        first.get("Code"),
                        first.get("Message"),
                    )
                    raise StorageError(
                        f"Storage could not delete {len(errors)} object(s): {first.get('Code')}",
                        details={"operation": "delete", "reason": first.get("Code")},
                    )
                deleted += len(keys)
        return deleted

    def list_objects(self, prefix: str) -> Iterator[StoredObject]:
        """Every key under `prefix`, a page (up to 1,000 keys) per request, in key order."""
        with self._errors("list", prefix + "*"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix, PaginationConfig={"PageSize": DELETE_BATCH}
            )
            for page in pages:
                for item in page.get("Contents", []):
                    yield StoredObject(item["Key"], item["Size"], item["LastModified"])

    def list_folders(self, prefix: str) -> Iterator[str]:
        """The "folders" right under `prefix` (keys' common prefixes up to the next `/`)."""
        with self._errors("list", prefix + "*"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket,
                Prefix=prefix,
                Delimiter="/",
                PaginationConfig={"PageSize": DELETE_BATCH},
            )
            for page in pages:
                for item in page.get("CommonPrefixes", []):
                    yield item["Prefix"]

    def get_signed_url(self, key: str, expires_in: int | None = None) -> str:
        """A presigned GET URL, valid `expires_in` seconds (SIGNED_URL_TTL_S by default), for
        R2_PUBLIC_ENDPOINT when set. Computed locally: no network call.

        The URL makes the store answer `Cache-Control: private, max-age=<expires_in>`, and for
        a name that browsers could run script from, `application/octet-stream` as an
        attachment (response-* parameters, covered by the signature): whatever an object was
        stored with, even before these rules, and on stores that guess types from names."""
        ttl = self.signed_url_ttl_s if expires_in is None else expires_in
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "ResponseCacheControl": f"private, max-age={ttl}",
        }
        headers = content_headers(key)
        if headers.disposition is not None:
            params["ResponseContentType"] = headers.content_type
            params["ResponseContentDisposition"] = headers.disposition
        with self._errors("sign", key):
            return self._signer.generate_presigned_url("get_object", Params=params, ExpiresIn=ttl)

    def check_bucket(self) -> None:
        """One HEAD of the bucket, the cheapest call that proves the store answers, the
        credentials are accepted and the bucket exists (the health checks). Raises
        ObjectNotFound when there is no such bucket, StorageError for everything else."""
        with self._errors("check bucket", ""):
            self.client.head_bucket(Bucket=self.bucket)

    def ensure_bucket(self) -> None:
        """Creates the bucket unless it exists (and is ours)."""
        try:
            self.check_bucket()
            return
        except ObjectNotFound:
            pass
        with self._errors("create bucket", ""):
            try:
                if self.region in _NO_LOCATION_CONSTRAINT:
                    self.client.create_bucket(Bucket=self.bucket)
                else:
                    self.client.create_bucket(
                        Bucket=self.bucket,
                        CreateBucketConfiguration={
                            "LocationConstraint": cast("BucketLocationConstraintType", self.region)
                        },
                    )
            except ClientError as exc:
                if _code(exc) != "BucketAlreadyOwnedByYou":  # created meanwhile
                    raise

    def _put(
        self,
        key: str,
        body: bytes | IO[bytes],
        content_type: str | None,
        content_encoding: str | None,
        cache_control: str | None,
        content_disposition: str | None,
    ) -> None:
        extra: dict[str, Any] = {"CacheControl": cache_control or self.private_cache_control}
        if content_type is not None:
            extra["ContentType"] = content_type
        if content_encoding is not None:
            extra["ContentEncoding"] = content_encoding
        if content_disposition is not None:
            extra["ContentDisposition"] = content_disposition
        with self._errors("upload", key):
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, **extra)

    @contextlib.contextmanager
    def _errors(self, action: str, key: str) -> Iterator[None]:
        """botocore exceptions -> StorageError (ObjectNotFound for a missing key or bucket), with
        a message for clients; the log keeps where it happened and the store's own words."""
        where = f"{self.bucket}/{key}" if key else self.bucket
        try:
            yield
        except ClientError as exc:
            code = _code(exc)
            if code in _NOT_FOUND_CODES:
                log.debug("storage %s: not found: %s", self.endpoint, where)
                raise ObjectNotFound("Not in storage", details={"operation": action}) from exc
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            message = exc.response.get("Error", {}).get("Message") or "no message"
            log.warning(
                "storage %s refused to %s %s: %s (HTTP %s): %s",
                self.endpoint,
                action,
                where,
                code,
                status,
                message,
            )
            raise StorageError(
                f"Storage refused to {action}: {code} (HTTP {status})",
                details={"operation": action, "reason": code, "status": status},
            ) from exc
        except BotoCoreError as exc:  # connection refused, timeouts, no credentials, ...
            reason = next(
                (text for kind, text in _NETWORK_FAILURES if isinstance(exc, kind)),
                type(exc).__name__,
            )
            log.warning("storage %s could not %s %s: %s", self.endpoint, action, where, exc)
            raise StorageError(
                f"Storage could not {action}: {reason}",
                details={"operation": action, "reason": reason},
            ) from exc


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))


def _secret(value: SecretStr | None) -> str | None:
    return None if value is None else value.get_secret_value()
