"""Whom to notify about a space: its holder's account and its current legal representatives'."""

from __future__ import annotations

from datetime import date
from uuid import UUID

from tortoise.expressions import Q

from models.account import Account
from models.patient import Patient, Representation, is_minor


async def managing_accounts(patient_id: UUID, today: date) -> list[UUID]:
    patient = await Patient.get_or_none(id=patient_id)
    if patient is None:
        return []
    managers = [patient_id]
    if is_minor(patient.birth_date, today):
        managers += [
            link.representative_id for link in await Representation.filter(dependent_id=patient_id)
        ]
    rows = await Account.filter(Q(patient_id__in=managers)).values_list("id", flat=True)
    return [UUID(str(row)) for row in rows]
