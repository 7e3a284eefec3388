"""The Subscription type. Each event is re-loaded through the subscriber's access rules, and
the subscriber's session re-checked, before anything is sent: a logout, a closed space or an
expired token ends the stream, and the socket closes (4401, api/ws_operations.py). The
operation's context is its own (derived per operation from the socket's, its session checked
just before), refreshed at each delivery.

An establishment's conversations reach every member of its shared inbox. Membership is one
of those rules (a row, read by the delivery's statement): a member removed gets nothing more,
whatever was published to them. Each patient's message delivered to a member is a read of
it, and an access event naming the member and the establishment."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID

import strawberry
from tortoise.expressions import Q, Subquery

from api.context import Info
from api.errors import Forbidden, NotFound, Unauthenticated
from models import message as messaging
from models.access import Actor
from models.base import utcnow
from models.message import Conversation as ConversationModel
from models.message import Message as MessageModel
from models.session import Session
from resolvers import ids
from resolvers.messaging import (
    MESSAGE_ORDER,
    Message,
    conversation_filter,
    log_member_read,
    managed_patients_query,
)
from resolvers.pagination import after_filter, cursor_of, encode_cursor
from subscriptions.broadcast import SubscriberDropped
from subscriptions.channels import account_channel

logger = logging.getLogger(__name__)

REPLAY_BATCH = 200
RECHECK_SECONDS = 30.0  # also re-checked at once on every event and on revocation notices
# How far a catch-up after RESYNC steps back before the newest message delivered: a send
# takes its `sent_at` when its request starts, and commits (then publishes) a little later.
RESYNC_MARGIN = timedelta(seconds=60)
SEEN_MEMORY = 1024


class _Seen:
    """Ids already delivered, so replay and live never send one twice (bounded)."""

    __slots__ = ("_ids",)

    def __init__(self) -> None:
        # A dict keeps insertion order, and is smaller than an OrderedDict: one per socket.
        self._ids: dict[UUID, None] = {}

    def add(self, pk: UUID) -> bool:
        if pk in self._ids:
            return False
        self._ids[pk] = None
        if len(self._ids) > SEEN_MEMORY:
            del self._ids[next(iter(self._ids))]  # the oldest
        return True


async def _visible_messages(info: Info, conversation_pk: UUID | None) -> Q | None:
    return _messages_of(await conversation_filter(info), conversation_pk)


def _messages_of(where: Q | None, conversation_pk: UUID | None) -> Q | None:
    """Filter on Message: those of the conversations `where` lets through (and of one)."""
    if where is None:
        return None
    conversations = ConversationModel.filter(where)
    if conversation_pk is not None:
        conversations = conversations.filter(id=conversation_pk)
    return Q(conversation_id__in=Subquery(conversations.values("id")))


# The statement that loads the message of an event, only if the subscriber may see it, is
# built by the ORM once per kind of subscriber (and per day: a minor's age depends on it),
# from the very filters the other paths use (`visible_conversations`, with the managed
# patients as a subquery instead of a list fetched first), for a template subscriber whose
# ids are the placeholders below. Each event runs it with the real ids in the placeholders'
# places: one statement where there were two, and no query building per event (building it
# took longer than running it).
_MESSAGE = UUID("5ec7e11e-0000-4000-8000-00000000d00d")
_PATIENT = UUID("5ec7e11e-0000-4000-8000-0000000000a1")
_PROFESSIONAL = UUID("5ec7e11e-0000-4000-8000-0000000000b2")
_CONVERSATION = UUID("5ec7e11e-0000-4000-8000-0000000000c3")
_PLACEHOLDERS = {str(u): u for u in (_MESSAGE, _PATIENT, _PROFESSIONAL, _CONVERSATION)}


@dataclass(frozen=True)
class _Statement:
    sql: str
    params: list[Any]
    slots: list[tuple[int, UUID]]  # parameter index, placeholder
    select_related_idx: Any


_StatementKey = tuple[object, ...]
_statements: dict[_StatementKey, _Statement | None] = {}


def _statement(actor: Actor, conversation_pk: UUID | None, today: date) -> _Statement | None:
    key: _StatementKey = (
        actor.role,
        actor.patient_status,
        actor.patient_id is None,
        actor.professional_id is None,
        conversation_pk is None,
        today,
    )
    if key in _statements:
        return _statements[key]
    template = Actor(
        role=actor.role,
        patient_id=_PATIENT if actor.patient_id is not None else None,
        professional_id=_PROFESSIONAL if actor.professional_id is not None else None,
        patient_status=actor.patient_status,
    )
    managed = managed_patients_query(template, today, utcnow())
    where = messaging.visible_conversations(
        template, Subquery(managed.values("id")) if managed is not None else []
    )
    visible = _messages_of(where, _CONVERSATION if conversation_pk is not None else None)
    statement = None
    if visible is not None:
        query = MessageModel.filter(visible, id=_MESSAGE).select_related("conversation")
        query.sql()  # makes the query, as awaiting it would
        sql, params = query.query.get_parameterized_sql()
        slots = [
            (n, _PLACEHOLDERS[str(v)]) for n, v in enumerate(params) if str(v) in _PLACEHOLDERS
        ]
        if [u for _, u in slots].count(_MESSAGE) != 1:
            raise RuntimeError("the message placeholder must appear exactly once")
        if any(isinstance(v, datetime) for v in params):
            # A moment would be the template's, not the event's: never shared.
            raise RuntimeError("a delivery statement cannot depend on the moment")
        statement = _Statement(sql, params, slots, query._select_related_idx)
    if len(_statements) >= 64:  # a few kinds of subscribers a day
        _statements.clear()
    _statements[key] = statement
    return statement


async def _load_visible(info: Info, pk: UUID, conversation_pk: UUID | None) -> MessageModel | None:
    """The message `pk`, with its conversation, if the subscriber may see it."""
    ctx = info.context
    actor = ctx.actor
    statement = _statement(actor, conversation_pk, ctx.today)
    if statement is None:
        return None
    real = {
        _MESSAGE: pk,
        _PATIENT: actor.patient_id,
        _PROFESSIONAL: actor.professional_id,
        _CONVERSATION: conversation_pk,
    }
    values = list(statement.params)
    for index, placeholder in statement.slots:
        value = real[placeholder]
        values[index] = str(value) if isinstance(values[index], str) else value
    db = MessageModel._meta.db
    executor = db.executor_class(
        model=MessageModel, db=db, select_related_idx=statement.select_related_idx
    )
    rows: list[MessageModel] = await executor.execute_select(statement.sql, values)
    return rows[0] if rows else None


async def _session_expiry(session_id: UUID | None) -> datetime | None:
    if session_id is None:
        return None
    row = await Session.get_or_none(id=session_id)
    return row.expires_at if row else None


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description=(
            "New messages of the viewer's conversations (a representative also gets their "
            "minors'). With `after` (a message cursor) it first replays what was stored "
            "since, then goes live, with no gap and no duplicate."
        )
    )
    async def message_received(
        self,
        info: Info,
        conversation_id: strawberry.ID | None = None,
        after: str | None = None,
    ) -> AsyncGenerator[Message, None]:
        ctx = info.context
        actor = ctx.actor
        if actor.anonymous or actor.account_id is None:
            raise Unauthenticated()
        if not (actor.is_patient or actor.is_professional):
            raise Forbidden()
        conversation_pk = None
        if conversation_id is not None:
            conversation_pk = ids.decode_as(str(conversation_id), "Conversation")
            where = await conversation_filter(info)
            if (
                where is None
                or not await ConversationModel.filter(where, id=conversation_pk).exists()
            ):
                raise NotFound()
        start = utcnow()
        # Catch-ups never go back beyond the client's cursor (validated here, early; the
        # filter itself is rebuilt at each catch-up rather than held by an idle socket).
        if after is not None:
            after_filter(MessageModel, MESSAGE_ORDER, after)

        def floor() -> Q:
            if after is not None:
                return after_filter(MessageModel, MESSAGE_ORDER, after)
            return Q(sent_at__gte=start)

        batch: list[MessageModel] | None = None
        row: MessageModel | None = None
        newest: datetime | None = None  # the latest `sent_at` delivered
        seen = _Seen()
        expires_at = await _session_expiry(actor.session_id)

        async def replay(position: str | None) -> list[MessageModel]:
            visible = await _visible_messages(info, conversation_pk)
            if visible is None:
                return []
            query = MessageModel.filter(visible, floor())
            if position is not None:
                query = query.filter(after_filter(MessageModel, MESSAGE_ORDER, position))
            query = query.order_by(*MESSAGE_ORDER.order_by()).limit(REPLAY_BATCH)
            return list(await query.select_related("conversation"))

        while True:
            try:
                async with ctx.services.bus.subscribe(account_channel(actor.account_id)) as sub:
                    # Subscribed first, then catch up from the database: anything committed
                    # meanwhile arrives live too, and `seen` drops the duplicate. The same
                    # catch-up follows every RESYNC (events may have been lost).
                    catch_up = True
                    events = sub.__aiter__()
                    while True:
                        if catch_up:
                            catch_up = False
                            # A message's `sent_at` is taken before its commit: one committed
                            # late may sort before what was already delivered, so step back.
                            position = (
                                _cursor_at(newest - RESYNC_MARGIN) if newest is not None else None
                            )
                            while True:
                                ctx.refresh()
                                if not await ctx.session_alive():
                                    return
                                batch = await replay(position)
                                for row in batch:
                                    position = cursor_of(row, MESSAGE_ORDER)
                                    newest = _later(newest, row.sent_at)
                                    if seen.add(row.id):
                                        await _log_read(info, row)
                                        yield Message.from_model(row)
                                full = len(batch) == REPLAY_BATCH
                                batch = row = None  # not held while idle
                                if not full:
                                    break
                        timeout = RECHECK_SECONDS
                        if expires_at is not None:
                            timeout = min(timeout, (expires_at - utcnow()).total_seconds())
                        if timeout <= 0:  # expired: session_alive marks the session ended
                            if not await ctx.session_alive():
                                return
                            expires_at, timeout = None, RECHECK_SECONDS
                        # Idle from here on: hold nothing of the last delivery (its loaders
                        # alone are ~10 KB a socket); the next event starts afresh anyway.
                        ctx.refresh()
                        event = message = None
                        try:
                            # Not `wait_for`: that makes a task per wait, per socket.
                            async with asyncio.timeout(timeout):
                                event = await events.__anext__()
                        except TimeoutError:
                            if not await ctx.session_alive():
                                return
                            continue
                        ctx.refresh()
                        if not await ctx.session_alive():
                            return
                        kind = event.get("type")
                        if kind == "resync":
                            catch_up = True
                            continue
                        if kind != "message":
                            continue
                        message = await _deliverable(info, event, conversation_pk)
                        if message is not None and seen.add(message.id):
                            newest = _later(newest, message.sent_at)
                            await _log_read(info, message)
                            yield Message.from_model(message)
            except SubscriberDropped:
                # Too slow: resubscribe and catch up from the database.
                logger.info("subscriber dropped for being slow; replaying from the database")
                continue


async def _log_read(info: Info, row: MessageModel) -> None:
    """A member of an establishment receiving a patient's message of its shared inbox reads
    it: an access event naming the member and the establishment (`row.conversation` is
    fetched with the message)."""
    await log_member_read(
        info,
        patient_id=row.conversation.patient_id,
        establishment_id=row.conversation.establishment_id,
        senders=(row.sender_role,),
    )


def _later(newest: datetime | None, moment: datetime) -> datetime:
    return moment if newest is None or moment > newest else newest


def _cursor_at(moment: datetime) -> str:
    return encode_cursor([moment, UUID(int=0)])


async def _deliverable(
    info: Info, event: dict[str, object], conversation_pk: UUID | None
) -> MessageModel | None:
    """The message of an event, only if the subscriber may see it now."""
    try:
        pk = UUID(str(event.get("message")))
    except ValueError:
        return None
    row = await _load_visible(info, pk, conversation_pk)
    if row is not None:
        # Fetched with its conversation: `conversation { … }` costs no second query.
        info.context.loaders.conversation.prime(row.conversation_id, row.conversation)
    return row
