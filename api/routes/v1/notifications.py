import asyncio
import contextlib
from typing import Annotated

import anyio
from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect, status

from api.deps import MAX_BIGINT, CurrentUser, Limit, NotificationServiceDep, ResourcesDep
from core.errors import AuthError
from services.auth.service import access_ends, authenticate_access
from services.notifications.schemas import NotificationPage
from services.notifications.service import live_feed

router = APIRouter(prefix="/notifications", tags=["notifications"])


@router.get("")
async def list_notifications(
    user: CurrentUser,
    notifications: NotificationServiceDep,
    after: Annotated[
        int, Query(ge=0, le=MAX_BIGINT, description="Only notifications with a larger id")
    ] = 0,
    limit: Limit = 50,
) -> NotificationPage:
    """Poll: the notifications after `after`, oldest first. Pass `next_after` next time."""
    return await notifications.list_after(user.id, after=after, limit=limit)


# Close code of a socket whose access token expired or was revoked (a password change): the
# client logs in again and reconnects, with `after` set to the last id it received.
WS_CLOSE_TOKEN_ENDED = 4401


@router.websocket("/ws")
async def notifications_socket(
    websocket: WebSocket,
    resources: ResourcesDep,
    token: Annotated[
        str | None, Query(description="Access token (or an Authorization header)")
    ] = None,
    after: Annotated[
        int | None, Query(ge=0, le=MAX_BIGINT, description="Replay from this id first")
    ] = None,
) -> None:
    """Push: each notification as a JSON text message, the same objects the poll returns.

    A bad token is refused before the socket opens (close code 1008). An open socket closes
    with code 4401 when its token expires, and within WS_TOKEN_RECHECK_S of a password change
    that revokes it (reason "token expired" or "token revoked")."""
    header = websocket.headers.get("authorization", "")
    credential = token or header.removeprefix("Bearer ").strip()
    async with resources.read_session_factory() as session:
        try:
            user, claims = await authenticate_access(session, resources.settings, credential)
        except AuthError:
            await websocket.close(code=status.WS_1008_POLICY_VIOLATION, reason="invalid token")
            return
    await websocket.accept()
    feed = live_feed(
        resources.notification_hub, resources.read_session_factory, user.id, after=after
    )

    async def forward() -> None:
        async with contextlib.aclosing(feed) as notifications:
            async for notification in notifications:
                await websocket.send_json(notification.model_dump(mode="json"))

    async def until_disconnect() -> None:
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                await websocket.receive_text()

    async def until_token_ends() -> None:
        reason = await access_ends(
            resources.read_session_factory,
            claims,
            recheck_s=resources.settings.ws_token_recheck_s,
        )
        await websocket.close(code=WS_CLOSE_TOKEN_ENDED, reason=reason)

    tasks = [
        asyncio.create_task(forward()),
        asyncio.create_task(until_disconnect()),
        asyncio.create_task(until_token_ends()),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        # Shielded: a cancellation arriving now (server shutdown) must not cut the cleanup short.
        with anyio.CancelScope(shield=True):
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
