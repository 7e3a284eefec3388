"""api/websocket.py: uvicorn's websocket protocol with a lighter idle socket.

The queue and the flag against asyncio's semantics, then the protocol on a real uvicorn
server and socket: echo, keep-alive pings, max size, a denial response, both closes, and
what an open socket no longer holds. tests/e2e run the whole app on it (`espace-sante serve`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

import api.cli
from api.websocket import Flag, LeanWebSocketProtocol, ReceiveQueue
from tests.conftest import free_port

# --- the queue and the flag -------------------------------------------------------------


async def test_the_queue_is_fifo_and_a_getter_waits_for_a_put() -> None:
    queue = ReceiveQueue()
    assert queue.empty()
    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    assert not getter.done()
    queue.put_nowait({"type": "websocket.connect"})
    queue.put_nowait({"type": "websocket.disconnect", "code": 1000})
    assert await getter == {"type": "websocket.connect"}
    assert not queue.empty()
    assert await queue.get() == {"type": "websocket.disconnect", "code": 1000}
    assert queue.empty()


async def test_a_cancelled_getter_loses_nothing_and_passes_its_wake_up_on() -> None:
    queue = ReceiveQueue()
    first = asyncio.create_task(queue.get())
    second = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait({"type": "websocket.connect"})  # wakes `first`…
    first.cancel()  # …which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await asyncio.wait_for(second, 1) == {"type": "websocket.connect"}

    lone = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    lone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await lone
    queue.put_nowait({"type": "websocket.disconnect", "code": 1005})
    assert await queue.get() == {"type": "websocket.disconnect", "code": 1005}


async def test_the_flag_wakes_every_waiter_and_blocks_when_cleared() -> None:
    flag = Flag()
    assert not flag.is_set()
    waiters = [asyncio.create_task(flag.wait()) for _ in range(3)]
    cancelled = asyncio.create_task(flag.wait())
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert not any(w.done() for w in waiters)
    flag.set()
    assert await asyncio.gather(*waiters) == [True, True, True]
    assert await flag.wait() is True  # set: no wait
    flag.clear()
    blocked = asyncio.create_task(flag.wait())
    await asyncio.sleep(0.01)
    assert not blocked.done()
    flag.set()
    assert await asyncio.wait_for(blocked, 1) is True


# --- serve uses it -----------------------------------------------------------------------


def test_serve_runs_uvicorn_with_the_lean_protocol(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from api.config import Settings

    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: seen.update(k))
    settings = Settings.from_env(
        {"ENVIRONMENT": "development", "TWO_FACTOR": "false", "DATA_DIR": str(tmp_path)}
    )
    args = api.cli.build_parser().parse_args(["serve", "--no-migrate"])

    assert api.cli.cmd_serve(args, settings) == 0

    assert seen["ws"] == "api.websocket:LeanWebSocketProtocol"
    assert seen["ws_per_message_deflate"] is False
    config = uvicorn.Config(lambda *a: None, ws=seen["ws"])
    config.load()
    assert config.ws_protocol_class is LeanWebSocketProtocol


# --- on a real server --------------------------------------------------------------------


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Accepts with the offered subprotocol and echoes; /deny answers 403 JSON as api/view.py."""
    assert scope["type"] == "websocket"
    assert await receive() == {"type": "websocket.connect"}
    if scope["path"] == "/deny":
        body = json.dumps({"errors": [{"message": "origin"}]}).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "websocket.http.response.start", "status": 403, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
        return
    subprotocols = scope["subprotocols"]
    await send(
        {"type": "websocket.accept", "subprotocol": subprotocols[0] if subprotocols else None}
    )
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") == "close":
            await send({"type": "websocket.close", "code": 4400, "reason": "asked"})
            return
        await send({"type": "websocket.send", "text": message.get("text") or ""})


@contextlib.asynccontextmanager
async def running_server() -> AsyncIterator[tuple[str, uvicorn.Server]]:
    port = free_port()
    config = uvicorn.Config(
        echo_app,
        port=port,
        ws="api.websocket:LeanWebSocketProtocol",
        ws_max_size=1024,
        ws_ping_interval=0.1,
        ws_ping_timeout=5,
        ws_per_message_deflate=False,
        lifespan="off",
        log_level="warning",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield f"ws://127.0.0.1:{port}", server
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def test_an_open_socket_echoes_pings_and_holds_no_handshake() -> None:
    offered = [Subprotocol("graphql-transport-ws")]
    async with running_server() as (url, server), connect(f"{url}/ws", subprotocols=offered) as ws:
        assert ws.subprotocol == "graphql-transport-ws"
        await ws.send("hello")
        assert await ws.recv() == "hello"
        await asyncio.sleep(0.35)  # a few keep-alive pings, answered by the client
        (protocol,) = server.server_state.connections
        assert isinstance(protocol, LeanWebSocketProtocol)
        assert protocol.last_ping_rtt > 0
        assert protocol.request is None and protocol.response is None
        assert isinstance(protocol.queue, ReceiveQueue)
        assert protocol.queue.empty()
        await ws.send("again")
        assert await ws.recv() == "again"


async def test_an_oversized_message_closes_with_1009() -> None:
    async with running_server() as (url, _server), connect(f"{url}/ws") as ws:
        await ws.send("x" * 2048)
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


async def test_the_denial_response_is_sent_as_is() -> None:
    async with running_server() as (url, _server):
        with pytest.raises(InvalidStatus) as refused:
            await connect(f"{url}/deny")
        response = refused.value.response
        assert response.status_code == 403
        assert response.headers["content-type"] == "application/json"
        assert json.loads(response.body or b"") == {"errors": [{"message": "origin"}]}


async def test_both_sides_can_close_cleanly() -> None:
    async with running_server() as (url, server):
        async with connect(f"{url}/ws") as ws:
            await ws.send("close")
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400
        ws = await connect(f"{url}/ws")
        await ws.close(1000)
        assert ws.close_code == 1000
        for _ in range(100):
            if not server.server_state.connections:
                break
            await asyncio.sleep(0.01)
        assert not server.server_state.connections
