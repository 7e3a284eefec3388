"""conversationUpdated: a conversation pushed to its participants whenever its state changes.

Who takes part gets it (the patient, a minor's representatives, the professional, every
member of an establishment's shared inbox) when a new message moves its `lastMessageAt` and
unread count, when a side reads it (`markConversationRead`: read receipts) and when it is
closed. Events name the conversation only, on each participant's account channel
(subscriptions/channels.py): a `message` event (sent after every message, for
messageReceived) names its conversation, and a `conversation` event is published after a
read or a close commits (resolvers/messaging.py).

As for messageReceived (subscriptions/schema.py), nothing is taken from the event: at each
delivery, the subscriber's session is re-checked (a logout, a closed space or an expired
token ends the stream and closes the socket, 4401), the operation's context refreshed, and
the conversation loaded afresh through the subscriber's own visibility rules (the same as
`conversations`, `node` and messageReceived): a member removed from the establishment, a
professional blocked, a representative whose minor came of age, a closed space get nothing
more, whatever was published to them. Its fields (`unreadCount` …) are then the
subscriber's own.

After a broadcast outage (RESYNC) or a drop for being slow, the conversations that changed
meanwhile (a message, a read or a close since the last moment the stream was known to be
in sync, less a margin) are pushed again from the database: an update is idempotent, so
one pushed twice costs nothing to a cache.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from datetime import datetime, timedelta
from typing import Annotated
from uuid import UUID

import strawberry
from tortoise.expressions import Subquery

from api.context import Info
from api.errors import Forbidden, NotFound, Unauthenticated
from models.base import utcnow
from models.catalogue import APP_STREAMS
from models.message import Conversation as ConversationModel
from models.message import ReadMark
from resolvers import ids
from resolvers.messaging import Conversation, conversation_filter, load_visible
from subscriptions.broadcast import SubscriberDropped
from subscriptions.channels import account_channel
from subscriptions.schema import _session_expiry

logger = logging.getLogger(__name__)

RECHECK_SECONDS = 30.0  # also re-checked at once on every event and on revocation notices
CATCH_UP_BATCH = 200  # of each kind of change, pushed again after a RESYNC
# How far a catch-up steps back before the last moment the stream was known in sync: a
# message's `sent_at` (its conversation's `lastMessageAt`) is taken when its request starts,
# and commits (then publishes) a little later.
RESYNC_MARGIN = timedelta(seconds=60)
# Events that name a conversation whose state they changed.
_KINDS = ("conversation", "message")


async def changed_since(
    info: Info, since: datetime, conversation_pk: UUID | None
) -> list[ConversationModel]:
    """The subscriber's conversations with a message, a close or a read since `since`; with
    `conversation_pk`, that one if visible, changed or not. Each kind of change is bounded
    apart, the latest first (those of the interruption, just before a catch-up): many
    messages cannot crowd out a read."""
    if conversation_pk is not None:
        row = await load_visible(info, conversation_pk)
        return [row] if row is not None else []
    where = await conversation_filter(info)
    if where is None:
        return []
    visible = ConversationModel.filter(where)
    found: dict[UUID, ConversationModel] = {}
    for rows in (
        await visible.filter(last_message_at__gte=since)
        .order_by("-last_message_at", "-id")
        .limit(CATCH_UP_BATCH),
        await visible.filter(closed_at__gte=since)
        .order_by("-closed_at", "-id")
        .limit(CATCH_UP_BATCH),
    ):
        found.update((row.id, row) for row in rows)
    # A member's read moves the establishment side's mark too (models/message.py `mark_read`).
    read = await (
        ReadMark.filter(read_at__gte=since, conversation_id__in=Subquery(visible.values("id")))
        .order_by("-read_at", "-id")
        .limit(CATCH_UP_BATCH)
        .values_list("conversation_id", flat=True)
    )
    missing = {UUID(str(pk)) for pk in read} - found.keys()
    if missing:
        found.update((row.id, row) for row in await visible.filter(id__in=list(missing)))
    return list(found.values())


def _conversation_of(event: dict[str, object]) -> UUID | None:
    if event.get("type") not in _KINDS:
        return None
    try:
        return UUID(str(event.get("conversation")))
    except ValueError:
        return None


async def conversation_updates(
    info: Info, conversation_id: strawberry.ID | None
) -> AsyncGenerator[Conversation, None]:
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
        if await load_visible(info, conversation_pk) is None:
            raise NotFound()
    expires_at = await _session_expiry(actor.session_id)
    # The last moment the stream was known to be in sync: it subscribes right after, and
    # only what changes from then on is its to push.
    synced = utcnow()
    catch_up = False
    event: dict[str, object] | None = None
    row: ConversationModel | None = None
    while True:
        try:
            async with ctx.services.bus.subscribe(account_channel(actor.account_id)) as sub:
                events = sub.__aiter__()
                while True:
                    if catch_up:
                        # Subscribed first, then read the database: anything committed
                        # meanwhile also arrives live, and is pushed twice at worst.
                        catch_up = False
                        since, synced = synced - RESYNC_MARGIN, utcnow()
                        ctx.refresh()
                        if not await ctx.session_alive():
                            return
                        for row in await changed_since(info, since, conversation_pk):
                            yield Conversation.from_model(row)
                    timeout = RECHECK_SECONDS
                    if expires_at is not None:
                        timeout = min(timeout, (expires_at - utcnow()).total_seconds())
                    if timeout <= 0:  # expired: session_alive marks the session ended
                        if not await ctx.session_alive():
                            return
                        expires_at, timeout = None, RECHECK_SECONDS
                    ctx.refresh()  # idle from here: hold nothing of the last delivery
                    event = row = None
                    try:
                        async with asyncio.timeout(timeout):
                            event = await events.__anext__()
                    except TimeoutError:
                        # Idle all along, so every event published before now came through
                        # (else the bus says RESYNC): a catch-up starts from here at most.
                        # (Not after an event: it may have waited in a backlog, behind which
                        # a drop loses what was published after it.)
                        synced = utcnow()
                        if not await ctx.session_alive():
                            return
                        continue
                    if event.get("type") == "resync":
                        catch_up = True
                        continue
                    pk = _conversation_of(event)
                    if conversation_pk is not None and pk is not None and pk != conversation_pk:
                        continue  # another conversation's: nothing to check or send
                    ctx.refresh()
                    if not await ctx.session_alive():  # a `revoked` notice ends here too
                        return
                    if pk is None:
                        continue
                    row = await load_visible(info, pk)
                    if row is not None:
                        yield Conversation.from_model(row)
        except SubscriberDropped:
            # Too slow: resubscribe and push again what changed meanwhile.
            logger.info("subscriber dropped for being slow; catching up from the database")
            catch_up = True
            continue


@strawberry.type
class ConversationSubscription:
    @strawberry.subscription(
        description=(
            "The viewer's conversations (a representative's include their minors'; a member's, "
            "their establishments' shared inboxes), each pushed again as the viewer sees it "
            "now whenever it changes: a new message (`lastMessageAt`, `unreadCount`), a read "
            "by either side (read receipts: `Message.readAt`), its closing. An update may "
            "arrive twice (after an interruption of the live feed, what changed meanwhile is "
            "pushed again); it never names a conversation the viewer no longer takes part in."
        )
    )
    async def conversation_updated(
        self,
        info: Info,
        conversation_id: Annotated[
            strawberry.ID | None,
            strawberry.argument(
                description=(
                    "Only this conversation's updates; NOT_FOUND unless the viewer takes "
                    "part in it."
                )
            ),
        ] = None,
    ) -> AsyncGenerator[Conversation, None]:
        async for conversation in conversation_updates(info, conversation_id):
            yield conversation
