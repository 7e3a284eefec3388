"""Agenda médical: appointments, reminders and the calendar feed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import strawberry

from api.context import Info
from api.errors import BadUserInput, Forbidden, NotFound, Unauthenticated
from models import access
from models import appointment as agenda
from models import reminder as reminders
from models.access import Relation
from models.appointment import Appointment as AppointmentModel
from models.appointment import AppointmentSource as AppointmentSourceModel
from models.calendar_feed import feed_url, rotate_feed
from models.catalogue import AppScope
from models.idempotency import Operation, Replay, created, once
from models.reminder import Reminder as ReminderModel
from resolvers import ids
from resolvers.audit import logged_write, record_access
from resolvers.cost import READS_DATABASE
from resolvers.enums import AppointmentSource, AppointmentStatus, ReminderKind, ReminderStatus
from resolvers.idempotency import key_field, keyed
from resolvers.node import Node, register
from resolvers.pagination import Connection, Order, paginate
from resolvers.people import PATIENT_AFTER_WRITE, Patient, Professional, patient_after_write
from resolvers.positions import position_cursor
from resolvers.scope import PATIENT_ID, SPACE_ID, acting_for, patient_scope

APPOINTMENT_ORDER = Order((("starts_at", False), ("id", False)))
REMINDER_ORDER = Order((("due_at", True), ("id", True)))


@strawberry.type(name="Appointment", description="An appointment of the agenda médical.")
class Appointment(Node):
    pk: strawberry.Private[UUID]
    patient_id: strawberry.Private[UUID]
    professional_id: strawberry.Private[UUID | None]
    starts_at: datetime = strawberry.field(description="When it starts.")
    ends_at: datetime = strawberry.field(
        description="When it ends: after `startsAt`, 24 hours later at most."
    )
    title: str = strawberry.field(description="What it is, 1 to 200 characters.")
    location: str | None = strawberry.field(
        description="Where, 300 characters at most; null when not given."
    )
    status: AppointmentStatus = strawberry.field(  # type: ignore[valid-type]
        description="Scheduled, cancelled or done (ended)."
    )
    source: AppointmentSource = strawberry.field(  # type: ignore[valid-type]
        description="Who booked it."
    )
    cancelled_reason: str | None = strawberry.field(
        description="Why it was cancelled, when a reason was given; null otherwise."
    )

    @strawberry.field(description="The professional it is with; null when none was named.")
    async def professional(self, info: Info) -> Professional | None:
        if self.professional_id is None:
            return None
        row = await info.context.loaders.professional.load(self.professional_id)
        return Professional.from_model(row) if row else None

    @strawberry.field(
        description=(
            "Whether `updateAppointment` is allowed to this viewer on this appointment now, "
            "by the rules it applies (who may change it, and only while SCHEDULED)."
        ),
        directives=[READS_DATABASE],
    )
    async def viewer_can_update(self, info: Info) -> bool:
        return await viewer_changes_appointment(info, self.pk)

    @strawberry.field(
        description=(
            "Whether `cancelAppointment` is allowed to this viewer on this appointment now, "
            "by the rules it applies (the same as `viewerCanUpdate`'s)."
        ),
        directives=[READS_DATABASE],
    )
    async def viewer_can_cancel(self, info: Info) -> bool:
        return await viewer_changes_appointment(info, self.pk)

    @classmethod
    def from_model(cls, row: AppointmentModel) -> Appointment:
        return cls(
            id=strawberry.ID(ids.encode("Appointment", row.id)),
            pk=row.id,
            patient_id=row.patient_id,
            professional_id=row.professional_id,
            starts_at=row.starts_at,
            ends_at=row.ends_at,
            title=row.title,
            location=row.location,
            status=row.status,
            source=row.source,
            cancelled_reason=row.cancelled_reason,
        )


@strawberry.type(
    name="AppointmentConnection", description="A page of appointments (a Relay connection)."
)
class AppointmentConnection(Connection[Appointment]):
    pass


@strawberry.type(name="Reminder", description="A reminder: appointment, screening, vaccination.")
class Reminder(Node):
    pk: strawberry.Private[UUID]
    appointment_id: strawberry.Private[UUID | None]
    kind: ReminderKind = strawberry.field(  # type: ignore[valid-type]
        description="What it reminds of."
    )
    title: str = strawberry.field(description="What to show the patient, in French.")
    reason: str = strawberry.field(description="Why it was raised: which record, or none.")
    rule: str = strawberry.field(description="The rule that raised it.")
    due_at: datetime = strawberry.field(
        description=(
            "When it falls due: for an appointment, that many hours before it; for an "
            "emergency access, its moment; for a screening or a vaccine, midnight "
            "(Europe/Paris) of the day it becomes due."
        )
    )
    status: ReminderStatus = strawberry.field(  # type: ignore[valid-type]
        description="Whether it was raised, or dismissed."
    )

    alert_position: strawberry.Private[int | None]

    @strawberry.field(description="The appointment it is about; null for other kinds.")
    async def appointment(self, info: Info) -> Appointment | None:
        if self.appointment_id is None:
            return None
        row = await info.context.loaders.appointment.load(self.appointment_id)
        return Appointment.from_model(row) if row else None

    @strawberry.field(
        description=(
            "Where its alert stands among the viewer's alerts, in the order they were raised "
            "(commit order): the value `reminderAlerts(after:)` accepts, opaque. Null until "
            "it falls due (and for one raised before alerts had positions)."
        )
    )
    def alert_cursor(self) -> str | None:
        if self.alert_position is None:
            return None
        return position_cursor(self.alert_position)

    @classmethod
    def from_model(cls, row: ReminderModel) -> Reminder:
        return cls(
            id=strawberry.ID(ids.encode("Reminder", row.id)),
            pk=row.id,
            alert_position=row.alert_seq,
            appointment_id=row.appointment_id,
            kind=row.kind,
            title=row.title,
            reason=row.reason,
            rule=row.rule,
            due_at=row.due_at,
            status=row.status,
        )


@strawberry.type(name="ReminderConnection", description="A page of reminders (a Relay connection).")
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
    *,
    last: int | None = None,
    before: str | None = None,
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
        last=last,
        before=before,
        wrap=Appointment.from_model,
        connection=AppointmentConnection,
    )


async def professional_appointments(
    info: Info,
    professional_pk: UUID,
    first: int | None,
    after: str | None,
    starts_from: datetime | None,
    starts_to: datetime | None,
    *,
    last: int | None = None,
    before: str | None = None,
) -> AppointmentConnection:
    """The professional's own appointments, with any patient, by the rule of every other
    path to an appointment (`node`, `Patient.appointments`): those of the spaces whose
    dossier they read now. Each space the page shows is read: one access event per space."""
    ctx = info.context
    query = AppointmentModel.filter(
        professional_id=professional_pk,
        patient_id__in=access.dossier_patient_ids(professional_pk, ctx.now),
    )
    if starts_from is not None:
        query = query.filter(ends_at__gte=_utc(starts_from, "from"))
    if starts_to is not None:
        query = query.filter(starts_at__lt=_utc(starts_to, "to"))
    page = await paginate(
        query,
        APPOINTMENT_ORDER,
        first=first,
        after=after,
        last=last,
        before=before,
        wrap=Appointment.from_model,
        connection=AppointmentConnection,
    )
    patient_ids = list(dict.fromkeys(edge.node.patient_id for edge in page.edges))
    for relation in await ctx.loaders.relation.load_many(patient_ids):
        await record_access(info, relation)
    return page


def _utc(moment: datetime, name: str) -> datetime:
    """Bounds compared in UTC, like the stored times (SQLite compares them as text)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise BadUserInput("A time needs an offset (ISO-8601).", field=name)
    return moment.astimezone(UTC)


async def patient_reminders(
    info: Info,
    patient_pk: UUID,
    first: int | None,
    after: str | None,
    status: Any,
    *,
    last: int | None = None,
    before: str | None = None,
) -> ReminderConnection:
    query = ReminderModel.filter(patient_id=patient_pk)
    if status is not None:
        query = query.filter(status=status)
    return await paginate(
        query,
        REMINDER_ORDER,
        first=first,
        after=after,
        last=last,
        before=before,
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
    actor = info.context.actor
    for row in rows:
        relation = await info.context.loaders.relation.load(row.patient_id)
        if _reads_appointment(relation, platform=to_change and _booked_by(actor, row)):
            out[row.id] = row
    return out


def _booked_by(actor: access.Actor, row: AppointmentModel) -> bool:
    """An appointment platform's own booking (source PLATFORM, booked by this very app)."""
    return (
        row.source is AppointmentSourceModel.PLATFORM
        and actor.app_id is not None
        and row.app_id == actor.app_id
    )


def _reads_appointment(relation: Relation, *, platform: bool) -> bool:
    return relation.reads(AppScope.APPOINTMENTS_READ) or (platform and relation.books_appointments)


def may_change_appointment(actor: access.Actor, relation: Relation, row: AppointmentModel) -> bool:
    """`_appointment`'s rule (updateAppointment, cancelAppointment), before the state of the
    appointment (`models.appointment.changeable`): the patient side, a professional or an app
    who may read it to change it and may book for the space; an app, only what it booked."""
    if not (actor.is_patient or actor.is_professional or actor.is_app):
        return False  # an operator never touches health data, as in createAppointment
    if not _reads_appointment(relation, platform=_booked_by(actor, row)):
        return False
    return relation.books_appointments and (not actor.is_app or _booked_by(actor, row))


async def viewer_changes_appointment(info: Info, pk: UUID) -> bool:
    """updateAppointment's and cancelAppointment's rules for the viewer, on the appointment
    as stored now; through the request's loaders, batched across a page."""
    loaders = info.context.loaders
    row = await loaders.appointment.load(pk)
    if row is None or info.context.actor.anonymous:
        return False
    relation = await loaders.relation.load(row.patient_id)
    return may_change_appointment(info.context.actor, relation, row) and agenda.changeable(row)


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
    starts_at: datetime = strawberry.field(description="When it starts (with an offset).")
    ends_at: datetime = strawberry.field(
        description="When it ends (with an offset): after `startsAt`, 24 hours later at most."
    )
    title: str = strawberry.field(description="What it is, 1 to 200 characters.")
    location: str | None = strawberry.field(
        default=None, description="Where, 300 characters at most; absent, null or blank: none."
    )
    professional_id: strawberry.ID | None = strawberry.field(
        default=None,
        description=(
            "The professional it is with; absent: none, or the calling professional when a "
            "professional books."
        ),
    )
    patient_id: strawberry.ID | None = strawberry.field(default=None, description=PATIENT_ID)
    idempotency_key: str | None = key_field()


@strawberry.type
class CreateAppointmentPayload:
    appointment: Appointment = strawberry.field(description="The appointment booked.")


@strawberry.input
class UpdateAppointmentInput:
    appointment_id: strawberry.ID = strawberry.field(
        description="The appointment: SCHEDULED (CONFLICT otherwise)."
    )
    starts_at: datetime | None = strawberry.field(
        default=None, description="The new start (with an offset); absent or null: unchanged."
    )
    ends_at: datetime | None = strawberry.field(
        default=None, description="The new end (with an offset); absent or null: unchanged."
    )
    title: str | None = strawberry.field(
        default=None, description="The new title, 1 to 200 characters; absent or null: unchanged."
    )
    location: str | None = strawberry.field(
        default=strawberry.UNSET,
        description="Absent: unchanged. A text: the new place (blank clears it). null: cleared.",
    )
    professional_id: strawberry.ID | None = strawberry.field(
        default=strawberry.UNSET,
        description=(
            "Absent: unchanged. An id: the professional it is now with. null: with no "
            "professional any more."
        ),
    )


@strawberry.type
class UpdateAppointmentPayload:
    appointment: Appointment = strawberry.field(
        description="The appointment, as changed (its reminders rescheduled)."
    )


@strawberry.input
class CancelAppointmentInput:
    appointment_id: strawberry.ID = strawberry.field(
        description="The appointment: SCHEDULED (CONFLICT otherwise)."
    )
    reason: str | None = strawberry.field(
        default=None, description="Why, 500 characters at most; absent, null or blank: none."
    )


@strawberry.type
class CancelAppointmentPayload:
    appointment: Appointment = strawberry.field(description="The appointment, cancelled.")


@strawberry.input
class DismissReminderInput:
    reminder_id: strawberry.ID = strawberry.field(description="The reminder to dismiss.")


@strawberry.type
class DismissReminderPayload:
    reminder: Reminder = strawberry.field(description="The reminder, dismissed.")


@strawberry.input
class RotateCalendarFeedInput:
    patient_id: strawberry.ID | None = strawberry.field(default=None, description=SPACE_ID)


@strawberry.type
class RotateCalendarFeedPayload:
    calendar_feed_url: str = strawberry.field(
        description="The new private iCalendar URL; the previous one no longer answers."
    )
    patient_pk: strawberry.Private[UUID]

    @strawberry.field(description=PATIENT_AFTER_WRITE)
    async def patient(self, info: Info) -> Patient | None:
        return await patient_after_write(info, self.patient_pk)


def books_appointments(relation: Relation) -> bool:
    """createAppointment's test of a relation (`acting_for`'s `professional_may`)."""
    return relation.books_appointments


async def _booker(info: Info, patient_id: strawberry.ID | None) -> Relation:
    """The patient side, or a professional under consent (or médecin traitant)."""
    return await acting_for(
        info,
        patient_id,
        professional_may=books_appointments,
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
    if not may_change_appointment(actor, relation, row):
        if actor.is_app and relation.books_appointments:
            # An appointment platform syncs the appointments it booked itself: not the
            # patient's, a professional's, nor another platform's.
            raise Forbidden("An app moves or cancels only the appointments it booked itself.")
        raise Forbidden()
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
        attempt = keyed(
            info,
            Operation.CREATE_APPOINTMENT,
            input.idempotency_key,
            patient=relation.patient_id,
            starts_at=input.starts_at,
            ends_at=input.ends_at,
            title=input.title,
            location=input.location,
            professional=professional,
        )

        async def create() -> AppointmentModel:
            async with logged_write(info, relation):
                return await agenda.create_appointment(
                    relation.patient_id,
                    agenda.Slot(input.starts_at, input.ends_at, input.title, input.location),
                    professional_id=professional,
                    source=source,
                    hours=ctx.settings.appointment_reminder_hours,
                    now=ctx.now,
                    app_id=ctx.actor.app_id if ctx.actor.is_app else None,
                    claim=attempt,
                )

        async def replay(earlier: Replay) -> AppointmentModel:
            # Allowed to book for this patient now (`_booker` above): the appointment booked.
            return await created(
                AppointmentModel, earlier.object_id, patient_id=relation.patient_id
            )

        row, _ = await once(attempt, create, replay)
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
        return RotateCalendarFeedPayload(calendar_feed_url=url, patient_pk=pk)
