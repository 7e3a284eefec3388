"""The private iCalendar feed (RFC 5545) that calendar apps subscribe to.

It carries times and places only, never medical wording: the summary is generic, and
neither the title nor the professional appears in it.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID, uuid4

from icalendar import Calendar, Event
from tortoise import fields

from models.appointment import Appointment, AppointmentStatus
from models.base import Entity, paris_today, utcnow
from models.crypto import DecryptionError, Vault, new_token, row_context, token_hash
from models.patient import Patient, Representation, SpaceStatus, is_minor

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


def _token_context(feed_id: UUID) -> str:
    # Written out rather than taken from Meta: it is in every stored ciphertext
    # (models/migrations/0003_row_bound_encryption.py).
    return row_context("calendar_feed", "token_encrypted", feed_id)


def seal_token(vault: Vault, feed_id: UUID, token: str) -> bytes:
    """The feed token as stored in its row: encrypted, and bound to that row."""
    return vault.encrypt(token, context=_token_context(feed_id))


def reveal_token(vault: Vault, row: CalendarFeed) -> str:
    """The token of this feed row; DecryptionError for a ciphertext that is not this row's."""
    try:
        return vault.decrypt(row.token_encrypted, context=_token_context(row.id))
    except DecryptionError:
        raise DecryptionError(
            f"the token of calendar feed {row.id} does not decrypt for its row"
        ) from None


async def feed_url(patient_id: UUID, *, vault: Vault, public_url: str) -> str:
    await _end_former_representatives_feed(patient_id)
    row = await CalendarFeed.get_or_none(patient_id=patient_id)
    if row is None:
        return await rotate_feed(patient_id, vault=vault, public_url=public_url, only_if_none=True)
    return _url(public_url, reveal_token(vault, row))


async def rotate_feed(
    patient_id: UUID, *, vault: Vault, public_url: str, only_if_none: bool = False
) -> str:
    await _end_former_representatives_feed(patient_id)
    token = new_token()
    feed_id = uuid4()  # chosen here, as the ciphertext is bound to the row's key
    row, created = await CalendarFeed.get_or_create(
        patient_id=patient_id,
        defaults={
            "id": feed_id,
            "token_hash": token_hash(token),
            "token_encrypted": seal_token(vault, feed_id, token),
        },
    )
    if not created:
        if only_if_none:
            return _url(public_url, reveal_token(vault, row))
        await CalendarFeed.filter(id=row.id).update(
            token_hash=token_hash(token), token_encrypted=seal_token(vault, row.id, token)
        )
    return _url(public_url, token)


# --- who may read a feed ----------------------------------------------------------------
#
# A feed URL is handed to whoever manages the space when they ask for it: the holder of an
# adult's space, or a legal representative of a minor's (a minor has no credentials). So a
# feed issued (`created_at`: a rotation keeps it, as it re-issues to the same people) while
# the patient was a minor belongs to their representatives, and dies with their right at
# the 18th birthday; any other belongs to the holder, and lives only while the space is
# active. Checked at every request: the URL is a bearer credential that outlives sessions.


def _issued_to_representatives(feed: CalendarFeed, patient: Patient) -> bool:
    return is_minor(patient.birth_date, paris_today(feed.created_at))


async def _entitled(feed: CalendarFeed, now: datetime) -> bool:
    """Whether the people the feed was issued to still have the right to the agenda."""
    patient = feed.patient
    if not _issued_to_representatives(feed, patient):
        return patient.status is SpaceStatus.ACTIVE
    return (
        patient.status in (SpaceStatus.PENDING, SpaceStatus.ACTIVE)
        and is_minor(patient.birth_date, paris_today(now))
        and await Representation.exists(dependent_id=patient.id)
    )


async def _end_former_representatives_feed(patient_id: UUID) -> None:
    """Once the patient is of age, the feed their representatives were given is deleted
    rather than handed to the new adult: the holder asking for a URL gets a fresh one."""
    feed = await CalendarFeed.filter(patient_id=patient_id).select_related("patient").first()
    if feed is None:
        return
    patient = feed.patient
    if _issued_to_representatives(feed, patient) and not is_minor(
        patient.birth_date, paris_today()
    ):
        await CalendarFeed.filter(id=feed.id).delete()


async def render_feed(token: str, *, host: str, now: datetime | None = None) -> bytes | None:
    """The calendar for a feed token, or None for an unknown (or rotated) token, and for a
    feed whose space is no longer live or whose people lost their right to it: the same
    answer, so the URL tells nothing about the space behind it."""
    feed = await CalendarFeed.filter(token_hash=token_hash(token)).select_related("patient").first()
    stamp = now or utcnow()
    if feed is None or not await _entitled(feed, stamp):
        return None
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
