"""The SQL statements of one `sendMessage` and of its live delivery, counted (issue 16: server
CPU per message, bench/send_message.py), so that they cannot creep back.

The send, over HTTP: the session (authentication), the conversation as the sender may see
it, then one transaction (the conversation's bump, the clock's position, the message) and the
recipients of the publish. The delivery, on the recipient's socket: the session re-check and
the message past the subscriber's position, with its conversation, in one statement that
returns it only while the session is live."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from types import SimpleNamespace
from typing import Any, cast

import httpx
from starlette.applications import Starlette

from models.access import Actor
from models.base import utcnow
from models.message import Message
from models.session import Session, authenticate, session_active
from subscriptions.schema import _visible_after
from tests.asgi_websocket import asgi_websocket
from tests.factories import make_patient, make_professional
from tests.graphql import GraphQLResult, gql
from tests.messaging_support import started
from tests.sql_counter import count_statements

TRANSPORT_WS = "graphql-transport-ws"
SUBSCRIPTION = "subscription { messageReceived { id body sentAt cursor conversation { id } } }"
# As bench/send_message.py sends it.
SEND = (
    "mutation($conversationId: ID!, $body: String!) { sendMessage(input: "
    "{conversationId: $conversationId, body: $body}) { message { id sentAt } } }"
)
TRANSACTION = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")

# The statements of one send, BEGIN/COMMIT aside: session, conversation, bump, position,
# insert, recipients.
SEND_STATEMENTS = 6
# Of one delivery: the message with its conversation, returned only while the session is
# live (the session re-check is the statement's own).
DELIVERY_STATEMENTS = 1


async def send(
    http: httpx.AsyncClient, token: str | None, conversation: str, body: str
) -> GraphQLResult:
    return await gql(http, SEND, {"conversationId": conversation, "body": body}, token=token)


def _work(statements: list[str]) -> list[str]:
    return [s for s in statements if not s.lstrip().upper().startswith(TRANSACTION)]


async def test_a_send_and_its_delivery_run_a_fixed_set_of_statements(
    app: Starlette, http: httpx.AsyncClient
) -> None:
    staff = await make_professional()
    alice = await make_patient()
    conversation = (await started(http, staff, alice))["conversation"]["id"]
    async with asgi_websocket(app, TRANSPORT_WS) as (raw, _):
        init = {"Authorization": f"Bearer {alice.token}"}
        await raw.send_json({"type": "connection_init", "payload": init})
        assert json.loads((await raw.outbox.get())["text"])["type"] == "connection_ack"
        payload = {"query": SUBSCRIPTION}
        await raw.send_json({"id": "1", "type": "subscribe", "payload": payload})

        async def delivered(body: str) -> dict[str, Any]:
            while True:
                event = await asyncio.wait_for(raw.outbox.get(), 10)
                data: dict[str, Any] = json.loads(event["text"])["payload"]["data"]
                if data["messageReceived"]["body"] == body:
                    return data["messageReceived"]

        # Live once a message sent after subscribing arrives.
        for n in range(50):
            (await send(http, staff.token, conversation, f"warm {n}")).ok()
            try:
                await asyncio.wait_for(delivered(f"warm {n}"), 0.5)
                break
            except TimeoutError:
                continue
        for n in range(2):  # twice: the second as the first, nothing cached by the first only
            with count_statements() as statements:
                sent = (await send(http, staff.token, conversation, f"m{n}")).ok()
                got = await delivered(f"m{n}")
                await asyncio.sleep(0.05)  # anything the delivery would still run
            assert got["id"] == sent["sendMessage"]["message"]["id"]
            assert got["body"] == f"m{n}"
            work = _work(statements)
            assert len(work) == SEND_STATEMENTS + DELIVERY_STATEMENTS, "\n".join(work)


async def test_the_send_alone_runs_its_statements_in_one_transaction(
    http: httpx.AsyncClient,
) -> None:
    staff = await make_professional()
    alice = await make_patient()
    conversation = (await started(http, staff, alice))["conversation"]["id"]
    with count_statements() as statements:
        (await send(http, staff.token, conversation, "Bonjour")).ok()
    work = _work(statements)
    assert len(work) == SEND_STATEMENTS, "\n".join(work)
    # In order: who is asking, what they may see, then the transaction (bump, position,
    # insert; Tortoise logs no BEGIN or COMMIT), then whom to tell.
    kinds = [" ".join(s.split()[:3]).upper() for s in work]
    assert kinds[0].startswith("SELECT S.ID,"), kinds
    assert kinds[1].startswith("SELECT C.*"), kinds
    assert kinds[2] == "UPDATE CONVERSATION SET", kinds
    assert kinds[3] == "INSERT INTO CLOCK", kinds
    assert kinds[4] == 'INSERT INTO "MESSAGE"', kinds
    assert kinds[5].startswith("SELECT A.ID,"), kinds


def _info(actor: Actor) -> Any:
    now = utcnow()
    primed = SimpleNamespace(prime=lambda *_: None)
    context = SimpleNamespace(
        actor=actor, now=now, today=now.date(), loaders=SimpleNamespace(conversation=primed)
    )
    return cast(Any, SimpleNamespace(context=context))


async def test_the_delivery_statement_checks_the_session_as_session_active_does(
    http: httpx.AsyncClient,
) -> None:
    """Live, revoked, expired: the delivery's statement answers its messages exactly when
    `session_active` says the session is live, and then the same as without the check."""
    staff = await make_professional()
    alice = await make_patient()
    conversation = (await started(http, staff, alice))["conversation"]["id"]
    (await send(http, staff.token, conversation, "Bonjour")).ok()
    actor = await authenticate(alice.token)
    assert actor.session_id is not None
    info = _info(actor)
    first = await Message.filter(conversation__patient_id=actor.patient_id).order_by("seq").first()
    assert first is not None and first.seq is not None
    unchecked = [m.id for m in await _visible_after(info, first.seq - 1, None)]
    assert len(unchecked) == 2

    async def checked() -> list[object]:
        return [m.id for m in await _visible_after(info, first.seq - 1, None, actor.session_id)]

    assert await session_active(actor.session_id) and await checked() == unchecked
    session = Session.filter(id=actor.session_id)
    await session.update(expires_at=utcnow() - timedelta(seconds=1))
    assert not await session_active(actor.session_id) and await checked() == []
    await session.update(expires_at=utcnow() + timedelta(hours=1))
    assert await session_active(actor.session_id) and await checked() == unchecked
    await session.update(revoked_at=utcnow())
    assert not await session_active(actor.session_id) and await checked() == []
