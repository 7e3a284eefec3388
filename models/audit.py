"""The access log: append-only events, one per request, actor, patient, document and action.

Audit is explicit: domain operations and the read paths call these functions; no signals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from tortoise import fields

from models.base import Entity
from models.patient import Patient


class AccessAction(StrEnum):
    READ = "READ"
    WRITE = "WRITE"
    DOWNLOAD = "DOWNLOAD"
    LOOKUP = "LOOKUP"
    EMERGENCY_OPEN = "EMERGENCY_OPEN"


class AccessBasis(StrEnum):
    CONSENT = "CONSENT"
    TREATING_DOCTOR = "TREATING_DOCTOR"
    EMERGENCY = "EMERGENCY"
    REPRESENTATIVE = "REPRESENTATIVE"
    AUTHOR = "AUTHOR"
    CONVERSATION = "CONVERSATION"
    OPERATOR = "OPERATOR"
    APP = "APP"
    LOOKUP = "LOOKUP"  # a professional identified the patient by NIR and birth date


class ActorRole(StrEnum):
    PATIENT = "PATIENT"
    PROFESSIONAL = "PROFESSIONAL"
    OPERATOR = "OPERATOR"
    PARTNER_APP = "PARTNER_APP"


class AccessEvent(Entity):
    """Never updated nor deleted while the space exists (no API writes but `record`)."""

    patient_id: UUID

    at = fields.DatetimeField()
    patient: fields.ForeignKeyRelation[Patient] = fields.ForeignKeyField(
        "models.Patient", related_name="access_events", on_delete=fields.CASCADE
    )
    actor_id = fields.UUIDField()
    actor_role = fields.CharEnumField(ActorRole, max_length=16)
    action = fields.CharEnumField(AccessAction, max_length=16)
    basis = fields.CharEnumField(AccessBasis, max_length=16)
    # Kept as a bare id so the log outlives a deleted document.
    document_id = fields.UUIDField(null=True)
    request_id = fields.CharField(max_length=32)

    class Meta:
        table = "access_event"
        indexes = (("patient_id", "at"),)


@dataclass
class AuditTrail:
    """Per request: writes each distinct (patient, document, action) event once."""

    request_id: str
    actor_id: UUID | None
    actor_role: ActorRole | None
    now: datetime
    _written: set[tuple[UUID, UUID | None, AccessAction]] = field(default_factory=set)

    async def record(
        self,
        *,
        patient_id: UUID,
        action: AccessAction,
        basis: AccessBasis,
        document_id: UUID | None = None,
    ) -> None:
        key = (patient_id, document_id, action)
        if key in self._written or self.actor_id is None or self.actor_role is None:
            return
        self._written.add(key)
        await AccessEvent.create(
            at=self.now,
            patient_id=patient_id,
            actor_id=self.actor_id,
            actor_role=self.actor_role,
            action=action,
            basis=basis,
            document_id=document_id,
            request_id=self.request_id,
        )
