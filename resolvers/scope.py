"""The `patientId` rule of every patient-scoped input: absent, the viewer's own space;
present, a space the viewer holds or represents."""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

import strawberry

from api.context import Info
from api.errors import BadUserInput, Forbidden, NotFound, Unauthenticated
from models import access
from resolvers import ids


async def patient_scope(
    info: Info, patient_id: strawberry.ID | None, *, allow_closed: bool = False
) -> tuple[UUID, access.Relation]:
    actor = info.context.actor
    if actor.anonymous:
        raise Unauthenticated()
    if patient_id is None:
        if actor.patient_id is None:
            raise Forbidden("Only a patient acts on their own space; give a patientId.")
        pk = actor.patient_id
    else:
        pk = ids.decode_as(str(patient_id), "Patient")
    relation = await info.context.loaders.relation.load(pk)
    if not manages_space(relation, allow_closed=allow_closed):
        if not relation.visible:
            raise NotFound()
        if not relation.manages:
            raise Forbidden()
        raise Forbidden("This space is closed.")  # its holder's, or a minor's
    return pk, relation


def manages_space(relation: access.Relation, *, allow_closed: bool = False) -> bool:
    """`patient_scope`'s rule for a space the viewer names: its holder or a legal
    representative, the space not closed (unless `allow_closed`)."""
    return relation.visible and relation.manages and (relation.space_live or allow_closed)


def may_act_for(
    actor: access.Actor,
    relation: access.Relation,
    professional_may: Callable[[access.Relation], bool],
) -> bool:
    """`acting_for`'s rule for the space of `relation`, named by the viewer: the patient
    side by `patient_scope`'s rule, a professional or a partner app (for its one space) who
    sees the space and whose relation to it `professional_may` allows."""
    if actor.is_patient:
        return manages_space(relation)
    if actor.is_professional or (actor.is_app and actor.acting_for is not None):
        return relation.visible and professional_may(relation)
    return False


async def acting_for(
    info: Info,
    patient_id: strawberry.ID | None,
    *,
    professional_may: Callable[[access.Relation], bool],
    refusal: str,
) -> access.Relation:
    """The patient side acting on its space (the `patientId` rule), a professional who
    names the patient and whose relation to it allows the operation, or a partner app acting
    for its one space (`patientId` optional), allowed by the same test of its relation (its
    scopes: see models/access.py)."""
    actor = info.context.actor
    if actor.anonymous:
        raise Unauthenticated()
    if actor.is_app and actor.acting_for is not None:
        pk = actor.acting_for
        if patient_id is not None:
            pk = ids.decode_as(str(patient_id), "Patient")
        relation = await info.context.loaders.relation.load(pk)
        if not may_act_for(actor, relation, professional_may):
            if not relation.visible:
                raise NotFound()
            raise Forbidden("The patient did not grant this app that scope.")
        return relation
    if actor.is_professional:
        if patient_id is None:
            raise BadUserInput("A professional names the patient.", field="patientId")
        pk = ids.decode_as(str(patient_id), "Patient")
        relation = await info.context.loaders.relation.load(pk)
        if not may_act_for(actor, relation, professional_may):
            if not relation.visible:
                raise NotFound()
            raise Forbidden(refusal)
        return relation
    if actor.is_patient:
        _, relation = await patient_scope(info, patient_id)
        return relation
    raise Forbidden()


# The `patientId` of the inputs `patient_scope` reads (the holder's side only).
SPACE_ID = (
    "The space to act on: absent, the caller's own; else a space the caller holds or "
    "represents (a minor's). NOT_FOUND for a space the caller cannot see, FORBIDDEN for one "
    "they see but may not manage."
)
# The `patientId` of the inputs `acting_for` reads (a professional or an app may act too).
PATIENT_ID = (
    "The patient: a professional must name them (BAD_USER_INPUT otherwise); a patient leaves "
    "it out for their own space or names a minor they represent; a partner app may leave it "
    "out (its one space). NOT_FOUND for a space the caller cannot see."
)
