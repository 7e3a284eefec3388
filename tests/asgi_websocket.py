"""A websocket to an ASGI app in the test process, without a server: for tests of the
view's protocol handling (the e2e tests use real sockets against uvicorn)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from starlette.types import ASGIApp

WAIT = 5.0


class AsgiWebSocket:
    def __init__(self) -> None:
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.outbox: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()

    async def send_json(self, message: dict[str, Any]) -> None:
        await self.inbox.put({"type": "websocket.receive", "text": json.dumps(message)})

    async def receive(self) -> MutableMapping[str, Any]:
        """The next ASGI event the app sent (accept, send, close)."""
        return await asyncio.wait_for(self.outbox.get(), timeout=WAIT)

    async def receive_json(self) -> Any:
        return json.loads((await self.receive())["text"])


@asynccontextmanager
async def asgi_websocket(
    app: ASGIApp, subprotocol: str = "graphql-transport-ws"
) -> AsyncIterator[tuple[AsgiWebSocket, MutableMapping[str, Any]]]:
    """Connects to /graphql; yields the socket and the app's `websocket.accept` event."""
    socket = AsgiWebSocket()
    scope = {
        "type": "websocket",
        "path": "/graphql",
        "headers": [],
        "query_string": b"",
        "subprotocols": [subprotocol],
    }
    task = asyncio.create_task(app(scope, socket.inbox.get, socket.outbox.put))
    try:
        await socket.inbox.put({"type": "websocket.connect"})
        yield socket, await socket.receive()
    finally:
        await socket.inbox.put({"type": "websocket.disconnect", "code": 1000})
        await asyncio.wait_for(task, timeout=WAIT)
