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
    if not relation.visible:
        raise NotFound()
    if not relation.manages:
        raise Forbidden()
    if not relation.space_live and not allow_closed:  # its holder's, or a minor's
        raise Forbidden("This space is closed.")
    return pk, relation


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
        if not relation.visible:
            raise NotFound()
        if not professional_may(relation):
            raise Forbidden("The patient did not grant this app that scope.")
        return relation
    if actor.is_professional:
        if patient_id is None:
            raise BadUserInput("A professional names the patient.", field="patientId")
        pk = ids.decode_as(str(patient_id), "Patient")
        relation = await info.context.loaders.relation.load(pk)
        if not relation.visible:
            raise NotFound()
        if not professional_may(relation):
            raise Forbidden(refusal)
        return relation
    if actor.is_patient:
        _, relation = await patient_scope(info, patient_id)
        return relation
    raise Forbidden()
