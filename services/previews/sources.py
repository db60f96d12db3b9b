"""React Native sources sent for a preview build: validated, normalised, content-addressed.

Sources arrive as a map of files (text or base64) or as a zip / tar.gz archive. Everything is
checked in memory before a byte is stored: relative POSIX paths only, regular files only, at
most MAX_FILES files and MAX_TOTAL_BYTES bytes (counted as they are decompressed, not taken from
headers, which can lie), and a bounded compression ratio. Accepted sources become one
deterministic tar.gz whose name is the hash of its contents, so identical sources are stored
once and hash to the same build.

Archive metadata is bounded before the standard library reads it: `tarfile` reads a pax or GNU
long-name header whole at the size the header declares, and `zipfile` turns the whole central
directory into objects when it opens an archive. So tar headers go through `_BoundedTarInfo`
(sizes, counts and chains of metadata headers checked before a byte of them is read; sparse
files refused), and a zip's end record and central directory are walked here, entry by entry,
before `zipfile.ZipFile` sees them.

Paths must also fit one tree: a file may not share its path with a directory (`a` and
`a/b.js`), and two paths may not differ only in letter case (`App.js` and `app.js`), which
would overwrite each other on a case-insensitive file system (macOS, Windows checkouts).
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import io
import stat
import struct
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
# Entries of any kind in an archive: files, directories and (tar) metadata-only members.
MAX_ENTRIES = 2 * MAX_FILES
# Tar metadata, checked before it is read. A pax record for a 1024-character path is ~4 KB.
MAX_PAX_HEADER_BYTES = 64 * 1024
# GNU long name / long link: a path of MAX_PATH_LENGTH characters in UTF-8, plus its NUL.
MAX_LONG_NAME_BYTES = 4 * MAX_PATH_LENGTH + 1
# Metadata headers in a row before one member (pax `x`, `g`, GNU `L`, `K`: 4 in practice).
MAX_TAR_HEADER_CHAIN = 8
# All tar metadata (pax and GNU headers) together, and the pax keys that global headers add to
# every following member.
MAX_TAR_METADATA_BYTES = 8 * 1024 * 1024
MAX_PAX_GLOBAL_KEYS = 64
# Zip central directory: all of it, and each entry's extra field and comment.
MAX_CENTRAL_DIRECTORY_BYTES = 8 * 1024 * 1024
MAX_ZIP_EXTRA_BYTES = 1024
MAX_ZIP_ENTRY_COMMENT_BYTES = 1024


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
    # Every directory that a file or an archive's directory entry implies.
    directories: set[str] = field(default_factory=set)
    # Lower-cased path (file or directory) -> the path as sent, to find case-only duplicates.
    folded: dict[str, str] = field(default_factory=dict)

    def add(self, raw_path: str, content: bytes) -> None:
        path = validate_path(raw_path)
        if path in self.files:
            raise invalid_source("The same path appears twice", path=path)
        if len(self.files) >= MAX_FILES:
            raise invalid_source(f"More than {MAX_FILES} files", max_files=MAX_FILES)
        if path in self.directories:
            raise invalid_source("A file has the same path as a directory", path=path)
        self._add_parents(path)
        self._fold(path)
        self.total_bytes += len(content)
        self.check_size()
        self.files[path] = content

    def add_directory(self, raw_path: str) -> None:
        """A directory entry of an archive: it must not collide with a file."""
        path = validate_path(raw_path)
        if path in self.directories:
            return
        if path in self.files:
            raise invalid_source("A file has the same path as a directory", path=path)
        self._add_parents(path)
        self._fold(path)
        self.directories.add(path)

    def _add_parents(self, path: str) -> None:
        parts = path.split("/")
        for end in range(len(parts) - 1, 0, -1):
            parent = "/".join(parts[:end])
            if parent in self.directories:
                return  # its own parents were added with it
            if parent in self.files:
                raise invalid_source(
                    "A file has the same path as a directory", path=parent, inside=path
                )
            self._fold(parent)
            self.directories.add(parent)

    def _fold(self, path: str) -> None:
        existing = self.folded.setdefault(path.casefold(), path)
        if existing != path:
            raise invalid_source(
                "Two paths differ only in letter case", path=path, other_path=existing
            )

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


def spooled_size(stream: IO[bytes]) -> int:
    """The size of an uploaded (spooled) file, found by seeking, not by reading it; the stream
    is left at its start."""
    stream.seek(0, io.SEEK_END)
    size = stream.tell()
    stream.seek(0)
    return size


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


_READ_CHUNK = 1024 * 1024


def _read_limited(member: IO[bytes], sources: SourceSet, path: str) -> bytes:
    """Read a member, never more than the space left under the total limit (+1 to detect).

    In chunks, joined only once the member is known to fit: a decompression bomb costs the
    space left under the limit, not twice that."""
    remaining = sources.remaining_bytes()
    chunks: list[bytes] = []
    read = 0
    while read <= remaining:
        chunk = member.read(min(_READ_CHUNK, remaining + 1 - read))
        if not chunk:
            break
        chunks.append(chunk)
        read += len(chunk)
    if read > remaining:
        chunks.clear()
        sources.total_bytes += read
        sources.check_size()
    return b"".join(chunks)


def _from_zip(stream: IO[bytes]) -> SourceSet:
    sources = SourceSet()
    _check_zip_directory(stream)
    try:
        archive = zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, NotImplementedError, OSError, EOFError, ValueError) as exc:
        raise invalid_source(f"The zip archive is damaged ({type(exc).__name__})") from None
    with archive:
        entries = archive.infolist()
        if len(entries) > MAX_ENTRIES:  # already checked; kept as the invariant
            raise invalid_source(f"More than {MAX_ENTRIES} entries", max_entries=MAX_ENTRIES)
        if len([entry for entry in entries if not entry.is_dir()]) > MAX_FILES:
            raise invalid_source(f"More than {MAX_FILES} files", max_files=MAX_FILES)
        for entry in entries:
            # Unix attributes, when the archiver stored them; the file type may be absent.
            file_type = stat.S_IFMT(entry.external_attr >> 16)
            if entry.is_dir():
                sources.add_directory(entry.filename)
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
                ValueError,
            ) as exc:
                raise invalid_source(
                    f"The zip archive is damaged ({type(exc).__name__})", path=entry.filename
                ) from None
            sources.add(entry.filename, content)
    return sources


_CENTRAL_HEADER = struct.Struct("<4s4B4HL2L5H2L")  # zipfile's structCentralDir: 46 bytes
_CENTRAL_SIGNATURE = b"PK\x01\x02"


def _check_zip_directory(stream: IO[bytes]) -> None:
    """Bound what `zipfile.ZipFile` will read at open, before it reads it.

    The end-of-central-directory record (ZIP64 one included) is found with zipfile's own
    reader, so both look at the same record; then the central directory is walked here,
    header by header, without keeping it: its size, the number of entries (directories
    included), and each entry's name, extra field and comment lengths. `zipfile` builds an
    object per entry for as many bytes as the record declares, whatever count it states."""
    try:
        end_record = zipfile._EndRecData(stream)  # type: ignore[attr-defined]
    except (OSError, struct.error, EOFError) as exc:
        raise invalid_source(f"The zip archive is damaged ({type(exc).__name__})") from None
    if not end_record:
        raise invalid_source("The zip archive is damaged (no end of central directory)")
    declared_entries = end_record[zipfile._ECD_ENTRIES_TOTAL]  # type: ignore[attr-defined]
    directory_size = end_record[zipfile._ECD_SIZE]  # type: ignore[attr-defined]
    directory_offset = end_record[zipfile._ECD_OFFSET]  # type: ignore[attr-defined]
    if declared_entries > MAX_ENTRIES:
        raise invalid_source(
            f"The zip archive declares more than {MAX_ENTRIES} entries", max_entries=MAX_ENTRIES
        )
    if directory_size > MAX_CENTRAL_DIRECTORY_BYTES:
        raise invalid_source(
            f"The zip archive's central directory is larger than "
            f"{MAX_CENTRAL_DIRECTORY_BYTES // (1024 * 1024)} MB",
            max_bytes=MAX_CENTRAL_DIRECTORY_BYTES,
        )
    # The same arithmetic as zipfile's: data may precede the archive (self-extractors).
    concat = end_record[zipfile._ECD_LOCATION] - directory_size - directory_offset  # type: ignore[attr-defined]
    if end_record[zipfile._ECD_SIGNATURE] == zipfile.stringEndArchive64:  # type: ignore[attr-defined]
        concat -= zipfile.sizeEndCentDir64 + zipfile.sizeEndCentDir64Locator  # type: ignore[attr-defined]
    start = directory_offset + concat
    if start < 0:
        raise invalid_source("The zip archive is damaged (bad central directory offset)")
    stream.seek(start)
    walked = entries = 0
    while walked < directory_size:
        header = stream.read(_CENTRAL_HEADER.size)
        if len(header) != _CENTRAL_HEADER.size or header[:4] != _CENTRAL_SIGNATURE:
            raise invalid_source("The zip archive is damaged (bad central directory)")
        fields = _CENTRAL_HEADER.unpack(header)
        name_length, extra_length, comment_length = fields[12], fields[13], fields[14]
        entries += 1
        if entries > MAX_ENTRIES:
            raise invalid_source(
                f"More than {MAX_ENTRIES} entries (files and directories)",
                max_entries=MAX_ENTRIES,
            )
        if name_length > MAX_LONG_NAME_BYTES:
            raise invalid_source("A zip entry's name is too long", max_path_length=MAX_PATH_LENGTH)
        if extra_length > MAX_ZIP_EXTRA_BYTES:
            raise invalid_source(
                f"A zip entry's extra field is larger than {MAX_ZIP_EXTRA_BYTES} bytes",
                max_extra_bytes=MAX_ZIP_EXTRA_BYTES,
            )
        if comment_length > MAX_ZIP_ENTRY_COMMENT_BYTES:
            raise invalid_source(
                f"A zip entry's comment is larger than {MAX_ZIP_ENTRY_COMMENT_BYTES} bytes",
                max_comment_bytes=MAX_ZIP_ENTRY_COMMENT_BYTES,
            )
        variable = name_length + extra_length + comment_length
        stream.seek(variable, io.SEEK_CUR)
        walked += _CENTRAL_HEADER.size + variable
    stream.seek(0)


class _BoundedTarInfo(tarfile.TarInfo):
    """A TarInfo that checks each metadata header's declared size before tarfile reads it.

    CPython's tarfile reads a pax (`x`, `g`) or GNU long-name (`L`, `K`) header whole, at the
    size it declares, and follows chains of them recursively; GNU sparse maps are read block by
    block without an end. Here: metadata headers have a small size each, a short chain, a total
    for the archive; global pax headers few keys; sparse files are refused."""

    def _proc_member(self, archive: tarfile.TarFile) -> tarfile.TarInfo:
        limits = _limits_of(archive)
        limits.headers += 1
        if limits.headers > MAX_ENTRIES * 2:
            raise invalid_source(
                f"More than {MAX_ENTRIES} entries (files and directories)",
                max_entries=MAX_ENTRIES,
            )
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise invalid_source("Archives may not hold sparse files", path=self.name[:200])
        if self.type in _TAR_METADATA_TYPES:
            limit = (
                MAX_LONG_NAME_BYTES
                if self.type in (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
                else MAX_PAX_HEADER_BYTES
            )
            if self.size > limit:
                raise invalid_source(
                    f"A tar metadata header is larger than {limit} bytes", max_bytes=limit
                )
            limits.chain += 1
            limits.metadata_bytes += self.size
            if limits.chain > MAX_TAR_HEADER_CHAIN:
                raise invalid_source("Too many tar metadata headers in a row")
            if limits.metadata_bytes > MAX_TAR_METADATA_BYTES:
                raise invalid_source(
                    "The tar archive's metadata is too large", max_bytes=MAX_TAR_METADATA_BYTES
                )
        else:
            limits.chain = 0
        processed = super()._proc_member(archive)  # type: ignore[misc]
        if len(archive.pax_headers) > MAX_PAX_GLOBAL_KEYS:
            raise invalid_source("The tar archive's global pax headers hold too many keys")
        return processed  # type: ignore[no-any-return]

    # GNU sparse files, old style (`S`, refused above) and in pax records (0.0, 0.1, 1.0).
    def _proc_gnusparse_00(self, *args: object) -> None:
        raise invalid_source("Archives may not hold sparse files", path=self.name[:200])

    _proc_gnusparse_01 = _proc_gnusparse_00
    _proc_gnusparse_10 = _proc_gnusparse_00


_TAR_METADATA_TYPES = (
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
)


@dataclass
class _TarLimits:
    headers: int = 0
    chain: int = 0
    metadata_bytes: int = 0


def _limits_of(archive: tarfile.TarFile) -> _TarLimits:
    limits = getattr(archive, "_hivesync_limits", None)
    if limits is None:
        limits = _TarLimits()
        archive._hivesync_limits = limits  # type: ignore[attr-defined]
    return limits


def _from_tar(stream: IO[bytes], mode: str) -> SourceSet:
    sources = SourceSet()
    try:
        with tarfile.open(  # type: ignore[call-overload]
            fileobj=stream, mode=mode, tarinfo=_BoundedTarInfo
        ) as archive:
            for member in _tar_members(archive):
                if member.isdir():
                    sources.add_directory(member.name)
                    continue
                if not member.isreg() or member.type == tarfile.GNUTYPE_SPARSE:
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
    except (
        tarfile.TarError,
        EOFError,
        OSError,
        gzip.BadGzipFile,
        UnicodeError,
        ValueError,
        RecursionError,
    ) as exc:
        raise invalid_source(f"The tar archive is damaged ({type(exc).__name__})") from None
    return sources


def _tar_members(archive: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    for count, member in enumerate(archive, start=1):
        if count > MAX_ENTRIES:  # directories included
            raise invalid_source(
                f"More than {MAX_ENTRIES} entries (files and directories)",
                max_entries=MAX_ENTRIES,
            )
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
