"""Channel names and publish helpers. Events carry ids only: never a body, never health data.

Each account has one channel; a websocket subscribes to its viewer's channel only, and
every event is re-authorised against the database before anything is sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

from subscriptions.broadcast import EventBus


def account_channel(account_id: UUID) -> str:
    return f"account:{account_id}"


async def publish_message(
    bus: EventBus, *, accounts: Iterable[UUID], message_id: UUID, conversation_id: UUID
) -> None:
    """After the commit, best effort: a lost event is replayed from the database by cursor."""
    event = {"type": "message", "message": str(message_id), "conversation": str(conversation_id)}
    for account in accounts:
        await bus.publish(account_channel(account), event)


async def publish_reminder(bus: EventBus, *, accounts: Iterable[UUID], reminder_id: UUID) -> None:
    event = {"type": "reminder", "reminder": str(reminder_id)}
    for account in accounts:
        await bus.publish(account_channel(account), event)


async def publish_revoked(bus: EventBus, *, accounts: Iterable[UUID]) -> None:
    """A session ended (logout, closed space): live streams re-check and stop."""
    for account in accounts:
        await bus.publish(account_channel(account), {"type": "revoked"})
