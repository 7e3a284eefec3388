"""Who is calling, and the single place that decides which rows an actor may see.

Every path (queries, `node`, lists, counts, downloads, subscriptions, jobs) asks this
module, as query filters, so counts and pages are filtered in SQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from uuid import UUID

from tortoise.expressions import Q

from models.account import Role
from models.patient import Patient, Representation, SpaceStatus, is_minor, minor_cutoff

__all__ = ["ANONYMOUS", "Actor", "Basis", "Relation", "is_minor", "relations", "visible_patients"]


class Basis(StrEnum):
    """Why an actor may see a patient; the AccessBasis enum of the API adds to these."""

    HOLDER = "HOLDER"
    REPRESENTATIVE = "REPRESENTATIVE"
    OPERATOR = "OPERATOR"


@dataclass(frozen=True)
class Actor:
    role: Role | None = None
    account_id: UUID | None = None
    session_id: UUID | None = None
    patient_id: UUID | None = None
    professional_id: UUID | None = None
    operator_id: UUID | None = None
    patient_status: SpaceStatus | None = None

    @property
    def anonymous(self) -> bool:
        return self.role is None

    @property
    def is_patient(self) -> bool:
        return self.role is Role.PATIENT

    @property
    def is_professional(self) -> bool:
        return self.role is Role.PROFESSIONAL

    @property
    def is_operator(self) -> bool:
        return self.role is Role.OPERATOR

    @property
    def space_open(self) -> bool:
        """A patient whose own space is closed may only see its status and ask for deletion."""
        return self.role is Role.PATIENT and self.patient_status is SpaceStatus.ACTIVE


ANONYMOUS = Actor()


@dataclass
class Relation:
    """Everything that ties an actor to one patient, computed once per request."""

    patient_id: UUID
    bases: set[Basis] = field(default_factory=set)

    @property
    def holder(self) -> bool:
        return Basis.HOLDER in self.bases

    @property
    def representative(self) -> bool:
        return Basis.REPRESENTATIVE in self.bases

    @property
    def operator(self) -> bool:
        return Basis.OPERATOR in self.bases

    @property
    def manages(self) -> bool:
        """Holder or legal representative: may read and manage the whole space."""
        return self.holder or self.representative

    @property
    def visible(self) -> bool:
        return bool(self.bases)


def visible_patients(actor: Actor, today: date) -> Q:
    """Filter on Patient: the spaces the actor may see at all (identity at least)."""
    if actor.is_operator:
        return Q(status__in=[SpaceStatus.PENDING, SpaceStatus.ACTIVE, SpaceStatus.CLOSED])
    if actor.is_patient and actor.patient_id is not None:
        own = Q(id=actor.patient_id)
        if not actor.space_open:
            return own
        return own | Q(
            representative_links__representative_id=actor.patient_id,
            birth_date__gt=minor_cutoff(today),
            status__in=[SpaceStatus.PENDING, SpaceStatus.ACTIVE],
        )
    return Q(id__in=[])


async def relations(actor: Actor, patient_ids: list[UUID], today: date) -> dict[UUID, Relation]:
    """The relation of the actor to each patient (missing bases mean: not visible)."""
    result = {pid: Relation(pid) for pid in patient_ids}
    if actor.anonymous or not patient_ids:
        return result
    if actor.is_operator:
        rows = await Patient.filter(id__in=patient_ids).filter(visible_patients(actor, today))
        for patient in rows:
            result[patient.id].bases.add(Basis.OPERATOR)
        return result
    if actor.is_patient and actor.patient_id is not None:
        if actor.patient_id in result:
            result[actor.patient_id].bases.add(Basis.HOLDER)
        others = [pid for pid in patient_ids if pid != actor.patient_id]
        if others and actor.space_open:
            links = await Representation.filter(
                representative_id=actor.patient_id, dependent_id__in=others
            ).prefetch_related("dependent")
            for link in links:
                dependent = link.dependent
                if is_minor(dependent.birth_date, today) and dependent.status in (
                    SpaceStatus.PENDING,
                    SpaceStatus.ACTIVE,
                ):
                    result[dependent.id].bases.add(Basis.REPRESENTATIVE)
    return result
