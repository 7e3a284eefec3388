"""broadcaster backends with the traps that lose events removed.

broadcaster stays the transport; `EventBus` (broadcast.py) does the fan-out, supervision
and reconnection, because broadcaster's own `Broadcast` can neither bound its queues nor
recover from a lost connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from urllib.parse import urlparse

from broadcaster import BroadcastBackend
from broadcaster._backends.memory import MemoryBackend
from broadcaster._backends.redis import RedisBackend
from redis import asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff


class SafeRedisBackend(RedisBackend):
    """broadcaster's RedisBackend, fixed for redis-py 8 and made to fail loudly.

    - `subscribe` sets the ready flag only after SUBSCRIBE was sent: the other order lets the
      listener find no subscription, leave `listen()` and wait forever (every event lost).
    - redis-py retries are off: its silent pub/sub reconnect drops the messages published
      meanwhile without telling anyone. A lost connection now ends the listener task, which
      `EventBus` watches, so it can reconnect and tell subscribers to resync.
    - Short socket timeouts, so `publish` fails fast while Redis is down.
    """

    def __init__(self, url: str, *, timeout: float = 1.0) -> None:
        # Not calling super().__init__: it builds a client with default (silent) retries.
        self._conn = redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self._pubsub = self._conn.pubsub()
        self._ready = asyncio.Event()
        self._queue = asyncio.Queue()
        self._listener = None

    @property
    def listener(self) -> asyncio.Task[None] | None:
        """The task reading the pub/sub connection; it ends when the connection is lost."""
        return self._listener

    async def connect(self) -> None:
        # Connect before starting the listener, so a failed connect leaves no orphan task.
        await self._pubsub.connect()  # type: ignore[no-untyped-call]  # untyped in redis-py
        self._listener = asyncio.create_task(self._pubsub_listener(), name="redis-pubsub-listener")

    async def disconnect(self) -> None:
        # Stop the reader before closing its connection, and await it: no pending task left.
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        with contextlib.suppress(Exception):
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        with contextlib.suppress(Exception):
            await self._conn.aclose()

    async def subscribe(self, channel: str) -> None:
        await self._pubsub.subscribe(channel)
        self._ready.set()

    async def publish_many(self, channels: Sequence[str], message: str) -> None:
        """One PUBLISH per channel, in one round trip."""
        if len(channels) == 1:
            await self.publish(channels[0], message)
            return
        async with self._conn.pipeline(transaction=False) as pipe:
            for channel in channels:
                pipe.publish(channel, message)
            await pipe.execute()


def check_url(url: str) -> None:
    """Reject an unsupported URL at construction time rather than at the first connect."""
    scheme = urlparse(url).scheme
    if scheme not in ("redis", "rediss", "memory"):
        raise ValueError(f"unsupported event bus URL scheme: {scheme!r}")


def create_backend(url: str, *, timeout: float) -> BroadcastBackend:
    """A fresh backend for `url` (a new one per (re)connection: no state survives a failure)."""
    check_url(url)
    if urlparse(url).scheme == "memory":
        return MemoryBackend(url)
    return SafeRedisBackend(url, timeout=timeout)
