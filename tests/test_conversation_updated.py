"""conversationUpdated (subscriptions/conversations.py): a conversation pushed again to each
participant, as that participant sees it, when a message moves it, a side reads it (read
receipts) or it is closed; to no one else, and to no one who lost it since (a removed
member, a blocked professional, an ended session), whatever was published to them.

Against the real app and database over in-process websockets (tests/asgi_websocket.py), both
protocols where it matters. graphql-transport-ws never says when a subscription is live
(STACK.md trap 8): `live()` waits until the bus holds each subscriber's channel. "Nothing
arrives" is proven by a later update that does arrive, first: events of one channel keep
their order. The last test publishes through one app and delivers through another app's
bus over a real Redis, as two workers do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest
from starlette.applications import Starlette

from api.app import create_app
from api.config import Settings
from models import message as messaging
from models.access import Actor
from models.account import Account, Role
from models.base import utcnow
from models.message import Conversation as ConversationModel
from resolvers.ids import decode_as
from subscriptions.broadcast import _RESYNC
from subscriptions.channels import account_channel, publish_conversation
from tests.factories import (
    Person,
    Staff,
    make_minor,
    make_operator,
    make_patient,
    make_professional,
)
from tests.graphql import gql
from tests.messaging_support import CLOSE, MARK_READ, send, started
from tests.redis_server import RedisServer
from tests.test_establishments import detach, hospital, start_in
from tests.test_ws_reauth import (
    BLOCK,
    PROTOCOLS,
    TRANSPORT_WS,
    Socket,
    end_session,
    socket_of,
)

WAIT = 5.0

UPDATED = """subscription($id: ID) { conversationUpdated(conversationId: $id) {
  id closed unreadCount lastMessageAt messages(first: 10) { edges { node { body readAt } } } } }"""
START_OWN = """mutation($patientId: ID!) { startConversation(input: {
  patientId: $patientId, subject: "Suivi", body: "c2"}) { conversation { id } } }"""


# --- harness ------------------------------------------------------------------------------


async def account_of(who: Person | Staff) -> UUID:
    if isinstance(who, Person):
        return (await Account.get(patient_id=who.patient.id)).id
    return (await Account.get(professional_id=who.pk)).id


async def live(app: Starlette, *who: Person | Staff) -> None:
    """Until the bus delivers to a subscription of each one's account channel."""
    bus = app.state.services.bus
    for one in who:
        channel = account_channel(await account_of(one))
        async with asyncio.timeout(WAIT):
            while not (bus._subscribers.get(channel) and channel in bus._backend_channels):
                await asyncio.sleep(0.005)


async def subscribe(socket: Socket, conversation: str | None = None) -> str:
    return await socket.start(UPDATED, {"id": conversation})


async def update(socket: Socket, op_id: str) -> dict[str, Any]:
    """The next message of the socket: an update of operation `op_id`."""
    message = await socket.receive(WAIT)
    assert message.get("id") == op_id, message
    assert message["type"] in ("next", "data"), message
    assert "errors" not in message["payload"], message
    conversation: dict[str, Any] = message["payload"]["data"]["conversationUpdated"]
    return conversation


async def refusal(socket: Socket, op_id: str) -> list[str]:
    """The error codes an operation ends with, whichever way its protocol says it."""
    message = await socket.receive(WAIT)
    assert message.get("id") == op_id, message
    if message["type"] == "error":
        payload = message["payload"]
        errors = payload if isinstance(payload, list) else [payload]
    else:
        assert message["type"] in ("next", "data"), message
        assert message["payload"]["data"] is None, message
        errors = message["payload"]["errors"]
        assert (await socket.receive(WAIT))["type"] == "complete"
    return [e["extensions"]["code"] for e in errors]


async def ok(http: httpx.AsyncClient, query: str, variables: dict[str, Any], token: Any) -> Any:
    return (await gql(http, query, variables, token=token)).ok()


async def mark_read(http: httpx.AsyncClient, who: Person | Staff, cid: str) -> None:
    await ok(http, MARK_READ, {"id": cid}, who.token)


def read_receipts(conversation: dict[str, Any]) -> dict[str, bool]:
    """Each message's body, and whether the other side has read it."""
    return {
        e["node"]["body"]: e["node"]["readAt"] is not None
        for e in conversation["messages"]["edges"]
    }


# --- who gets what ----------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_each_change_reaches_the_representative_and_the_professional_only(
    app: Starlette, http: httpx.AsyncClient, protocol: str
) -> None:
    # given a minor's conversation with Dr Bernard, and four subscribers: the minor's
    # representative, the doctor, and another patient and professional
    parent = await make_patient("Claire")
    theo = await make_minor(parent)
    doc = await make_professional()
    bob = await make_patient("Bob")
    eve = await make_professional("Eve")
    cid = (await started(http, doc, theo))["conversation"]["id"]
    async with (
        socket_of(app, protocol, parent.token) as to_parent,
        socket_of(app, protocol, doc.token) as to_doc,
        socket_of(app, protocol, bob.token) as to_bob,
        socket_of(app, protocol, eve.token) as to_eve,
    ):
        ops = {s: await subscribe(s) for s in (to_parent, to_doc, to_bob, to_eve)}
        await live(app, parent, doc, bob, eve)

        # when the representative reads it: both sides, each as they see it (a receipt)
        await mark_read(http, parent, cid)
        for_parent = await update(to_parent, ops[to_parent])
        for_doc = await update(to_doc, ops[to_doc])
        assert (for_parent["id"], for_parent["unreadCount"], for_parent["closed"]) == (
            cid,
            0,
            False,
        )
        assert (for_doc["id"], for_doc["unreadCount"]) == (cid, 0)
        assert read_receipts(for_doc) == {"Bonjour, voici vos résultats.": True}

        # when the doctor writes: a new lastMessageAt, unread for the minor's side only
        sent = (await send(http, doc.token, cid, "m1")).ok()["sendMessage"]["message"]
        for_parent = await update(to_parent, ops[to_parent])
        for_doc = await update(to_doc, ops[to_doc])
        assert (for_parent["unreadCount"], for_parent["lastMessageAt"]) == (1, sent["sentAt"])
        assert (for_doc["unreadCount"], for_doc["lastMessageAt"]) == (0, sent["sentAt"])
        assert read_receipts(for_doc) == {"Bonjour, voici vos résultats.": True, "m1": False}

        # when the doctor closes it
        await ok(http, CLOSE, {"id": cid}, doc.token)
        assert (await update(to_parent, ops[to_parent]))["closed"] is True
        assert (await update(to_doc, ops[to_doc]))["closed"] is True

        # when the doctor starts another conversation with the minor: it arrives too
        other = await ok(http, START_OWN, {"patientId": theo.id}, doc.token)
        new_id = other["startConversation"]["conversation"]["id"]
        for_parent = await update(to_parent, ops[to_parent])
        assert (for_parent["id"], for_parent["unreadCount"]) == (new_id, 1)
        assert (await update(to_doc, ops[to_doc]))["id"] == new_id

        # then those who take no part got nothing; a close already done pushes nothing more
        await ok(http, CLOSE, {"id": cid}, doc.token)
        assert await to_bob.silent_for(0.3) == []
        assert await to_eve.silent_for(0.01) == []
        assert await to_parent.silent_for(0.01) == []
        assert await to_doc.silent_for(0.01) == []


async def test_every_member_of_the_inbox_gets_their_own_unread_count_and_a_removed_one_nothing(
    app: Starlette, http: httpx.AsyncClient
) -> None:
    # given a conversation of the hospital's shared inbox (Roux, Caron) with Alice, another
    # establishment's member (Leroy), and Caron's own conversation with Bob
    world = await hospital(http)
    started_in = (await start_in(http, world.roux, world.alice, world.id)).ok()
    cid = started_in["startConversation"]["conversation"]["id"]
    bob = await make_patient("Bob")
    own = (await started(http, world.caron, bob))["conversation"]["id"]
    protocol = TRANSPORT_WS
    async with (
        socket_of(app, protocol, world.roux.token) as roux,
        socket_of(app, protocol, world.caron.token) as caron,
        socket_of(app, protocol, world.leroy.token) as leroy,
        socket_of(app, protocol, world.alice.token) as alice,
    ):
        ops = {s: await subscribe(s) for s in (roux, caron, leroy, alice)}
        await live(app, world.roux, world.caron, world.leroy, world.alice)

        # when Alice writes: every member has it unread, each for themselves
        (await send(http, world.alice.token, cid, "m1")).ok()
        assert [(await update(s, ops[s]))["unreadCount"] for s in (roux, caron, alice)] == [
            1,
            1,
            1,  # Alice has not read the hospital's first message
        ]

        # when Roux reads it: read for Roux, still unread for Caron, a receipt for Alice
        await mark_read(http, world.roux, cid)
        assert (await update(roux, ops[roux]))["unreadCount"] == 0
        assert (await update(caron, ops[caron]))["unreadCount"] == 1
        for_alice = await update(alice, ops[alice])
        assert read_receipts(for_alice) == {
            "Merci de nous renvoyer le questionnaire d'admission.": False,
            "m1": True,
        }

        # when Caron is removed, and (as a stale publish would) told about the inbox anyway
        await detach(http, world.operator, world.id, world.caron)
        bus = app.state.services.bus
        pk = decode_as(cid, "Conversation")
        await publish_conversation(
            bus, accounts=[await account_of(world.caron)], conversation_id=pk
        )
        (await send(http, world.alice.token, cid, "m2")).ok()
        await mark_read(http, bob, own)

        # then Caron's next update is of their own conversation: nothing of the inbox
        assert (await update(caron, ops[caron]))["id"] == own
        assert (await update(roux, ops[roux]))["unreadCount"] == 1
        assert (await update(alice, ops[alice]))["id"] == cid
        assert await leroy.silent_for(0.3) == []
        assert await caron.silent_for(0.01) == []


async def test_a_blocked_professional_gets_nothing_more_of_the_patients_conversation(
    app: Starlette, http: httpx.AsyncClient
) -> None:
    alice = await make_patient()
    bob = await make_patient("Bob")
    doc = await make_professional()
    cid = (await started(http, doc, alice))["conversation"]["id"]
    with_bob = (await started(http, doc, bob))["conversation"]["id"]
    async with socket_of(app, TRANSPORT_WS, doc.token) as to_doc:
        op_id = await subscribe(to_doc)
        await live(app, doc)
        await mark_read(http, alice, cid)
        assert (await update(to_doc, op_id))["id"] == cid

        # when Alice blocks the doctor, then reads, and an event names it to the doctor
        await ok(http, BLOCK, {"id": doc.id}, alice.token)
        await mark_read(http, alice, cid)
        pk = decode_as(cid, "Conversation")
        bus = app.state.services.bus
        await publish_conversation(bus, accounts=[await account_of(doc)], conversation_id=pk)
        await mark_read(http, bob, with_bob)

        # then the doctor's next update is Bob's conversation
        assert (await update(to_doc, op_id))["id"] == with_bob
        assert await to_doc.silent_for(0.2) == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("ending", ["logout", "closeSpace"])
async def test_an_ended_session_closes_the_stream_before_anything_more(
    app: Starlette, http: httpx.AsyncClient, protocol: str, ending: str
) -> None:
    alice = await make_patient()
    doc = await make_professional()
    cid = (await started(http, doc, alice))["conversation"]["id"]
    assert alice.token is not None
    async with socket_of(app, protocol, alice.token) as to_alice:
        op_id = await subscribe(to_alice)
        await live(app, alice)
        await mark_read(http, doc, cid)
        assert (await update(to_alice, op_id))["id"] == cid

        await end_session(http, ending, alice.token)
        if ending == "logout":  # the conversation is still the doctor's to change
            await mark_read(http, doc, cid)

        assert await to_alice.until_closed() == to_alice.session_end()


async def test_conversation_id_keeps_the_stream_to_one_conversation(
    app: Starlette, http: httpx.AsyncClient
) -> None:
    alice = await make_patient()
    doc = await make_professional()
    first = (await started(http, doc, alice))["conversation"]["id"]
    second = (await started(http, doc, alice))["conversation"]["id"]
    async with socket_of(app, TRANSPORT_WS, alice.token) as to_alice:
        op_id = await subscribe(to_alice, first)
        await live(app, alice)

        await mark_read(http, doc, second)
        (await send(http, doc.token, second, "ailleurs")).ok()
        await mark_read(http, doc, first)

        assert (await update(to_alice, op_id))["id"] == first
        assert await to_alice.silent_for(0.2) == []


# --- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_refused_without_a_session_to_an_operator_and_for_a_conversation_not_visible(
    app: Starlette, http: httpx.AsyncClient, protocol: str
) -> None:
    alice = await make_patient()
    bob = await make_patient("Bob")
    doc = await make_professional()
    blocked = await make_professional("Morel")
    operator = await make_operator()
    cid = (await started(http, doc, alice))["conversation"]["id"]
    theirs = (await started(http, blocked, alice))["conversation"]["id"]
    await ok(http, BLOCK, {"id": blocked.id}, alice.token)
    cases = [
        (None, None, "UNAUTHENTICATED"),
        (None, cid, "UNAUTHENTICATED"),
        (operator.token, None, "FORBIDDEN"),
        (bob.token, cid, "NOT_FOUND"),  # another patient's
        (doc.token, "bm90IGFuIGlk", "NOT_FOUND"),  # not an id
        (blocked.token, theirs, "NOT_FOUND"),  # blocked since
    ]
    for token, conversation, code in cases:
        async with socket_of(app, protocol, token) as socket:
            op_id = await subscribe(socket, conversation)
            assert await refusal(socket, op_id) == [code], (token, conversation)
            await mark_read(http, alice, cid)
            await mark_read(http, alice, theirs)
            assert await socket.silent_for(0.05) == []


# --- after an interruption of the live feed ------------------------------------------------


async def test_after_a_resync_what_changed_meanwhile_is_pushed_again(
    app: Starlette, http: httpx.AsyncClient
) -> None:
    # given Alice's conversations: one read by the doctor and one closed while events
    # were lost, one quiet for hours; and another patient's
    alice = await make_patient()
    bob = await make_patient("Bob")
    doc = await make_professional()
    changed = (await started(http, doc, alice))["conversation"]["id"]
    closed = (await started(http, doc, alice))["conversation"]["id"]
    quiet = (await started(http, doc, alice))["conversation"]["id"]
    (await started(http, doc, bob))["conversation"]["id"]
    hours_ago = utcnow() - timedelta(hours=3)
    await ConversationModel.all().update(last_message_at=hours_ago, created_at=hours_ago)
    async with (
        socket_of(app, TRANSPORT_WS, alice.token) as to_alice,
        socket_of(app, TRANSPORT_WS, alice.token) as to_quiet,
    ):
        op_id = await subscribe(to_alice)
        quiet_op = await subscribe(to_quiet, quiet)
        await live(app, alice)
        bus = app.state.services.bus
        channel = account_channel(await account_of(alice))
        async with asyncio.timeout(WAIT):
            while len(bus._subscribers.get(channel, ())) < 2:
                await asyncio.sleep(0.005)

        # when the doctor reads one and closes another without any event published (as
        # in a Redis outage), then the bus tells its subscribers to resync
        pro = Actor(role=Role.PROFESSIONAL, professional_id=doc.pk)  # type: ignore[arg-type]
        row = await ConversationModel.get(id=decode_as(changed, "Conversation"))
        await messaging.mark_read(row, actor=pro, now=utcnow())
        row = await ConversationModel.get(id=decode_as(closed, "Conversation"))
        await messaging.close_conversation(row, actor=pro, now=utcnow())
        bus._fan_out([channel], _RESYNC)

        # then those changed meanwhile are pushed again, as they are now; with
        # `conversationId`, that conversation is, changed or not
        pushed = {c["id"]: c for c in [await update(to_alice, op_id) for _ in range(2)]}
        assert set(pushed) == {changed, closed}
        assert read_receipts(pushed[changed]) == {"Bonjour, voici vos résultats.": False}
        assert (pushed[changed]["closed"], pushed[closed]["closed"]) == (False, True)
        assert (await update(to_quiet, quiet_op))["id"] == quiet
        assert await to_alice.silent_for(0.2) == []
        assert await to_quiet.silent_for(0.01) == []

        # and the stream goes on live
        await mark_read(http, doc, quiet)
        assert (await update(to_alice, op_id))["id"] == quiet
        assert (await update(to_quiet, quiet_op))["id"] == quiet


# --- two workers over Redis -------------------------------------------------------------------


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    try:
        server = RedisServer()
    except FileNotFoundError:
        pytest.skip("redis-server is not installed")
    server.start()
    yield server
    server.stop()


@pytest.mark.redis
async def test_a_read_through_one_worker_reaches_a_subscriber_of_another_over_redis(
    settings: Settings, redis_server: RedisServer
) -> None:
    over_redis = replace(settings, broadcast_url=redis_server.url)
    first, second = create_app(over_redis), create_app(over_redis)
    async with (
        first.router.lifespan_context(first),
        second.router.lifespan_context(second),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=first, client=("127.0.0.9", 4242)),
            base_url="http://testserver",
        ) as through_first,
    ):
        alice = await make_patient()
        bob = await make_patient("Bob")
        doc = await make_professional()
        cid = (await started(through_first, doc, alice))["conversation"]["id"]
        async with (
            socket_of(second, TRANSPORT_WS, doc.token) as to_doc,
            socket_of(second, TRANSPORT_WS, bob.token) as to_bob,
        ):
            op_id = await subscribe(to_doc)
            await subscribe(to_bob)
            await live(second, doc, bob)

            await mark_read(through_first, alice, cid)
            for_doc = await update(to_doc, op_id)
            assert (for_doc["id"], read_receipts(for_doc)) == (
                cid,
                {"Bonjour, voici vos résultats.": True},
            )
            await ok(through_first, CLOSE, {"id": cid}, doc.token)
            assert (await update(to_doc, op_id))["closed"] is True
            assert await to_bob.silent_for(0.3) == []
