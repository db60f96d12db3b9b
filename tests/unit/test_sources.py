"""Source validation against hostile inputs: nothing unsafe is accepted, nothing is written
outside the destination directory."""

from __future__ import annotations

import base64
import io
import tarfile
import zipfile
from pathlib import Path

import pytest
from fastapi import FastAPI, UploadFile
from fastapi.testclient import TestClient

from core.errors import PreviewError
from services.previews.sources import (
    MAX_FILES,
    SourceSet,
    decode_base64,
    extract_archive,
    from_archive,
    from_inline,
    spooled_size,
    validate_path,
)
from tests.archives import (
    COLLISION,
    hostile_archives,
    make_tar,
    make_zip,
    metadata_attacks,
    tar_member,
    zip_symlink,
)


def _load(data: bytes) -> SourceSet:
    return from_archive(io.BytesIO(data), len(data))


def _refused(data: bytes, message: str) -> None:
    with pytest.raises(PreviewError, match=message) as raised:
        _load(data)
    assert raised.value.code == "PREVIEW_INVALID_SOURCE"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("index.js", "index.js"), ("src//app/./App.js", "src/app/App.js"), ("./a.js", "a.js")],
)
def test_paths_are_normalised(raw: str, expected: str) -> None:
    assert validate_path(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "/etc/passwd",
        "C:/x.js",
        "../evil.js",
        "a/../../b.js",
        "src/..",
        "a\\b.js",
        "a\x00.js",
        ".",
    ],
)
def test_unsafe_paths_are_refused(raw: str) -> None:
    with pytest.raises(PreviewError):
        validate_path(raw)


def test_valid_zip_and_tar_give_the_same_sources() -> None:
    files = {"index.js": b"import App from './src/App';", "src/App.js": b"export default 1;"}
    from_zip = _load(make_zip({"src/": b"", **files}))
    tar_members = [tar_member(name) for name in files]
    from_tar = _load(make_tar(tar_members, files))
    assert from_zip.files == from_tar.files == files
    assert from_zip.source_hash == from_tar.source_hash
    assert from_zip.require("./index.js") == "index.js"


def test_source_hash_ignores_order_and_sees_content() -> None:
    first = from_inline({"a.js": "1", "b.js": "2"})
    assert first.source_hash == from_inline({"b.js": "2", "a.js": "1"}).source_hash
    assert first.source_hash != from_inline({"a.js": "1", "b.js": "3"}).source_hash
    assert first.source_hash != from_inline({"a.js": "1", "c.js": "2"}).source_hash


def test_entry_file_must_be_among_the_sources() -> None:
    with pytest.raises(PreviewError, match="entry file"):
        from_inline({"index.js": "x"}).require("App.js")


@pytest.mark.parametrize("name", ["../evil.js", "../../etc/cron.d/x", "/abs/evil.js", "a/../../b"])
def test_archives_with_escaping_paths(name: str) -> None:
    _refused(make_zip({name: b"boom"}), "relative|'\\.\\.'")
    _refused(make_tar([tar_member(name)], {name: b"boom"}), "relative|'\\.\\.'")


def test_zip_symlink_is_refused() -> None:
    _refused(zip_symlink("index.js", "/etc/passwd"), "regular files")


@pytest.mark.parametrize("name", sorted(hostile_archives()))
def test_every_hostile_archive_is_refused(name: str) -> None:
    archive, reason = hostile_archives()[name]
    _refused(archive, reason)


@pytest.mark.parametrize(
    "member",
    [
        tar_member("index.js", tarfile.SYMTYPE, "/etc/passwd"),
        tar_member("index.js", tarfile.LNKTYPE, "/etc/passwd"),
        tar_member("dev", tarfile.CHRTYPE),
        tar_member("fifo", tarfile.FIFOTYPE),
    ],
    ids=["symlink", "hardlink", "device", "fifo"],
)
def test_tar_special_files_are_refused(member: tarfile.TarInfo) -> None:
    _refused(make_tar([member], {}), "regular files")


def test_zip_bomb_is_refused() -> None:
    bomb = make_zip({"index.js": b"0" * (60 * 1024 * 1024)})
    assert len(bomb) < 100 * 1024  # 60 MB that compress to a few dozen KB
    _refused(bomb, "expands more than")


def test_zip_whose_headers_lie_about_sizes_is_still_bounded() -> None:
    """Many entries, each under the per-file ratio check, that together exceed 50 MB."""
    entries = {f"part{index}.js": bytes([65 + index]) * (900 * 1024) for index in range(60)}
    _refused(make_zip(entries, compression=zipfile.ZIP_STORED), "larger than 50 MB")


def test_tar_gz_bomb_is_refused() -> None:
    _refused(
        make_tar([tar_member("index.js")], {"index.js": b"\0" * (60 * 1024 * 1024)}), "larger than"
    )


def test_too_many_files_are_refused() -> None:
    _refused(make_zip({f"f{index}.js": b"" for index in range(MAX_FILES + 1)}), "More than 5000")


def test_damaged_and_unknown_archives_are_refused() -> None:
    good = make_zip({"index.js": b"x" * 1000})
    _refused(good[: len(good) // 2], "damaged")
    _refused(b"just some text, not an archive at all" * 20, "zip or a .tar.gz")


def test_inline_sources() -> None:
    sources = from_inline({"index.js": "import x from './x';", "logo.png": b"\x89PNG"})
    assert sources.files["logo.png"] == b"\x89PNG"
    assert sources.total_bytes == len("import x from './x';") + 4
    with pytest.raises(PreviewError, match="No source files"):
        from_inline({})
    assert decode_base64("a", base64.b64encode(b"\x00\x01").decode()) == b"\x00\x01"
    with pytest.raises(PreviewError, match="base64"):
        decode_base64("a.png", "not base64!!")


def test_archive_round_trip_is_deterministic(tmp_path: Path) -> None:
    sources = from_inline({"index.js": "a", "src/deep/App.js": "b", "assets/logo.png": b"\x89"})
    archive = sources.to_archive()
    assert archive == from_inline(dict(reversed(sources.files.items()))).to_archive()
    written = extract_archive(archive, tmp_path / "app")
    assert sorted(written) == sorted(sources.files)
    assert (tmp_path / "app" / "src/deep/App.js").read_text() == "b"


def test_extraction_never_writes_outside_its_directory(tmp_path: Path) -> None:
    destination = tmp_path / "builds" / "app"
    destination.mkdir(parents=True)
    for name, kind in (("../outside.js", tarfile.REGTYPE), ("link", tarfile.SYMTYPE)):
        crafted = make_tar(
            [tar_member(name, kind, "/etc")], {name: b"x"} if kind == tarfile.REGTYPE else {}
        )
        with pytest.raises(PreviewError):
            extract_archive(crafted, destination)
    assert sorted(path.name for path in tmp_path.rglob("*")) == ["app", "builds"]


@pytest.mark.parametrize("name", sorted(metadata_attacks(full_size=False)))
def test_archive_metadata_attacks_are_refused(name: str) -> None:
    """Each is refused before its metadata is read (the tar headers' declared sizes, the zip
    central directory walked before zipfile opens it): see tests/archives.py for each."""
    archive, reason = metadata_attacks(full_size=False)[name]
    _refused(archive, reason)


def test_metadata_bomb_is_refused_before_its_header_is_read() -> None:
    """A pax header declaring 1 GiB is refused from its 512-byte header alone: the archive is
    cut right after that header, so any read of the declared size would fail differently."""
    from tests.archives import tar_header

    for kind in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME):
        header = tar_header("././@LongLink", kind, 1024 * 1024 * 1024)
        _refused(header + b"\0" * 512, "metadata header is larger")


def test_ordinary_pax_and_gnu_archives_still_load() -> None:
    """Long and non-ASCII names (pax `x` and GNU `L` headers), a global header like the one
    `git archive` writes, and directory entries: all within the limits."""
    long_name = "src/" + "deep/" * 150 + "App.js"  # 760 characters
    files = {long_name: b"export default 1;", "src/caf\u00e9.js": b"1", "index.js": b"x"}
    for tar_format in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz", format=tar_format) as archive:
            if tar_format == tarfile.PAX_FORMAT:
                archive.pax_headers = {"comment": "0123456789abcdef" * 3}
            archive.addfile(tar_member("src", tarfile.DIRTYPE))
            for name, content in files.items():
                info = tar_member(name)
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))
        assert _load(buffer.getvalue()).files == files


@pytest.mark.parametrize(
    "files",
    [
        {"a": "x", "a/b.js": "y"},
        {"a/b.js": "y", "a": "x"},
        {"src/a/b/c.js": "y", "src/a": "x"},
        {"App.js": "x", "app.js": "y"},
        {"src/App.js": "x", "SRC/index.js": "y"},
    ],
    ids=["file-then-dir", "dir-then-file", "deep", "case-file", "case-dir"],
)
def test_path_collisions_are_refused_inline(files: dict[str, str]) -> None:
    with pytest.raises(PreviewError, match=COLLISION) as raised:
        from_inline(files)
    assert raised.value.code == "PREVIEW_INVALID_SOURCE"


def test_path_collisions_with_directory_entries() -> None:
    _refused(make_zip({"a/": b"", "a": b"x"}), COLLISION)
    _refused(make_zip({"a": b"x", "a/": b""}), COLLISION)
    _refused(make_tar([tar_member("a"), tar_member("a", tarfile.DIRTYPE)], {"a": b"x"}), COLLISION)
    # Repeated directory entries, and a directory implied before its own entry, are fine.
    assert _load(make_zip({"a/b.js": b"1", "a/": b"", "a/c/": b""})).files == {"a/b.js": b"1"}
    repeated = [tar_member(name, tarfile.DIRTYPE) for name in ("a", "a/c", "a")]
    assert _load(make_tar([*repeated, tar_member("a/c/d.js")], {"a/c/d.js": b"1"})).files == {
        "a/c/d.js": b"1"
    }


_spool_app = FastAPI()


@_spool_app.post("/upload")
async def _upload(file: UploadFile) -> dict[str, object]:
    return {"rolled": file.file._rolled, "size": file.size}  # type: ignore[attr-defined]


def test_spooled_size_seeks_and_never_reads() -> None:
    class Unreadable(io.BytesIO):
        def read(self, size: int | None = -1, /) -> bytes:
            raise AssertionError("the upload was read")

    stream = Unreadable(b"x" * 5000)
    stream.seek(123)
    assert spooled_size(stream) == 5000
    assert stream.tell() == 0


@pytest.mark.parametrize(("size", "on_disk"), [(10 * 1024, False), (2 * 1024 * 1024, True)])
def test_starlette_spools_uploads_over_one_megabyte_to_disk(size: int, on_disk: bool) -> None:
    """The upload route relies on it: an uploaded archive is a temporary file, not bytes."""
    with TestClient(_spool_app) as client:
        answer = client.post("/upload", files={"file": ("a.zip", b"\0" * size)}).json()
    assert answer == {"rolled": on_disk, "size": size}
