from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

from tests.helpers import PASSWORD, Account, assert_error, unique_name

Register = Callable[..., Account]
NEW_PASSWORD = "a brand new passphrase"


def _login(client: TestClient, login: str, password: str) -> int:
    return client.post(
        "/api/v1/auth/login", json={"username": login, "password": password}
    ).status_code


def test_read_me_never_exposes_the_password_hash(client: TestClient, register: Register) -> None:
    account = register()
    me = client.get("/api/v1/users/me", headers=account.headers)
    assert me.status_code == 200
    body = me.json()
    assert body["username"] == account.username
    assert body["email"] == account.email
    assert "password_hash" not in body
    assert "$2b$" not in me.text


def test_change_username(client: TestClient, register: Register) -> None:
    account, other = register(), register()
    new_name = unique_name("Renamed")
    changed = client.patch("/api/v1/users/me", json={"username": new_name}, headers=account.headers)
    assert changed.status_code == 200
    assert changed.json()["username"] == new_name
    assert _login(client, new_name.lower(), PASSWORD) == 200
    assert _login(client, account.username, PASSWORD) == 401

    taken = client.patch(
        "/api/v1/users/me", json={"username": other.username.upper()}, headers=account.headers
    )
    assert assert_error(taken, 409, "CONFLICT")["details"] == {"fields": ["username"]}
    # Renaming to your own name in another case is not a conflict with yourself.
    same = client.patch(
        "/api/v1/users/me", json={"username": new_name.upper()}, headers=account.headers
    )
    assert same.status_code == 200


def test_changing_the_password_needs_the_current_one(
    client: TestClient, register: Register
) -> None:
    account = register()
    missing = client.patch(
        "/api/v1/users/me", json={"password": NEW_PASSWORD}, headers=account.headers
    )
    error = assert_error(missing, 422, "VALIDATION_ERROR")
    assert error["details"]["fields"][0]["field"] == "current_password"

    wrong = client.patch(
        "/api/v1/users/me",
        json={"password": NEW_PASSWORD, "current_password": "not my password"},
        headers=account.headers,
    )
    assert_error(wrong, 403, "AUTH_ERROR")
    assert _login(client, account.username, PASSWORD) == 200

    changed = client.patch(
        "/api/v1/users/me",
        json={"password": NEW_PASSWORD, "current_password": PASSWORD},
        headers=account.headers,
    )
    assert changed.status_code == 200
    assert _login(client, account.username, PASSWORD) == 401
    assert _login(client, account.username, NEW_PASSWORD) == 200


def test_new_password_is_validated_like_at_registration(
    client: TestClient, register: Register
) -> None:
    account = register()
    for password in ("short", "x" * 73):
        response = client.patch(
            "/api/v1/users/me",
            json={"password": password, "current_password": PASSWORD},
            headers=account.headers,
        )
        assert_error(response, 422, "VALIDATION_ERROR")


def test_changing_the_email_needs_the_current_password(
    client: TestClient, register: Register
) -> None:
    account, other = register(), register()
    new_email = f"{unique_name()}@Example.org"
    without = client.patch("/api/v1/users/me", json={"email": new_email}, headers=account.headers)
    assert_error(without, 422, "VALIDATION_ERROR")
    taken = client.patch(
        "/api/v1/users/me",
        json={"email": other.email, "current_password": PASSWORD},
        headers=account.headers,
    )
    assert_error(taken, 409, "CONFLICT")
    changed = client.patch(
        "/api/v1/users/me",
        json={"email": new_email, "current_password": PASSWORD},
        headers=account.headers,
    )
    assert changed.status_code == 200
    assert changed.json()["email"] == new_email.lower()
    assert _login(client, new_email, PASSWORD) == 200


def test_unknown_fields_are_refused(client: TestClient, register: Register) -> None:
    account = register()
    response = client.patch("/api/v1/users/me", json={"roles": ["admin"]}, headers=account.headers)
    assert_error(response, 422, "VALIDATION_ERROR")
    assert client.get("/api/v1/users/me", headers=account.headers).json()["roles"] == ["user"]


def test_preferences_are_replaced_and_size_limited(client: TestClient, register: Register) -> None:
    account = register()
    assert client.get("/api/v1/users/me/preferences", headers=account.headers).json() == {}
    preferences = {"theme": "dark", "editor": {"tab_size": 2, "plugins": ["vim"]}}
    stored = client.put("/api/v1/users/me/preferences", json=preferences, headers=account.headers)
    assert stored.status_code == 200
    assert stored.json() == preferences
    assert client.get("/api/v1/users/me", headers=account.headers).json()["preferences"] == (
        preferences
    )
    replaced = client.put(
        "/api/v1/users/me/preferences", json={"theme": "light"}, headers=account.headers
    )
    assert replaced.json() == {"theme": "light"}

    too_big = {"notes": "x" * (16 * 1024)}
    assert_error(
        client.put("/api/v1/users/me/preferences", json=too_big, headers=account.headers),
        422,
        "VALIDATION_ERROR",
    )
    for not_an_object in ([1, 2], "dark", 3):
        assert_error(
            client.put("/api/v1/users/me/preferences", json=not_an_object, headers=account.headers),
            422,
            "VALIDATION_ERROR",
        )
    assert client.get("/api/v1/users/me/preferences", headers=account.headers).json() == {
        "theme": "light"
    }


def test_preferences_belong_to_their_user(client: TestClient, register: Register) -> None:
    alice, bob = register(), register()
    client.put("/api/v1/users/me/preferences", json={"theme": "dark"}, headers=alice.headers)
    assert client.get("/api/v1/users/me/preferences", headers=bob.headers).json() == {}


def test_search_by_username_prefix(client: TestClient, register: Register) -> None:
    stem = unique_name("Zed")
    caller = register(f"{stem}caller")
    found = [register(f"{stem}{suffix}") for suffix in ("anna", "Bert", "carl")]
    register(unique_name("other"))

    response = client.get(f"/api/v1/users/search?q={stem.lower()}", headers=caller.headers)
    assert response.status_code == 200
    page = response.json()
    assert page["total"] == 3  # the caller is left out
    assert [item["username"] for item in page["items"]] == [a.username for a in found]
    for item in page["items"]:
        assert set(item) == {"id", "username"}  # never another user's email
    assert "@example.com" not in response.text

    second_page = client.get(
        f"/api/v1/users/search?q={stem}&limit=2&offset=2", headers=caller.headers
    ).json()
    assert [item["username"] for item in second_page["items"]] == [found[2].username]
    assert second_page["total"] == 3


def test_search_treats_like_wildcards_literally(client: TestClient, register: Register) -> None:
    caller = register()
    register(unique_name("wild"))
    for query in ("%%", "__", "w%", "w_ld"):
        page = client.get(
            "/api/v1/users/search", params={"q": query}, headers=caller.headers
        ).json()
        assert page["total"] == 0, query


def test_search_needs_two_characters(client: TestClient, register: Register) -> None:
    caller = register()
    for query in ("", "a", " a "):
        response = client.get("/api/v1/users/search", params={"q": query}, headers=caller.headers)
        assert_error(response, 422, "VALIDATION_ERROR")
    assert_error(
        client.get("/api/v1/users/search", headers=caller.headers), 422, "VALIDATION_ERROR"
    )
