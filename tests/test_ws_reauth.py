"""Every operation on a GraphQL websocket is re-authorised (api/ws_operations.py).

Over both protocols (graphql-transport-ws and the legacy graphql-ws), against the real app
and database: a socket whose session ended (logout, closeSpace, expiry) refuses the next
operation with UNAUTHENTICATED and closes with 4401, and so does a running subscription when
its session ends; queries and mutations are refused over the socket (it carries
subscriptions only), before and after a right ends (revokeConsent, blockProfessional, the
end of an emergency window), and write nothing: no change, no access event, no message.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.websockets import WebSocket

from api.app import EspaceSanteGraphQL
from api.config import Settings
from api.context import Context
from api.ws_operations import SessionEnded
from models.account import Account
from models.audit import AccessEvent
from models.base import utcnow
from models.consent import EmergencyAccess
from models.crypto import token_hash
from models.message import Message
from models.record import HealthProfile
from models.session import Session, open_session
from tests.asgi_websocket import AsgiWebSocket, asgi_websocket
from tests.factories import PASSWORD, Person, Staff, make_patient, make_professional
from tests.graphql import gql

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"
PROTOCOLS = [TRANSPORT_WS, LEGACY_WS]
WAIT = 10.0

ENDED = "The session is invalid or has expired."
UNAUTHENTICATED = {"message": ENDED, "extensions": {"code": "UNAUTHENTICATED"}}
SUBSCRIPTIONS_ONLY = {
    "message": (
        "The websocket carries subscriptions only: send queries and mutations to POST /graphql."
    ),
    "extensions": {"code": "BAD_USER_INPUT"},
}

HOLDER_READ = """{ viewer { ... on Patient {
  id healthProfile { allergies } documents(first: 5) { totalCount } } } }"""
PATIENT_READ = """query($id: ID!) { patient(id: $id) {
  id healthProfile { allergies } documents(first: 5) { totalCount } } }"""
UPDATE_PROFILE = """mutation($input: UpdateHealthProfileInput!) {
  updateHealthProfile(input: $input) { healthProfile { allergies } } }"""
MESSAGE_RECEIVED = """subscription($after: String) {
  messageReceived(after: $after) { id body sentAt } }"""
START = """mutation($patientId: ID!) { startConversation(input: {
  patientId: $patientId, subject: "Bilan", body: "m0"}) { conversation { id } } }"""
SEND = """mutation($id: ID!, $body: String!) {
  sendMessage(input: {conversationId: $id, body: $body}) { message { id body sentAt } } }"""
CURSORS = """query($id: ID!) { node(id: $id) { ... on Conversation {
  messages(first: 50) { edges { cursor node { body } } } } } }"""
GRANT = (
    """mutation($input: GrantConsentInput!) { grantConsent(input: $input) { consent { id } } }"""
)
REVOKE = """mutation($id: ID!) { revokeConsent(input: {consentId: $id}) { consent { active } } }"""
BLOCK = """mutation($id: ID!) { blockProfessional(input: {professionalId: $id}) {
  patient { id } } }"""
EMERGENCY = """mutation($id: ID!) { emergencyAccess(input: {patientId: $id, reason: "Malaise"}) {
  patient { id } } }"""
CLOSE_SPACE = """mutation($p: String!) { closeSpace(input: {password: $p}) {
  patient { status } } }"""


# --- harness ------------------------------------------------------------------------------


class Socket:
    """A client of either protocol over `tests.asgi_websocket`; a close arrives as
    `{"close": code, "reason": reason}` among the messages."""

    def __init__(self, raw: AsgiWebSocket, protocol: str) -> None:
        self.raw = raw
        self.protocol = protocol
        self.ids = 0

    async def init(self, token: str | None) -> dict[str, Any]:
        payload = {"Authorization": f"Bearer {token}"} if token else {}
        await self.raw.send_json({"type": "connection_init", "payload": payload})
        return await self.receive()

    async def start(self, query: str, variables: dict[str, Any] | None = None) -> str:
        self.ids += 1
        kind = "subscribe" if self.protocol == TRANSPORT_WS else "start"
        payload = {"query": query, "variables": variables or {}}
        await self.raw.send_json({"id": str(self.ids), "type": kind, "payload": payload})
        return str(self.ids)

    async def receive(self, timeout: float = WAIT) -> dict[str, Any]:
        event = await asyncio.wait_for(self.raw.outbox.get(), timeout)
        if event["type"] == "websocket.close":
            return {"close": event["code"], "reason": event.get("reason", "")}
        message: dict[str, Any] = json.loads(event["text"])
        return message

    async def until_closed(self, timeout: float = WAIT, quiet: float = 1.0) -> list[dict[str, Any]]:
        """The messages up to and including the close: the first within `timeout`, each
        next within `quiet` (a socket left open ends the list after `quiet` seconds)."""
        got: list[dict[str, Any]] = []
        try:
            got.append(await self.receive(timeout))
            while "close" not in got[-1]:
                got.append(await self.receive(quiet))
        except TimeoutError:
            pass
        return got

    async def silent_for(self, seconds: float) -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []
        try:
            while True:
                got.append(await self.receive(seconds))
        except TimeoutError:
            return got

    def error(self, op_id: str, error: dict[str, Any]) -> dict[str, Any]:
        """An operation's `error` message: a list of errors, one error in the legacy protocol."""
        payload = [error] if self.protocol == TRANSPORT_WS else error
        return {"id": op_id, "type": "error", "payload": payload}

    def data(self, op_id: str, data: dict[str, Any]) -> dict[str, Any]:
        kind = "next" if self.protocol == TRANSPORT_WS else "data"
        return {"id": op_id, "type": kind, "payload": {"data": data}}

    def session_end(self) -> list[dict[str, Any]]:
        """How the socket ends with its session: 4401 (the legacy protocol says it first)."""
        close = {"close": 4401, "reason": ENDED}
        if self.protocol == TRANSPORT_WS:
            return [close]
        error = {
            "type": "connection_error",
            "payload": {"code": "UNAUTHENTICATED", "message": ENDED},
        }
        return [error, close]


@asynccontextmanager
async def socket_of(app: Starlette, protocol: str, token: str | None) -> AsyncIterator[Socket]:
    """A socket to /graphql, acknowledged with `token`."""
    async with asgi_websocket(app, protocol) as (raw, accepted):
        assert accepted == {"type": "websocket.accept", "subprotocol": protocol, "headers": []}
        socket = Socket(raw, protocol)
        assert (await socket.init(token))["type"] == "connection_ack"
        yield socket


async def snapshot() -> dict[str, list[dict[str, Any]]]:
    """What an operation refused must leave untouched."""
    return {
        "health_profiles": await HealthProfile.all().order_by("id").values(),
        "access_events": await AccessEvent.all().order_by("id").values(),
        "messages": await Message.all().order_by("id").values(),
    }


async def short_token(person: Person, seconds: float) -> tuple[str, datetime]:
    account = await Account.get(patient_id=person.patient.id)
    opened = await open_session(account, ttl=timedelta(seconds=seconds), now=utcnow())
    assert opened.token is not None and opened.expires_at is not None
    return opened.token, opened.expires_at


async def end_session(http: httpx.AsyncClient, ending: str, token: str) -> None:
    """Ends the session of `token` the way `ending` says (an expiry: its lifetime is made
    over, as time would)."""
    if ending == "logout":
        assert (await gql(http, "mutation { logout }", token=token)).ok() == {"logout": True}
    elif ending == "closeSpace":
        closed = await gql(http, CLOSE_SPACE, {"p": PASSWORD}, token=token)
        assert closed.ok() == {"closeSpace": {"patient": {"status": "CLOSED"}}}
    else:
        past = utcnow() - timedelta(seconds=1)
        assert await Session.filter(token_hash=token_hash(token)).update(expires_at=past) == 1
    # Over HTTP, the token is refused from now on: the reference for the socket.
    refused = await gql(http, HOLDER_READ, token=token)
    assert refused.errors == [UNAUTHENTICATED]


async def conversation_with(
    http: httpx.AsyncClient, pro: Staff, holder: Person, *bodies: str
) -> tuple[str, str]:
    """A conversation the professional starts (m0) then writes `bodies` in: its id, m0's
    cursor."""
    started = await gql(http, START, {"patientId": holder.id}, token=pro.token)
    conversation: str = started.ok()["startConversation"]["conversation"]["id"]
    for body in bodies:
        (await gql(http, SEND, {"id": conversation, "body": body}, token=pro.token)).ok()
    listed = await gql(http, CURSORS, {"id": conversation}, token=pro.token)
    edges = listed.ok()["node"]["messages"]["edges"]
    first: str = next(e["cursor"] for e in edges if e["node"]["body"] == "m0")
    return conversation, first


# --- a session that ended -------------------------------------------------------------------

OPERATIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "query": (HOLDER_READ, {}),
    "mutation": (UPDATE_PROFILE, {"input": {"allergies": ["arachide"]}}),
    "subscription": (MESSAGE_RECEIVED, {"after": None}),
}


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("ending", ["logout", "closeSpace", "expiry"])
@pytest.mark.parametrize("operation", list(OPERATIONS))
async def test_after_its_session_ends_an_operation_on_the_open_socket_is_refused_and_closes_it(
    app: Starlette, http: httpx.AsyncClient, protocol: str, ending: str, operation: str
) -> None:
    alice = await make_patient()
    assert alice.token is not None
    async with socket_of(app, protocol, alice.token) as socket:
        await end_session(http, ending, alice.token)
        before = await snapshot()

        query, variables = OPERATIONS[operation]
        op_id = await socket.start(query, variables)

        assert await socket.until_closed() == [
            socket.error(op_id, UNAUTHENTICATED),
            *socket.session_end(),
        ]
        assert await snapshot() == before


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("ending", ["logout", "closeSpace", "expiry"])
async def test_a_running_subscription_closes_the_socket_when_its_session_ends(
    app: Starlette, http: httpx.AsyncClient, protocol: str, ending: str
) -> None:
    alice = await make_patient()
    doc = await make_professional()
    _, cursor = await conversation_with(http, doc, alice, "m1")
    lifetime = 3.0  # a real expiry: the stream's own timer must notice it
    token, expires_at = await short_token(alice, lifetime if ending == "expiry" else 3600)
    async with socket_of(app, protocol, token) as socket:
        op_id = await socket.start(MESSAGE_RECEIVED, {"after": cursor})
        replayed = await socket.receive()
        assert replayed["id"] == op_id  # the stream is live from here
        assert replayed["payload"]["data"]["messageReceived"]["body"] == "m1"

        if ending != "expiry":
            await end_session(http, ending, token)
        ended = await socket.until_closed(timeout=lifetime + WAIT)

        assert ended == socket.session_end()
        if ending == "expiry":
            assert utcnow() >= expires_at  # ended by the expiry, not before


# --- queries and mutations: never over the socket -------------------------------------------


async def grant_read_write(http: httpx.AsyncClient, holder: Person, pro: Staff) -> str:
    variables = {"input": {"professionalId": pro.id, "access": "READ_WRITE"}}
    granted = await gql(http, GRANT, variables, token=holder.token)
    consent: str = granted.ok()["grantConsent"]["consent"]["id"]
    return consent


async def end_right(http: httpx.AsyncClient, change: str, holder: Person, pro: Staff) -> None:
    if change == "revokeConsent":
        consent = await gql(
            http, "query { viewer { ... on Patient { consents { id } } } }", token=holder.token
        )
        [row] = consent.ok()["viewer"]["consents"]
        (await gql(http, REVOKE, {"id": row["id"]}, token=holder.token)).ok()
    elif change == "blockProfessional":
        (await gql(http, BLOCK, {"id": pro.id}, token=holder.token)).ok()
    else:  # the emergency window is over
        past = utcnow() - timedelta(seconds=1)
        assert await EmergencyAccess.filter(patient_id=holder.patient.id).update(expires_at=past)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("change", ["revokeConsent", "blockProfessional", "emergencyEnds"])
async def test_reads_and_writes_over_the_socket_are_refused_while_a_right_holds_and_after_it_ends(
    app: Starlette, http: httpx.AsyncClient, protocol: str, change: str
) -> None:
    alice = await make_patient()
    doc = await make_professional()
    if change == "emergencyEnds":
        (await gql(http, EMERGENCY, {"id": alice.id}, token=doc.token)).ok()
    else:
        await grant_read_write(http, alice, doc)
    read = (PATIENT_READ, {"id": alice.id})
    write = (UPDATE_PROFILE, {"input": {"patientId": alice.id, "allergies": ["arachide"]}})
    over_http = await gql(http, *read, token=doc.token)
    assert over_http.ok() == {
        "patient": {
            "id": alice.id,
            "healthProfile": {"allergies": []},
            "documents": {"totalCount": 0},
        }
    }
    async with socket_of(app, protocol, doc.token) as socket:
        before = await snapshot()

        answers = []
        for query, variables in (read, write):
            op_id = await socket.start(query, variables)
            answers.append((op_id, await socket.receive()))
        await end_right(http, change, alice, doc)
        for query, variables in (read, write):
            op_id = await socket.start(query, variables)
            answers.append((op_id, await socket.receive()))

        assert [answer for _, answer in answers] == [
            socket.error(op_id, SUBSCRIPTIONS_ONLY) for op_id, _ in answers
        ]
        assert await snapshot() == before  # nothing read, written or logged
        # Over HTTP the right is gone too; the session is not: the socket stays open.
        assert (await gql(http, *read, token=doc.token)).codes == ["NOT_FOUND"]
        assert await socket.silent_for(0.2) == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_no_read_over_the_socket_and_one_access_event_per_read_over_http(
    app: Starlette, http: httpx.AsyncClient, protocol: str
) -> None:
    alice = await make_patient()
    doc = await make_professional()
    await grant_read_write(http, alice, doc)
    async with socket_of(app, protocol, doc.token) as socket:
        over_socket = []
        for _ in range(2):
            op_id = await socket.start(PATIENT_READ, {"id": alice.id})
            over_socket.append((op_id, await socket.receive()))
        for _ in range(2):
            (await gql(http, PATIENT_READ, {"id": alice.id}, token=doc.token)).ok()

        assert [answer for _, answer in over_socket] == [
            socket.error(op_id, SUBSCRIPTIONS_ONLY) for op_id, _ in over_socket
        ]
        rows = await AccessEvent.filter(patient_id=alice.patient.id).order_by("at")
        assert [(r.action.value, r.basis.value, r.actor_id) for r in rows] == [
            ("READ", "CONSENT", doc.pk),
            ("READ", "CONSENT", doc.pk),
        ]
        assert rows[0].request_id != rows[1].request_id


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_message_sent_over_the_socket_is_refused_and_over_http_bears_its_own_time(
    app: Starlette, http: httpx.AsyncClient, protocol: str
) -> None:
    alice = await make_patient()
    doc = await make_professional()
    conversation, _ = await conversation_with(http, doc, alice)
    async with socket_of(app, protocol, doc.token) as socket:
        await asyncio.sleep(0.3)  # what the socket's clock would be late by
        before = await snapshot()

        op_id = await socket.start(SEND, {"id": conversation, "body": "over the socket"})
        answer = await socket.receive()
        sending = datetime.now(UTC)
        sent = await gql(http, SEND, {"id": conversation, "body": "over http"}, token=doc.token)

        assert answer == socket.error(op_id, SUBSCRIPTIONS_ONLY)
        message = sent.ok()["sendMessage"]["message"]
        assert datetime.fromisoformat(message["sentAt"]) >= sending - timedelta(milliseconds=1)
        bodies = await Message.all().order_by("sent_at").values_list("body", flat=True)
        assert bodies == ["m0", "over http"]
        assert len((await snapshot())["messages"]) == len(before["messages"]) + 1


# --- the context of each operation ---------------------------------------------------------


def _websocket() -> WebSocket:
    scope = {"type": "websocket", "path": "/graphql", "headers": [], "client": ("127.0.0.9", 1)}

    async def nothing() -> Any:
        raise AssertionError("not used")

    return WebSocket(scope, receive=nothing, send=nothing)


async def test_each_operation_gets_a_fresh_context_and_a_rechecked_session(
    app: Starlette, http: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await make_patient()
    view = EspaceSanteGraphQL(app.state.services, max_body_bytes=settings.max_request_bytes)
    websocket = _websocket()
    socket_context: Context = await view.get_context(websocket, websocket)
    socket_context.connection_params = {"Authorization": f"Bearer {alice.token}"}
    await view.on_ws_connect(socket_context)
    _ = socket_context.loaders, socket_context.audit  # what a first operation would cache
    await asyncio.sleep(0.01)

    first = await view.operation_context(socket_context)
    second = await view.operation_context(socket_context)

    contexts: list[Context] = [socket_context, first, second]
    assert len({c.request_id for c in contexts}) == 3
    assert socket_context.now < first.now <= second.now <= utcnow()
    assert first._loaders is None and first._audit is None
    assert first.audit is not second.audit and first.loaders is not second.loaders
    assert first.audit.request_id == first.request_id and first.audit.now == first.now
    assert first.actor == second.actor == socket_context.actor
    assert (first.client, first.request, first.services) == (
        socket_context.client,
        websocket,
        app.state.services,
    )

    await end_session(http, "logout", str(alice.token))
    with pytest.raises(SessionEnded) as ended:
        await view.operation_context(socket_context)
    assert ended.value.error.formatted == UNAUTHENTICATED
    assert not view.session_ended(first)
