"""The access log: append-only events, one per request, actor, patient, document and action.

Audit is explicit: domain operations and the read paths call these functions; no signals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING
from uuid import UUID, uuid4

from tortoise import fields
from tortoise.expressions import Q, Subquery

from models.base import Entity, parameter_prefix, utcnow
from models.patient import Patient

if TYPE_CHECKING:
    from models.access import Relation


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


def readable_log(relation: Relation) -> Q:
    """Filter on AccessEvent: one patient's log as this viewer reads it.

    The holder reads all of it. A legal representative does not read the events about a
    document hidden from representatives: the minor's secret covers the traces of that
    document too (who deposited or read it, and when). Those events are left out of the
    list, its count and `node(id:)` alike, so that the log says nothing of such a document;
    an event the viewer does read names its document only when they may read that one too
    (else null, as for a deleted document). Anyone else reads nothing.
    """
    from models.document import Document

    own = Q(patient_id=relation.patient_id)
    if relation.holder:
        return own
    if not relation.representative:
        return own & Q(id__in=[])
    hidden = Document.filter(
        patient_id=relation.patient_id, hidden_from_representatives=True
    ).values("id")
    # Not `~Q(document_id__in=…)` alone: in SQL, NULL NOT IN (…) is not true, and the events
    # without a document would go too.
    return own & (Q(document_id=None) | ~Q(document_id__in=Subquery(hidden)))


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
        # Most requests write one: the INSERT written out costs half of `create()`.
        db = AccessEvent._meta.db  # the transaction's connection inside one
        p = parameter_prefix(db)
        await db.execute_insert(
            _INSERT.format(*(f"{p}{n}" for n in range(1, 11))),
            [
                str(uuid4()),
                utcnow(),
                self.now,
                str(patient_id),
                str(self.actor_id),
                self.actor_role.value,
                action.value,
                basis.value,
                None if document_id is None else str(document_id),
                self.request_id,
            ],
        )


_INSERT = (
    "INSERT INTO access_event (id, created_at, at, patient_id, actor_id, actor_role, action,"
    " basis, document_id, request_id) VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}, {})"
)
