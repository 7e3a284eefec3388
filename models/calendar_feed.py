"""The private iCalendar feed (RFC 5545) that calendar apps subscribe to.

It carries times and places only, never medical wording: the summary is generic, and
neither the title nor the professional appears in it.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from icalendar import Calendar, Event
from tortoise import fields

from models.appointment import Appointment, AppointmentStatus
from models.base import Entity, utcnow
from models.crypto import Vault, new_token, token_hash
from models.patient import Patient

GENERIC_SUMMARY = "Rendez-vous (Mon espace santé)"


class CalendarFeed(Entity):
    """The secret of a patient's feed URL: a hash to find it, a ciphertext to show it again."""

    patient: fields.OneToOneRelation[Patient] = fields.OneToOneField(
        "models.Patient", related_name="calendar_feed", on_delete=fields.CASCADE
    )
    token_hash = fields.CharField(max_length=64, unique=True)
    token_encrypted = fields.BinaryField()
    patient_id: UUID

    class Meta:
        table = "calendar_feed"


def _url(public_url: str, token: str) -> str:
    return f"{public_url}/calendar/{token}.ics"


async def feed_url(patient_id: UUID, *, vault: Vault, public_url: str) -> str:
    row = await CalendarFeed.get_or_none(patient_id=patient_id)
    if row is None:
        return await rotate_feed(patient_id, vault=vault, public_url=public_url, only_if_none=True)
    return _url(public_url, vault.decrypt(row.token_encrypted, context="calendar-feed"))


async def rotate_feed(
    patient_id: UUID, *, vault: Vault, public_url: str, only_if_none: bool = False
) -> str:
    token = new_token()
    values = {
        "token_hash": token_hash(token),
        "token_encrypted": vault.encrypt(token, context="calendar-feed"),
    }
    row, created = await CalendarFeed.get_or_create(patient_id=patient_id, defaults=values)
    if not created:
        if only_if_none:
            return _url(public_url, vault.decrypt(row.token_encrypted, context="calendar-feed"))
        await CalendarFeed.filter(id=row.id).update(**values)
    return _url(public_url, token)


async def render_feed(token: str, *, host: str, now: datetime | None = None) -> bytes | None:
    """The calendar for a feed token, or None for an unknown (or rotated) token."""
    feed = await CalendarFeed.get_or_none(token_hash=token_hash(token))
    if feed is None:
        return None
    stamp = now or utcnow()
    calendar = Calendar()
    calendar.add("prodid", "-//Mon espace sante//Agenda//FR")
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", "PUBLISH")
    calendar.add("x-wr-calname", "Mon espace santé")
    # Past (DONE) appointments stay: a calendar app deletes whatever leaves the feed.
    rows = await Appointment.filter(patient_id=feed.patient_id).order_by("starts_at", "id")
    for row in rows:
        event = Event()
        event.add("uid", f"{row.id}@{host}")
        event.add("dtstamp", stamp)
        event.add("dtstart", row.starts_at)
        event.add("dtend", row.ends_at)
        event.add("summary", GENERIC_SUMMARY)
        if row.location:
            event.add("location", row.location)
        event.add("sequence", row.sequence)
        event.add(
            "status", "CANCELLED" if row.status is AppointmentStatus.CANCELLED else "CONFIRMED"
        )
        calendar.add_component(event)
    return bytes(calendar.to_ical())
