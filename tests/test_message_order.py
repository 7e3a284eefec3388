"""Messages in commit order: a message's cursor is its position, taken under one row's lock
as the last step before its commit (models/message.py `Clock`), so that no message
committed later ever sorts before a cursor a client already holds.

The defect this replaced: cursors encoded `sentAt`, taken when the send request started. A
message whose request started first but committed after a later one (another worker, a slow
upload) sorted before it, and a client resuming from the later one's cursor never got it."""

from __future__ import annotations

import asyncio
import base64
import importlib
import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from tortoise import Tortoise, connections
from tortoise.backends.base.executor import EXECUTOR_CACHE
from tortoise.config import TortoiseConfig
from tortoise.migrations.api import migrate as migrate_api

from api.db import tortoise_config
from models import message as messaging
from models.base import utcnow
from models.blobs import BlobStore
from models.clock import MESSAGES, Clock
from models.message import Conversation, Message, ReadMark
from models.session import authenticate
from resolvers.ids import decode_as
from resolvers.pagination import encode_cursor
from tests.factories import make_patient, make_professional
from tests.graphql import gql
from tests.messaging_support import MARK_READ, send, started
from tests.test_ws_reauth import PROTOCOLS, socket_of

PAGE = """query($id: ID!, $after: String) { node(id: $id) { ... on Conversation {
  messages(first: 50, after: $after) { edges { cursor node { body cursor } } } } } }"""
RECEIVED = """subscription($after: String) {
  messageReceived(after: $after) { body cursor } }"""


async def page(http: httpx.AsyncClient, token: str, cid: str, after: str | None) -> list[Any]:
    data = (await gql(http, PAGE, {"id": cid, "after": after}, token=token)).ok()
    edges: list[Any] = data["node"]["messages"]["edges"]
    return edges


async def overtaken(http: httpx.AsyncClient, app: Starlette) -> dict[str, Any]:
    """B sent and committed; then A, whose request started a second before B's, commits:
    what a slower worker does. Returns the ids, tokens and B's cursor."""
    pro, alice = await make_professional("Martin"), await make_patient("Alice")
    cid = (await started(http, pro, alice))["conversation"]["id"]
    b = (await send(http, pro.token, cid, "B")).ok()["sendMessage"]["message"]
    edges = await page(http, alice.token or "", cid, None)
    b_cursor = edges[-1]["cursor"]
    conversation = await Conversation.get(id=decode_as(cid, "Conversation"))
    b_row = await Message.get(id=decode_as(b["id"], "Message"))
    services = app.state.services
    blobs: BlobStore = services.blobs
    await messaging.send_message(
        conversation,
        actor=await authenticate(pro.token),
        relation=None,
        body="A",
        attachments=[],
        blobs=blobs,
        max_bytes=1_000_000,
        now=b_row.sent_at - timedelta(seconds=1),
    )
    return {"cid": cid, "alice": alice.token, "b_cursor": b_cursor, "b": b_row}


async def test_a_message_committed_after_a_cursor_comes_after_it_whatever_its_sent_at(
    http: httpx.AsyncClient, app: Starlette
) -> None:
    world = await overtaken(http, app)

    everything = await page(http, world["alice"], world["cid"], None)
    past_b = await page(http, world["alice"], world["cid"], world["b_cursor"])

    # Commit order: A after B although its sentAt is before B's.
    assert [e["node"]["body"] for e in everything][-2:] == ["B", "A"]
    assert [e["node"]["body"] for e in past_b] == ["A"]
    # Each message's cursor is its edge's.
    assert all(e["cursor"] == e["node"]["cursor"] for e in everything)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_subscriber_resuming_after_b_gets_a(
    http: httpx.AsyncClient, app: Starlette, protocol: str
) -> None:
    world = await overtaken(http, app)
    async with socket_of(app, protocol, world["alice"]) as socket:
        op_id = await socket.start(RECEIVED, {"after": world["b_cursor"]})
        received = await socket.receive()
        assert received["id"] == op_id
        assert received["payload"]["data"]["messageReceived"]["body"] == "A"
        assert await socket.silent_for(0.2) == []


async def test_a_cursor_handed_out_before_positions_still_resumes_there(
    http: httpx.AsyncClient, app: Starlette
) -> None:
    """A cursor of the old form (sentAt, id) stands for its message's position."""
    world = await overtaken(http, app)
    b: Message = world["b"]
    legacy = encode_cursor([b.sent_at, b.id])

    past = await page(http, world["alice"], world["cid"], legacy)

    assert [e["node"]["body"] for e in past] == ["A"]


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!",
        base64.urlsafe_b64encode(json.dumps([-1]).encode()).decode(),
        base64.urlsafe_b64encode(json.dumps(["x"]).encode()).decode(),
        base64.urlsafe_b64encode(json.dumps([2**63]).encode()).decode(),
        base64.urlsafe_b64encode(json.dumps([1, 2, 3]).encode()).decode(),
        base64.urlsafe_b64encode(json.dumps(["not a moment", "not an id"]).encode()).decode(),
    ],
)
async def test_a_made_up_cursor_is_bad_input_on_both_paths(
    http: httpx.AsyncClient, app: Starlette, cursor: str
) -> None:
    pro, alice = await make_professional("Martin"), await make_patient("Alice")
    cid = (await started(http, pro, alice))["conversation"]["id"]

    answer = await gql(http, PAGE, {"id": cid, "after": cursor}, token=alice.token)
    async with socket_of(app, PROTOCOLS[0], alice.token) as socket:
        op_id = await socket.start(RECEIVED, {"after": cursor})
        refused = await socket.receive()

    assert answer.codes == ["BAD_USER_INPUT"]
    assert refused["id"] == op_id
    errors = refused["payload"] if refused["type"] == "error" else refused["payload"]["errors"]
    assert [e["extensions"]["code"] for e in errors] == ["BAD_USER_INPUT"]


async def test_concurrent_sends_take_distinct_positions_in_one_sequence(
    http: httpx.AsyncClient,
) -> None:
    pro, alice = await make_professional("Martin"), await make_patient("Alice")
    cid = (await started(http, pro, alice))["conversation"]["id"]

    answers = await asyncio.gather(*(send(http, pro.token, cid, f"m{n}") for n in range(20)))

    assert [a.errors for a in answers] == [[]] * 20
    positions = [m.seq for m in await Message.all().order_by("seq")]
    assert None not in positions
    assert positions == list(range(positions[0], positions[0] + 21))
    assert (await Clock.get(id=MESSAGES)).value == positions[-1]


def test_the_migration_numbers_the_messages_already_stored(tmp_path: Path) -> None:
    """On SQLite in this process, whatever database the suite runs on: the messages stored
    before take positions in the order their cursors had them (sentAt, then id)."""
    migration = importlib.import_module("models.migrations.0012_message_sequence")
    (_, before) = migration.Migration.dependencies[0]
    url = f"sqlite://{tmp_path / 'old.sqlite3'}"
    config = tortoise_config(url)
    typed = TortoiseConfig.from_dict(config)
    now = utcnow()
    ids = [uuid.uuid4() for _ in range(3)]
    moments = [now, now - timedelta(seconds=5), now]  # the first and last: one moment, by id

    async def run() -> None:
        await Tortoise.init(config=config)
        try:
            await migrate_api(config=typed, app_labels=["models"], target=f"models.{before}")
            db = connections.get("default")
            patient, pro, conversation = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
            await db.execute_query(
                "INSERT INTO patient (id, created_at, nir_hash, first_name, last_name, birth_date,"
                " sex, status, emergency_access_opposed) VALUES (?, ?, ?, 'A', 'B', '1980-01-01',"
                " 'FEMALE', 'ACTIVE', 0)",
                [str(patient), now, "h" * 64],
            )
            await db.execute_query(
                "INSERT INTO professional (id, created_at, rpps, first_name, last_name,"
                " profession, sector) VALUES (?, ?, '10000000001', 'P', 'Q', 'MEDECIN', 'HEALTH')",
                [str(pro), now],
            )
            await db.execute_query(
                "INSERT INTO conversation (id, created_at, patient_id, professional_id, subject,"
                " last_message_at, purpose) VALUES (?, ?, ?, ?, 'S', ?, 'CARE')",
                [str(conversation), now, str(patient), str(pro), now],
            )
            for pk, at in zip(ids, moments, strict=True):
                await db.execute_query(
                    "INSERT INTO message (id, created_at, conversation_id, sender_role, body,"
                    " sent_at) VALUES (?, ?, ?, 'PROFESSIONAL', 'x', ?)",
                    [str(pk), at, str(conversation), at],
                )
            await migrate_api(config=typed, app_labels=["models"], target=None)
            numbered = await Message.all().order_by("seq").values_list("id", "seq")
            clock = await Clock.get(id=MESSAGES)
            assert [(uuid.UUID(str(i)), s) for i, s in numbered] == [
                (ids[1], 1),
                (min(ids[0], ids[2], key=str), 2),
                (max(ids[0], ids[2], key=str), 3),
            ]
            assert clock.value == 3
        finally:
            await Tortoise.close_connections()

    EXECUTOR_CACHE.clear()
    try:
        asyncio.run(run())
    finally:
        EXECUTOR_CACHE.clear()


async def test_a_position_is_not_given_again_before_the_commit_of_the_one_before(
    http: httpx.AsyncClient,
) -> None:
    """The lock that makes positions commit-ordered: a second sender asking for a position
    while the first holds one waits until the first commits (on PostgreSQL, a row lock; on
    SQLite, the one writer), and gets the next one."""
    from tortoise.transactions import in_transaction

    first_holds, release = asyncio.Event(), asyncio.Event()
    order: list[str] = []

    async def first() -> int:
        async with in_transaction() as conn:
            position = await messaging.next_position(conn)
            first_holds.set()
            await release.wait()
            order.append("first commits")
        return position

    async def second() -> int:
        await first_holds.wait()
        async with in_transaction() as conn:
            position = await messaging.next_position(conn)
            order.append("second has its position")
        return position

    one = asyncio.create_task(first())
    two = asyncio.create_task(second())
    await first_holds.wait()
    await asyncio.sleep(0.3)  # the second is blocked meanwhile
    assert order == []
    release.set()
    positions = await asyncio.gather(one, two)

    assert order == ["first commits", "second has its position"]
    assert positions[1] == positions[0] + 1


UNREAD = """query($id: ID!) { node(id: $id) { ... on Conversation {
  unreadCount messages(last: 5) { nodes { body readAt } } } } }"""


async def test_a_message_committed_after_a_read_mark_is_unread_whatever_its_sent_at(
    http: httpx.AsyncClient, app: Starlette
) -> None:
    """The read mark stands for what had committed when it was set: a message whose request
    started before the mark but committed after it was never seen, and stays unread."""
    pro, alice = await make_professional("Martin"), await make_patient("Alice")
    cid = (await started(http, pro, alice))["conversation"]["id"]
    (await gql(http, MARK_READ, {"id": cid}, token=alice.token)).ok()
    mark = await ReadMark.get(conversation_id=decode_as(cid, "Conversation"))
    conversation = await Conversation.get(id=decode_as(cid, "Conversation"))
    await messaging.send_message(
        conversation,
        actor=await authenticate(pro.token),
        relation=None,
        body="late",
        attachments=[],
        blobs=app.state.services.blobs,
        max_bytes=1_000_000,
        now=mark.read_at - timedelta(seconds=1),
    )

    for_alice = (await gql(http, UNREAD, {"id": cid}, token=alice.token)).ok()["node"]
    for_pro = (await gql(http, UNREAD, {"id": cid}, token=pro.token)).ok()["node"]
    (await gql(http, MARK_READ, {"id": cid}, token=alice.token)).ok()
    again = (await gql(http, UNREAD, {"id": cid}, token=pro.token)).ok()["node"]

    assert for_alice["unreadCount"] == 1
    assert [(m["body"], m["readAt"]) for m in for_pro["messages"]["nodes"]][-1] == ("late", None)
    assert again["messages"]["nodes"][-1]["readAt"] is not None
    assert (await gql(http, UNREAD, {"id": cid}, token=alice.token)).ok()["node"][
        "unreadCount"
    ] == 0
