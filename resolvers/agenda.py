"""Agenda médical: appointments, reminders and the calendar feed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import strawberry

from api.context import Info
from api.errors import BadUserInput, Forbidden, NotFound, Unauthenticated
from models import appointment as agenda
from models import reminder as reminders
from models.access import Relation
from models.appointment import Appointment as AppointmentModel
from models.appointment import AppointmentSource as AppointmentSourceModel
from models.calendar_feed import feed_url, rotate_feed
from models.catalogue import AppScope
from models.reminder import Reminder as ReminderModel
from resolvers import ids
from resolvers.audit import logged_write, record_access
from resolvers.enums import AppointmentSource, AppointmentStatus, ReminderKind, ReminderStatus
from resolvers.node import Node, register
from resolvers.pagination import Connection, Order, paginate
from resolvers.people import Professional
from resolvers.scope import acting_for, patient_scope

APPOINTMENT_ORDER = Order((("starts_at", False), ("id", False)))
REMINDER_ORDER = Order((("due_at", True), ("id", True)))


@strawberry.type(name="Appointment", description="An appointment of the agenda médical.")
class Appointment(Node):
    pk: strawberry.Private[UUID]
    professional_id: strawberry.Private[UUID | None]
    starts_at: datetime
    ends_at: datetime
    title: str
    location: str | None
    status: AppointmentStatus  # type: ignore[valid-type]
    source: AppointmentSource  # type: ignore[valid-type]
    cancelled_reason: str | None

    @strawberry.field
    async def professional(self, info: Info) -> Professional | None:
        if self.professional_id is None:
            return None
        row = await info.context.loaders.professional.load(self.professional_id)
        return Professional.from_model(row) if row else None

    @classmethod
    def from_model(cls, row: AppointmentModel) -> Appointment:
        return cls(
            id=strawberry.ID(ids.encode("Appointment", row.id)),
            pk=row.id,
            professional_id=row.professional_id,
            starts_at=row.starts_at,
            ends_at=row.ends_at,
            title=row.title,
            location=row.location,
            status=row.status,
            source=row.source,
            cancelled_reason=row.cancelled_reason,
        )


@strawberry.type(name="AppointmentConnection")
class AppointmentConnection(Connection[Appointment]):
    pass


@strawberry.type(name="Reminder", description="A reminder: appointment, screening, vaccination.")
class Reminder(Node):
    pk: strawberry.Private[UUID]
    appointment_id: strawberry.Private[UUID | None]
    kind: ReminderKind  # type: ignore[valid-type]
    title: str
    reason: str = strawberry.field(description="Why it was raised: which record, or none.")
    rule: str = strawberry.field(description="The rule that raised it.")
    due_at: datetime
    status: ReminderStatus  # type: ignore[valid-type]

    @strawberry.field
    async def appointment(self, info: Info) -> Appointment | None:
        if self.appointment_id is None:
            return None
        row = await info.context.loaders.appointment.load(self.appointment_id)
        return Appointment.from_model(row) if row else None

    @classmethod
    def from_model(cls, row: ReminderModel) -> Reminder:
        return cls(
            id=strawberry.ID(ids.encode("Reminder", row.id)),
            pk=row.id,
            appointment_id=row.appointment_id,
            kind=row.kind,
            title=row.title,
            reason=row.reason,
            rule=row.rule,
            due_at=row.due_at,
            status=row.status,
        )


@strawberry.type(name="ReminderConnection")
class ReminderConnection(Connection[Reminder]):
    pass


# --- Patient fields ---------------------------------------------------------------------


async def patient_appointments(
    info: Info,
    patient_pk: UUID,
    first: int | None,
    after: str | None,
    starts_from: datetime | None,
    starts_to: datetime | None,
) -> AppointmentConnection:
    query = AppointmentModel.filter(patient_id=patient_pk)
    if starts_from is not None:
        query = query.filter(ends_at__gte=_utc(starts_from, "from"))
    if starts_to is not None:
        query = query.filter(starts_at__lt=_utc(starts_to, "to"))
    return await paginate(
        query,
        APPOINTMENT_ORDER,
        first=first,
        after=after,
        wrap=Appointment.from_model,
        connection=AppointmentConnection,
    )


def _utc(moment: datetime, name: str) -> datetime:
    """Bounds compared in UTC, like the stored times (SQLite compares them as text)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise BadUserInput("A time needs an offset (ISO-8601).", field=name)
    return moment.astimezone(UTC)


async def patient_reminders(
    info: Info, patient_pk: UUID, first: int | None, after: str | None, status: Any
) -> ReminderConnection:
    query = ReminderModel.filter(patient_id=patient_pk)
    if status is not None:
        query = query.filter(status=status)
    return await paginate(
        query,
        REMINDER_ORDER,
        first=first,
        after=after,
        wrap=Reminder.from_model,
        connection=ReminderConnection,
    )


async def patient_calendar_feed_url(info: Info, patient_pk: UUID) -> str:
    ctx = info.context
    return await feed_url(patient_pk, vault=ctx.vault, public_url=ctx.settings.public_url)


# --- node -------------------------------------------------------------------------------


async def _readable_appointments(
    info: Info, pks: list[UUID], *, to_change: bool = False
) -> dict[UUID, AppointmentModel]:
    """By the rule of `Patient.appointments`; to change one, also an appointment platform's
    own (source PLATFORM, booked by this very app) under APPOINTMENTS_WRITE alone."""
    rows = await AppointmentModel.filter(id__in=pks)
    out = {}
    app_id = info.context.actor.app_id
    for row in rows:
        relation = await info.context.loaders.relation.load(row.patient_id)
        platform = (
            to_change
            and row.source is AppointmentSourceModel.PLATFORM
            and app_id is not None
            and row.app_id == app_id
        )
        if relation.reads(AppScope.APPOINTMENTS_READ) or (platform and relation.books_appointments):
            out[row.id] = row
    return out


@register("Appointment")
async def _appointment_nodes(info: Info, pks: list[UUID]) -> dict[UUID, Any]:
    out: dict[UUID, Any] = {}
    for pk, row in (await _readable_appointments(info, pks)).items():
        await record_access(info, await info.context.loaders.relation.load(row.patient_id))
        out[pk] = Appointment.from_model(row)
    return out


@register("Reminder")
async def _reminder_nodes(info: Info, pks: list[UUID]) -> dict[UUID, Any]:
    rows = await ReminderModel.filter(id__in=pks)
    out: dict[UUID, Any] = {}
    for row in rows:
        relation = await info.context.loaders.relation.load(row.patient_id)
        if relation.manages:
            await record_access(info, relation)
            out[row.id] = Reminder.from_model(row)
    return out


# --- mutations --------------------------------------------------------------------------


@strawberry.input
class CreateAppointmentInput:
    starts_at: datetime
    ends_at: datetime
    title: str
    location: str | None = None
    professional_id: strawberry.ID | None = None
    patient_id: strawberry.ID | None = None


@strawberry.type
class CreateAppointmentPayload:
    appointment: Appointment


@strawberry.input
class UpdateAppointmentInput:
    appointment_id: strawberry.ID
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    title: str | None = None
    location: str | None = strawberry.UNSET
    professional_id: strawberry.ID | None = strawberry.UNSET


@strawberry.type
class UpdateAppointmentPayload:
    appointment: Appointment


@strawberry.input
class CancelAppointmentInput:
    appointment_id: strawberry.ID
    reason: str | None = None


@strawberry.type
class CancelAppointmentPayload:
    appointment: Appointment


@strawberry.input
class DismissReminderInput:
    reminder_id: strawberry.ID


@strawberry.type
class DismissReminderPayload:
    reminder: Reminder


@strawberry.input
class RotateCalendarFeedInput:
    patient_id: strawberry.ID | None = None


@strawberry.type
class RotateCalendarFeedPayload:
    calendar_feed_url: str


async def _booker(info: Info, patient_id: strawberry.ID | None) -> Relation:
    """The patient side, or a professional under consent (or médecin traitant)."""
    return await acting_for(
        info,
        patient_id,
        professional_may=lambda relation: relation.books_appointments,
        refusal="Booking for this patient needs their consent.",
    )


async def _appointment(info: Info, appointment_id: strawberry.ID) -> AppointmentModel:
    actor = info.context.actor
    if actor.anonymous:
        raise Unauthenticated()
    if not (actor.is_patient or actor.is_professional or actor.is_app):
        raise Forbidden()  # an operator never touches health data, as in createAppointment
    pk = ids.decode_as(str(appointment_id), "Appointment")
    found = await _readable_appointments(info, [pk], to_change=True)
    if pk not in found:
        raise NotFound()
    row = found[pk]
    relation = await info.context.loaders.relation.load(row.patient_id)
    if not relation.books_appointments:
        raise Forbidden()
    if actor.is_app and (
        row.source is not AppointmentSourceModel.PLATFORM or row.app_id != actor.app_id
    ):
        # An appointment platform syncs the appointments it booked itself: not the patient's,
        # a professional's, nor another platform's.
        raise Forbidden("An app moves or cancels only the appointments it booked itself.")
    return row


def _professional_pk(value: strawberry.ID | None) -> UUID | None:
    if value is None:
        return None
    try:
        return ids.decode_as(str(value), "Professional")
    except NotFound:
        raise BadUserInput("Unknown professional.", field="professionalId") from None


@strawberry.type
class AgendaMutation:
    @strawberry.mutation(
        description="Book an appointment: the patient, a representative, a professional "
        "under consent, or an appointment platform granted APPOINTMENTS_WRITE (source "
        "PLATFORM). Reminders are scheduled before it (48 h and 2 h by default)."
    )
    async def create_appointment(
        self, info: Info, input: CreateAppointmentInput
    ) -> CreateAppointmentPayload:
        relation = await _booker(info, input.patient_id)
        ctx = info.context
        professional = _professional_pk(input.professional_id)
        source = AppointmentSourceModel.PATIENT
        if ctx.actor.is_professional:
            source = AppointmentSourceModel.PROFESSIONAL
            professional = professional or ctx.actor.professional_id
        elif ctx.actor.is_app:
            source = AppointmentSourceModel.PLATFORM  # an appointment platform's booking
        async with logged_write(info, relation):
            row = await agenda.create_appointment(
                relation.patient_id,
                agenda.Slot(input.starts_at, input.ends_at, input.title, input.location),
                professional_id=professional,
                source=source,
                hours=ctx.settings.appointment_reminder_hours,
                now=ctx.now,
                app_id=ctx.actor.app_id if ctx.actor.is_app else None,
            )
        return CreateAppointmentPayload(appointment=Appointment.from_model(row))

    @strawberry.mutation(description="Move or rename a scheduled appointment.")
    async def update_appointment(
        self, info: Info, input: UpdateAppointmentInput
    ) -> UpdateAppointmentPayload:
        row = await _appointment(info, input.appointment_id)
        ctx = info.context
        professional = row.professional_id
        if input.professional_id is not strawberry.UNSET:
            professional = _professional_pk(input.professional_id)
        location = row.location if input.location is strawberry.UNSET else input.location
        relation = await ctx.loaders.relation.load(row.patient_id)
        async with logged_write(info, relation):
            row = await agenda.update_appointment(
                row,
                agenda.Slot(
                    input.starts_at or row.starts_at,
                    input.ends_at or row.ends_at,
                    input.title if input.title is not None else row.title,
                    location,
                ),
                professional_id=professional,
                hours=ctx.settings.appointment_reminder_hours,
                now=ctx.now,
            )
        return UpdateAppointmentPayload(appointment=Appointment.from_model(row))

    @strawberry.mutation(description="Cancel a scheduled appointment; its reminders are dropped.")
    async def cancel_appointment(
        self, info: Info, input: CancelAppointmentInput
    ) -> CancelAppointmentPayload:
        row = await _appointment(info, input.appointment_id)
        relation = await info.context.loaders.relation.load(row.patient_id)
        async with logged_write(info, relation):
            row = await agenda.cancel_appointment(row, reason=input.reason, now=info.context.now)
        return CancelAppointmentPayload(appointment=Appointment.from_model(row))

    @strawberry.mutation(description="Dismiss a reminder (holder or representative).")
    async def dismiss_reminder(
        self, info: Info, input: DismissReminderInput
    ) -> DismissReminderPayload:
        actor = info.context.actor
        if actor.anonymous:
            raise Unauthenticated()
        pk = ids.decode_as(str(input.reminder_id), "Reminder")
        row = await ReminderModel.get_or_none(id=pk)
        if row is None:
            raise NotFound()
        relation = await info.context.loaders.relation.load(row.patient_id)
        if not relation.manages:
            raise NotFound()
        async with logged_write(info, relation):
            row = await reminders.dismiss(row, now=info.context.now)
        return DismissReminderPayload(reminder=Reminder.from_model(row))

    @strawberry.mutation(description="A new private calendar URL; the old one stops working.")
    async def rotate_calendar_feed(
        self, info: Info, input: RotateCalendarFeedInput
    ) -> RotateCalendarFeedPayload:
        pk, relation = await patient_scope(info, input.patient_id)
        ctx = info.context
        async with logged_write(info, relation):
            url = await rotate_feed(pk, vault=ctx.vault, public_url=ctx.settings.public_url)
        return RotateCalendarFeedPayload(calendar_feed_url=url)
