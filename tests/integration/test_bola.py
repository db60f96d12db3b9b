"""Broken object-level authorisation, tried on every route that names an object: user B sends
user A's ids and gets 404 NOT_FOUND (never 200, 403 or 500), and A's objects are untouched.

Derived from the route table: every path parameter, and every query parameter or JSON body
field named `*_id`, is an object id. A route added later is tried without editing this test;
the test fails when it meets an id kind that `MAKE` cannot create, or a body that `BODIES`
cannot fill, so that no route escapes it silently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient

from tests.archives import make_zip
from tests.fixtures.api import register_on
from tests.fixtures.previews import PreviewApi, app_files
from tests.helpers import assert_error

# Named `*_id` without naming an object of ours: OAuth2's password form field.
NOT_OBJECT_IDS = frozenset({"client_id"})
SOURCE_ARCHIVE = make_zip({"index.js": b"console.log('bola');\n", "package.json": b"{}"})


def _project(owner: PreviewApi, _ids: dict[str, str]) -> str:
    return owner.create_project()


def _build(owner: PreviewApi, ids: dict[str, str]) -> str:
    response = owner.build(ids["project_id"], app_files(), wait=0)
    assert response.status_code in (200, 202), response.text
    return str(response.json()["build_id"])


def _job(owner: PreviewApi, ids: dict[str, str]) -> str:
    response = owner.client.post(
        "/api/v1/docs/jobs",
        json={
            "project_id": ids["project_id"],
            "job_type": "file_summary",
            "file_path": "app.py",
            "content": "def add(a, b):\n    return a + b\n",
        },
        headers=owner.headers,
    )
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def _source(owner: PreviewApi, ids: dict[str, str]) -> str:
    response = owner.upload_sources(ids["project_id"], SOURCE_ARCHIVE)
    assert response.status_code == 201, response.text
    return str(response.json()["source_id"])


# How to make an object of each id kind, keyed by parameter name; a factory may use the ids
# made before it (in this order: a build needs a project).
MAKE: dict[str, Callable[[PreviewApi, dict[str, str]], str]] = {
    "project_id": _project,
    "build_id": _build,
    "job_id": _job,
    "source_id": _source,
}

# A valid body for each request body schema (by its OpenAPI name), with A's ids in it:
# (keyword arguments for the client's request).
BODIES: dict[str, Callable[[dict[str, str], PreviewApi], dict[str, Any]]] = {
    "ProjectUpdate": lambda _ids, _owner: {"json": {"name": "taken over"}},
    "ShareRequest": lambda _ids, owner: {"json": {"username": owner.account.username}},
    "BuildRequest": lambda ids, _owner: {
        "json": {
            "project_id": ids["project_id"],
            "source_id": ids["source_id"],
            "target_platform": "ios",
            "entry_file": "index.js",
        }
    },
    "DocJobCreate": lambda ids, _owner: {
        "json": {
            "project_id": ids["project_id"],
            "job_type": "file_summary",
            "file_path": "stolen.py",
            "content": "x = 1\n",
        }
    },
    "Body_upload_sources_api_v1_projects__project_id__sources_post": lambda _ids, _owner: {
        "files": {"file": ("app.zip", SOURCE_ARCHIVE, "application/zip")}
    },
}


@dataclass(frozen=True)
class IdRoute:
    method: str
    path: str
    path_ids: tuple[str, ...]
    query_ids: tuple[str, ...]
    body_ids: tuple[str, ...]
    body: str | None

    @property
    def ids(self) -> tuple[str, ...]:
        return self.path_ids + self.query_ids + self.body_ids


def _body_schema(operation: dict[str, Any]) -> str | None:
    """The name of the request body's schema (None when the route takes no body)."""
    for media in operation.get("requestBody", {}).get("content", {}).values():
        return str(media.get("schema", {}).get("$ref", "")).rsplit("/", 1)[-1] or "(inline)"
    return None


def _id_routes(client: TestClient) -> list[IdRoute]:
    """Every route that names an object, from the app's route table."""
    document = client.app.openapi()  # type: ignore[attr-defined]
    schemas = document["components"]["schemas"]
    found = []
    # Included routers stay nested in FastAPI's route table: walk their effective routes.
    for route in iter_route_contexts(client.app.routes):  # type: ignore[attr-defined]
        if not isinstance(route.original_route, APIRoute) or not route.methods:
            continue
        if route.path_format is None:
            continue
        for method in sorted(route.methods):
            operation = document["paths"][route.path_format][method.lower()]
            parameters = operation.get("parameters", [])
            body = _body_schema(operation)
            properties = schemas.get(body, {}).get("properties", {}) if body else {}
            candidate = IdRoute(
                method=method,
                path=route.path_format,
                path_ids=tuple(p["name"] for p in parameters if p["in"] == "path"),
                query_ids=tuple(
                    p["name"]
                    for p in parameters
                    if p["in"] == "query"
                    and p["name"].endswith("_id")
                    and p["name"] not in NOT_OBJECT_IDS
                ),
                body_ids=tuple(
                    name
                    for name in properties
                    if name.endswith("_id") and name not in NOT_OBJECT_IDS
                ),
                body=body,
            )
            if candidate.ids:
                found.append(candidate)
    return found


def test_the_route_table_names_objects(preview_client: TestClient) -> None:
    """The derivation sees the routes it must (a guard against it silently finding none)."""
    routes = {(route.method, route.path) for route in _id_routes(preview_client)}
    assert ("GET", "/api/v1/projects/{project_id}") in routes
    assert ("DELETE", "/api/v1/preview/builds/{build_id}") in routes
    assert ("GET", "/api/v1/docs/jobs/{job_id}") in routes
    assert ("GET", "/api/v1/preview/builds") in routes  # ?project_id=
    assert ("POST", "/api/v1/docs/jobs") in routes  # {"project_id": ...}


def test_another_users_objects_are_not_found(preview_client: TestClient) -> None:
    owner = PreviewApi(preview_client, register_on(preview_client))
    intruder = PreviewApi(preview_client, register_on(preview_client))
    routes = _id_routes(preview_client)
    unknown = sorted({name for route in routes for name in route.ids} - set(MAKE))
    assert not unknown, f"no way to make objects for these ids: add them to MAKE: {unknown}"
    missing = sorted({route.body for route in routes if route.body} - set(BODIES))
    assert not missing, f"no valid body for these schemas: add them to BODIES: {missing}"
    for route in routes:
        # A's objects, fresh for each route (an earlier route may have changed its own).
        needed = {*route.ids, "project_id"}
        ids: dict[str, str] = {}
        for kind, make in MAKE.items():  # MAKE's order: a build's project is made first
            if kind in needed:
                ids[kind] = make(owner, ids)
        response = preview_client.request(
            route.method,
            route.path.format(**{name: ids[name] for name in route.path_ids}),
            params={name: ids[name] for name in route.query_ids},
            headers=intruder.headers,
            **(BODIES[route.body](ids, owner) if route.body else {}),
        )
        assert response.status_code == 404, (route, response.status_code, response.text)
        error = assert_error(response, 404, "NOT_FOUND")
        # The service's answer ("Project not found"), not the router's (no such route).
        assert error["message"] != "Not found", route
        _assert_untouched(owner, ids, route)
    assert len(routes) >= 12, routes


def _assert_untouched(owner: PreviewApi, ids: dict[str, str], route: IdRoute) -> None:
    """Nothing of A's was renamed, cancelled or deleted by B's request."""
    project = owner.client.get(f"/api/v1/projects/{ids['project_id']}", headers=owner.headers)
    assert project.status_code == 200, (route, project.text)
    assert project.json()["name"] != "taken over", route
    if "build_id" in ids:
        build = owner.status(ids["build_id"])
        assert build.status_code == 200, (route, build.text)
        assert build.json()["status"] != "cancelled", route
    if "job_id" in ids:
        job = owner.client.get(f"/api/v1/docs/jobs/{ids['job_id']}", headers=owner.headers)
        assert job.status_code == 200, (route, job.text)
        assert job.json()["status"] != "cancelled", route
