"""The GraphQL websocket's short way through the application (api/app.py `GraphQLSocket`).

Each ASGI layer a socket passes through stays suspended as long as the socket lives; these
tests pin that an open subscription's task goes through none of Starlette's HTTP layers,
and that what applies to a socket still applies on the short way: the handshake's budget
(429 with the security headers) and the application's exception handlers."""

from __future__ import annotations

import asyncio
from types import CoroutineType
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.exceptions import WebSocketException

from api.app import GraphQLSocket
from tests.factories import make_patient, make_professional
from tests.test_ws_reauth import MESSAGE_RECEIVED, TRANSPORT_WS, conversation_with, socket_of

HTTP_LAYERS = {
    "ServerErrorMiddleware.__call__",
    "CORSMiddleware.__call__",
    "BudgetMiddleware.__call__",
    "ExceptionMiddleware.__call__",
    "Router.__call__",
    "Router.app",
    "WebSocketRoute.handle",
    "SecurityHeaders.__call__",
}


def _awaited_chain(coroutine: Any) -> list[str]:
    """The qualified names of the coroutines `coroutine` is suspended in, outermost first."""
    names = []
    while isinstance(coroutine, CoroutineType):
        names.append(coroutine.cr_code.co_qualname)
        coroutine = coroutine.cr_await
    return names


async def test_an_open_subscription_passes_through_no_http_layer(
    app: Starlette, http: httpx.AsyncClient
) -> None:
    pro, holder = await make_professional(), await make_patient()
    _, first = await conversation_with(http, pro, holder, "m1")
    async with socket_of(app, TRANSPORT_WS, holder.token) as socket:
        await socket.start(MESSAGE_RECEIVED, {"after": first})
        await socket.receive()  # replayed: the subscription is live
        chains = [
            _awaited_chain(task.get_coro())
            for task in asyncio.all_tasks()
            if getattr(task.get_coro(), "cr_code", None) is type(app).__call__.__code__
        ]
        (chain,) = chains
        assert chain[:2] == ["SecureStarlette.__call__", "GraphQLSocket.__call__"]
        assert not HTTP_LAYERS & set(chain), chain


async def test_the_socket_path_applies_the_applications_exception_handlers(
    app: Starlette, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `WebSocketException` raised by the view closes the socket with its code, as
    Starlette's exception middleware does; an error without a handler propagates."""
    socket_path = app.sockets["/graphql"]  # type: ignore[attr-defined]
    assert isinstance(socket_path, GraphQLSocket)

    async def refusing(scope: Any, receive: Any, send: Any) -> None:
        raise WebSocketException(code=4321, reason="no")

    monkeypatch.setattr(socket_path, "view", refusing)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "path": "/graphql",
        "root_path": "",
        "headers": [],
        "client": ("127.0.0.9", 4242),
        "query_string": b"",
        "subprotocols": [],
    }
    await app(scope, receive, send)
    assert sent == [{"type": "websocket.close", "code": 4321, "reason": "no"}]

    async def crashing(scope: Any, receive: Any, send: Any) -> None:
        raise KeyError("boom")

    monkeypatch.setattr(socket_path, "view", crashing)
    with pytest.raises(KeyError):
        await app(dict(scope), receive, send)
