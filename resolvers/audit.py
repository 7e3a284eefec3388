"""Access events from the GraphQL paths: one per request, actor, patient, document, action."""

from __future__ import annotations

from uuid import UUID

from api.context import Info
from models.access import Relation
from models.audit import AccessAction, AccessBasis


async def record_access(
    info: Info,
    relation: Relation,
    *,
    action: AccessAction = AccessAction.READ,
    document_id: UUID | None = None,
    basis: AccessBasis | None = None,
) -> None:
    """Log a read or write by anyone but the holder (the holder's own reads are not events)."""
    basis = basis or relation.audit_basis
    if basis is None:
        return
    await info.context.audit.record(
        patient_id=relation.patient_id, action=action, basis=basis, document_id=document_id
    )
