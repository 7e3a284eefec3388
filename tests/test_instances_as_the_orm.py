"""`resolvers.pagination.instances` makes of whole rows the model instances the ORM makes of
them (its dates and moments parsed by the standard library first, the field's own parser
kept for what it cannot read)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from models.base import parameter_prefix
from models.patient import Patient
from resolvers.pagination import instances
from tests.factories import make_patient


async def _stored(pk: object) -> list[object]:
    db = Patient._meta.db
    p = parameter_prefix(db)
    _, rows = await db.execute_query(f'SELECT * FROM "patient" WHERE "id" = {p}1', [str(pk)])
    return list(rows)


async def test_instances_are_those_of_the_orm(client: httpx.AsyncClient) -> None:
    person = await make_patient("Alice", "Martin")
    moment = datetime(2025, 6, 1, 8, 30, 15, 123456, tzinfo=UTC)
    await Patient.filter(id=person.patient.id).update(activated_at=moment, opposed_at=None)
    expected = await Patient.get(id=person.patient.id)
    (found,) = instances(Patient, await _stored(person.patient.id))
    assert vars(found) == vars(expected)
    assert found.activated_at == moment and found.birth_date == expected.birth_date
