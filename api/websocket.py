"""uvicorn's websocket protocol, lighter per idle socket (`ws=` in api/cli.py's `serve`).

`LeanWebSocketProtocol` is uvicorn's default implementation (`websockets-sansio`,
`WebSocketsSansIOProtocol`), unchanged in behaviour: handshake, subprotocol, origin denial
through `websocket.http.response`, keep-alive pings, max size, close. It only holds less
while a socket sits idle, which every subscription does most of its life:

- the receive queue is a list and a waiter list created on demand instead of an
  `asyncio.Queue` (three deques and an `asyncio.Event` with a fourth: ~3.3 KB traced);
- the "transport writable" flag is the same kind of small object instead of an
  `asyncio.Event` (its deque of waiters: ~0.8 KB);
- every attribute lives in a slot: uvicorn's 37 would outgrow the instance dict's key
  sharing (CPython shares keys up to 30), ~1.6 KB a socket;
- the handshake's `Request` and `Response` (websockets `Headers`, ~3 KB with their
  strings) are dropped once uvicorn no longer reads them: the request right after
  `handle_connect` (uvicorn only stores it; the scope has its own copy of the headers),
  the response once the handshake is complete (it is only read to send the 101);
- the request's headers, which websockets' parser generator would keep (the `Request` is a
  local of `ServerProtocol.parse` for the socket's whole life): replaced by an empty,
  shared `Headers` once the handshake is answered (~2.5 KB traced).

Measured with bench/fanout.py, 1,000 idle `messageReceived` subscriptions, memory://
(bench/FANOUT.md, "A lighter websocket protocol"): 52.2 / 53.7 -> 46.3 / 47.0-47.3 KB of
server RSS per idle socket (about -6 KB), and 48.7 -> 43.0 KB of traced Python heap.
With the slots and without the request headers (2026-12-02, the same bench, 1,000 and 2,000
sockets, memory:// and redis://, together with the lighter bus subscription and operation
handler of subscriptions/broadcast.py and api/ws_operations.py): 46.6-49.6 -> 39.0-41.3 KB
per idle socket; tests/test_idle_memory.py keeps each saving.
The attributes replaced are the ones the base class uses, with the methods it calls
(`put_nowait`, `get`, `empty`; `set`, `clear`, `wait`) and asyncio's semantics for them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn._types import ASGIReceiveEvent, ASGISendEvent
from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.datastructures import Headers
from websockets.http11 import Request

# What the handshake request's headers become once read: websockets' parser generator keeps
# the `Request` as a local for the socket's whole life, and nothing reads its headers again.
_READ = Headers()


def _wake_first(waiters: list[asyncio.Future[None]] | None) -> None:
    while waiters:
        waiter = waiters.pop(0)
        if not waiter.done():
            waiter.set_result(None)
            return


class ReceiveQueue:
    """An unbounded FIFO with `asyncio.Queue`'s `put_nowait`, `get` and `empty`."""

    __slots__ = ("_items", "_waiters")

    def __init__(self) -> None:
        self._items: list[ASGIReceiveEvent] = []
        self._waiters: list[asyncio.Future[None]] | None = None

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)

    def put_nowait(self, item: ASGIReceiveEvent) -> None:
        self._items.append(item)
        _wake_first(self._waiters)

    async def get(self) -> ASGIReceiveEvent:
        while not self._items:
            waiter = asyncio.get_running_loop().create_future()
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                waiter.cancel()
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                # As asyncio.Queue: a wake-up received just before the cancellation goes
                # to the next getter, so that no item waits with a getter asleep.
                if self._items and not waiter.cancelled():
                    _wake_first(self._waiters)
                raise
        return self._items.pop(0)


class Flag:
    """`asyncio.Event`'s `set`, `clear`, `is_set` and `wait`, without a deque per instance."""

    __slots__ = ("_value", "_waiters")

    def __init__(self) -> None:
        self._value = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._value

    def set(self) -> None:
        if not self._value:
            self._value = True
            waiters, self._waiters = self._waiters, None
            for waiter in waiters or ():
                if not waiter.done():
                    waiter.set_result(None)

    def clear(self) -> None:
        self._value = False

    async def wait(self) -> bool:
        if self._value:
            return True
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
            return True
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)


class LeanWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's `websockets-sansio` protocol, minus what an idle socket need not keep."""

    # Every attribute the base class sets (all of them in its `__init__`, except the last
    # three, set by `handle_connect` before anything reads them), in slots: with its 37
    # attributes an instance `__dict__` outgrows CPython's key sharing (30 keys) and costs
    # ~1.6 KB a socket; the slots take 8 bytes each.
    __slots__ = (
        *("config", "app", "loop", "logger", "root_path", "asgi_version", "app_state"),
        *("connections", "tasks", "default_headers", "transport", "server", "client"),
        *("scheme", "queue", "handshake_initiated", "handshake_complete", "close_sent"),
        *("disconnected", "close_timer", "close_timeout", "initial_response", "conn"),
        *("read_paused", "writable", "ping_interval", "ping_timeout", "ping_timer"),
        *("pong_timer", "pending_ping_payload", "ping_sent_at", "last_ping_rtt", "frames"),
        *("curr_msg_data_type", "request", "response", "scope"),
    )

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.queue = ReceiveQueue()  # type: ignore[assignment]
        self.writable = Flag()  # type: ignore[assignment]
        self.writable.set()

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        # uvicorn stores the request and never reads it back; the scope has the headers.
        self.request = None  # type: ignore[assignment]
        # websockets' parser generator still holds `event` as a local for the socket's whole
        # life (ServerProtocol.parse): its headers (~2.5 KB with their strings) go, now that
        # the handshake is answered (`conn.accept`, in the base class) and the scope built.
        event.headers = _READ

    async def send(self, message: ASGISendEvent) -> None:
        await super().send(message)
        # The response is read only to send the 101; the handshake is over either way.
        if self.handshake_complete:
            self.response = None  # type: ignore[assignment]
