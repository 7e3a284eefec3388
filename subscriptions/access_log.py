"""accessLogged: each access to a space pushed live to its holder and representatives.

Every access event is written with its position in its space's chain (models/audit.py), in
commit order, and announced after its commit on the space's channel (`access-log:<id>`,
subscriptions/channels.py: the position only, no health data), through the same event bus
as messages, across workers over Redis. A subscriber never takes the event from the bus: an
announcement only tells it to read the log from the database, from the position it reached,
through the rules of every read of the log (`readable_log`: a representative never gets an
event about a document hidden from representatives), after re-checking its session and its
right to the space. Since positions are given in commit order and never skip, reading by
position loses nothing and repeats nothing: after a reconnect (`after:` an `accessLog`
cursor, or the id of the last event received), after a broadcast outage (RESYNC), after a
dropped slow consumer, and every RECHECK_SECONDS in any case (an announcement lost in a
Redis blip costs at most that delay).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
from collections.abc import AsyncGenerator
from typing import Annotated
from uuid import UUID

import strawberry

from api.context import Info
from api.errors import BadUserInput, Forbidden, NotFound, Unauthenticated
from models.access import Relation
from models.audit import AccessEvent as AccessEventModel
from models.audit import AccessLogHead, readable_log
from models.base import utcnow
from models.catalogue import APP_STREAMS
from resolvers import ids
from resolvers.audit import record_access
from resolvers.consent import ACCESS_LOG_ORDER, AccessEvent
from resolvers.pagination import after_filter
from resolvers.scope import SPACE_ID, patient_scope
from subscriptions.broadcast import SubscriberDropped
from subscriptions.channels import access_channel
from subscriptions.schema import _session_expiry

logger = logging.getLogger(__name__)

REPLAY_BATCH = 200
RECHECK_SECONDS = 30.0  # also re-checked at once on every announcement


def _event_pk(after: str) -> UUID:
    """The event named by `after`: an AccessEvent id, or a cursor of `accessLog`."""
    with contextlib.suppress(NotFound):
        type_name, pk = ids.decode(after)
        if type_name == "AccessEvent":
            return pk
    after_filter(AccessEventModel, ACCESS_LOG_ORDER, after)  # BAD_USER_INPUT unless a cursor
    try:
        values = json.loads(base64.urlsafe_b64decode(after + "=" * (-len(after) % 4)))
        return UUID(str(values[-1]))
    except (ValueError, binascii.Error, IndexError, TypeError) as exc:
        raise BadUserInput("Invalid cursor.", field="after") from exc


async def _start(relation: Relation, after: str | None) -> int:
    """The position to deliver after: that of the event `after` names (one of this log the
    viewer reads), else the end of the log now (only what comes next)."""
    if after is None:
        head = await AccessLogHead.get_or_none(patient_id=relation.patient_id).only("id", "seq")
        return int(head.seq) if head is not None else 0
    row = await AccessEventModel.filter(readable_log(relation), id=_event_pk(after)).first()
    if row is None:
        raise BadUserInput("Invalid cursor.", field="after")
    return int(row.seq)


def _read_again(event: dict[str, object], position: int) -> bool:
    kind, seq = event.get("type"), event.get("seq")
    if kind == "resync":
        return True
    return kind == "access" and not (isinstance(seq, int) and seq <= position)


@strawberry.type
class AccessLogSubscription:
    @strawberry.subscription(
        description=(
            "HOLDER or legal REPRESENTATIVE (`patientId`: absent, the viewer's own space): "
            "each access to the space, live, as it is recorded, in the order of the log. "
            "With `after` (an `accessLog` cursor, or the id of the last event received) it "
            "first replays what was logged since, then goes live, with no gap and no "
            "duplicate. A representative gets no event about a document hidden from "
            "representatives. Opening it is, for a representative, a read of the log."
        )
    )
    async def access_logged(
        self,
        info: Info,
        patient_id: Annotated[
            strawberry.ID | None, strawberry.argument(description=SPACE_ID)
        ] = None,
        after: Annotated[
            str | None,
            strawberry.argument(
                description=(
                    "An `accessLog` cursor, or the id of the last event received: first replay "
                    "what was logged after it; absent: from now on."
                )
            ),
        ] = None,
    ) -> AsyncGenerator[AccessEvent, None]:
        ctx = info.context
        actor = ctx.actor
        if actor.is_app:  # a valid token, but no stream is a partner app's
            raise Forbidden(APP_STREAMS)
        if actor.anonymous or actor.account_id is None:
            raise Unauthenticated()
        pk, relation = await patient_scope(info, patient_id)
        position = await _start(relation, after)
        await record_access(info, relation)  # a representative's read of the log
        expires_at = await _session_expiry(actor.session_id)

        async def allowed() -> Relation | None:
            """The viewer's right to the log now, session included (a fresh context)."""
            ctx.refresh()
            if not await ctx.session_alive():
                return None
            now = await ctx.loaders.relation.load(pk)
            return now if now.manages and now.space_live else None

        while True:
            try:
                async with ctx.services.bus.subscribe(access_channel(pk)) as sub:
                    # Subscribed first, then read from the database: whatever commits
                    # meanwhile is read now or announced after.
                    events = sub.__aiter__()
                    catch_up = True
                    while True:
                        while catch_up:
                            current = await allowed()
                            if current is None:
                                return
                            rows = list(
                                await AccessEventModel.filter(
                                    readable_log(current), seq__gt=position
                                )
                                .order_by("seq")
                                .limit(REPLAY_BATCH)
                            )
                            for row in rows:
                                position = int(row.seq)
                                yield AccessEvent.from_model(row)
                            catch_up = len(rows) == REPLAY_BATCH
                            rows = []  # not held while idle
                        timeout = RECHECK_SECONDS
                        if expires_at is not None:
                            timeout = max(
                                0.0, min(timeout, (expires_at - utcnow()).total_seconds())
                            )
                        ctx.refresh()
                        try:
                            async with asyncio.timeout(timeout):
                                event = await events.__anext__()
                        except TimeoutError:
                            # Session, rights and anything missed, re-read.
                            expires_at = await _session_expiry(actor.session_id)
                            catch_up = True
                            continue
                        # RESYNC: events may have been lost; an announcement past what was
                        # delivered: read the log (one already delivered is skipped).
                        catch_up = _read_again(event, position)
            except SubscriberDropped:
                logger.info("access-log subscriber dropped for being slow; replaying")
                continue
