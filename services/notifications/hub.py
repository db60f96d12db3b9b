"""Delivery of notifications to connected clients, across API replicas.

Every notification is published on the Redis channel `<prefix>notifications:<user id>`. Each API
process keeps one pattern subscription for all of them (not one Redis connection per WebSocket)
and hands each message to the queues of that user's sockets in this process. Without Redis
(`make dev`'s fallback) the hub only delivers what this process publishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

QUEUE_SIZE = 256
_RECONNECT_DELAY_S = 1.0


class NotificationHub:
    def __init__(self, redis: Redis | None, key_prefix: str) -> None:
        self._redis = redis
        self._channel_prefix = f"{key_prefix}notifications:"
        self._listeners: dict[str, set[asyncio.Queue[dict[str, Any]]]] = defaultdict(set)
        self._subscriber: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    def channel(self, user_id: uuid.UUID) -> str:
        return f"{self._channel_prefix}{user_id}"

    async def publish(self, user_id: uuid.UUID, message: dict[str, Any]) -> None:
        if self._redis is None:
            self._dispatch(str(user_id), message)
            return
        await self._redis.publish(self.channel(user_id), json.dumps(message, default=str))

    @contextlib.asynccontextmanager
    async def listen(self, user_id: uuid.UUID) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        """A queue receiving this user's notifications for as long as the block runs."""
        await self._ensure_subscribed()
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_SIZE)
        key = str(user_id)
        self._listeners[key].add(queue)
        try:
            yield queue
        finally:
            self._listeners[key].discard(queue)
            if not self._listeners[key]:
                del self._listeners[key]

    async def close(self) -> None:
        if self._subscriber is not None:
            self._subscriber.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._subscriber
            self._subscriber = None

    def _dispatch(self, user_key: str, message: dict[str, Any]) -> None:
        for queue in self._listeners.get(user_key, ()):
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:
                # A client too slow to read loses live events; it can poll to catch up.
                log.warning("notification queue full; dropping a live event")

    async def _ensure_subscribed(self) -> None:
        if self._redis is None:
            return
        if self._subscriber is None or self._subscriber.done():
            self._subscribed.clear()
            self._subscriber = asyncio.create_task(self._subscribe_forever(self._redis))
        await self._subscribed.wait()

    async def _subscribe_forever(self, redis: Redis) -> None:
        while True:
            try:
                async with redis.pubsub() as pubsub:
                    await pubsub.psubscribe(self._channel_prefix + "*")
                    self._subscribed.set()
                    async for message in pubsub.listen():
                        if message["type"] == "pmessage":
                            channel = message["channel"].decode()
                            user_key = channel.removeprefix(self._channel_prefix)
                            self._dispatch(user_key, json.loads(message["data"]))
            except RedisError as exc:
                log.warning("notification subscription lost (%s); reconnecting", exc)
                self._subscribed.set()  # do not keep sockets waiting; they still get polls
                await asyncio.sleep(_RECONNECT_DELAY_S)
