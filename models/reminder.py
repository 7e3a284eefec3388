"""Reminders: appointment, screening and vaccination reminders, and emergency-access alerts.

Each is raised once: (patient, key) is unique in the database, so two job runs (on two
machines) cannot raise the same reminder twice.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from enum import StrEnum
from typing import TYPE_CHECKING
from uuid import UUID

from tortoise import fields
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from models import clock
from models.base import PARIS, Entity
from models.patient import Patient

if TYPE_CHECKING:
    from models.appointment import Appointment


class ReminderKind(StrEnum):
    APPOINTMENT = "APPOINTMENT"
    SCREENING = "SCREENING"
    VACCINATION = "VACCINATION"
    EMERGENCY_ACCESS = "EMERGENCY_ACCESS"


class ReminderStatus(StrEnum):
    PENDING = "PENDING"
    SENT = "SENT"
    DISMISSED = "DISMISSED"


class Reminder(Entity):
    patient: fields.ForeignKeyRelation[Patient] = fields.ForeignKeyField(
        "models.Patient", related_name="reminders", on_delete=fields.CASCADE
    )
    kind = fields.CharEnumField(ReminderKind, max_length=24)
    key = fields.CharField(max_length=120)
    rule = fields.CharField(max_length=40)
    title = fields.CharField(max_length=200)
    reason = fields.TextField()
    due_at = fields.DatetimeField()
    status = fields.CharEnumField(ReminderStatus, max_length=16, default=ReminderStatus.PENDING)
    sent_at = fields.DatetimeField(null=True)
    # Its place among alerts in commit order (models/clock.py), given as it falls due: what
    # `reminderAlerts(after:)` resumes from. Null until then (and for those raised before
    # alerts had positions but numbered by the migration: none).
    alert_seq = fields.BigIntField(null=True, unique=True)
    dismissed_at = fields.DatetimeField(null=True)
    appointment: fields.ForeignKeyNullableRelation[Appointment] = fields.ForeignKeyField(
        "models.Appointment", related_name="reminders", null=True, on_delete=fields.CASCADE
    )
    patient_id: UUID
    appointment_id: UUID | None

    class Meta:
        table = "reminder"
        unique_together = (("patient", "key"),)
        indexes = (("status", "due_at"), ("patient_id", "alert_seq"))


# --- operations -------------------------------------------------------------------------


async def raise_due(now: datetime, *, limit: int = 500) -> list[Reminder]:
    """PENDING reminders that fell due become SENT exactly once: the conditional UPDATE is
    the lock, so two processes running the jobs at once never raise one twice."""
    now = now.astimezone(UTC)  # SQLite compares timestamps as text: UTC like the stored ones
    while True:
        rows = (
            await Reminder.filter(status=ReminderStatus.PENDING, due_at__lte=now)
            .order_by("due_at", "id")
            .limit(limit)
        )
        raised = await _raise_rows(rows, now)
        # A full batch of stale rows (or rows another run won) raises nothing, yet more may
        # be due behind it: the caller stops at an empty batch, so look further first. Each
        # pass leaves the rows it saw not PENDING, so this ends.
        if raised or len(rows) < limit:
            return raised


async def _raise_rows(rows: list[Reminder], now: datetime) -> list[Reminder]:
    from models.appointment import Appointment, AppointmentStatus

    raised: list[Reminder] = []
    for row in rows:
        if row.appointment_id is not None:
            live = await Appointment.filter(
                id=row.appointment_id, status=AppointmentStatus.SCHEDULED, starts_at__gt=now
            ).exists()
            if not live:
                # Caught up after downtime too late, or the appointment changed: not raised.
                await Reminder.filter(id=row.id, status=ReminderStatus.PENDING).update(
                    status=ReminderStatus.DISMISSED, dismissed_at=now
                )
                continue
        if await _raise(row, now):
            raised.append(row)
    return raised


async def _raise(row: Reminder, now: datetime) -> bool:
    """PENDING to SENT exactly once (the conditional UPDATE is the lock), with its alert
    position taken last, in the same transaction: alerts are numbered in commit order."""
    async with in_transaction() as conn:
        won = await (
            Reminder.filter(id=row.id, status=ReminderStatus.PENDING)
            .using_db(conn)
            .update(status=ReminderStatus.SENT, sent_at=now)
        )
        if won != 1:
            return False
        position = await clock.next_position(conn, clock.ALERTS)
        await Reminder.filter(id=row.id).using_db(conn).update(alert_seq=position)
    row.status, row.sent_at, row.alert_seq = ReminderStatus.SENT, now, position
    return True


async def raise_now(patient_id: UUID, key: str, *, now: datetime) -> list[Reminder]:
    """Raise one reminder at once (emergency access), with the same exactly-once UPDATE."""
    row = await Reminder.get_or_none(patient_id=patient_id, key=key)
    if row is None:
        return []
    return [row] if await _raise(row, now) else []


async def compute_rule_reminders(now: datetime, *, batch: int = 500) -> int:
    """Screening and vaccination reminders by the rules table, once per patient per day.

    A patient is claimed for the day by a conditional UPDATE; the (patient, key) unique
    constraint makes a reminder exist once whatever runs twice.
    """
    from models.base import paris_today
    from models.patient import SpaceStatus

    today = paris_today(now)
    created = 0
    # Every space in one run, a batch at a time (a daily `run-jobs` must not stop at the
    # first batch); each pass claims or skips what it saw, so the loop ends.
    while candidates := await Patient.filter(
        Q(rules_checked_on=None) | Q(rules_checked_on__lt=today), status=SpaceStatus.ACTIVE
    ).limit(batch):
        created += await _apply_rules(candidates, today)
    return created


async def _apply_rules(candidates: list[Patient], today: date) -> int:
    created = 0
    for patient in candidates:
        # Claim, compute and insert in one transaction: a crash mid-way leaves the space
        # unclaimed for the next run, and a concurrent run waits on the claim, then skips.
        async with in_transaction() as conn:
            created += await _apply_rules_to(patient, today, conn)
    return created


async def _apply_rules_to(patient: Patient, today: date, conn: BaseDBAsyncClient) -> int:
    from models.record import Screening, Vaccination
    from models.rules import ScreeningRecord, VaccinationRecord, due_reminders

    unchecked = Q(rules_checked_on=None) | Q(rules_checked_on__lt=today)
    claimed = (
        await Patient.filter(unchecked, id=patient.id).using_db(conn).update(rules_checked_on=today)
    )
    if claimed != 1:
        return 0
    due = due_reminders(
        birth_date=patient.birth_date,
        sex=patient.sex.value,
        vaccinations=[
            VaccinationRecord(vaccine=v.vaccine.value, date=v.date, dose_number=v.dose_number)
            for v in await Vaccination.filter(patient_id=patient.id).using_db(conn)
        ],
        screenings=[
            ScreeningRecord(kind=s.kind.value, date=s.date)
            for s in await Screening.filter(patient_id=patient.id).using_db(conn)
        ],
        today=today,
    )
    if not due:
        return 0
    existing = {
        str(key)
        for key in await Reminder.filter(patient_id=patient.id, key__in=[d.key for d in due])
        .using_db(conn)
        .values_list("key", flat=True)
    }
    fresh = [
        Reminder(
            patient_id=patient.id,
            kind=ReminderKind(d.kind),
            key=d.key,
            rule=d.rule,
            title=d.title,
            reason=d.reason,
            due_at=datetime.combine(d.due_on, time.min, tzinfo=PARIS),
        )
        for d in due
        if d.key not in existing
    ]
    if fresh:
        await Reminder.bulk_create(fresh, ignore_conflicts=True, using_db=conn)
    return len(fresh)


async def dismiss(reminder: Reminder, *, now: datetime) -> Reminder:
    if reminder.status is not ReminderStatus.DISMISSED:
        await Reminder.filter(id=reminder.id).update(
            status=ReminderStatus.DISMISSED, dismissed_at=now
        )
        reminder.status = ReminderStatus.DISMISSED
        reminder.dismissed_at = now
    return reminder
