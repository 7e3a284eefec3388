"""reminderAlerts: each reminder pushed to the holder and the representatives as it falls due.

Events carry the reminder id; the subscriber's session (checked as the operation starts) and
right to the space are re-checked before each alert is sent: a session ended closes the socket
(4401, api/ws_operations.py). After a broadcast outage (RESYNC) the alerts sent meanwhile are
replayed from the database.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from uuid import UUID

import strawberry

from api.context import Info
from api.errors import Forbidden, Unauthenticated
from models.access import live_managed_patient_ids
from models.base import utcnow
from models.reminder import Reminder as ReminderModel
from models.reminder import ReminderStatus
from resolvers.agenda import Reminder
from subscriptions.broadcast import SubscriberDropped
from subscriptions.channels import account_channel

RECHECK_SECONDS = 30.0


async def _managed(info: Info) -> list[UUID]:
    return await live_managed_patient_ids(info.context.actor, info.context.today)


@strawberry.type
class ReminderSubscription:
    @strawberry.subscription(
        description=(
            "The viewer's reminders (and their minors') as they fall due, within a scheduler "
            "interval; emergency-access alerts at once."
        )
    )
    async def reminder_alerts(self, info: Info) -> AsyncGenerator[Reminder, None]:
        ctx = info.context
        actor = ctx.actor
        if actor.anonymous or actor.account_id is None or actor.session_id is None:
            raise Unauthenticated()
        if not actor.is_patient:
            raise Forbidden("Reminders are for the holder and legal representatives.")
        delivered: set[UUID] = set()
        since = utcnow()

        async def allowed(reminder_id: UUID) -> ReminderModel | None:
            row = await ReminderModel.get_or_none(id=reminder_id)
            if row is None or row.status is not ReminderStatus.SENT:
                return None
            return row if row.patient_id in await _managed(info) else None

        async def catch_up() -> list[ReminderModel]:
            rows = await ReminderModel.filter(
                patient_id__in=await _managed(info),
                status=ReminderStatus.SENT,
                sent_at__gte=since,
            ).order_by("sent_at", "id")
            return [row for row in rows if row.id not in delivered]

        while True:
            try:
                async with ctx.services.bus.subscribe(account_channel(actor.account_id)) as sub:
                    events = sub.__aiter__()
                    while True:
                        try:
                            event = await asyncio.wait_for(events.__anext__(), RECHECK_SECONDS)
                        except TimeoutError:
                            if not await ctx.session_alive():
                                return
                            continue
                        ctx.refresh()
                        if not await ctx.session_alive():
                            return
                        kind = event.get("type")
                        if kind == "resync":
                            for row in await catch_up():
                                delivered.add(row.id)
                                yield Reminder.from_model(row)
                            continue
                        if kind != "reminder":
                            continue
                        try:
                            reminder_id = UUID(str(event.get("reminder")))
                        except ValueError:
                            continue
                        found = await allowed(reminder_id)
                        if found is not None and found.id not in delivered:
                            delivered.add(found.id)
                            yield Reminder.from_model(found)
            except SubscriberDropped:
                continue
