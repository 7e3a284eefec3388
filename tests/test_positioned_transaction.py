"""The transaction that stores a message at its position (models/clock.py `positioned`): on
SQLite one call on the database's thread for the whole of it (the hand-offs cost more CPU
than the statements), elsewhere, or inside another transaction, one statement at a time.
Either way: the same statements in the same order, all or nothing, behind any other open
transaction, and a constraint broken answers Tortoise's IntegrityError (what
models/idempotency.py `once` recognises a lost race by)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from models import clock
from models import message as messaging
from models.base import utcnow
from models.errors import Conflict
from models.message import Conversation, Message
from models.session import authenticate
from resolvers.ids import decode_as
from tests.conftest import PG_URL
from tests.factories import make_patient, make_professional
from tests.messaging_support import started


async def conversation_of(http: httpx.AsyncClient) -> tuple[Conversation, Any]:
    staff = await make_professional()
    alice = await make_patient()
    cid = (await started(http, staff, alice))["conversation"]["id"]
    conversation = await Conversation.get(id=decode_as(cid, "Conversation"))
    return conversation, await authenticate(staff.token)


def bump(conversation_id: uuid.UUID, moment: datetime) -> clock.Write:
    """What `sendMessage` writes first: the conversation's `last_message_at`, if open."""
    return messaging._bumping_open(Conversation._meta.db, conversation_id, moment)


def message_of(conversation: Conversation, body: str, pk: uuid.UUID | None = None) -> Message:
    return Message(
        id=pk or uuid.uuid4(),
        conversation_id=conversation.id,
        sender_role=messaging.SenderRole.PROFESSIONAL,
        sender_professional_id=conversation.professional_id,
        body=body,
        sent_at=utcnow(),
    )


@pytest.fixture(params=["alone", "inside another transaction"])
def nested(request: pytest.FixtureRequest) -> bool:
    """`positioned` alone (on SQLite, the one call), or inside a transaction already open
    (one statement at a time, in a savepoint)."""
    return bool(request.param == "inside another transaction")


async def run(nested: bool, before: list[clock.Write], after: list[clock.Write]) -> int | None:
    if not nested:
        return await clock.positioned(clock.MESSAGES, before, after)
    async with in_transaction():
        return await clock.positioned(clock.MESSAGES, before, after)


async def test_the_writes_are_stored_at_the_next_position(
    http: httpx.AsyncClient, nested: bool
) -> None:
    conversation, _ = await conversation_of(http)
    start = await clock.committed_position(clock.MESSAGES)
    later = utcnow() + timedelta(minutes=5)
    message = message_of(conversation, "Bonjour")
    db = Message._meta.db

    position = await run(
        nested, [bump(conversation.id, later)], [clock.inserting(message, db, position="seq")]
    )

    assert position == start + 1
    assert await clock.committed_position(clock.MESSAGES) == position
    stored = await Message.get(id=message.id)
    assert (stored.seq, stored.body) == (position, "Bonjour")
    assert message._saved_in_db
    assert (await Conversation.get(id=conversation.id)).last_message_at == later


async def test_a_required_write_that_changes_nothing_writes_nothing(
    http: httpx.AsyncClient, nested: bool
) -> None:
    conversation, _ = await conversation_of(http)
    await Conversation.filter(id=conversation.id).update(closed_at=utcnow())
    start = await clock.committed_position(clock.MESSAGES)
    count = await Message.filter(conversation_id=conversation.id).count()
    message = message_of(conversation, "Trop tard")
    db = Message._meta.db

    position = await run(
        nested,
        [bump(conversation.id, utcnow())],
        [clock.inserting(message, db, position="seq")],
    )

    assert position is None
    assert not message._saved_in_db
    assert await clock.committed_position(clock.MESSAGES) == start
    assert await Message.filter(conversation_id=conversation.id).count() == count


async def test_a_broken_constraint_rolls_everything_back_as_an_integrity_error(
    http: httpx.AsyncClient, nested: bool
) -> None:
    conversation, _ = await conversation_of(http)
    before = await Conversation.get(id=conversation.id)
    start = await clock.committed_position(clock.MESSAGES)
    taken = await Message.filter(conversation_id=conversation.id).first()
    assert taken is not None
    again = message_of(conversation, "Doublon", pk=taken.id)  # its primary key is taken
    db = Message._meta.db

    with pytest.raises(IntegrityError):
        await run(
            nested,
            [bump(conversation.id, utcnow() + timedelta(minutes=5))],
            [clock.inserting(again, db, position="seq")],
        )

    assert await clock.committed_position(clock.MESSAGES) == start
    after = await Conversation.get(id=conversation.id)
    assert after.last_message_at == before.last_message_at
    assert (await Message.get(id=taken.id)).body == taken.body


async def test_it_waits_for_a_transaction_already_open_then_takes_the_next_position(
    http: httpx.AsyncClient,
) -> None:
    conversation, _ = await conversation_of(http)
    holds, release = asyncio.Event(), asyncio.Event()
    order: list[str] = []

    async def first() -> int:
        async with in_transaction() as conn:
            position = await clock.next_position(conn, clock.MESSAGES)
            holds.set()
            await release.wait()
            order.append("first commits")
        return position

    async def second() -> int | None:
        await holds.wait()
        message = message_of(conversation, "Après")
        position = await clock.positioned(
            clock.MESSAGES, [], [clock.inserting(message, Message._meta.db, position="seq")]
        )
        order.append("second stored")
        return position

    one, two = asyncio.create_task(first()), asyncio.create_task(second())
    await holds.wait()
    await asyncio.sleep(0.3)
    assert order == []
    release.set()
    positions = await asyncio.gather(one, two)

    assert order == ["first commits", "second stored"]
    assert positions[1] == positions[0] + 1


async def test_a_conversation_closed_after_it_was_read_refuses_the_message(
    http: httpx.AsyncClient,
) -> None:
    """Read open by the sender, closed before the transaction: its bump changes nothing, and
    CONFLICT, with nothing stored."""
    conversation, actor = await conversation_of(http)
    await Conversation.filter(id=conversation.id).update(closed_at=utcnow())
    start = await clock.committed_position(clock.MESSAGES)
    count = await Message.filter(conversation_id=conversation.id).count()

    with pytest.raises(Conflict):
        await send(conversation, actor, "Encore une chose")

    assert await clock.committed_position(clock.MESSAGES) == start
    assert await Message.filter(conversation_id=conversation.id).count() == count


def thread_calls(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The calls sent to the SQLite connection's thread from now on (aiosqlite's private
    `_execute`, which every statement goes through: one call, one hand-off)."""
    connection: Any = Conversation._meta.db._connection
    calls: list[object] = []
    execute = connection._execute

    async def counted(fn: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(fn)
        return await execute(fn, *args, **kwargs)

    monkeypatch.setattr(connection, "_execute", counted)
    return calls


async def send(
    conversation: Conversation, actor: Any, body: str, then: clock.Read | None = None
) -> Message:
    """A message without attachments, sent straight through the model."""
    return await messaging.send_message(
        conversation,
        actor=actor,
        relation=None,
        body=body,
        attachments=[],
        blobs=None,  # type: ignore[arg-type]  # no attachment: never touched
        max_bytes=0,
        now=utcnow(),
        then=then,
    )


@pytest.mark.skipif(bool(PG_URL), reason="the one call is SQLite's")
async def test_on_sqlite_a_send_is_one_call_on_the_database_thread(
    http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    conversation, actor = await conversation_of(http)
    calls = thread_calls(monkeypatch)
    message = await send(conversation, actor, "Une seule fois")

    assert len(calls) == 1
    assert (await Message.get(id=message.id)).seq == message.seq
