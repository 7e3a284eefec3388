"""Channel names and publish helpers. Events carry ids only: never a body, never health data.

Each account has one channel; a websocket subscribes to its viewer's channel only, and
every event is re-authorised against the database before anything is sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from uuid import UUID

from models.audit import Announce
from subscriptions.broadcast import EventBus


def account_channel(account_id: UUID) -> str:
    return f"account:{account_id}"


async def publish_message(
    bus: EventBus,
    *,
    accounts: Iterable[UUID],
    message_id: UUID,
    conversation_id: UUID,
    position: int | None,
) -> None:
    """After the commit, best effort: a lost event is replayed from the database by cursor.
    `position` (the message's place in commit order) lets a subscriber that already has it
    skip the event without a query."""
    event = {
        "type": "message",
        "message": str(message_id),
        "conversation": str(conversation_id),
        "position": position,
    }
    await _publish_to(bus, accounts, event)


async def publish_conversation(
    bus: EventBus, *, accounts: Iterable[UUID], conversation_id: UUID
) -> None:
    """After the commit, best effort: the conversation was read or closed; conversationUpdated
    (subscriptions/conversations.py) loads it again for each subscriber. A new message needs
    no event of its own: its `message` event names its conversation, read there too."""
    event = {"type": "conversation", "conversation": str(conversation_id)}
    await _publish_to(bus, accounts, event)


async def publish_reminder(bus: EventBus, *, accounts: Iterable[UUID], reminder_id: UUID) -> None:
    event = {"type": "reminder", "reminder": str(reminder_id)}
    await _publish_to(bus, accounts, event)


async def publish_revoked(bus: EventBus, *, accounts: Iterable[UUID]) -> None:
    """A session ended (logout, closed space): live streams re-check and stop."""
    await _publish_to(bus, accounts, {"type": "revoked"})


async def _publish_to(bus: EventBus, accounts: Iterable[UUID], event: dict[str, Any]) -> None:
    await bus.publish_many([account_channel(a) for a in accounts], event)


def access_channel(patient_id: UUID) -> str:
    """The live access log of one space (accessLogged): every worker's subscribers of it."""
    return f"access-log:{patient_id}"


async def publish_access(bus: EventBus, patient_id: UUID, seq: int) -> None:
    """After the commit, best effort: the space's log reached position `seq` (readers
    replay it from the database by position, so a lost event only delays them)."""
    await bus.publish(
        access_channel(patient_id), {"type": "access", "patient": str(patient_id), "seq": seq}
    )


def access_announcer(bus: EventBus) -> Announce:
    """What an audit trail tells when a space's log grew (models/audit.py `AuditTrail`)."""

    async def announce(patient_id: UUID, seq: int) -> None:
        await publish_access(bus, patient_id, seq)

    return announce
