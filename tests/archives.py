"""Archives for tests of source uploads: well-formed ones and hostile ones."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile

from services.previews.sources import MAX_FILES


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
