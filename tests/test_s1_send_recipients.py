"""A message's recipients read with its commit (models/clock.py `positioned`'s `then`): on
SQLite in the same call on the database's thread, elsewhere right after the commit; never
read when nothing was written."""

from __future__ import annotations

import httpx
import pytest

from models import message as messaging
from models.base import paris_today, utcnow
from models.errors import Conflict
from models.message import Conversation, Message
from tests.conftest import PG_URL
from tests.test_positioned_transaction import conversation_of, send, thread_calls


async def test_the_recipients_read_with_the_commit_are_those_of_the_conversation(
    http: httpx.AsyncClient,
) -> None:
    conversation, actor = await conversation_of(http)
    read = messaging.recipients_read(conversation)

    message = await send(conversation, actor, "Vos résultats sont arrivés.", read)

    assert (await Message.get(id=message.id)).seq == message.seq
    today = paris_today()
    accounts = await messaging.addressed(conversation, read.rows, today)
    assert sorted(accounts) == sorted(await messaging.recipients(conversation, today))
    assert len(accounts) == 2  # the professional's and the patient's


async def test_a_refused_message_reads_no_recipients(http: httpx.AsyncClient) -> None:
    conversation, actor = await conversation_of(http)
    await Conversation.filter(id=conversation.id).update(closed_at=utcnow())
    read = messaging.recipients_read(conversation)

    with pytest.raises(Conflict):
        await send(conversation, actor, "Vos résultats sont arrivés.", read)

    assert read.rows == []


@pytest.mark.skipif(bool(PG_URL), reason="the one call is SQLite's")
async def test_on_sqlite_a_send_and_its_recipients_are_one_call_on_the_database_thread(
    http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    conversation, actor = await conversation_of(http)
    calls = thread_calls(monkeypatch)
    read = messaging.recipients_read(conversation)
    await send(conversation, actor, "Vos résultats sont arrivés.", read)

    assert len(calls) == 1
    assert len(read.rows) == 2
