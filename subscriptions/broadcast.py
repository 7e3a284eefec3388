"""In-process event bus over a broadcaster backend that never loses live events silently.

One backend subscription per channel per process; events fan out to bounded per-subscriber
queues with `put_nowait`, so a slow consumer is dropped (`SubscriberDropped`) instead of
stalling the others or growing memory. A supervisor reconnects with backoff after any
failure and pushes `RESYNC` to every subscription: whoever was not told to resync received
every event. Consumers recover from either signal by replaying from their database cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Final

from broadcaster import BroadcastBackend
from broadcaster._backends.memory import MemoryBackend

from api.encoding import encode_answer
from subscriptions.backends import SafeRedisBackend, check_url, create_backend

logger = logging.getLogger(__name__)

RESYNC: dict[str, Any] = {"type": "resync"}


class SubscriberDropped(Exception):
    """This subscriber's queue overflowed; it must replay from its cursor and resubscribe."""


class _Signal:
    """Queue items that are not published events."""


_RESYNC: Final = _Signal()


class Subscription:
    """Async iterator of the events of one channel, for one consumer.

    Every open websocket holds one while it idles, so it is kept small: a list and at most
    one waiting future, where an `asyncio.Queue` costs ~3.5 KB (three deques and more) and
    even an empty `deque` ~0.7 KB (its first block). The list holds at most `queue_size`
    items, and is usually empty or holds one.
    Wait for it under `asyncio.timeout`, not `asyncio.wait_for` (a task per call).

    It is also the async context manager `EventBus.subscribe` returns (registered on entry,
    forgotten on exit): an `@asynccontextmanager` would keep, for the socket's whole life,
    its own object, a suspended async generator and the loop's weak reference to it.
    """

    __slots__ = ("_bus", "_closed", "_dropped", "_items", "_size", "_waiter", "channel")

    def __init__(self, channel: str, queue_size: int, bus: EventBus | None = None) -> None:
        self.channel = channel
        self._bus = bus
        # Raw JSON is queued and decoded by the consumer: each gets its own dict to mutate.
        self._items: list[str | _Signal] = []
        self._size = queue_size
        self._waiter: asyncio.Future[None] | None = None
        self._dropped = False
        self._closed = False

    async def __aenter__(self) -> Subscription:
        if self._bus is None:
            raise RuntimeError("a subscription is entered through EventBus.subscribe()")
        await self._bus._enter(self)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._bus is not None:
            await self._bus._leave(self)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> dict[str, Any]:
        while True:
            if self._dropped:
                raise SubscriberDropped(self.channel)
            if self._closed:
                raise StopAsyncIteration
            if not self._items:
                await self._wait()
                continue
            item = self._items.pop(0)
            if item is _RESYNC:
                return dict(RESYNC)
            if isinstance(item, str):
                # Another process may publish anything on the channel: skip, don't crash.
                with contextlib.suppress(ValueError):
                    event = json.loads(item)
                    if isinstance(event, dict):
                        return event
                logger.warning("event bus: ignoring a non-object event on %s", self.channel)

    async def _wait(self) -> None:
        # Cancelled (e.g. by `asyncio.timeout`), the future is cancelled too: nothing queued
        # is lost, the next call finds it.
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _offer(self, item: str | _Signal) -> bool:
        if len(self._items) >= self._size:
            return False
        self._items.append(item)
        self._wake()
        return True

    def _drop(self) -> None:
        self._dropped = True
        self._wake()

    def _close(self) -> None:
        self._closed = True
        self._wake()


class EventBus:
    """Publish JSON events and subscribe to channels over `memory://` or `redis://`."""

    op_timeout: float = 1.0  # bound on every backend call, so nothing hangs on a dead Redis
    health_interval: float = 5.0  # seconds between end-to-end probes through the listener

    def __init__(
        self,
        url: str,
        *,
        queue_size: int = 256,
        reconnect_min: float = 0.1,
        reconnect_max: float = 5.0,
    ) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1: queues are bounded")
        check_url(url)
        self._url = url
        self._queue_size = queue_size
        self._reconnect_min = reconnect_min
        self._reconnect_max = reconnect_max
        self._probe_channel = f"eventbus.probe.{uuid.uuid4().hex}"
        self._subscribers: dict[str, set[Subscription]] = {}
        self._backend_channels: set[str] = set()
        self._probes: dict[str, asyncio.Future[bool]] = {}
        self._backend: BroadcastBackend | None = None
        self._up = False
        self._generation = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._supervisor: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        """Connect, or start degraded and keep retrying: the app runs while Redis is down."""
        if self._supervisor is not None:
            raise RuntimeError("EventBus is already connected")
        # Created here, not in __init__, so they bind to the loop that runs the bus.
        self._lock = asyncio.Lock()
        self._failed = asyncio.Event()
        try:
            await self._open()
        except Exception as exc:
            logger.warning("event bus: cannot connect to %s (%r); retrying", self._url, exc)
            await self._close_backend()
        self._supervisor = asyncio.create_task(self._supervise(), name="eventbus-supervisor")

    async def disconnect(self) -> None:
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
            await self._close_backend()
        for subscriptions in self._subscribers.values():
            for subscription in subscriptions:
                subscription._close()
        self._subscribers.clear()

    async def publish(self, channel: str, event: dict[str, Any]) -> bool:
        """Best effort: callers publish after their commit, and a failure must not undo it."""
        return await self.publish_many((channel,), event)

    async def publish_many(self, channels: Sequence[str], event: dict[str, Any]) -> bool:
        """`publish` to each of `channels`, serialised once, within one `op_timeout` in all
        (a dead Redis not yet detected holds a mutation up once, not once per recipient)."""
        if not channels:
            return True
        try:
            message = encode_answer(event).decode()  # what json.dumps took, ~5 times faster
        except (TypeError, ValueError):
            logger.exception(
                "event bus: event for %s is not JSON-serialisable", ", ".join(channels)
            )
            return False
        backend = self._backend
        if not self._up or backend is None:
            logger.warning("event bus: down, event for %s not published", ", ".join(channels))
            return False
        if isinstance(backend, MemoryBackend) and self._backend_channels.isdisjoint(channels):
            # In process only: a channel nobody here listens to has no listener at all, and
            # the backend would only queue the event for the pump to wake up and discard.
            return True
        names = ", ".join(channels)
        try:
            async with asyncio.timeout(self.op_timeout):
                if isinstance(backend, SafeRedisBackend):
                    await backend.publish_many(channels, message)
                else:
                    for channel in channels:
                        await backend.publish(channel, message)
        except Exception as exc:
            logger.warning("event bus: publish to %s failed: %r", names, exc)
            return False
        return True

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[Subscription]:
        """On entry the subscription is live (or will get RESYNC once the backend is back)."""
        return Subscription(channel, self._queue_size, self)

    async def ping(self) -> bool:
        """True when an event just made the round trip through the backend and the listener."""
        if self._supervisor is None or self._supervisor.done():
            return False
        return await self._probe()

    async def _enter(self, subscription: Subscription) -> None:
        if self._supervisor is None:
            raise RuntimeError("EventBus.connect() was not called")
        channel = subscription.channel
        # Registered before the backend subscribes: nothing arriving after SUBSCRIBE is missed.
        self._subscribers.setdefault(channel, set()).add(subscription)
        try:
            await self._backend_subscribe(channel)
        except BaseException:
            await self._leave(subscription)
            raise

    async def _leave(self, subscription: Subscription) -> None:
        subscription._close()
        self._forget(subscription)
        await self._backend_unsubscribe(subscription.channel)

    async def _backend_subscribe(self, channel: str) -> None:
        # The lock makes concurrent first subscribers wait until the channel is really live.
        async with self._lock:
            backend = self._backend
            if not self._up or backend is None or channel in self._backend_channels:
                return  # down: the reconnect subscribes every channel, then sends RESYNC
            try:
                async with asyncio.timeout(self.op_timeout):
                    await backend.subscribe(channel)
            except Exception as exc:
                logger.warning("event bus: subscribe to %s failed: %r", channel, exc)
                self._failed.set()
                return
            self._backend_channels.add(channel)

    async def _backend_unsubscribe(self, channel: str) -> None:
        async with self._lock:
            backend = self._backend
            if channel in self._subscribers or channel not in self._backend_channels:
                return
            self._backend_channels.discard(channel)
            if backend is None:
                return
            try:
                async with asyncio.timeout(self.op_timeout):
                    await backend.unsubscribe(channel)
            except Exception as exc:
                # Harmless: events for it are discarded, and a reconnect forgets it.
                logger.info("event bus: unsubscribe from %s failed: %r", channel, exc)

    def _forget(self, subscription: Subscription) -> None:
        subscriptions = self._subscribers.get(subscription.channel)
        if subscriptions is None:
            return
        subscriptions.discard(subscription)
        if not subscriptions:
            del self._subscribers[subscription.channel]

    async def _open(self) -> None:
        """Connect a fresh backend and subscribe the probe channel and every live channel."""
        backend = create_backend(self._url, timeout=self.op_timeout)
        self._backend = backend
        async with asyncio.timeout(self.op_timeout):
            await backend.connect()
        async with self._lock:
            channels = {self._probe_channel, *self._subscribers}
            for channel in channels:
                async with asyncio.timeout(self.op_timeout):
                    await backend.subscribe(channel)
            self._backend_channels = channels
            self._generation += 1
            self._failed.clear()
            self._watch(asyncio.create_task(self._pump(backend), name="eventbus-pump"))
            if isinstance(backend, SafeRedisBackend) and backend.listener is not None:
                self._watch(backend.listener)
            self._up = True

    async def _close_backend(self) -> None:
        async with self._lock:
            self._up = False
            self._generation += 1  # done-callbacks of the tasks cancelled below are now stale
            tasks, self._tasks = self._tasks, []
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            backend, self._backend = self._backend, None
            self._backend_channels = set()
            if backend is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(self.op_timeout):
                        await backend.disconnect()
            for probe in self._probes.values():
                if not probe.done():
                    probe.set_result(False)

    def _watch(self, task: asyncio.Task[None]) -> None:
        generation = self._generation
        self._tasks.append(task)

        def on_done(task: asyncio.Task[None]) -> None:
            if task.cancelled() or generation != self._generation:
                return
            logger.warning("event bus: %s stopped: %r", task.get_name(), task.exception())
            self._failed.set()

        task.add_done_callback(on_done)

    async def _supervise(self) -> None:
        delay = self._reconnect_min
        while True:
            if not self._up:
                try:
                    await self._open()
                except Exception as exc:
                    logger.warning("event bus: reconnect failed (%r), next in %.1fs", exc, delay)
                    await self._close_backend()
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._reconnect_max)
                    continue
                delay = self._reconnect_min
                logger.warning("event bus: reconnected, sending resync to subscribers")
                self._fan_out(list(self._subscribers), _RESYNC)
            try:
                async with asyncio.timeout(self.health_interval):
                    await self._failed.wait()
            except TimeoutError:
                if await self._probe():
                    continue
                logger.warning("event bus: health probe got no answer")
            await self._close_backend()

    async def _probe(self) -> bool:
        backend = self._backend
        if not self._up or backend is None:
            return False
        token = uuid.uuid4().hex
        answered: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._probes[token] = answered
        try:
            async with asyncio.timeout(self.op_timeout):
                await backend.publish(self._probe_channel, token)
                return await answered
        except Exception:
            return False
        finally:
            del self._probes[token]

    async def _pump(self, backend: BroadcastBackend) -> None:
        while True:
            event = await backend.next_published()
            if event.channel == self._probe_channel:
                answered = self._probes.get(event.message)
                if answered is not None and not answered.done():
                    answered.set_result(True)
            else:
                self._fan_out([event.channel], event.message)

    def _fan_out(self, channels: list[str], item: str | _Signal) -> None:
        for channel in channels:
            for subscription in list(self._subscribers.get(channel, ())):
                if not subscription._offer(item):
                    logger.warning("event bus: slow subscriber on %s dropped", channel)
                    subscription._drop()
                    self._forget(subscription)
