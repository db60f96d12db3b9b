from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from tests.helpers import PASSWORD, Account, assert_error

Register = Callable[..., Account]


def test_register_login_create_list_and_another_user_gets_404(
    client: TestClient, register: Register
) -> None:
    owner = register()
    login = client.post(
        "/api/v1/auth/login", json={"username": owner.username, "password": PASSWORD}
    )
    assert login.status_code == 200
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}

    created = client.post(
        "/api/v1/projects", json={"name": "Hello RN", "config": {"sdk": 54}}, headers=headers
    )
    assert created.status_code == 201, created.text
    project = created.json()
    assert project["name"] == "Hello RN"
    assert project["owner_id"] == owner.id
    assert project["config"] == {"sdk": 54}

    listed = client.get("/api/v1/projects", headers=headers).json()
    assert listed["total"] == 1
    assert [item["id"] for item in listed["items"]] == [project["id"]]

    intruder = register()
    url = f"/api/v1/projects/{project['id']}"
    assert_error(client.get(url, headers=intruder.headers), 404, "NOT_FOUND")
    assert_error(
        client.patch(url, json={"name": "mine now"}, headers=intruder.headers), 404, "NOT_FOUND"
    )
    assert_error(client.delete(url, headers=intruder.headers), 404, "NOT_FOUND")
    assert client.get("/api/v1/projects", headers=intruder.headers).json()["total"] == 0

    # Exactly the answer for a project that does not exist at all.
    missing = client.get(f"/api/v1/projects/{uuid.uuid4()}", headers=intruder.headers)
    assert missing.json() == client.get(url, headers=intruder.headers).json()

    # And the owner's project is untouched by the attempts.
    after = client.get(url, headers=headers)
    assert after.status_code == 200
    assert after.json()["name"] == "Hello RN"


def test_read_update_delete(client: TestClient, register: Register) -> None:
    owner = register()
    project = client.post("/api/v1/projects", json={"name": "app"}, headers=owner.headers).json()
    url = f"/api/v1/projects/{project['id']}"
    assert client.get(url, headers=owner.headers).json() == project

    updated = client.patch(
        url, json={"name": "renamed", "config": {"entry": "index.js"}}, headers=owner.headers
    )
    assert updated.status_code == 200
    body = updated.json()
    assert body["name"] == "renamed"
    assert body["config"] == {"entry": "index.js"}
    assert body["created_at"] == project["created_at"]
    assert body["updated_at"] > project["updated_at"]

    # A partial update leaves the other fields alone.
    only_config = client.patch(url, json={"config": {}}, headers=owner.headers).json()
    assert only_config["name"] == "renamed"

    deleted = client.delete(url, headers=owner.headers)
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert_error(client.get(url, headers=owner.headers), 404, "NOT_FOUND")
    assert_error(client.delete(url, headers=owner.headers), 404, "NOT_FOUND")


def test_names_are_unique_per_owner_ignoring_case(client: TestClient, register: Register) -> None:
    alice, bob = register(), register()
    assert (
        client.post("/api/v1/projects", json={"name": "Demo"}, headers=alice.headers).status_code
        == 201
    )
    duplicate = client.post("/api/v1/projects", json={"name": "demo"}, headers=alice.headers)
    error = assert_error(duplicate, 409, "CONFLICT")
    assert error["details"] == {"fields": ["name"]}
    # Another owner may use the same name.
    assert (
        client.post("/api/v1/projects", json={"name": "demo"}, headers=bob.headers).status_code
        == 201
    )

    other = client.post("/api/v1/projects", json={"name": "Other"}, headers=alice.headers).json()
    renamed = client.patch(
        f"/api/v1/projects/{other['id']}", json={"name": "DEMO"}, headers=alice.headers
    )
    assert_error(renamed, 409, "CONFLICT")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "ok", "config": "not an object"}, "config"),
        ({"name": "ok", "config": {"blob": "x" * 70_000}}, "config"),
        ({"name": "ok", "owner_id": str(uuid.uuid4())}, "owner_id"),
        ({}, "name"),
    ],
)
def test_create_validation(
    client: TestClient, register: Register, body: dict[str, object], field: str
) -> None:
    owner = register()
    response = client.post("/api/v1/projects", json=body, headers=owner.headers)
    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert field in [item["field"] for item in error["details"]["fields"]]


def test_list_is_paginated_newest_first(client: TestClient, register: Register) -> None:
    owner = register()
    names = [f"p{index:02d}" for index in range(25)]
    for name in names:
        client.post("/api/v1/projects", json={"name": name}, headers=owner.headers)

    first = client.get("/api/v1/projects", headers=owner.headers).json()
    assert (first["total"], first["limit"], first["offset"]) == (25, 20, 0)
    assert [item["name"] for item in first["items"]] == names[::-1][:20]

    last = client.get("/api/v1/projects?limit=10&offset=20", headers=owner.headers).json()
    assert last["total"] == 25
    assert [item["name"] for item in last["items"]] == names[::-1][20:]

    past_the_end = client.get("/api/v1/projects?offset=100", headers=owner.headers).json()
    assert past_the_end["items"] == []
    assert past_the_end["total"] == 25

    for query in ("limit=0", "limit=101", "offset=-1", "limit=abc"):
        assert_error(
            client.get(f"/api/v1/projects?{query}", headers=owner.headers),
            422,
            "VALIDATION_ERROR",
        )


def test_every_route_needs_a_token(client: TestClient, register: Register) -> None:
    owner = register()
    project = client.post("/api/v1/projects", json={"name": "x"}, headers=owner.headers).json()
    url = f"/api/v1/projects/{project['id']}"
    for method, path in [
        ("POST", "/api/v1/projects"),
        ("GET", "/api/v1/projects"),
        ("GET", url),
        ("PATCH", url),
        ("DELETE", url),
    ]:
        response = client.request(method, path, json={"name": "y"})
        assert_error(response, 401, "AUTH_ERROR")
        assert response.headers["WWW-Authenticate"] == "Bearer"


def test_malformed_project_id_is_a_validation_error(client: TestClient, register: Register) -> None:
    owner = register()
    assert_error(
        client.get("/api/v1/projects/not-a-uuid", headers=owner.headers), 422, "VALIDATION_ERROR"
    )
