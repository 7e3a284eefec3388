"""The hand-written and prepared statements of live messaging (bench/FANOUT.md) decide exactly
what the ORM filters they replace decide, for every kind of actor."""

from __future__ import annotations

from datetime import date
from types import SimpleNamespace
from typing import Any, cast
from uuid import UUID, uuid4

import httpx
from tortoise.expressions import Q

from api.context import Info
from models import message as messaging
from models.access import Actor
from models.account import Account
from models.audience import managing_accounts
from models.base import paris_today, utcnow
from models.consent import Block
from models.message import Conversation, Message
from models.patient import Patient, Representation, SpaceStatus
from models.session import authenticate
from resolvers.ids import decode_as
from resolvers.messaging import conversation_filter, managed_patients
from subscriptions.schema import _messages_of, _visible_after
from tests.factories import Person, Staff, make_minor, make_patient, make_professional
from tests.messaging_support import send, started


def info_of(actor: Actor) -> Info:
    now = utcnow()
    primed = SimpleNamespace(prime=lambda *_: None)
    context = SimpleNamespace(
        actor=actor, now=now, today=paris_today(now), loaders=SimpleNamespace(conversation=primed)
    )
    return cast(Info, SimpleNamespace(context=context))


async def _visible_messages(info: Info, conversation_pk: UUID | None) -> Q | None:
    return _messages_of(await conversation_filter(info), conversation_pk)


async def _load_visible(info: Info, pk: UUID, conversation_pk: UUID | None) -> Message | None:
    """The message `pk` through the delivery statement: the first past the one before it."""
    message = await Message.get_or_none(id=pk)
    if message is None or message.seq is None:
        return None
    rows = await _visible_after(info, message.seq - 1, conversation_pk)
    return rows[0] if rows and rows[0].id == pk else None


async def accounts_of(*patients: Person) -> set[UUID]:
    ids = [p.patient.id for p in patients]
    return set(await Account.filter(patient_id__in=ids).values_list("id", flat=True))


async def pro_account(staff: Staff) -> UUID:
    account = await Account.get(professional_id=staff.pk)
    return account.id


class World:
    """Two professionals, a holder with a minor and an adult dependent, another patient."""

    async def build(self, client: httpx.AsyncClient) -> World:
        self.pro = await make_professional("Martin")
        self.blocked_pro = await make_professional("Durand")
        self.alice = await make_patient("Alice")
        self.theo = await make_minor(self.alice)
        self.zoe = await make_patient("Zoé", birth_date=date(1990, 5, 1))  # an adult now
        await Representation.create(
            representative_id=self.alice.patient.id, dependent_id=self.zoe.patient.id
        )
        self.bob = await make_patient("Bob")
        self.closed = await make_patient("Claude")
        self.conversations: list[UUID] = []
        pairs = [
            (self.pro, self.alice),
            (self.pro, self.theo),
            (self.pro, self.zoe),
            (self.pro, self.bob),
            (self.pro, self.closed),
            (self.blocked_pro, self.alice),
        ]
        for staff, person in pairs:
            payload = await started(client, staff, person)
            self.conversations.append(decode_as(payload["conversation"]["id"], "Conversation"))
        await Block.create(patient_id=self.alice.patient.id, professional_id=self.blocked_pro.pk)
        await Patient.filter(id=self.closed.patient.id).update(status=SpaceStatus.CLOSED)
        self.messages = [UUID(str(pk)) for pk in await Message.all().values_list("id", flat=True)]
        tokens = [self.pro.token, self.blocked_pro.token, self.alice.token, self.bob.token]
        tokens += [self.zoe.token]
        self.actors = [await authenticate(token) for token in tokens]
        return self


async def test_delivery_decides_what_the_orm_filter_decides(client: httpx.AsyncClient) -> None:
    world = await World().build(client)
    checked = 0
    for actor in world.actors:
        info = info_of(actor)
        for conversation in [None, *world.conversations, uuid4()]:
            for pk in [*world.messages, uuid4()]:
                visible = await _visible_messages(info, conversation)
                expected = (
                    await Message.filter(visible, id=pk).first() if visible is not None else None
                )
                found = await _load_visible(info, pk, conversation)
                assert (found.id if found else None) == (expected.id if expected else None)
                # and, past any position, the same messages in commit order
                position = (await Message.get(id=pk)).seq if pk in world.messages else 0
                past = await _visible_after(info, position or 0, conversation)
                wanted = (
                    await Message.filter(visible, seq__gt=position or 0).order_by("seq")
                    if visible is not None
                    else []
                )
                assert [m.id for m in past] == [m.id for m in wanted]
                if found is not None:
                    # Loaded with its conversation, for the loader to be primed with.
                    assert isinstance(found.conversation, Conversation)
                    assert found.conversation.id == found.conversation_id
                    checked += 1
    # The holder sees hers and her minor's, not her adult dependent's; the blocked
    # professional and the closed space are cut off.
    assert checked > 10


async def test_the_holder_sees_her_minors_message_live_not_her_adult_dependents(
    client: httpx.AsyncClient,
) -> None:
    world = await World().build(client)
    alice = world.actors[2]
    info = info_of(alice)
    by_conversation = {
        UUID(str(c)): UUID(str(m))
        for m, c in await Message.all().values_list("id", "conversation_id")
    }
    alice_c, theo_c, zoe_c, _, _, blocked_c = world.conversations
    assert await _load_visible(info, by_conversation[alice_c], None) is not None
    assert await _load_visible(info, by_conversation[theo_c], None) is not None
    assert await _load_visible(info, by_conversation[blocked_c], None) is not None
    assert await _load_visible(info, by_conversation[zoe_c], None) is None
    pro_info = info_of(world.actors[0])
    assert await _load_visible(pro_info, by_conversation[blocked_c], None) is None
    assert await _load_visible(pro_info, by_conversation[alice_c], theo_c) is None
    assert await _load_visible(pro_info, by_conversation[theo_c], theo_c) is not None
    assert await _load_visible(info_of(world.actors[1]), by_conversation[blocked_c], None) is None


async def test_visible_conversation_decides_what_the_orm_filter_decides(
    client: httpx.AsyncClient,
) -> None:
    world = await World().build(client)
    for actor in world.actors:
        managed = await managed_patients(info_of(actor), actor)
        where = messaging.visible_conversations(actor, managed)
        for pk in [*world.conversations, uuid4()]:
            expected = await Conversation.filter(where, id=pk).first() if where else None
            found = await messaging.visible_conversation(actor, managed, pk)
            assert (found.id if found else None) == (expected.id if expected else None)
            if found is not None and expected is not None:
                assert found.patient_id == expected.patient_id
                assert found.professional_id == expected.professional_id
                assert found.last_message_at == expected.last_message_at
                assert found.closed_at == expected.closed_at
    pro = world.actors[0]
    alice_c, theo_c, zoe_c, bob_c, _, blocked_c = world.conversations
    visible = {c for c in world.conversations if await messaging.visible_conversation(pro, [], c)}
    assert visible == {alice_c, theo_c, zoe_c, bob_c}  # not the closed space's
    assert await messaging.visible_conversation(world.actors[1], [], blocked_c) is None


async def test_recipients_are_the_pro_the_patient_and_a_minors_representatives(
    client: httpx.AsyncClient,
) -> None:
    world = await World().build(client)
    alice_c, theo_c, zoe_c, bob_c, _, _ = world.conversations
    pro = await pro_account(world.pro)

    async def recipients(pk: UUID) -> set[UUID]:
        return set(await messaging.recipients(await Conversation.get(id=pk)))

    assert await recipients(alice_c) == {pro, *await accounts_of(world.alice)}
    # Théo has no account: his representative is told.
    assert await recipients(theo_c) == {pro, *await accounts_of(world.alice)}
    # Zoé is an adult: Alice no longer represents her.
    assert await recipients(zoe_c) == {pro, *await accounts_of(world.zoe)}
    assert await recipients(bob_c) == {pro, *await accounts_of(world.bob)}
    today = paris_today()
    assert set(await managing_accounts(world.theo.patient.id, today)) == await accounts_of(
        world.alice
    )
    assert set(await managing_accounts(world.zoe.patient.id, today)) == await accounts_of(world.zoe)
    assert await managing_accounts(uuid4(), today) == []


async def test_a_send_moves_the_conversation_and_a_closed_one_takes_nothing(
    client: httpx.AsyncClient,
) -> None:
    pro = await make_professional()
    alice = await make_patient()
    payload = await started(client, pro, alice)
    cid = payload["conversation"]["id"]
    pk = decode_as(cid, "Conversation")

    sent = (await send(client, alice.token, cid, "Merci.")).ok()["sendMessage"]["message"]

    conversation = await Conversation.get(id=pk)
    row = await Message.get(id=decode_as(sent["id"], "Message"))
    assert conversation.last_message_at == row.sent_at
    count = await Message.filter(conversation_id=pk).count()
    await Conversation.filter(id=pk).update(closed_at=utcnow())
    stale: Any = conversation  # as loaded before the close: the statement decides
    actor = await authenticate(pro.token)
    try:
        await messaging.send_message(
            stale,
            actor=actor,
            relation=None,
            body="Trop tard.",
            attachments=[],
            blobs=cast(Any, None),
            max_bytes=1,
            now=utcnow(),
        )
    except Exception as exc:
        assert type(exc).__name__ == "Conflict"
    else:
        raise AssertionError("a closed conversation took a message")
    assert await Message.filter(conversation_id=pk).count() == count
    assert (await Conversation.get(id=pk)).last_message_at == row.sent_at
