"""Agenda médical: appointments, their reminders, and the private calendar feed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from uuid import UUID

from tortoise import fields
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from models.base import Entity
from models.catalogue import PartnerApp
from models.errors import Conflict, Invalid
from models.idempotency import Claim
from models.patient import Patient
from models.professional import Professional
from models.reminder import Reminder, ReminderKind, ReminderStatus
from models.rules import appointment_reminder_times

MAX_DURATION = timedelta(hours=24)


class AppointmentStatus(StrEnum):
    SCHEDULED = "SCHEDULED"
    CANCELLED = "CANCELLED"
    DONE = "DONE"


class AppointmentSource(StrEnum):
    PATIENT = "PATIENT"
    PROFESSIONAL = "PROFESSIONAL"
    PLATFORM = "PLATFORM"


class Appointment(Entity):
    patient: fields.ForeignKeyRelation[Patient] = fields.ForeignKeyField(
        "models.Patient", related_name="appointments", on_delete=fields.CASCADE
    )
    professional: fields.ForeignKeyNullableRelation[Professional] = fields.ForeignKeyField(
        "models.Professional", related_name="appointments", null=True, on_delete=fields.SET_NULL
    )
    starts_at = fields.DatetimeField()
    ends_at = fields.DatetimeField()
    title = fields.CharField(max_length=200)
    location = fields.CharField(max_length=300, null=True)
    status = fields.CharEnumField(
        AppointmentStatus, max_length=16, default=AppointmentStatus.SCHEDULED
    )
    source = fields.CharEnumField(AppointmentSource, max_length=16)
    cancelled_reason = fields.CharField(max_length=500, null=True)
    cancelled_at = fields.DatetimeField(null=True)
    sequence = fields.IntField(default=0)  # iCalendar SEQUENCE: bumped at every change
    updated_at = fields.DatetimeField(auto_now=True)
    # The appointment platform (a partner app) that booked it, for source PLATFORM: only
    # that app moves or cancels it.
    app: fields.ForeignKeyNullableRelation[PartnerApp] = fields.ForeignKeyField(
        "models.PartnerApp", related_name="appointments", null=True, on_delete=fields.SET_NULL
    )
    patient_id: UUID
    professional_id: UUID | None
    app_id: UUID | None

    class Meta:
        table = "appointment"
        indexes = (("patient_id", "starts_at"), ("status", "ends_at"))


# --- operations -------------------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    starts_at: datetime
    ends_at: datetime
    title: str
    location: str | None


def check_slot(slot: Slot) -> Slot:
    for name, moment in (("startsAt", slot.starts_at), ("endsAt", slot.ends_at)):
        if moment.tzinfo is None:
            raise Invalid("A time needs an offset (ISO-8601).", field=name)
    if slot.ends_at <= slot.starts_at:
        raise Invalid("An appointment ends after it starts.", field="ends_at")
    if slot.ends_at - slot.starts_at > MAX_DURATION:
        raise Invalid("An appointment lasts 24 hours at most.", field="ends_at")
    title = " ".join(slot.title.split())
    if not title or len(title) > 200:
        raise Invalid("A title has 1 to 200 characters.", field="title")
    location = " ".join((slot.location or "").split()) or None
    if location is not None and len(location) > 300:
        raise Invalid("A location has 300 characters at most.", field="location")
    # Stored and answered in UTC: SQLite compares timestamps as text, and the contract
    # answers in UTC whatever offset the client sent.
    return Slot(slot.starts_at.astimezone(UTC), slot.ends_at.astimezone(UTC), title, location)


async def _schedule_reminders(
    appointment: Appointment, *, hours: tuple[int, ...], now: datetime, conn: BaseDBAsyncClient
) -> None:
    """One reminder per offset whose moment is still ahead of the booking (or the change)."""
    for offset, moment in appointment_reminder_times(appointment.starts_at, now, hours):
        await Reminder.create(
            patient_id=appointment.patient_id,
            appointment_id=appointment.id,
            kind=ReminderKind.APPOINTMENT,
            key=f"APPOINTMENT:{appointment.id}:{appointment.sequence}:{offset}h",
            rule=f"APPOINTMENT_{offset}H",
            title="Rappel de rendez-vous",
            reason=f"Rendez-vous dans {offset} h.",
            due_at=moment,
            using_db=conn,
        )


async def create_appointment(
    patient_id: UUID,
    slot: Slot,
    *,
    professional_id: UUID | None,
    source: AppointmentSource,
    hours: tuple[int, ...],
    now: datetime,
    app_id: UUID | None = None,
    claim: Claim | None = None,
) -> Appointment:
    """`app_id`: the platform booking it (source PLATFORM), the only app that may change it.
    `claim`: the idempotency key it records (models/idempotency.py)."""
    if app_id is not None and source is not AppointmentSource.PLATFORM:
        raise ValueError("an appointment platform's bookings have the source PLATFORM")
    slot = check_slot(slot)
    if professional_id is not None and not await Professional.exists(id=professional_id):
        raise Invalid("No such professional.", field="professional_id")
    async with in_transaction() as conn:
        appointment = await Appointment.create(
            patient_id=patient_id,
            professional_id=professional_id,
            starts_at=slot.starts_at,
            ends_at=slot.ends_at,
            title=slot.title,
            location=slot.location,
            source=source,
            app_id=app_id,
            using_db=conn,
        )
        if claim is not None:
            await claim.record(appointment.id, using_db=conn)
        await _schedule_reminders(appointment, hours=hours, now=now, conn=conn)
    return appointment


def changeable(appointment: Appointment) -> bool:
    """Only a scheduled appointment is moved, renamed or cancelled."""
    return appointment.status is AppointmentStatus.SCHEDULED


async def update_appointment(
    appointment: Appointment,
    slot: Slot,
    *,
    professional_id: UUID | None,
    hours: tuple[int, ...],
    now: datetime,
) -> Appointment:
    if not changeable(appointment):
        raise Conflict("Only a scheduled appointment can be changed.")
    slot = check_slot(slot)
    if professional_id is not None and not await Professional.exists(id=professional_id):
        raise Invalid("No such professional.", field="professional_id")
    moved = slot.starts_at != appointment.starts_at
    values = {
        "starts_at": slot.starts_at,
        "ends_at": slot.ends_at,
        "title": slot.title,
        "location": slot.location,
        "professional_id": professional_id,
        "sequence": appointment.sequence + 1,
        "updated_at": now,
    }
    async with in_transaction() as conn:
        # Conditional on what was read: a cancel or another change in between is a
        # conflict, never overwritten (a plain save() would bring a cancelled one back).
        changed = (
            await Appointment.filter(
                id=appointment.id,
                status=AppointmentStatus.SCHEDULED,
                sequence=appointment.sequence,
            )
            .using_db(conn)
            .update(**values)
        )
        if changed != 1:
            raise Conflict("The appointment was changed or cancelled meanwhile; reload it.")
        for name, value in values.items():
            setattr(appointment, name, value)
        if moved:
            await _drop_pending(appointment.id, now=now, conn=conn)
            await _schedule_reminders(appointment, hours=hours, now=now, conn=conn)
    return appointment


async def _drop_pending(appointment_id: UUID, *, now: datetime, conn: BaseDBAsyncClient) -> None:
    await (
        Reminder.filter(appointment_id=appointment_id, status=ReminderStatus.PENDING)
        .using_db(conn)
        .update(status=ReminderStatus.DISMISSED, dismissed_at=now)
    )


async def cancel_appointment(
    appointment: Appointment, *, reason: str | None, now: datetime
) -> Appointment:
    if not changeable(appointment):
        raise Conflict("Only a scheduled appointment can be cancelled.")
    text = (reason or "").strip() or None
    if text is not None and len(text) > 500:
        raise Invalid("A reason has 500 characters at most.", field="reason")
    async with in_transaction() as conn:
        updated = (
            await Appointment.filter(id=appointment.id, status=AppointmentStatus.SCHEDULED)
            .using_db(conn)
            .update(
                status=AppointmentStatus.CANCELLED,
                cancelled_reason=text,
                cancelled_at=now,
                sequence=appointment.sequence + 1,
                updated_at=now,
            )
        )
        if updated != 1:
            raise Conflict("Only a scheduled appointment can be cancelled.")
        await _drop_pending(appointment.id, now=now, conn=conn)
    await appointment.refresh_from_db()
    return appointment


async def mark_done(now: datetime) -> int:
    """Appointments that ended are history (idempotent)."""
    now = now.astimezone(UTC)  # SQLite compares timestamps as text: UTC like the stored ones
    return await Appointment.filter(status=AppointmentStatus.SCHEDULED, ends_at__lte=now).update(
        status=AppointmentStatus.DONE
    )
