"""Who can see what, as the holder asks it (`whoCanSee`, `previewAs`): the professionals who
could read a document now and why, and a dossier as one professional would read it today.

Nothing here decides anything: each professional's relation to the space is read by
`models.access.relations`, exactly as their own requests would read it, and what it lets
them read by `models.document.document_scope`, the filter of every list, `node`, count and
download; the basis is `read_basis`, what their read would write in the log. The only new
thing is the list of professionals to ask about, which is wide on purpose (everyone with a
consent, an emergency access, the médecin traitant's seat, or the document's authorship,
past or present): the rules then keep those who really read. No request is made as them,
and nothing is logged in their name.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from uuid import UUID

from tortoise.expressions import Q

from models.access import Actor, Relation, active_consent, relations
from models.account import Role
from models.audit import AccessBasis
from models.consent import Consent, EmergencyAccess
from models.document import Document, DocumentScope, document_scope, read_basis
from models.errors import Invalid
from models.patient import Patient
from models.professional import Professional


def as_professional(professional_id: UUID) -> Actor:
    """The actor a professional's own requests run as (without a session: nothing is
    done in their name, only their rights are read)."""
    return Actor(role=Role.PROFESSIONAL, professional_id=professional_id)


@dataclass(frozen=True)
class Reader:
    """A professional who could read a document now: why, and until when (None: until the
    holder changes it, or for a basis that does not expire)."""

    professional_id: UUID
    basis: AccessBasis
    until: datetime | None


@dataclass(frozen=True)
class Preview:
    """One professional's view of a dossier today: their relation to it, the basis of
    their reading (None: no dossier basis, so at most what they deposited themselves), and
    the documents they read (None: none at all)."""

    professional_id: UUID
    relation: Relation
    basis: AccessBasis | None
    until: datetime | None
    documents: DocumentScope | None


async def _candidates(patient_id: UUID, document: Document | None) -> list[UUID]:
    """Every professional with a tie to the space that may give a basis: a consent or an
    emergency access (live or not), the médecin traitant, and the document's author."""
    found: set[UUID] = set()
    for model in (Consent, EmergencyAccess):
        ids = await model.filter(patient_id=patient_id).values_list("professional_id", flat=True)
        found.update(UUID(str(pk)) for pk in ids)
    treating = await Patient.filter(id=patient_id).values_list("treating_doctor_id", flat=True)
    found.update(UUID(str(pk)) for pk in treating if pk is not None)
    if document is not None and document.author_professional_id is not None:
        found.add(document.author_professional_id)
    return sorted(found)


async def _until(relation: Relation, professional_id: UUID, now: datetime) -> datetime | None:
    """When the basis of this relation ends, if it does by itself."""
    basis = relation.dossier_basis
    pid = relation.patient_id
    if basis is AccessBasis.CONSENT:
        consent = (
            await Consent.filter(active_consent(professional_id, now), patient_id=pid)
            .order_by("-granted_at")
            .first()
        )
        return consent.expires_at if consent is not None else None
    if basis is AccessBasis.EMERGENCY:
        access = (
            await EmergencyAccess.filter(
                patient_id=pid, professional_id=professional_id, expires_at__gt=now
            )
            .order_by("-expires_at")
            .first()
        )
        return access.expires_at if access is not None else None
    return None


async def preview(
    patient_id: UUID, professional_id: UUID, *, today: date, now: datetime
) -> Preview:
    """What one professional would read of this dossier today, by the rules of their own
    reads. `Invalid` (field professional_id) for an unknown professional."""
    if not await Professional.exists(id=professional_id):
        raise Invalid("Unknown professional.", field="professional_id")
    return await _view(patient_id, professional_id, today=today, now=now)


async def _view(patient_id: UUID, professional_id: UUID, *, today: date, now: datetime) -> Preview:
    actor = as_professional(professional_id)
    relation = (await relations(actor, [patient_id], today, now))[patient_id]
    scope = document_scope(actor, relation)
    basis = relation.dossier_basis
    until = await _until(relation, professional_id, now) if basis is not None else None
    return Preview(professional_id, relation, basis, until, scope)


async def readers(document: Document, *, today: date, now: datetime) -> list[Reader]:
    """Every professional who could read this document now, and why (the basis their read
    would be logged with), in the order of their ids."""
    found: list[Reader] = []
    for professional_id in await _candidates(document.patient_id, document):
        seen = await _view(document.patient_id, professional_id, today=today, now=now)
        scope = seen.documents
        if scope is None or not await Document.filter(scope.q(), id=document.id).exists():
            continue
        basis = read_basis(seen.relation)
        if basis is None:  # only the holder has none, and a professional never is one
            continue
        found.append(Reader(professional_id, basis, seen.until))
    return found


def visible_to_both(viewer: DocumentScope, other: DocumentScope | None) -> Q | None:
    """Filter on Document: what `other` reads that the viewer reads too (a representative
    never learns of a document hidden from representatives through a preview)."""
    if other is None:
        return None
    return viewer.q() & other.q()
