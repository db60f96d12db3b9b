"""Preview builds end to end: API -> Temporal -> worker -> Metro -> SeaweedFS -> signed URL.

Everything is real: the Temporal dev server, SeaweedFS verifying signatures, Metro processes
from bundler/node_modules, Postgres and Redis."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import time
import uuid
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx
import httpx2
import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from cli.processes import free_port
from core.config import Settings
from core.security import create_access_token, create_preview_token
from core.storage import Storage
from services.previews import layout
from tests.archives import hostile_archives
from tests.fixtures.api import register_on
from tests.fixtures.previews import (
    EXAMPLE_APP,
    PreviewApi,
    app_files,
    slow_app,
    unique_app,
)
from tests.fixtures.workers import ThreadWorker
from tests.helpers import assert_error, libpq_url

pytestmark = pytest.mark.usefixtures("preview_worker")


def metadata_of(storage: Storage, build_id: str) -> dict[str, Any]:
    return dict(json.loads(storage.get_bytes(layout.build_key(build_id, layout.METADATA))))


def ready_build(api: PreviewApi, project_id: str | None = None) -> dict[str, Any]:
    """A new, ready build of the example app (with a module of its own)."""
    project_id = project_id or api.create_project()
    response = api.build(project_id, unique_app())
    assert response.status_code == 200, response.text
    return dict(response.json())


def zip_of(files: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, content in files.items():
            if isinstance(content, dict):
                archive.writestr(path, base64.b64decode(content["base64"]))
            else:
                archive.writestr(path, content)
    return buffer.getvalue()


@pytest.mark.parametrize("platform", ["ios", "android"])
def test_example_app_builds_and_downloads_through_the_signed_url(
    preview_api: PreviewApi, storage: Storage, platform: str
) -> None:
    project_id = preview_api.create_project()

    response = preview_api.build(project_id, app_files(), platform=platform)

    assert response.status_code == 200, response.text
    ready = response.json()
    assert set(ready) == {"url", "token", "expires_in", "build_id"}
    assert ready["expires_in"] == 600
    download = httpx.get(ready["url"])  # decodes the stored gzip (Content-Encoding)
    assert download.status_code == 200
    assert download.headers["content-encoding"] == "gzip"
    bundle = download.content
    metadata = metadata_of(storage, ready["build_id"])
    assert metadata["bundle"]["sha256"] == hashlib.sha256(bundle).hexdigest()
    assert metadata["bundle"]["size"] == len(bundle)
    assert metadata["platform"] == platform
    assert metadata["project_id"] == project_id
    assert metadata["entry_file"] == "index.js"
    assert metadata["build_id"] == ready["build_id"]
    assert metadata["toolchain"]["react-native"] == "0.86.3"
    assert metadata["toolchain"]["metro"] == "0.84.6"
    text = bundle.decode()
    # The app's own modules are in the bundle: JS, TypeScript, JSON, and the asset's record.
    for marker in (
        "Built by the HiveSync preview bundler",  # App.js
        "Greetings from TypeScript, ",  # Greeting.tsx
        "Sketch the honeycomb layout",  # data.json
        "HelloRN",  # app.json
    ):
        assert marker in text, marker
    assert '"logo"' in text
    assert '"png"' in text
    asset_paths = [asset["path"] for asset in metadata["assets"]]
    expected = {"android": "drawable-mdpi/assets_logo.png", "ios": "assets/assets/logo.png"}[
        platform
    ]
    assert expected in asset_paths
    logo = next(asset for asset in metadata["assets"] if asset["path"] == expected)
    stored_logo = storage.get_bytes(layout.build_key(ready["build_id"], f"assets/{expected}"))
    assert hashlib.sha256(stored_logo).hexdigest() == logo["sha256"]
    assert stored_logo == (EXAMPLE_APP / "assets" / "logo.png").read_bytes()


def test_development_builds_are_not_minified(preview_api: PreviewApi, storage: Storage) -> None:
    project_id = preview_api.create_project()
    files = unique_app()
    development = preview_api.build(project_id, files, environment="development")
    production = preview_api.build(project_id, files, environment="production")
    assert development.status_code == production.status_code == 200
    dev_id, prod_id = development.json()["build_id"], production.json()["build_id"]
    assert dev_id != prod_id
    dev_bundle = httpx.get(development.json()["url"]).content
    prod_bundle = httpx.get(production.json()["url"]).content
    assert b"__DEV__=true" in dev_bundle
    assert b"__DEV__=false" in prod_bundle
    assert len(dev_bundle) > len(prod_bundle) * 1.5
    assert metadata_of(storage, dev_id)["environment"] == "development"


def test_status_list_and_identical_rebuild_without_metro(
    preview_api: PreviewApi, preview_worker: ThreadWorker
) -> None:
    project_id = preview_api.create_project()
    files = unique_app()
    accepted = preview_api.build(project_id, files, wait=0)
    assert accepted.status_code == 202, accepted.text
    body = accepted.json()
    assert body["status"] in ("queued", "bundling", "uploading")
    assert body["status_url"] == f"http://testserver/api/v1/preview/builds/{body['build_id']}"

    status = preview_api.wait_for(body["build_id"])
    assert status["status"] == "ready", status
    assert status["bundle_size"] > 100_000
    assert status["duration_ms"] > 0
    assert status["expires_in"] == 600
    assert status["error"] is None
    assert httpx.get(status["url"]).status_code == 200
    runs = preview_worker.bundler_builds

    again = preview_api.build(project_id, files, wait=0)
    assert again.status_code == 200, again.text  # answered from storage at once
    assert again.json()["build_id"] == body["build_id"]
    assert preview_worker.bundler_builds == runs

    listed = preview_api.client.get(
        f"/api/v1/preview/builds?project_id={project_id}&limit=10", headers=preview_api.headers
    ).json()
    assert listed["total"] == 1
    assert [item["build_id"] for item in listed["items"]] == [body["build_id"]]
    assert listed["items"][0]["status"] == "ready"


def test_list_is_paginated_newest_first(preview_api: PreviewApi) -> None:
    project_id = preview_api.create_project()
    build_ids = [ready_build(preview_api, project_id)["build_id"] for _ in range(3)]

    def page(limit: int, offset: int) -> dict[str, Any]:
        response = preview_api.client.get(
            f"/api/v1/preview/builds?project_id={project_id}&limit={limit}&offset={offset}",
            headers=preview_api.headers,
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    first, second = page(2, 0), page(2, 2)
    assert first["total"] == second["total"] == 3
    listed = [item["build_id"] for item in first["items"] + second["items"]]
    assert listed == list(reversed(build_ids))
    too_many = preview_api.client.get(
        f"/api/v1/preview/builds?project_id={project_id}&limit=1000", headers=preview_api.headers
    )
    assert too_many.status_code == 422
    assert too_many.json()["error"]["code"] == "VALIDATION_ERROR"


def test_two_identical_concurrent_requests_share_one_metro_run(
    preview_api: PreviewApi, preview_worker: ThreadWorker
) -> None:
    project_id = preview_api.create_project()
    files = unique_app()
    runs = preview_worker.bundler_builds

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: preview_api.build(project_id, files), range(2)))

    assert [answer.status_code for answer in answers] == [200, 200], [a.text for a in answers]
    assert answers[0].json()["build_id"] == answers[1].json()["build_id"]
    assert preview_worker.bundler_builds == runs + 1


def test_twenty_concurrent_builds_of_different_sources(preview_api: PreviewApi) -> None:
    project_id = preview_api.create_project()
    markers = [uuid.uuid4().hex for _ in range(20)]

    def build_one(marker: str) -> httpx2.Response:
        return preview_api.build(project_id, unique_app(marker), wait=0)

    with ThreadPoolExecutor(20) as pool:
        accepted = list(pool.map(build_one, markers))
    assert all(answer.status_code in (200, 202) for answer in accepted), accepted
    build_ids = [answer.json()["build_id"] for answer in accepted]
    assert len(set(build_ids)) == 20

    for marker, build_id in zip(markers, build_ids, strict=True):
        status = preview_api.wait_for(build_id, timeout_s=240)
        assert status["status"] == "ready", status
        bundle = httpx.get(status["url"]).content
        assert f"unique-{marker}".encode() in bundle


def test_syntax_error_reports_file_line_and_column(preview_api: PreviewApi) -> None:
    project_id = preview_api.create_project()
    files = unique_app()
    files["src/components/Counter.js"] = (
        "import React from 'react';\n"
        "\n"
        "export default function Counter() {\n"
        "  const value = );\n"
        "  return value;\n"
        "}\n"
    )

    response = preview_api.build(project_id, files)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "PREVIEW_BUILD_FAILED"
    assert error["details"]["file"] == "src/components/Counter.js"
    assert error["details"]["line"] == 4
    assert error["details"]["column"] == 17  # 1-based: the ")"
    assert error["details"]["type"] == "syntax"
    assert "Counter.js" in error["message"]
    # The failure is recorded and the owner is told.
    listed = preview_api.client.get(
        f"/api/v1/preview/builds?project_id={project_id}", headers=preview_api.headers
    ).json()
    assert listed["items"][0]["status"] == "failed"
    assert listed["items"][0]["error"]["code"] == "PREVIEW_BUILD_FAILED"
    notifications = preview_api.client.get(
        "/api/v1/notifications", headers=preview_api.headers
    ).json()["items"]
    failed = [item for item in notifications if item["type"] == "preview.failed"]
    assert failed[-1]["payload"]["error"]["details"]["line"] == 4


def test_missing_import_names_the_importing_file(preview_api: PreviewApi) -> None:
    project_id = preview_api.create_project()
    files = unique_app()
    files["src/theme.js"] = "import missing from './nowhere';\nexport const colors = missing;\n"

    response = preview_api.build(project_id, files)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "PREVIEW_BUILD_FAILED"
    assert error["details"]["type"] == "resolution"
    assert error["details"]["file"] == "src/theme.js"
    assert error["details"]["line"] == 1


def test_ready_build_notifies_its_owner(preview_api: PreviewApi) -> None:
    ready = ready_build(preview_api)
    items = preview_api.client.get("/api/v1/notifications", headers=preview_api.headers).json()[
        "items"
    ]
    assert [item["payload"]["build_id"] for item in items if item["type"] == "preview.ready"] == [
        ready["build_id"]
    ]


# --- sources as archives ---------------------------------------------------------------------


def test_build_from_an_uploaded_archive(preview_api: PreviewApi, storage: Storage) -> None:
    project_id = preview_api.create_project()
    files = unique_app()
    uploaded = preview_api.upload_sources(project_id, zip_of(files))
    assert uploaded.status_code == 201, uploaded.text
    source = uploaded.json()
    assert source["file_count"] == len(files)
    again = preview_api.upload_sources(project_id, zip_of(files))
    assert again.json()["source_id"] == source["source_id"]  # content-addressed

    response = preview_api.build(project_id, source_id=source["source_id"])

    assert response.status_code == 200, response.text
    inline = preview_api.build(project_id, files)
    assert inline.json()["build_id"] == response.json()["build_id"]  # the same sources
    assert storage.exists(layout.source_key(source["source_hash"]))


@pytest.mark.parametrize("name", sorted(hostile_archives()))
def test_hostile_archives_are_refused_and_nothing_is_stored(
    preview_api: PreviewApi, storage: Storage, database_url: str, name: str
) -> None:
    project_id = preview_api.create_project()
    archive, _reason = hostile_archives()[name]
    stored_before = stored_sources(storage)

    response = preview_api.upload_sources(project_id, archive, filename=f"{name}.bin")

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "PREVIEW_INVALID_SOURCE"
    assert error["message"]
    assert stored_sources(storage) == stored_before
    with psycopg.connect(libpq_url(database_url)) as connection:
        rows = connection.execute(
            "SELECT count(*) FROM preview_sources WHERE project_id = %s", (project_id,)
        ).fetchone()
    assert rows == (0,)


def stored_sources(storage: Storage) -> set[str]:
    pages = storage.client.get_paginator("list_objects_v2").paginate(
        Bucket=storage.bucket, Prefix="sources/"
    )
    return {item["Key"] for page in pages for item in page.get("Contents", [])}


def test_source_ids_belong_to_their_project(preview_api: PreviewApi, other_api: PreviewApi) -> None:
    project_id = preview_api.create_project()
    source_id = preview_api.upload_sources(project_id, zip_of(unique_app())).json()["source_id"]
    elsewhere = preview_api.build(preview_api.create_project(), source_id=source_id)
    assert elsewhere.status_code == 404
    theirs = other_api.build(other_api.create_project(), source_id=source_id)
    assert theirs.status_code == 404
    assert theirs.json()["error"]["code"] == "NOT_FOUND"


def test_entry_file_must_be_among_the_sources(preview_api: PreviewApi) -> None:
    response = preview_api.build(preview_api.create_project(), unique_app(), entry_file="main.js")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "PREVIEW_INVALID_SOURCE"


@pytest.mark.parametrize(
    "path", ["../escape.js", "/etc/passwd", "src/../../x.js", "C:/win.js", "a\\b.js"]
)
def test_inline_paths_that_escape_are_refused(preview_api: PreviewApi, path: str) -> None:
    files = unique_app()
    files[path] = "export default 1;\n"
    response = preview_api.build(preview_api.create_project(), files)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "PREVIEW_INVALID_SOURCE"


def test_both_or_neither_kind_of_sources_is_a_validation_error(preview_api: PreviewApi) -> None:
    project_id = preview_api.create_project()
    neither = preview_api.build(project_id)
    assert neither.status_code == 422
    assert neither.json()["error"]["code"] == "VALIDATION_ERROR"
    both = preview_api.build(project_id, unique_app(), source_id=str(uuid.uuid4()))
    assert both.status_code == 422


def test_bad_base64_is_an_invalid_source(preview_api: PreviewApi) -> None:
    files = unique_app()
    files["assets/broken.png"] = {"base64": "not base64!!"}
    response = preview_api.build(preview_api.create_project(), files)
    assert response.status_code == 422
    assert response.json()["error"]["details"]["path"] == "assets/broken.png"


# --- who may see what ------------------------------------------------------------------------


def test_another_users_project_and_builds_are_not_found(
    preview_api: PreviewApi, other_api: PreviewApi
) -> None:
    project_id = preview_api.create_project()
    ready = ready_build(preview_api, project_id)
    build_id = ready["build_id"]
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/api/v1/preview/build", {"json": _build_body(project_id)}),
        ("GET", f"/api/v1/preview/builds/{build_id}", {}),
        ("GET", f"/api/v1/preview/builds?project_id={project_id}", {}),
        ("DELETE", f"/api/v1/preview/builds/{build_id}", {}),
        ("POST", f"/api/v1/preview/builds/{build_id}/share", {"json": {"username": "x" * 5}}),
        (
            "POST",
            f"/api/v1/projects/{project_id}/sources",
            {"files": {"file": ("a.zip", zip_of({"index.js": "1"}), "application/zip")}},
        ),
    ]
    for method, url, extra in requests:
        response = other_api.client.request(method, url, headers=other_api.headers, **extra)
        assert response.status_code == 404, (method, url, response.text)
        assert response.json()["error"]["code"] == "NOT_FOUND"
        anonymous = other_api.client.request(method, url, **extra)
        assert anonymous.status_code == 401, (method, url)
        assert anonymous.json()["error"]["code"] == "AUTH_ERROR"
    # Nothing changed for the owner.
    assert preview_api.status(build_id).json()["status"] == "ready"


def _build_body(project_id: str) -> dict[str, Any]:
    return {
        "project_id": project_id,
        "target_platform": "ios",
        "entry_file": "index.js",
        "files": {"index.js": "console.log(1);\n"},
    }


def test_a_shared_build_opens_for_the_recipient_only(
    preview_api: PreviewApi, other_api: PreviewApi, preview_client: TestClient
) -> None:
    third = PreviewApi(preview_client, register_on(preview_client))
    ready = ready_build(preview_api)
    build_id = ready["build_id"]
    assert other_api.status(build_id).status_code == 404

    shared = preview_api.client.post(
        f"/api/v1/preview/builds/{build_id}/share",
        json={"username": other_api.account.username},
        headers=preview_api.headers,
    )

    assert shared.status_code == 201, shared.text
    opened = other_api.status(build_id)
    assert opened.status_code == 200
    assert opened.json()["status"] == "ready"
    assert httpx.get(opened.json()["url"]).status_code == 200
    assert third.status(build_id).status_code == 404
    items = other_api.client.get("/api/v1/notifications", headers=other_api.headers).json()["items"]
    shares = [item for item in items if item["type"] == "preview.shared"]
    assert len(shares) == 1
    assert shares[0]["payload"]["build_id"] == build_id
    assert shares[0]["payload"]["shared_by"] == preview_api.account.username
    # The recipient may open it, not manage it.
    assert (
        other_api.client.delete(
            f"/api/v1/preview/builds/{build_id}", headers=other_api.headers
        ).status_code
        == 404
    )
    reshare = other_api.client.post(
        f"/api/v1/preview/builds/{build_id}/share",
        json={"username": third.account.username},
        headers=other_api.headers,
    )
    assert reshare.status_code == 404
    # Sharing twice is harmless; sharing with nobody or with yourself is refused.
    twice = preview_api.client.post(
        f"/api/v1/preview/builds/{build_id}/share",
        json={"username": other_api.account.username},
        headers=preview_api.headers,
    )
    assert twice.status_code == 201
    nobody = preview_api.client.post(
        f"/api/v1/preview/builds/{build_id}/share",
        json={"username": "nobody-" + uuid.uuid4().hex[:8]},
        headers=preview_api.headers,
    )
    assert nobody.status_code == 404
    yourself = preview_api.client.post(
        f"/api/v1/preview/builds/{build_id}/share",
        json={"username": preview_api.account.username},
        headers=preview_api.headers,
    )
    assert yourself.status_code == 409


# --- the preview app's manifest ----------------------------------------------------------------


def test_manifest_with_the_preview_token(preview_api: PreviewApi, storage: Storage) -> None:
    ready = ready_build(preview_api)

    by_header = preview_api.client.get(
        "/api/v1/preview/manifest", headers={"Authorization": f"Preview {ready['token']}"}
    )
    by_query = preview_api.client.get(f"/api/v1/preview/manifest?token={ready['token']}")

    assert by_header.status_code == by_query.status_code == 200, by_header.text
    manifest = by_header.json()
    assert manifest["build_id"] == ready["build_id"]
    assert manifest["expires_in"] == 600
    bundle = httpx.get(manifest["bundle_url"]).content
    assert hashlib.sha256(bundle).hexdigest() == manifest["bundle"]["sha256"]
    brotli_download = httpx.get(manifest["bundle_brotli_url"], headers={"Accept-Encoding": "br"})
    assert brotli_download.status_code == 200
    assert brotli_download.headers["content-encoding"] == "br"
    for asset in manifest["assets"]:
        data = httpx.get(asset["url"]).content
        assert hashlib.sha256(data).hexdigest() == asset["sha256"]
        assert len(data) == asset["size"]


def test_manifest_refuses_tampered_expired_and_wrong_type_tokens(
    preview_api: PreviewApi, preview_settings: Settings
) -> None:
    ready = ready_build(preview_api)
    token = ready["token"]
    header, payload, signature = token.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    expired = create_preview_token(
        preview_settings,
        uuid.UUID(preview_api.status(ready["build_id"]).json()["project_id"]),
        ready["build_id"],
        ttl=timedelta(seconds=-5),
    ).token
    access = create_access_token(
        preview_settings, uuid.UUID(preview_api.account.id), ["user"]
    ).token
    for bad in (
        f"{header}.{payload}.{flipped}",
        expired,
        access,
        preview_api.account.token,
        "not-a-token",
    ):
        response = preview_api.client.get(
            "/api/v1/preview/manifest", headers={"Authorization": f"Preview {bad}"}
        )
        assert response.status_code == 401, bad
        assert response.json()["error"]["code"] == "AUTH_ERROR"
    missing = preview_api.client.get("/api/v1/preview/manifest")
    assert missing.status_code == 401
    # A preview token is no access token either.
    assert (
        preview_api.client.get(
            "/api/v1/users/me", headers={"Authorization": f"Bearer {token}"}
        ).status_code
        == 401
    )


def test_expired_signed_url_is_refused_by_storage(
    preview_api: PreviewApi, preview_settings: Settings
) -> None:
    ready = ready_build(preview_api)
    storage = Storage(preview_settings)
    short = storage.get_signed_url(layout.build_key(ready["build_id"], layout.BUNDLE), 1)
    assert httpx.get(short).status_code == 200
    time.sleep(2.1)
    assert httpx.get(short).status_code == 403


# --- the manifest of builds that are not (or no longer) there, storage unreachable -----------


def manifest_for(api: PreviewApi, token: str) -> httpx2.Response:
    return api.client.get("/api/v1/preview/manifest", headers={"Authorization": f"Preview {token}"})


def test_manifest_of_an_unfinished_build_is_not_found_with_its_status(
    preview_api: PreviewApi, preview_settings: Settings
) -> None:
    project_id = preview_api.create_project()
    accepted = preview_api.build(project_id, slow_app(3000), environment="development", wait=0)
    build_id = accepted.json()["build_id"]
    # A token for the build (as a client keeps one from an earlier run of it).
    token = create_preview_token(
        preview_settings, uuid.UUID(project_id), build_id, ttl=timedelta(minutes=5)
    ).token

    running = manifest_for(preview_api, token)

    error = assert_error(running, 404, "NOT_FOUND")
    assert error["message"] == "The build is not ready"
    assert error["details"]["build_id"] == build_id
    assert error["details"]["status"] in ("queued", "bundling")
    preview_api.client.delete(f"/api/v1/preview/builds/{build_id}", headers=preview_api.headers)
    assert preview_api.wait_for(build_id)["status"] == "cancelled"
    cancelled = assert_error(manifest_for(preview_api, token), 404, "NOT_FOUND")
    assert cancelled["details"]["status"] == "cancelled"


def test_manifest_of_a_vanished_build_says_so_and_the_build_is_made_again(
    preview_api: PreviewApi, storage: Storage
) -> None:
    project_id = preview_api.create_project()
    files = unique_app()
    first = preview_api.build(project_id, files)
    assert first.status_code == 200, first.text
    ready = first.json()
    assert storage.delete_prefix(layout.build_prefix(ready["build_id"])) > 0

    vanished = manifest_for(preview_api, ready["token"])

    error = assert_error(vanished, 404, "NOT_FOUND")
    assert "no longer stored" in error["message"]
    assert error["details"] == {"build_id": ready["build_id"]}
    again = preview_api.build(project_id, files)
    assert again.status_code == 200, again.text
    assert again.json()["build_id"] == ready["build_id"]
    assert manifest_for(preview_api, again.json()["token"]).status_code == 200


def test_storage_unreachable_answers_storage_error_on_upload_and_manifest(
    preview_api: PreviewApi,
    make_preview_settings: Callable[..., Settings],
    database_url: str,
) -> None:
    ready = ready_build(preview_api)
    closed = make_preview_settings(r2_endpoint=f"http://127.0.0.1:{free_port()}")
    with TestClient(create_app(closed)) as client:
        api = PreviewApi(client, register_on(client))
        project_id = api.create_project()

        upload = api.upload_sources(project_id, zip_of(unique_app()))
        manifest = manifest_for(api, ready["token"])

    assert_error(upload, 503, "STORAGE_ERROR")
    assert_error(manifest, 503, "STORAGE_ERROR")
    with psycopg.connect(libpq_url(database_url)) as connection:
        rows = connection.execute(
            "SELECT count(*) FROM preview_sources WHERE project_id = %s", (project_id,)
        ).fetchone()
    assert rows == (0,)  # nothing half-stored
