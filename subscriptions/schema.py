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
from datetime import date, datetime
from typing import Annotated, Any
from uuid import UUID

import strawberry
from strawberry.types import Info as StrawberryInfo
from tortoise.expressions import Q, Subquery

from api.context import Info
from api.errors import Forbidden, NotFound, Unauthenticated
from models import message as messaging
from models.access import Actor
from models.base import utcnow
from models.catalogue import APP_STREAMS
from models.message import Conversation as ConversationModel
from models.message import Message as MessageModel
from models.session import Session, active_session, active_session_values
from models.sqlite_thread import select_rows
from resolvers import ids
from resolvers.messaging import (
    MESSAGE_ORDER,
    Message,
    conversation_filter,
    current_message_cursor,
    log_member_read,
    managed_patients_query,
)
from resolvers.positions import position_of
from subscriptions.broadcast import SubscriberDropped
from subscriptions.channels import account_channel

logger = logging.getLogger(__name__)

REPLAY_BATCH = 200
RECHECK_SECONDS = 30.0  # also re-checked at once on every event and on revocation notices


def _messages_of(where: Q | None, conversation_pk: UUID | None) -> Q | None:
    """Filter on Message: those of the conversations `where` lets through (and of one)."""
    if where is None:
        return None
    conversations = ConversationModel.filter(where)
    if conversation_pk is not None:
        conversations = conversations.filter(id=conversation_pk)
    return Q(conversation_id__in=Subquery(conversations.values("id")))


# The statement that loads what a subscriber may see past its position (the messages it
# may see now, in commit order, a batch at a time) is built by the ORM once per kind of
# subscriber (and per day: a minor's age depends on it), from the very filters the other
# paths use (`visible_conversations`, with the managed patients as a subquery instead of a
# list fetched first), for a template subscriber whose ids are the placeholders below. Each
# catch-up runs it with the real values in the placeholders' places: one statement, and no
# query building per event (building it took longer than running it).
_POSITION = 5_713_571_357_135_713  # no real position comes near it for centuries
_PATIENT = UUID("5ec7e11e-0000-4000-8000-0000000000a1")
_PROFESSIONAL = UUID("5ec7e11e-0000-4000-8000-0000000000b2")
_CONVERSATION = UUID("5ec7e11e-0000-4000-8000-0000000000c3")
_SESSION = UUID("5ec7e11e-0000-4000-8000-0000000000d4")
_MOMENT = "5ec7e11e-moment"  # the moment the session must be live at
_PLACEHOLDERS: dict[str, object] = {
    str(v): v for v in (_POSITION, _PATIENT, _PROFESSIONAL, _CONVERSATION, _SESSION, _MOMENT)
}


@dataclass(frozen=True)
class _Statement:
    sql: str
    params: list[Any]
    slots: list[tuple[int, object]]  # parameter index, placeholder
    widths: tuple[int, int]  # a row's columns: the message's, then its conversation's


_StatementKey = tuple[object, ...]
_statements: dict[_StatementKey, _Statement | None] = {}


def _with_session(sql: str, params: list[Any]) -> tuple[str, list[Any]]:
    """The statement, returning rows only while the subscriber's session is live
    (`active_session`, models/session.py): a delivery's session re-check in its own
    statement. Its parameters go where the dialect numbers them: `$n` after the others, a
    plain `?` in the order of the text (before LIMIT's)."""
    where, order = sql.index(" WHERE "), sql.rindex(" ORDER BY ")
    if "$1" in sql:
        n = len(params)
        check, at = active_session(f"${n + 1}", f"${n + 2}"), n
    else:
        check, at = active_session("?", "?"), len(params) - sql[order:].count("?")
    sql = f"{sql[:where]} WHERE ({sql[where + 7 : order]}) AND EXISTS ({check}){sql[order:]}"
    return sql, [*params[:at], str(_SESSION), _MOMENT, *params[at:]]


def _statement(
    actor: Actor, conversation_pk: UUID | None, today: date, session: bool = False
) -> _Statement | None:
    key: _StatementKey = (
        actor.role,
        actor.patient_status,
        actor.patient_id is None,
        actor.professional_id is None,
        conversation_pk is None,
        today,
        session,
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
        query = (
            MessageModel.filter(visible, seq__gt=_POSITION)
            .order_by(*MESSAGE_ORDER.order_by())
            .limit(REPLAY_BATCH)
            .select_related("conversation")
        )
        query.sql()  # makes the query, as awaiting it would
        sql, params = query.query.get_parameterized_sql()
        slots = [
            (n, _PLACEHOLDERS[str(v)]) for n, v in enumerate(params) if str(v) in _PLACEHOLDERS
        ]
        if [u for _, u in slots].count(_POSITION) != 1:
            raise RuntimeError("the position placeholder must appear exactly once")
        if any(isinstance(v, datetime) for v in params):
            # A moment would be the template's, not the event's: never shared.
            raise RuntimeError("a delivery statement cannot depend on the moment")
        if session:
            sql, params = _with_session(sql, params)
            slots = [
                (n, _PLACEHOLDERS[str(v)]) for n, v in enumerate(params) if str(v) in _PLACEHOLDERS
            ]
        (_, width, *_), (_, related, *_, path) = query._select_related_idx
        if path != (None, "conversation"):
            raise RuntimeError("a delivery's row is a message, then its conversation")
        statement = _Statement(sql, params, slots, (width, related))
    if len(_statements) >= 64:  # a few kinds of subscribers a day
        _statements.clear()
    _statements[key] = statement
    return statement


async def _visible_after(
    info: Info, position: int, conversation_pk: UUID | None, session_id: UUID | None = None
) -> list[MessageModel]:
    """The next messages past `position` the subscriber may see now, in commit order (at
    most REPLAY_BATCH), each with its conversation. With `session_id`, none unless that
    session is live now, decided in the same statement (an empty answer then leaves open
    whether it is: `Context.session_alive` tells)."""
    ctx = info.context
    actor = ctx.actor
    statement = _statement(actor, conversation_pk, ctx.today, session_id is not None)
    if statement is None:
        return []
    real: dict[object, object] = {
        _POSITION: position,
        _PATIENT: actor.patient_id,
        _PROFESSIONAL: actor.professional_id,
        _CONVERSATION: conversation_pk,
    }
    if session_id is not None:
        real[_SESSION], real[_MOMENT] = active_session_values(session_id, utcnow())
    values = list(statement.params)
    for index, placeholder in statement.slots:
        value = real[placeholder]
        if placeholder is _MOMENT:
            values[index] = value
        else:
            values[index] = str(value) if isinstance(values[index], str) else value
    found = await select_rows(MessageModel._meta.db, statement.sql, values)
    rows = [_with_conversation(row, *statement.widths) for row in found]
    for row in rows:
        # Fetched with its conversation: `conversation { … }` costs no second query.
        ctx.loaders.conversation.prime(row.conversation_id, row.conversation)
    return rows


def _with_conversation(row: Any, width: int, related: int) -> MessageModel:
    """A message and its conversation from their joined row, as the ORM's `select_related`
    makes them (`BaseExecutor.execute_select`): the conversation's columns are named
    `conversation.<column>`."""
    items = list(dict(row).items())
    message = MessageModel._init_from_db(**dict(items[:width]))
    conversation = ConversationModel._init_from_db(
        **{name.split(".", 1)[1]: value for name, value in items[width : width + related]}
    )
    object.__setattr__(message, "_conversation", conversation)
    return message


def _detached(info: Info) -> Info:
    """`info` without graphql-core's helpers, which are methods of the executor the
    subscription started with: kept in the stream's frame, they would keep that executor
    (~4 KB with its caches) for the subscription's life. A delivery reads only the context."""
    raw = info._raw_info._replace(async_helpers=None)  # type: ignore[arg-type]
    return StrawberryInfo(_raw_info=raw, _field=info._field)


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
            "minors'), in commit order. With `after` (a message's `cursor`, of any of the "
            "viewer's conversations) it first replays what was stored since, then goes live, "
            "with no gap and no duplicate, whichever worker stored each message."
        )
    )
    async def message_received(
        self,
        info: Info,
        conversation_id: Annotated[
            strawberry.ID | None,
            strawberry.argument(
                description=(
                    "Only this conversation's messages (NOT_FOUND if the viewer does not take "
                    "part in it); absent: all of the viewer's conversations."
                )
            ),
        ] = None,
        after: Annotated[
            str | None,
            strawberry.argument(
                description=(
                    "A message's `cursor`: first replay every message stored after it; absent: "
                    "from now on."
                )
            ),
        ] = None,
    ) -> AsyncGenerator[Message, None]:
        ctx = info.context
        actor = ctx.actor
        if actor.is_app:  # a valid token, but no stream is a partner app's
            raise Forbidden(APP_STREAMS)
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
        # The subscriber's position: everything it may see up to there is delivered (or
        # was before it asked). Positions are in commit order (models/message.py
        # `MessageClock`): whatever commits later lands past it, so a catch-up from it,
        # after an event or a RESYNC, misses nothing and repeats nothing.
        cursor = await current_message_cursor(after)
        if cursor is not None:
            position = position_of(cursor)
        else:
            position = await messaging.committed_position()
        expires_at = await _session_expiry(actor.session_id)
        info = _detached(info)

        while True:
            try:
                async with ctx.services.bus.subscribe(account_channel(actor.account_id)) as sub:
                    # Subscribed first, then catch up from the database: anything committed
                    # meanwhile is past the position. The same catch-up follows each event
                    # and every RESYNC (events may have been lost).
                    catch_up = True
                    heard = 0  # the position of the event that started this catch-up
                    row: MessageModel | None = None
                    events = sub.__aiter__()
                    while True:
                        while catch_up:
                            ctx.refresh()
                            # The session re-check is the statement's own: no row unless
                            # it is live. No row: is it over, or was there nothing?
                            session_id = ctx.actor.session_id
                            batch = []
                            if session_id is not None:  # none: session_alive says False
                                batch = await _visible_after(
                                    info, position, conversation_pk, session_id
                                )
                            if not batch and not await ctx.session_alive():
                                return
                            for row in batch:
                                position = row.seq or position
                                await _log_read(info, row)
                                yield Message.from_model(row)
                            catch_up = len(batch) == REPLAY_BATCH
                            row = None  # the last one delivered: not held while idle
                            if not catch_up:
                                # All up to the event's message had committed (or died) when
                                # it was published, and none of the rest is the subscriber's:
                                # the next catch-up starts there (a shorter scan).
                                position, heard = max(position, heard), 0
                            batch = []  # not held while idle
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
                        event = None
                        try:
                            # Not `wait_for`: that makes a task per wait, per socket.
                            async with asyncio.timeout(timeout):
                                event = await events.__anext__()
                        except TimeoutError:
                            if not await ctx.session_alive():
                                return
                            continue
                        kind = event.get("type")
                        if kind == "resync":
                            catch_up = True
                        elif kind == "message":
                            # One already delivered (or not the subscriber's, and passed
                            # since): no query. An event without a position, from an older
                            # worker, always looks.
                            known = event.get("position")
                            known = known if isinstance(known, int) else None
                            catch_up = known is None or known > position
                            heard = known or 0
                        elif kind == "revoked":  # a session ended: is it this one?
                            ctx.refresh()
                            if not await ctx.session_alive():
                                return
                        # Anything else on the channel (reminders, conversation changes, the
                        # access log) is another stream's: nothing to send, no query.
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
