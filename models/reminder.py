"""Reminders: appointment, screening and vaccination reminders, and emergency-access alerts.

Each is raised once: (patient, key) is unique in the database, so two job runs (on two
machines) cannot raise the same reminder twice.
"""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID

from tortoise import fields

from models.base import Entity
from models.patient import Patient


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
    dismissed_at = fields.DatetimeField(null=True)
    patient_id: UUID

    class Meta:
        table = "reminder"
        unique_together = (("patient", "key"),)
        indexes = (("status", "due_at"),)
