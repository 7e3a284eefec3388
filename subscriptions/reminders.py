"""reminderAlerts: each reminder pushed to the holder and the representatives as it falls due.

Events carry the reminder id; the subscriber's session (checked as the operation starts) and
right to the space are re-checked before each alert is sent: a session ended closes the socket
(4401, api/ws_operations.py). Alerts are numbered in commit order as they are raised
(models/clock.py); each event, and every RESYNC after a broadcast outage, makes the stream
read from the database what was raised past the last alert it sent: nothing is lost to a lost
event, nor to a reconnection with `after`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Annotated
from uuid import UUID

import strawberry

from api.context import Info
from api.errors import Forbidden, Unauthenticated
from models import clock
from models.access import live_managed_patient_ids
from models.catalogue import APP_STREAMS
from models.reminder import Reminder as ReminderModel
from models.reminder import ReminderStatus
from resolvers.agenda import Reminder
from resolvers.positions import position_of
from subscriptions.broadcast import SubscriberDropped
from subscriptions.channels import account_channel

RECHECK_SECONDS = 30.0
REPLAY_BATCH = 200


async def _managed(info: Info) -> list[UUID]:
    return await live_managed_patient_ids(info.context.actor, info.context.today)


@strawberry.type
class ReminderSubscription:
    @strawberry.subscription(
        description=(
            "The viewer's reminders (and their minors') as they fall due, within a scheduler "
            "interval; emergency-access alerts at once. With `after` (a reminder's "
            "`alertCursor`) it first replays, in the order they were raised, the alerts "
            "raised since, then goes live: none missed, none twice."
        )
    )
    async def reminder_alerts(
        self,
        info: Info,
        after: Annotated[
            str | None,
            strawberry.argument(
                description=(
                    "A reminder's `alertCursor`: first replay the alerts raised after it; "
                    "absent: from now on."
                )
            ),
        ] = None,
    ) -> AsyncGenerator[Reminder, None]:
        ctx = info.context
        actor = ctx.actor
        if actor.is_app:  # a valid token, but no stream is a partner app's
            raise Forbidden(APP_STREAMS)
        if actor.anonymous or actor.account_id is None or actor.session_id is None:
            raise Unauthenticated()
        if not actor.is_patient:
            raise Forbidden("Reminders are for the holder and legal representatives.")
        # As for messages (subscriptions/schema.py): a position in commit order, past which
        # every catch-up looks, after each event and every RESYNC.
        if after is not None:
            position = position_of(after)
        else:
            position = await clock.committed_position(clock.ALERTS)

        async def raised_after() -> list[ReminderModel]:
            return list(
                await ReminderModel.filter(
                    patient_id__in=await _managed(info),
                    status=ReminderStatus.SENT,
                    alert_seq__gt=position,
                )
                .order_by("alert_seq")
                .limit(REPLAY_BATCH)
            )

        while True:
            try:
                async with ctx.services.bus.subscribe(account_channel(actor.account_id)) as sub:
                    events = sub.__aiter__()
                    row: ReminderModel | None = None
                    catch_up = True
                    while True:
                        while catch_up:
                            ctx.refresh()
                            if not await ctx.session_alive():
                                return
                            batch = await raised_after()
                            for row in batch:
                                position = row.alert_seq or position
                                yield Reminder.from_model(row)
                            catch_up = len(batch) == REPLAY_BATCH
                            batch, row = [], None  # not held while idle
                        try:
                            async with asyncio.timeout(RECHECK_SECONDS):
                                event = await events.__anext__()
                        except TimeoutError:
                            if not await ctx.session_alive():
                                return
                            continue
                        kind = event.get("type")
                        catch_up = kind in ("resync", "reminder")
                        if kind == "revoked":  # a session ended: is it this one?
                            ctx.refresh()
                            if not await ctx.session_alive():
                                return
            except SubscriberDropped:
                continue
