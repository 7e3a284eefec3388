"""The Subscription type. Each event is re-loaded through the subscriber's access rules, and
the subscriber's session re-checked, before anything is sent: a logout, a closed space or an
expired token ends the stream."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncGenerator
from datetime import datetime, timedelta
from uuid import UUID

import strawberry
from tortoise.expressions import Q, Subquery

from api.context import Info
from api.errors import Forbidden, NotFound, Unauthenticated
from models.base import utcnow
from models.message import Conversation as ConversationModel
from models.message import Message as MessageModel
from models.session import Session, session_active
from resolvers import ids
from resolvers.messaging import MESSAGE_ORDER, Message, conversation_filter
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

    def __init__(self) -> None:
        self._ids: OrderedDict[UUID, None] = OrderedDict()

    def add(self, pk: UUID) -> bool:
        if pk in self._ids:
            return False
        self._ids[pk] = None
        if len(self._ids) > SEEN_MEMORY:
            self._ids.popitem(last=False)
        return True


def _fresh(info: Info) -> None:
    """A websocket context lives as long as the socket: each delivery gets fresh loaders,
    a fresh clock and audit trail, so nothing cached outlives a revoked right."""
    ctx = info.context
    ctx.now = utcnow()
    ctx._loaders = None
    ctx._audit = None


async def _visible_messages(info: Info, conversation_pk: UUID | None) -> Q | None:
    where = await conversation_filter(info)
    if where is None:
        return None
    conversations = ConversationModel.filter(where)
    if conversation_pk is not None:
        conversations = conversations.filter(id=conversation_pk)
    return Q(conversation_id__in=Subquery(conversations.values("id")))


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
        # Catch-ups never go back beyond the client's cursor (validated here, early).
        floor = (
            after_filter(MessageModel, MESSAGE_ORDER, after)
            if after is not None
            else Q(sent_at__gte=start)
        )
        newest: datetime | None = None  # the latest `sent_at` delivered
        seen = _Seen()
        expires_at = await _session_expiry(actor.session_id)

        async def still_allowed() -> bool:
            return actor.session_id is not None and await session_active(actor.session_id)

        if not await still_allowed():  # a socket whose session was revoked since it opened
            raise Unauthenticated()

        async def replay(position: str | None) -> list[MessageModel]:
            visible = await _visible_messages(info, conversation_pk)
            if visible is None:
                return []
            query = MessageModel.filter(visible, floor)
            if position is not None:
                query = query.filter(after_filter(MessageModel, MESSAGE_ORDER, position))
            return list(await query.order_by(*MESSAGE_ORDER.order_by()).limit(REPLAY_BATCH))

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
                                _fresh(info)
                                if not await still_allowed():
                                    return
                                batch = await replay(position)
                                for row in batch:
                                    position = cursor_of(row, MESSAGE_ORDER)
                                    newest = _later(newest, row.sent_at)
                                    if seen.add(row.id):
                                        yield Message.from_model(row)
                                if len(batch) < REPLAY_BATCH:
                                    break
                        timeout = RECHECK_SECONDS
                        if expires_at is not None:
                            timeout = min(timeout, (expires_at - utcnow()).total_seconds())
                        if timeout <= 0:
                            return
                        # Idle from here on: hold nothing of the last delivery (its loaders
                        # alone are ~10 KB a socket); the next event starts afresh anyway.
                        _fresh(info)
                        try:
                            # Not `wait_for`: that makes a task per wait, per socket.
                            async with asyncio.timeout(timeout):
                                event = await events.__anext__()
                        except TimeoutError:
                            if not await still_allowed():
                                return
                            continue
                        _fresh(info)
                        if not await still_allowed():
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
                            yield Message.from_model(message)
            except SubscriberDropped:
                # Too slow: resubscribe and catch up from the database.
                logger.info("subscriber dropped for being slow; replaying from the database")
                continue


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
    visible = await _visible_messages(info, conversation_pk)
    if visible is None:
        return None
    row = await MessageModel.filter(visible, id=pk).select_related("conversation").first()
    if row is not None:
        # Fetched with its conversation: `conversation { … }` costs no second query.
        info.context.loaders.conversation.prime(row.conversation_id, row.conversation)
    return row
