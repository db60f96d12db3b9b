from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from jose import jwt

from core.clock import utc_now
from core.config import Settings
from core.security import create_access_token
from tests.helpers import PASSWORD, Account, assert_error, libpq_url, unique_name

Register = Callable[..., Account]


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_register_returns_a_token_and_the_user(client: TestClient) -> None:
    username = unique_name("Alice")
    response = client.post(
        "/api/v1/auth/register",
        json={"email": f"{username}@Example.COM", "username": username, "password": PASSWORD},
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "user"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 24 * 3600
    user = body["user"]
    assert set(user) == {
        "id",
        "email",
        "username",
        "created_at",
        "last_login",
        "preferences",
        "roles",
    }
    assert user["email"] == f"{username.lower()}@example.com"
    assert user["username"] == username  # case kept
    assert user["roles"] == ["user"]
    me = client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.json()["id"] == user["id"]


def test_duplicate_email_or_username_is_a_conflict_ignoring_case(
    client: TestClient, register: Register
) -> None:
    existing = register()
    same_email = client.post(
        "/api/v1/auth/register",
        json={"email": existing.email.upper(), "username": unique_name(), "password": PASSWORD},
    )
    assert assert_error(same_email, 409, "CONFLICT")["details"] == {"fields": ["email"]}
    same_username = client.post(
        "/api/v1/auth/register",
        json={
            "email": f"{unique_name()}@example.com",
            "username": existing.username.upper(),
            "password": PASSWORD,
        },
    )
    assert assert_error(same_username, 409, "CONFLICT")["details"] == {"fields": ["username"]}


def test_concurrent_registrations_of_one_name_create_one_account(client: TestClient) -> None:
    username = unique_name()

    def attempt(index: int) -> int:
        return client.post(
            "/api/v1/auth/register",
            json={
                "email": f"{username}{index}@example.com",
                "username": username,
                "password": PASSWORD,
            },
        ).status_code

    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = sorted(pool.map(attempt, range(4)))
    assert statuses == [201, 409, 409, 409]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"password": "x" * 73}, "password"),
        ({"password": "é" * 37}, "password"),  # 37 characters, 74 bytes
        ({"password": "short"}, "password"),
        ({"email": "not-an-email"}, "email"),
        ({"username": "a"}, "username"),
        ({"username": "bad name!"}, "username"),
        ({"is_admin": True}, "is_admin"),
    ],
)
def test_register_validation(client: TestClient, body: dict[str, object], field: str) -> None:
    name = unique_name()
    payload = {"email": f"{name}@example.com", "username": name, "password": PASSWORD, **body}
    error = assert_error(
        client.post("/api/v1/auth/register", json=payload), 422, "VALIDATION_ERROR"
    )
    fields = error["details"]["fields"]
    assert field in [item["field"] for item in fields]
    # The submitted value is never echoed back.
    assert "x" * 73 not in json.dumps(error)


def test_password_of_exactly_72_bytes_is_accepted(client: TestClient, register: Register) -> None:
    account = register(password="é" * 36)  # 72 bytes
    login = client.post(
        "/api/v1/auth/login", json={"username": account.username, "password": "é" * 36}
    )
    assert login.status_code == 200


def test_login_with_username_or_email_in_any_case(client: TestClient, register: Register) -> None:
    account = register()
    assert client.get("/api/v1/users/me", headers=account.headers).json()["last_login"] is None
    for login in (account.username, account.username.upper(), account.email.upper()):
        response = client.post("/api/v1/auth/login", json={"username": login, "password": PASSWORD})
        assert response.status_code == 200, login
        body = response.json()
        assert set(body) == {"access_token", "token_type", "expires_in"}
    me = client.get(
        "/api/v1/users/me", headers={"Authorization": f"Bearer {body['access_token']}"}
    ).json()
    assert me["last_login"] is not None


def test_wrong_password_and_unknown_user_get_the_same_answer(
    client: TestClient, register: Register
) -> None:
    account = register()
    wrong = client.post(
        "/api/v1/auth/login", json={"username": account.username, "password": "wrong password"}
    )
    unknown = client.post(
        "/api/v1/auth/login", json={"username": unique_name(), "password": "wrong password"}
    )
    assert assert_error(wrong, 401, "AUTH_ERROR") == assert_error(unknown, 401, "AUTH_ERROR")


def test_login_refuses_a_password_over_72_bytes(client: TestClient, register: Register) -> None:
    account = register()
    response = client.post(
        "/api/v1/auth/login", json={"username": account.username, "password": PASSWORD + "x" * 60}
    )
    assert_error(response, 422, "VALIDATION_ERROR")


def test_oauth2_password_form(client: TestClient, register: Register) -> None:
    account = register()
    response = client.post(
        "/api/v1/auth/token", data={"username": account.username, "password": PASSWORD}
    )
    assert response.status_code == 200
    token = response.json()["access_token"]
    assert (
        client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"}).status_code
        == 200
    )
    too_long = client.post(
        "/api/v1/auth/token", data={"username": account.username, "password": "x" * 73}
    )
    assert_error(too_long, 422, "VALIDATION_ERROR")
    wrong = client.post("/api/v1/auth/token", data={"username": account.username, "password": "no"})
    assert_error(wrong, 401, "AUTH_ERROR")


def test_openapi_declares_the_bearer_scheme(client: TestClient) -> None:
    schemes = client.get("/openapi.json").json()["components"]["securitySchemes"]
    assert schemes["OAuth2PasswordBearer"]["flows"]["password"]["tokenUrl"] == "/api/v1/auth/token"


# --- tokens that must be refused -------------------------------------------------------------


def _claims(settings: Settings, user_id: str, **changes: object) -> dict[str, object]:
    now = int(utc_now().timestamp())
    claims: dict[str, object] = {
        "sub": user_id,
        "iat": now,
        "exp": now + 600,
        "roles": ["user"],
        "typ": "access",
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
    }
    claims.update(changes)
    return {key: value for key, value in claims.items() if value is not None}


def _bad_tokens(settings: Settings, account: Account) -> dict[str, str]:
    key = settings.jwt_secret_bytes
    header, payload, signature = account.token.split(".")
    forged_payload = _b64(
        {**json.loads(base64.urlsafe_b64decode(payload + "==")), "roles": ["admin"]}
    )
    return {
        "expired": create_access_token(
            settings,
            uuid.UUID(account.id),
            ["user"],
            now=utc_now() - timedelta(hours=2),
            ttl=timedelta(hours=1),
        ).token,
        "tampered payload": f"{header}.{forged_payload}.{signature}",
        "tampered signature": f"{header}.{payload}.{signature[:-4]}AAAA",
        "another key": jwt.encode(_claims(settings, account.id), "another-key-" * 4, "HS256"),
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(settings, account.id))}.",
        "HS512": jwt.encode(_claims(settings, account.id), key, "HS512"),
        "refresh type": jwt.encode(_claims(settings, account.id, typ="refresh"), key, "HS256"),
        "preview type": jwt.encode(_claims(settings, account.id, typ="preview"), key, "HS256"),
        "no type": jwt.encode(_claims(settings, account.id, typ=None), key, "HS256"),
        "wrong audience": jwt.encode(_claims(settings, account.id, aud="other"), key, "HS256"),
        "wrong issuer": jwt.encode(_claims(settings, account.id, iss="other"), key, "HS256"),
        "no expiry": jwt.encode(_claims(settings, account.id, exp=None), key, "HS256"),
        "subject not a uuid": jwt.encode(_claims(settings, "admin"), key, "HS256"),
        "unknown user": jwt.encode(_claims(settings, str(uuid.uuid4())), key, "HS256"),
        "later generation": jwt.encode(_claims(settings, account.id, gen=1), key, "HS256"),
        "generation not a number": jwt.encode(_claims(settings, account.id, gen="0"), key, "HS256"),
        "garbage": "not.a.token",
        "empty": "",
    }


def test_bad_tokens_are_refused_on_every_authenticated_route(
    client: TestClient, register: Register, settings: Settings
) -> None:
    account = register()
    project = client.post("/api/v1/projects", json={"name": "p"}, headers=account.headers).json()
    routes = [
        ("GET", "/api/v1/users/me"),
        ("PATCH", "/api/v1/users/me"),
        ("GET", "/api/v1/users/me/preferences"),
        ("PUT", "/api/v1/users/me/preferences"),
        ("GET", "/api/v1/users/search?q=ab"),
        ("GET", "/api/v1/projects"),
        ("POST", "/api/v1/projects"),
        ("GET", f"/api/v1/projects/{project['id']}"),
        ("PATCH", f"/api/v1/projects/{project['id']}"),
        ("DELETE", f"/api/v1/projects/{project['id']}"),
    ]
    for name, token in _bad_tokens(settings, account).items():
        for method, path in routes:
            response = client.request(
                method, path, json={}, headers={"Authorization": f"Bearer {token}"}
            )
            assert response.status_code == 401, (name, method, path, response.text)
            assert_error(response, 401, "AUTH_ERROR")
    # The good token still works, and nothing was deleted.
    assert (
        client.get(f"/api/v1/projects/{project['id']}", headers=account.headers).status_code == 200
    )


@pytest.mark.parametrize(
    "authorization", ["", "Bearer", "Basic dXNlcjpwYXNz", "Token abc", "bearer"]
)
def test_missing_or_foreign_authorization_scheme(client: TestClient, authorization: str) -> None:
    response = client.get("/api/v1/users/me", headers={"Authorization": authorization})
    assert_error(response, 401, "AUTH_ERROR")


def test_token_of_a_deleted_user_is_refused(
    client: TestClient, register: Register, database_url: str
) -> None:
    import psycopg

    account = register()
    with psycopg.connect(libpq_url(database_url), autocommit=True) as connection:
        connection.execute("DELETE FROM users WHERE id = %s", (uuid.UUID(account.id),))
    assert_error(client.get("/api/v1/users/me", headers=account.headers), 401, "AUTH_ERROR")


def test_a_password_change_revokes_earlier_access_tokens(
    client: TestClient, register: Register
) -> None:
    account = register()
    login = {"username": account.username, "password": PASSWORD}
    second = client.post("/api/v1/auth/login", json=login).json()["access_token"]
    # Other changes revoke nothing.
    renamed = client.patch(
        "/api/v1/users/me", json={"username": unique_name()}, headers=account.headers
    )
    assert renamed.status_code == 200

    changed = client.patch(
        "/api/v1/users/me",
        json={"password": "a brand new passphrase", "current_password": PASSWORD},
        headers=account.headers,
    )
    assert changed.status_code == 200, changed.text

    for token in (account.token, second):
        revoked = client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
        assert_error(revoked, 401, "AUTH_ERROR")
        assert revoked.headers["WWW-Authenticate"] == "Bearer"
    new_login = {"username": renamed.json()["username"], "password": "a brand new passphrase"}
    fresh = client.post("/api/v1/auth/login", json=new_login)
    assert fresh.status_code == 200
    headers = {"Authorization": f"Bearer {fresh.json()['access_token']}"}
    assert client.get("/api/v1/users/me", headers=headers).status_code == 200
    old_login = {**new_login, "password": PASSWORD}
    assert_error(client.post("/api/v1/auth/login", json=old_login), 401, "AUTH_ERROR")
