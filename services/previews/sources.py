"""React Native sources sent for a preview build: validated, normalised, content-addressed.

Sources arrive as a map of files (text or base64) or as a zip / tar.gz archive. Everything is
checked in memory before a byte is stored: relative POSIX paths only, regular files only, at
most MAX_FILES files and MAX_TOTAL_BYTES bytes (counted as they are decompressed, not taken from
headers, which can lie), and a bounded compression ratio. Accepted sources become one
deterministic tar.gz whose name is the hash of its contents, so identical sources are stored
once and hash to the same build.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import io
import stat
import tarfile
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

from contracts.errors import ErrorCode
from core.errors import PreviewError

MAX_FILES = 5_000
MAX_TOTAL_BYTES = 50 * 1024 * 1024
MAX_PATH_LENGTH = 1024
# Uncompressed / compressed. Source code compresses 3-10x; a bomb compresses 1000x.
MAX_COMPRESSION_RATIO = 100
# Below this many uncompressed bytes the ratio is not checked (tiny files compress oddly).
RATIO_CHECK_FLOOR = 1024 * 1024


def invalid_source(message: str, **details: object) -> PreviewError:
    return PreviewError(message, code=ErrorCode.PREVIEW_INVALID_SOURCE, details=dict(details))


def validate_path(raw: str) -> str:
    """The path as stored: relative, '/'-separated, without '.', '..' or empty parts."""
    if not raw or len(raw) > MAX_PATH_LENGTH:
        raise invalid_source("File path is empty or too long", path=raw[:200])
    if any(ord(char) < 32 or char == "\x7f" for char in raw):
        raise invalid_source("File path contains control characters", path=raw[:200])
    if "\\" in raw:
        raise invalid_source("File paths use '/' as separator", path=raw)
    if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":"):
        raise invalid_source("File paths must be relative", path=raw)
    parts = [part for part in raw.split("/") if part not in ("", ".")]
    if not parts:
        raise invalid_source("File path names no file", path=raw)
    if ".." in parts:
        raise invalid_source("File paths must not contain '..'", path=raw)
    return "/".join(parts)


@dataclass
class SourceSet:
    """Validated files, path -> bytes, within the limits."""

    files: dict[str, bytes] = field(default_factory=dict)
    total_bytes: int = 0

    def add(self, raw_path: str, content: bytes) -> None:
        path = validate_path(raw_path)
        if path in self.files:
            raise invalid_source("The same path appears twice", path=path)
        if len(self.files) >= MAX_FILES:
            raise invalid_source(f"More than {MAX_FILES} files", max_files=MAX_FILES)
        self.total_bytes += len(content)
        self.check_size()
        self.files[path] = content

    def check_size(self) -> None:
        if self.total_bytes > MAX_TOTAL_BYTES:
            raise invalid_source(
                f"Sources are larger than {MAX_TOTAL_BYTES // (1024 * 1024)} MB unpacked",
                max_bytes=MAX_TOTAL_BYTES,
            )

    def remaining_bytes(self) -> int:
        return MAX_TOTAL_BYTES - self.total_bytes

    def require(self, entry_file: str) -> str:
        """The entry file's normalised path; it must be one of the sources."""
        path = validate_path(entry_file)
        if path not in self.files:
            raise invalid_source("The entry file is not among the sources", entry_file=path)
        return path

    @property
    def source_hash(self) -> str:
        """Hash of paths and contents: equal for equal sources, whatever their order."""
        digest = hashlib.sha256()
        for path in sorted(self.files):
            digest.update(path.encode() + b"\0" + hashlib.sha256(self.files[path]).digest())
        return digest.hexdigest()

    def to_archive(self) -> bytes:
        """A deterministic tar.gz of the files (sorted, no timestamps or owners)."""
        buffer = io.BytesIO()
        with (
            gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, compresslevel=6) as compressed,
            tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as archive,
        ):
            for path in sorted(self.files):
                content = self.files[path]
                info = tarfile.TarInfo(path)
                info.size = len(content)
                info.mode = 0o644
                archive.addfile(info, io.BytesIO(content))
        return buffer.getvalue()


def from_inline(files: Mapping[str, str | bytes]) -> SourceSet:
    """Sources sent in the request body (already decoded: str is UTF-8 text)."""
    sources = SourceSet()
    for path, content in files.items():
        sources.add(path, content.encode() if isinstance(content, str) else content)
    if not sources.files:
        raise invalid_source("No source files were sent")
    return sources


def decode_base64(path: str, encoded: str) -> bytes:
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise invalid_source("File content is not valid base64", path=path) from None


def from_archive(stream: IO[bytes], archive_size: int) -> SourceSet:
    """Sources from a zip or a (gzip-compressed) tar, told apart by their first bytes."""
    head = stream.read(4)
    stream.seek(0)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        sources = _from_zip(stream)
    elif head.startswith(b"\x1f\x8b"):
        sources = _from_tar(stream, "r:gz")
    else:
        stream.seek(257)
        is_tar = stream.read(5) == b"ustar"
        stream.seek(0)
        if not is_tar:
            raise invalid_source("Upload a .zip or a .tar.gz archive")
        sources = _from_tar(stream, "r:")
    if not sources.files:
        raise invalid_source("The archive holds no files")
    if sources.total_bytes > RATIO_CHECK_FLOOR and (
        sources.total_bytes > MAX_COMPRESSION_RATIO * max(archive_size, 1)
    ):
        raise invalid_source(
            f"The archive expands more than {MAX_COMPRESSION_RATIO}x",
            max_ratio=MAX_COMPRESSION_RATIO,
        )
    return sources


def _read_limited(member: IO[bytes], sources: SourceSet, path: str) -> bytes:
    """Read a member, never more than the space left under the total limit (+1 to detect)."""
    content = member.read(sources.remaining_bytes() + 1)
    if len(content) > sources.remaining_bytes():
        sources.total_bytes += len(content)
        sources.check_size()
    return content


def _from_zip(stream: IO[bytes]) -> SourceSet:
    sources = SourceSet()
    try:
        archive = zipfile.ZipFile(stream)
    except zipfile.BadZipFile:
        raise invalid_source("The zip archive is damaged") from None
    with archive:
        entries = archive.infolist()
        if len([entry for entry in entries if not entry.is_dir()]) > MAX_FILES:
            raise invalid_source(f"More than {MAX_FILES} files", max_files=MAX_FILES)
        for entry in entries:
            # Unix attributes, when the archiver stored them; the file type may be absent.
            file_type = stat.S_IFMT(entry.external_attr >> 16)
            if entry.is_dir():
                validate_path(entry.filename)
                continue
            if file_type not in (0, stat.S_IFREG):
                raise invalid_source(
                    "Archives may hold only regular files (no links or devices)",
                    path=entry.filename,
                )
            if (
                entry.file_size > RATIO_CHECK_FLOOR
                and entry.file_size > MAX_COMPRESSION_RATIO * max(entry.compress_size, 1)
            ):
                raise invalid_source(
                    f"A file expands more than {MAX_COMPRESSION_RATIO}x", path=entry.filename
                )
            validate_path(entry.filename)
            try:
                with archive.open(entry) as member:
                    content = _read_limited(member, sources, entry.filename)
            except (
                zipfile.BadZipFile,
                OSError,
                EOFError,
                NotImplementedError,
                RuntimeError,
            ) as exc:
                raise invalid_source(
                    f"The zip archive is damaged ({type(exc).__name__})", path=entry.filename
                ) from None
            sources.add(entry.filename, content)
    return sources


def _from_tar(stream: IO[bytes], mode: str) -> SourceSet:
    sources = SourceSet()
    try:
        with tarfile.open(fileobj=stream, mode=mode) as archive:  # type: ignore[call-overload]
            for member in _tar_members(archive):
                if member.isdir():
                    validate_path(member.name)
                    continue
                if not member.isreg():
                    raise invalid_source(
                        "Archives may hold only regular files (no links or devices)",
                        path=member.name,
                    )
                validate_path(member.name)
                extracted = archive.extractfile(member)
                if extracted is None:
                    raise invalid_source("Unreadable archive member", path=member.name)
                with extracted:
                    sources.add(member.name, _read_limited(extracted, sources, member.name))
    except (tarfile.TarError, EOFError, OSError, gzip.BadGzipFile) as exc:
        raise invalid_source(f"The tar archive is damaged ({type(exc).__name__})") from None
    return sources


def _tar_members(archive: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    for count, member in enumerate(archive, start=1):
        if count > MAX_FILES * 2:  # directories included
            raise invalid_source(f"More than {MAX_FILES} files", max_files=MAX_FILES)
        yield member


def extract_archive(archive: bytes, destination: Path) -> list[str]:
    """Write a stored source archive (made by `SourceSet.to_archive`) into `destination`.

    The archive was validated when it was stored; every path is checked again here so that
    nothing can be written outside `destination` whatever the bytes say."""
    root = destination.resolve()
    written: list[str] = []
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as stored:
        for member in stored:
            if not member.isreg():
                raise invalid_source("Stored sources hold a non-file entry", path=member.name)
            relative = PurePosixPath(validate_path(member.name))
            target = (root / relative).resolve()
            if not target.is_relative_to(root):
                raise invalid_source("Stored sources escape their directory", path=member.name)
            target.parent.mkdir(parents=True, exist_ok=True)
            extracted = stored.extractfile(member)
            if extracted is None:
                raise invalid_source("Unreadable stored source", path=member.name)
            with extracted, target.open("wb") as output:
                output.write(extracted.read())
            written.append(str(relative))
    return written
