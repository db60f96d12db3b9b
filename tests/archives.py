"""Archives for tests of source uploads: well-formed ones and hostile ones."""

from __future__ import annotations

import functools
import io
import stat
import struct
import tarfile
import zipfile
import zlib

from services.previews.sources import MAX_ENTRIES, MAX_FILES


def make_zip(entries: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def make_tar(
    members: list[tarfile.TarInfo], contents: dict[str, bytes], mode: str = "w:gz"
) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:  # type: ignore[call-overload]
        for member in members:
            data = contents.get(member.name)
            if data is not None:
                member.size = len(data)
            archive.addfile(member, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def tar_member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def zip_symlink(name: str, target: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        link = zipfile.ZipInfo(name)
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, target)
    return buffer.getvalue()


TRAVERSAL = "relative|'\\.\\.'"
NOT_A_FILE = "regular files"
TOO_BIG = "expands more than|larger than"


@functools.cache
def hostile_archives() -> dict[str, tuple[bytes, str]]:
    """One archive per attack, each with an otherwise valid `index.js`, and (a regular
    expression of) why it must be refused."""
    index = {"index.js": b"console.log('hi');\n"}
    return {
        "zip-traversal": (make_zip({**index, "../../evil.js": b"boom"}), TRAVERSAL),
        "tar-traversal": (
            make_tar(
                [tar_member("index.js"), tar_member("../evil.js")],
                {**index, "../evil.js": b"boom"},
            ),
            TRAVERSAL,
        ),
        "zip-absolute-path": (make_zip({**index, "/etc/cron.d/evil": b"boom"}), TRAVERSAL),
        "tar-absolute-path": (
            make_tar(
                [tar_member("index.js"), tar_member("/tmp/evil.js")],
                {**index, "/tmp/evil.js": b"boom"},
            ),
            TRAVERSAL,
        ),
        "zip-symlink": (zip_symlink("index.js", "/etc/passwd"), NOT_A_FILE),
        "tar-symlink": (
            make_tar([tar_member("index.js", tarfile.SYMTYPE, "/etc/passwd")], {}),
            NOT_A_FILE,
        ),
        "tar-hardlink": (
            make_tar([tar_member("index.js", tarfile.LNKTYPE, "/etc/passwd")], {}),
            NOT_A_FILE,
        ),
        "tar-device": (
            make_tar([tar_member("index.js"), tar_member("dev", tarfile.CHRTYPE)], index),
            NOT_A_FILE,
        ),
        "zip-bomb": (make_zip({**index, "big.js": b"0" * (60 * 1024 * 1024)}), TOO_BIG),
        "tar-pax-global-keys": (
            tar_with_pax({f"key{index}": "v" for index in range(1000)}, global_header=True),
            "too many keys",
        ),
        "tar-pax-sparse": (
            tar_with_pax(
                {"GNU.sparse.map": ",".join(["0,1"] * 1000), "GNU.sparse.size": "1"},
                global_header=False,
            ),
            "sparse",
        ),
        "tar-gz-bomb": (
            make_tar(
                [tar_member("index.js"), tar_member("big.js")],
                {**index, "big.js": b"\0" * (60 * 1024 * 1024)},
            ),
            TOO_BIG,
        ),
        "too-many-files": (
            make_zip({f"f{number}.js": b"" for number in range(MAX_FILES + 1)}),
            "More than 5000",
        ),
    }


# --- Metadata bombs: archives whose headers, not their files, are the attack. --------------
# Built from repeated blocks (see `gzip_repeated`), so a gigabyte of tar takes a megabyte and a
# fraction of a second to make.

GIB = 1024 * 1024 * 1024
TAR_BLOCK = tarfile.BLOCKSIZE


def gzip_repeated(prefix: bytes, block: bytes, count: int, suffix: bytes = b"") -> bytes:
    """gzip of `prefix + block * count + suffix`, compressing `block` once: after a full flush
    deflate starts afresh, so the same input gives the same compressed segment every time."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    head = compressor.compress(prefix) + compressor.flush(zlib.Z_FULL_FLUSH)
    segment = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    assert compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH) == segment
    tail = compressor.compress(suffix) + compressor.flush(zlib.Z_FINISH)
    crc = zlib.crc32(prefix)
    for _ in range(count):
        crc = zlib.crc32(block, crc)
    crc = zlib.crc32(suffix, crc)
    size = len(prefix) + len(block) * count + len(suffix)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    trailer = struct.pack("<LL", crc, size & 0xFFFFFFFF)
    return header + head + segment * count + tail + trailer


def tar_header(name: str, kind: bytes, size: int = 0) -> bytes:
    """One 512-byte ustar header, whatever its type and declared size."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def _tar_file(name: str, content: bytes) -> bytes:
    padding = -len(content) % TAR_BLOCK
    return tar_header(name, tarfile.REGTYPE, len(content)) + content + b"\0" * padding


_END_OF_TAR = b"\0" * (2 * TAR_BLOCK)
_INDEX_MEMBER = _tar_file("index.js", b"console.log('hi');\n")


def tar_metadata_bomb(kind: bytes, declared: int = GIB) -> bytes:
    """A tar.gz whose first header (pax `x`/`g` or GNU `L`/`K`) declares `declared` bytes of
    metadata, all there (zeros), followed by an ordinary file. Python's tarfile reads such a
    header whole before anything else sees it: 1 GiB of metadata for a ~1 MB upload."""
    assert declared % (1024 * 1024) == 0
    return gzip_repeated(
        tar_header("././@LongLink", kind, declared),
        b"\0" * (1024 * 1024),
        declared // (1024 * 1024),
        _INDEX_MEMBER + _END_OF_TAR,
    )


def tar_header_flood(kind: bytes, count: int, name: str = "d/") -> bytes:
    """`count` identical empty headers (directories, global pax headers, ...), then a file."""
    block = tar_header(name, kind) * 2048  # 1 MiB of headers
    return gzip_repeated(b"", block, max(count // 2048, 1), _INDEX_MEMBER + _END_OF_TAR)


def tar_gz_bomb(declared: int = GIB) -> bytes:
    """One regular file of `declared` zero bytes: ~1 MB of gzip per GiB."""
    return gzip_repeated(
        tar_header("big.js", tarfile.REGTYPE, declared),
        b"\0" * (1024 * 1024),
        declared // (1024 * 1024),
        _END_OF_TAR,
    )


_LOCAL = struct.Struct("<4s2B4HL2L2H")  # zipfile.structFileHeader
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")  # zipfile.structCentralDir
_END = struct.Struct("<4s4H2LH")  # zipfile.structEndArchive
_DIRECTORY_ATTRS = ((stat.S_IFDIR | 0o755) << 16) | 0x10


def _central_entry(
    name: bytes, *, extra: bytes = b"", comment: bytes = b"", attrs: int = 0
) -> bytes:
    lengths = (len(name), len(extra), len(comment))
    fixed = _CENTRAL.pack(
        b"PK\x01\x02", 20, 3, 20, 0, 0, 0, 0, 0x21, 0, 0, 0, *lengths, 0, 0, attrs, 0
    )
    return fixed + name + extra + comment


def raw_zip(
    central_entries: list[bytes] | bytes,
    *,
    declared_entries: int | None = None,
    comment: bytes = b"",
) -> bytes:
    """A zip of one empty stored file (`index.js`, at offset 0) followed by the central
    directory given (its entries may all point at that one local header, as zipfile only reads
    local headers for the entries it opens), and an end record that may lie about the count."""
    local = _LOCAL.pack(b"PK\x03\x04", 20, 0, 0, 0, 0, 0x21, 0, 0, 0, 8, 0) + b"index.js"
    directory = central_entries if isinstance(central_entries, bytes) else b"".join(central_entries)
    directory = _central_entry(b"index.js") + directory
    count = declared_entries if declared_entries is not None else directory.count(b"PK\x01\x02")
    end = _END.pack(
        b"PK\x05\x06", 0, 0, min(count, 0xFFFF), min(count, 0xFFFF), len(directory),
        len(local), len(comment),
    )  # fmt: skip
    return local + directory + end + comment


def zip_directory_flood(count: int, declared_entries: int | None = None) -> bytes:
    """`count` distinct directory entries (`d000000/`, ...); the end record may understate
    them (`declared_entries`)."""
    return raw_zip(
        [
            _central_entry(f"d{index:06}/".encode(), attrs=_DIRECTORY_ATTRS)
            for index in range(count)
        ],
        declared_entries=declared_entries,
    )


def zip_central_directory_bomb(count: int) -> bytes:
    """A central directory of `count` nameless entries whose end record says 2: zipfile builds
    one object per entry for as many bytes as the record declares, whatever count it states."""
    return raw_zip(_central_entry(b"") * count, declared_entries=2)


def zip_extra_field_bomb(count: int, extra_bytes: int = 0xFFFF - 4) -> bytes:
    """`count` entries, each with an extra field of ~64 KiB (one unknown record)."""
    extra = struct.pack("<HH", 0xCAFE, extra_bytes) + b"\0" * extra_bytes
    return raw_zip([_central_entry(f"e{index}.js".encode(), extra=extra) for index in range(count)])


def zip_entry_comment_bomb() -> bytes:
    return raw_zip([_central_entry(b"c.js", comment=b"#" * 0xFFFF)])


def zip64_count_bomb(entries: int = 1 << 40) -> bytes:
    """A ZIP64 end record declaring `entries` entries and a matching directory size."""
    local = _LOCAL.pack(b"PK\x03\x04", 20, 0, 0, 0, 0, 0x21, 0, 0, 0, 8, 0) + b"index.js"
    directory = _central_entry(b"index.js")
    zip64_end = struct.pack(
        "<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, entries, entries, entries * 46, len(local)
    )
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, len(local) + len(directory), 1)
    end = _END.pack(b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return local + directory + zip64_end + locator + end


COLLISION = "same path as a directory|differ only in letter case"


def tar_with_pax(headers: dict[str, str], *, global_header: bool) -> bytes:
    """A tar.gz whose one file carries these pax records (or is preceded by them as a global
    header), each record well under the size limit."""
    if global_header:
        prefix = tarfile.TarInfo.create_pax_global_header(headers)
        member = _INDEX_MEMBER
    else:
        info = tarfile.TarInfo("index.js")
        info.size = 1
        info.pax_headers = headers
        member = info.tobuf(format=tarfile.PAX_FORMAT) + b"x" + b"\0" * (TAR_BLOCK - 1)
        prefix = b""
    return gzip_repeated(prefix, b"", 0, member + _END_OF_TAR)


@functools.cache
def metadata_attacks(*, full_size: bool) -> dict[str, tuple[bytes, str]]:
    """Archives that attack the parsers' metadata handling, and (a regular expression of) why
    each must be refused. `full_size`: as big as an attacker would make them under the 72 MB
    upload limit (for the test against the API process); otherwise just over each limit."""
    entries = 200_000 if full_size else MAX_ENTRIES + 1
    return {
        "tar-pax-bomb": (
            tar_metadata_bomb(tarfile.XHDTYPE, GIB if full_size else 1024 * 1024),
            "metadata header is larger",
        ),
        "tar-pax-global-bomb": (
            tar_metadata_bomb(tarfile.XGLTYPE, GIB if full_size else 1024 * 1024),
            "metadata header is larger",
        ),
        "tar-gnu-long-name-bomb": (
            tar_metadata_bomb(tarfile.GNUTYPE_LONGNAME, GIB if full_size else 1024 * 1024),
            "metadata header is larger",
        ),
        "tar-gnu-long-link-bomb": (
            tar_metadata_bomb(tarfile.GNUTYPE_LONGLINK, GIB if full_size else 1024 * 1024),
            "metadata header is larger",
        ),
        "tar-many-members": (
            tar_header_flood(tarfile.DIRTYPE, 1_000_000 if full_size else 2 * MAX_ENTRIES),
            "[Mm]ore than 10000 entries",
        ),
        "tar-pax-header-chain": (
            tar_header_flood(tarfile.XGLTYPE, 1_000_000 if full_size else 4096, "g"),
            "metadata headers in a row",
        ),
        "tar-sparse": (
            gzip_repeated(tar_header("s.js", tarfile.GNUTYPE_SPARSE), b"", 0, _END_OF_TAR),
            "sparse",
        ),
        "tar-pax-global-keys": (
            tar_with_pax({f"key{index}": "v" for index in range(1000)}, global_header=True),
            "too many keys",
        ),
        "tar-pax-sparse": (
            tar_with_pax(
                {"GNU.sparse.map": ",".join(["0,1"] * 1000), "GNU.sparse.size": "1"},
                global_header=False,
            ),
            "sparse",
        ),
        "tar-gz-bomb": (tar_gz_bomb(GIB if full_size else 64 * 1024 * 1024), "larger than 50 MB"),
        "zip-directory-entries": (zip_directory_flood(entries), "[Mm]ore than 10000 entries"),
        # Just over the count, the directory is walked; 200,000 make it over 8 MB first.
        "zip-directory-entries-understated": (
            zip_directory_flood(entries, declared_entries=2),
            "central directory is larger" if full_size else "More than 10000 entries",
        ),
        "zip-central-directory-bomb": (
            zip_central_directory_bomb(1_000_000 if full_size else 200_000),
            "central directory is larger",
        ),
        "zip64-entry-count": (zip64_count_bomb(), "declares more than 10000 entries"),
        "zip-extra-fields": (zip_extra_field_bomb(100 if full_size else 1), "extra field"),
        "zip-entry-comment": (zip_entry_comment_bomb(), "comment"),
        "zip-path-collision": (make_zip({"a": b"x", "a/b.js": b"y"}), COLLISION),
        "tar-path-collision": (
            make_tar([tar_member("a/b.js"), tar_member("a")], {"a/b.js": b"y", "a": b"x"}),
            COLLISION,
        ),
    }
