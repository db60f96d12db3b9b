"""Preview builds end to end: API -> Temporal -> worker -> Metro -> SeaweedFS -> signed URL.

Everything is real: the Temporal dev server, SeaweedFS verifying signatures, Metro processes
from bundler/node_modules, Postgres and Redis."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from core.storage import Storage
from services.previews import layout
from tests.fixtures.previews import ThreadWorker, app_files
from tests.helpers import Account

pytestmark = pytest.mark.usefixtures("preview_worker")


def auth(account: Account) -> dict[str, str]:
    return {"Authorization": f"Bearer {account.token}"}


@pytest.fixture
def owner(preview_client: TestClient) -> Account:
    return register_on(preview_client)


def register_on(client: TestClient) -> Account:
    username = f"dev{uuid.uuid4().hex[:10]}"
    response = client.post(
        "/api/v1/auth/register",
        json={
            "email": f"{username}@example.com",
            "username": username,
            "password": "correct horse battery staple",
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return Account(
        id=body["user"]["id"],
        username=username,
        email=f"{username}@example.com",
        password="correct horse battery staple",
        token=body["access_token"],
    )


def create_project(client: TestClient, account: Account) -> str:
    response = client.post(
        "/api/v1/projects", json={"name": f"app-{uuid.uuid4().hex[:8]}"}, headers=auth(account)
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def build(
    client: TestClient,
    account: Account,
    project_id: str,
    files: dict[str, Any],
    *,
    platform: str = "ios",
    environment: str = "production",
    entry_file: str = "index.js",
    wait: int = 60,
) -> httpx.Response:
    return client.post(
        f"/api/v1/preview/build?wait={wait}",
        json={
            "project_id": project_id,
            "target_platform": platform,
            "entry_file": entry_file,
            "environment": environment,
            "files": files,
        },
        headers=auth(account),
    )


def metadata_of(storage: Storage, build_id: str) -> dict[str, Any]:
    return dict(json.loads(storage.get_bytes(layout.build_key(build_id, layout.METADATA))))


@pytest.mark.parametrize("platform", ["ios", "android"])
def test_example_app_builds_and_downloads_through_the_signed_url(
    preview_client: TestClient, owner: Account, storage: Storage, platform: str
) -> None:
    project_id = create_project(preview_client, owner)

    response = build(preview_client, owner, project_id, app_files(), platform=platform)

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
    assert metadata["toolchain"]["react-native"] == "0.86.3"
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


def unique_app(marker: str | None = None) -> dict[str, Any]:
    """The example app with one module of its own: sources that no other test builds."""
    files = app_files()
    marker = marker or uuid.uuid4().hex
    files["src/unique.js"] = f"export const MARKER = 'unique-{marker}';\n"
    files["index.js"] += "import {MARKER} from './src/unique';\nconsole.log(MARKER);\n"
    return files


def test_status_list_and_identical_rebuild_without_metro(
    preview_client: TestClient, owner: Account, preview_worker: ThreadWorker
) -> None:
    project_id = create_project(preview_client, owner)
    files = unique_app()
    accepted = build(preview_client, owner, project_id, files, wait=0)
    assert accepted.status_code == 202, accepted.text
    body = accepted.json()
    assert body["status"] in ("queued", "bundling", "uploading")
    assert body["status_url"].endswith(f"/api/v1/preview/builds/{body['build_id']}")

    status = poll_until_done(preview_client, owner, body["build_id"])
    assert status["status"] == "ready", status
    assert status["bundle_size"] > 100_000
    assert status["duration_ms"] > 0
    assert status["expires_in"] == 600
    assert httpx.get(status["url"]).status_code == 200
    runs = preview_worker.bundler_builds

    again = build(preview_client, owner, project_id, files, wait=0)
    assert again.status_code == 200, again.text  # answered from storage, no wait needed
    assert again.json()["build_id"] == body["build_id"]
    assert preview_worker.bundler_builds == runs

    listed = preview_client.get(
        f"/api/v1/preview/builds?project_id={project_id}&limit=10", headers=auth(owner)
    ).json()
    assert listed["total"] == 1
    assert [item["build_id"] for item in listed["items"]] == [body["build_id"]]
    assert listed["items"][0]["status"] == "ready"


def poll_until_done(
    client: TestClient, account: Account, build_id: str, timeout_s: float = 120
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    seen: list[str] = []
    while time.monotonic() < deadline:
        response = client.get(f"/api/v1/preview/builds/{build_id}", headers=auth(account))
        assert response.status_code == 200, response.text
        status: dict[str, Any] = response.json()
        if not seen or seen[-1] != status["status"]:
            seen.append(status["status"])
        if status["status"] in ("ready", "failed", "cancelled"):
            status["seen"] = seen
            return status
        time.sleep(0.1)
    raise AssertionError(f"build {build_id} did not finish; statuses seen: {seen}")


def test_two_identical_concurrent_requests_share_one_metro_run(
    preview_client: TestClient, owner: Account, preview_worker: ThreadWorker
) -> None:
    project_id = create_project(preview_client, owner)
    files = unique_app()
    runs = preview_worker.bundler_builds

    with ThreadPoolExecutor(2) as pool:
        answers = list(
            pool.map(lambda _: build(preview_client, owner, project_id, files), range(2))
        )

    assert [answer.status_code for answer in answers] == [200, 200], [a.text for a in answers]
    assert answers[0].json()["build_id"] == answers[1].json()["build_id"]
    assert preview_worker.bundler_builds == runs + 1


def test_twenty_concurrent_builds_of_different_sources(
    preview_client: TestClient, owner: Account, storage: Storage
) -> None:
    project_id = create_project(preview_client, owner)
    markers = [uuid.uuid4().hex for _ in range(20)]

    def build_one(marker: str) -> httpx.Response:
        return build(preview_client, owner, project_id, unique_app(marker), wait=0)

    with ThreadPoolExecutor(20) as pool:
        accepted = list(pool.map(build_one, markers))
    assert all(answer.status_code in (200, 202) for answer in accepted), accepted
    build_ids = [answer.json()["build_id"] for answer in accepted]
    assert len(set(build_ids)) == 20

    for marker, build_id in zip(markers, build_ids, strict=True):
        status = poll_until_done(preview_client, owner, build_id, timeout_s=240)
        assert status["status"] == "ready", status
        bundle = httpx.get(status["url"]).content
        assert f"unique-{marker}".encode() in bundle


def test_syntax_error_reports_file_line_and_column(
    preview_client: TestClient, owner: Account
) -> None:
    project_id = create_project(preview_client, owner)
    files = unique_app()
    files["src/components/Counter.js"] = (
        "import React from 'react';\n"
        "\n"
        "export default function Counter() {\n"
        "  return <Text>{count</Text>;\n"
        "}\n"
    )

    response = build(preview_client, owner, project_id, files)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "PREVIEW_BUILD_FAILED"
    assert error["details"]["file"] == "src/components/Counter.js"
    assert error["details"]["line"] == 4
    assert isinstance(error["details"]["column"], int)
    assert error["details"]["type"] == "syntax"
    build_id = build(preview_client, owner, project_id, files, wait=0).json()
    # The failure is recorded: status shows it, the owner is notified.
    listed = preview_client.get(
        f"/api/v1/preview/builds?project_id={project_id}", headers=auth(owner)
    ).json()
    assert listed["items"][0]["status"] in ("queued", "bundling", "failed")
    del build_id
