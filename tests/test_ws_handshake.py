"""A socket opened with a session that already ended (review issue 9, finding 1): the token
is refused at `connection_init` and the socket closed with 4403 on both protocols
(graphql-transport-ws and the legacy graphql-ws, which says `connection_error` first), so
that a client tells "authenticate again" from a server error (strawberry's legacy handler
would close with 1011). Nothing is acknowledged, nothing runs on it.

Against the real app and database, in process (tests/asgi_websocket.py).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from models.base import utcnow
from models.crypto import token_hash
from models.session import Session
from tests.asgi_websocket import asgi_websocket
from tests.factories import make_patient
from tests.test_ws_reauth import (
    HOLDER_READ,
    PROTOCOLS,
    SUBSCRIPTIONS_ONLY,
    TRANSPORT_WS,
    Socket,
)
from tests.test_ws_reauth import end_session as end_over_http

REFUSED = {"close": 4403, "reason": "Forbidden"}


async def ended_token(http: httpx.AsyncClient, ending: str) -> str:
    """A token whose session ended as `ending` says (or one never issued)."""
    if ending == "unknown":
        return "not-a-token-of-ours"
    alice = await make_patient()
    assert alice.token is not None
    if ending == "revokedExpiry":  # revoked and expired both: the oldest of the two ends
        past = utcnow() - timedelta(seconds=1)
        await Session.filter(token_hash=token_hash(alice.token)).update(
            expires_at=past, revoked_at=past
        )
    else:
        await end_over_http(http, ending, alice.token)  # asserts HTTP refuses it from now on
    return alice.token


def refusal(protocol: str) -> list[dict[str, Any]]:
    if protocol == TRANSPORT_WS:
        return [REFUSED]
    return [{"type": "connection_error", "payload": {"code": "UNAUTHENTICATED"}}, REFUSED]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("ending", ["logout", "closeSpace", "expiry", "revokedExpiry", "unknown"])
async def test_a_socket_opened_with_an_ended_session_is_refused_with_4403(
    app: Starlette, http: httpx.AsyncClient, protocol: str, ending: str
) -> None:
    token = await ended_token(http, ending)
    async with asgi_websocket(app, protocol) as (raw, accepted):
        assert accepted["type"] == "websocket.accept"
        socket = Socket(raw, protocol)
        await raw.send_json(
            {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
        )
        answered = await socket.until_closed()
        assert answered == refusal(protocol)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_live_session_is_acknowledged_and_its_subscription_runs(
    app: Starlette, protocol: str
) -> None:
    """The control: the same handshake with a live token is acknowledged, and the socket
    serves (a query answers the subscriptions-only refusal, not a closed socket)."""
    alice = await make_patient()
    async with asgi_websocket(app, protocol) as (raw, _):
        socket = Socket(raw, protocol)
        assert (await socket.init(alice.token))["type"] == "connection_ack"
        op_id = await socket.start(HOLDER_READ)
        assert await socket.receive() == socket.error(op_id, SUBSCRIPTIONS_ONLY)
        assert await socket.silent_for(0.2) == []
