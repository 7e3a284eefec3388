"""What an idle subscription's socket holds (issue 16: 10,000 idle subscriptions on a worker).

Structural checks on the pieces this project controls (api/websocket.py,
subscriptions/broadcast.py, api/ws_operations.py), each protecting a measured saving
(bench/FANOUT.md, "Where the memory goes"): a dependency upgrade or a refactor that brings
the memory back fails here instead of showing up in a benchmark weeks later.
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.asyncio.client import connect

from api.websocket import LeanWebSocketProtocol
from api.ws_operations import TransportWSHandler
from subscriptions.broadcast import EventBus, Subscription
from tests.factories import make_patient, make_professional
from tests.graphql import gql
from tests.test_websocket_protocol import running_server
from tests.test_ws_reauth import (
    MESSAGE_RECEIVED,
    SEND,
    TRANSPORT_WS,
    conversation_with,
    socket_of,
)

# Set by `handle_connect` (the base class's `__init__` sets all the others).
SET_AT_HANDSHAKE = {"request", "response", "scope"}


async def _app(scope: Any, receive: Any, send: Any) -> None:  # never called
    raise AssertionError


def _config() -> Config:
    config = Config(_app, ws_per_message_deflate=False, lifespan="off")
    config.load()
    return config


async def test_every_attribute_of_uvicorns_protocol_is_a_slot() -> None:
    """Past 30 keys an instance dict is no longer key-shared (~1.6 KB a socket): uvicorn's
    protocol has 37 attributes, all kept in slots. An attribute a new uvicorn adds would
    land in a dict again: it must be added to the slots."""
    base = WebSocketsSansIOProtocol(_config(), ServerState(), {})
    assert set(vars(base)) | SET_AT_HANDSHAKE <= set(LeanWebSocketProtocol.__slots__)
    lean = LeanWebSocketProtocol(_config(), ServerState(), {})
    assert vars(lean) == {}


async def test_an_open_socket_keeps_no_handshake_headers() -> None:
    async with running_server() as (url, server), connect(f"{url}/ws") as ws:
        await ws.send("hello")
        assert await ws.recv() == "hello"
        (protocol,) = server.server_state.connections
        assert isinstance(protocol, LeanWebSocketProtocol)
        # websockets' parser generator keeps the handshake request as a local for the
        # socket's life: its headers are gone, the scope kept its own copy.
        request = protocol.conn.parser.gi_frame.f_locals["request"]
        assert len(request.headers) == 0
        assert any(name == b"sec-websocket-key" for name, _ in protocol.scope["headers"])
        assert vars(protocol) == {}
        await ws.send("again")  # the socket still works
        assert await ws.recv() == "again"


async def test_an_idle_bus_subscription_is_small() -> None:
    """A deque costs ~0.7 KB even empty (its first block): the queue is a list."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        subscriptions = [Subscription(f"account.{n}", 256) for n in range(1000)]
        held = (tracemalloc.get_traced_memory()[0] - before) / len(subscriptions)
    finally:
        tracemalloc.stop()
    assert held < 250, f"{held:.0f} bytes per idle subscription"
    # Still bounded and in order (tests/test_broadcast.py has the full semantics).
    subscription = subscriptions[0]
    assert subscription._offer('{"n": 1}') and subscription._offer('{"n": 2}')
    assert await asyncio.wait_for(subscription.__anext__(), 1) == {"n": 1}
    assert await asyncio.wait_for(subscription.__anext__(), 1) == {"n": 2}
    small = Subscription("account.x", 1)
    assert small._offer("{}") and not small._offer("{}")


def test_the_bus_subscription_is_its_own_context_manager() -> None:
    """No `@asynccontextmanager` (its object, a suspended async generator and the loop's
    weak reference to it) held for the life of every subscribed socket."""
    subscription = EventBus("memory://").subscribe("account.x")
    assert isinstance(subscription, Subscription)


# --- a live subscription over the real app (tests/test_ws_reauth.py's harness) ------------


async def test_an_idle_subscription_keeps_no_init_task_nor_document_names(
    app: Starlette, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    handlers: list[TransportWSHandler] = []
    handle = TransportWSHandler.handle

    async def recorded(self: TransportWSHandler) -> None:
        handlers.append(self)
        await handle(self)

    monkeypatch.setattr(TransportWSHandler, "handle", recorded)
    pro, holder = await make_professional(), await make_patient()
    conversation, first = await conversation_with(http, pro, holder, "m1")
    async with socket_of(app, TRANSPORT_WS, holder.token) as socket:
        op_id = await socket.start(MESSAGE_RECEIVED, {"after": first})
        replayed = await socket.receive()
        assert replayed["id"] == op_id and replayed["payload"]["data"]["messageReceived"]
        (handler,) = handlers
        assert handler.connection_init_timeout_task is None
        assert "_named_documents" not in vars(handler)
        assert list(handler.operations) == [op_id]
        bus = app.state.services.bus
        (subscription,) = [s for subs in bus._subscribers.values() for s in subs]
        assert isinstance(subscription, Subscription) and subscription._items == []
        # Still live: the next message arrives.
        sent = await gql(http, SEND, {"id": conversation, "body": "m2"}, token=pro.token)
        assert sent.ok()
        delivered = await socket.receive()
        assert delivered["payload"]["data"]["messageReceived"]["body"] == "m2"
