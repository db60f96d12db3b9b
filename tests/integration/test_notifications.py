"""Notifications: stored per user, polled with a cursor, pushed over WebSockets through Redis
so that a socket on one API replica receives what another replica published."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from redis.asyncio import Redis
from starlette.websockets import WebSocketDisconnect

from api.app import create_app
from api.resources import Resources
from api.routes.v1.notifications import WS_CLOSE_TOKEN_ENDED
from cli.processes import free_port
from core.config import Settings
from core.security import create_access_token
from services.notifications.hub import NotificationHub
from services.notifications.schemas import NotificationRead, NotificationType
from services.notifications.service import NotificationService
from tests.helpers import Account, assert_error

Register = Callable[..., Account]


def notify(client: TestClient, user_id: str, payload: dict[str, Any]) -> NotificationRead:
    """Publish through the app's own service, on the app's event loop."""
    app: FastAPI = client.app  # type: ignore[assignment]
    resources: Resources = app.state.resources

    async def send() -> NotificationRead:
        async with resources.session_factory() as session:
            service = NotificationService(session, resources.notification_hub)
            return await service.notify(uuid.UUID(user_id), NotificationType.PREVIEW_READY, payload)

    assert client.portal is not None
    return client.portal.call(send)


def test_poll_with_a_cursor(client: TestClient, register: Register) -> None:
    alice, bob = register(), register()
    sent = [notify(client, alice.id, {"n": index}) for index in range(5)]
    notify(client, bob.id, {"n": "for bob"})

    first = client.get("/api/v1/notifications?limit=3", headers=alice.headers).json()
    assert [item["payload"]["n"] for item in first["items"]] == [0, 1, 2]
    assert first["items"][0]["type"] == "preview.ready"
    rest = client.get(
        f"/api/v1/notifications?after={first['next_after']}", headers=alice.headers
    ).json()
    assert [item["id"] for item in rest["items"]] == [item.id for item in sent[3:]]
    empty = client.get(
        f"/api/v1/notifications?after={rest['next_after']}", headers=alice.headers
    ).json()
    assert empty == {"items": [], "next_after": rest["next_after"]}
    bobs = client.get("/api/v1/notifications", headers=bob.headers).json()["items"]
    assert [item["payload"] for item in bobs] == [{"n": "for bob"}]


def test_poll_needs_a_token_and_a_valid_cursor(client: TestClient, register: Register) -> None:
    assert_error(client.get("/api/v1/notifications"), 401, "AUTH_ERROR")
    account = register()
    assert_error(
        client.get("/api/v1/notifications?after=-1", headers=account.headers),
        422,
        "VALIDATION_ERROR",
    )


def test_websocket_receives_what_another_replica_publishes(
    client: TestClient, register: Register, make_settings: Callable[..., Settings]
) -> None:
    alice, bob = register(), register()
    url = f"/api/v1/notifications/ws?token={alice.token}"
    with (
        TestClient(create_app(make_settings())) as replica,
        client.websocket_connect(url) as socket,
    ):
        notify(replica, bob.id, {"for": "bob"})  # not Alice's: never delivered to her
        published = notify(replica, alice.id, {"build_id": "b1"})
        received = socket.receive_json()
    assert received["id"] == published.id
    assert received["payload"] == {"build_id": "b1"}
    assert received["type"] == "preview.ready"


def test_websocket_replays_from_a_cursor_then_goes_live(
    client: TestClient, register: Register
) -> None:
    account = register()
    missed = [notify(client, account.id, {"n": index}) for index in range(3)]
    url = f"/api/v1/notifications/ws?after={missed[0].id}"
    with client.websocket_connect(url, headers=account.headers) as socket:
        assert socket.receive_json()["id"] == missed[1].id
        assert socket.receive_json()["id"] == missed[2].id
        live = notify(client, account.id, {"n": "live"})
        assert socket.receive_json()["id"] == live.id


@pytest.mark.parametrize("token", ["", "not-a-token"])
def test_websocket_refuses_bad_tokens(client: TestClient, token: str) -> None:
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        client.websocket_connect(f"/api/v1/notifications/ws?token={token}") as socket,
    ):
        socket.receive_json()
    assert refused.value.code == 1008


def test_websocket_closes_when_its_token_expires(
    make_settings: Callable[..., Settings], register: Register
) -> None:
    account = register()
    settings = make_settings()
    short = create_access_token(settings, uuid.UUID(account.id), ["user"], ttl=timedelta(seconds=5))
    with (
        TestClient(create_app(settings)) as client,
        pytest.raises(WebSocketDisconnect) as closed,
        client.websocket_connect(f"/api/v1/notifications/ws?token={short.token}") as socket,
    ):
        socket.receive_json()  # nothing is published: only the close comes
    assert (closed.value.code, closed.value.reason) == (WS_CLOSE_TOKEN_ENDED, "token expired")


def test_websocket_closes_after_a_password_change(
    make_settings: Callable[..., Settings], register: Register
) -> None:
    account = register()
    settings = make_settings(ws_token_recheck_s=0.2)
    with (
        TestClient(create_app(settings)) as client,
        client.websocket_connect("/api/v1/notifications/ws", headers=account.headers) as socket,
    ):
        live = notify(client, account.id, {"n": "before"})
        assert socket.receive_json()["id"] == live.id
        changed = client.patch(
            "/api/v1/users/me",
            json={"password": "a brand new passphrase", "current_password": account.password},
            headers=account.headers,
        )
        assert changed.status_code == 200, changed.text
        with pytest.raises(WebSocketDisconnect) as closed:
            socket.receive_json()
    assert (closed.value.code, closed.value.reason) == (WS_CLOSE_TOKEN_ENDED, "token revoked")


def test_a_dedupe_key_stores_one_notification_and_a_failed_push_is_not_an_error(
    client: TestClient, register: Register
) -> None:
    """A job's outcome announced by every retry of its activity is stored once; a push that
    Redis cannot take is logged, and the stored notification still reaches polling clients."""
    account = register()
    app: FastAPI = client.app  # type: ignore[assignment]
    resources: Resources = app.state.resources
    unreachable = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=2)
    hub = NotificationHub(unreachable, "unused:")

    async def announce() -> list[NotificationRead]:
        sent = []
        for _ in range(3):
            async with resources.session_factory() as session:
                service = NotificationService(session, hub)
                sent.append(
                    await service.notify(
                        uuid.UUID(account.id),
                        NotificationType.PREVIEW_READY,
                        {"build_id": "b1"},
                        dedupe_key="preview-b1/run-1/preview.ready",
                    )
                )
        await unreachable.aclose()
        return sent

    assert client.portal is not None
    sent = client.portal.call(announce)
    assert len({item.id for item in sent}) == 1
    items = client.get("/api/v1/notifications", headers=account.headers).json()["items"]
    assert [item["id"] for item in items] == [sent[0].id]
    assert items[0]["payload"] == {"build_id": "b1"}
