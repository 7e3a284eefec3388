"""The `patientId` rule of every patient-scoped input: absent, the viewer's own space;
present, a space the viewer holds or represents."""

from __future__ import annotations

from uuid import UUID

import strawberry

from api.context import Info
from api.errors import Forbidden, NotFound, Unauthenticated
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
    if relation.holder and not actor.space_open and not allow_closed:
        raise Forbidden("This space is closed.")
    return pk, relation
