"""The structured record: vaccinations (carnet), screenings, and the health profile."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Any
from uuid import UUID

from tortoise import fields
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from models.base import Entity
from models.errors import Invalid
from models.patient import Patient
from models.professional import Professional


class VaccineCode(StrEnum):
    DTP = "DTP"
    DTCAP = "DTCAP"
    INFLUENZA = "INFLUENZA"
    PNEUMOCOCCAL = "PNEUMOCOCCAL"
    ZOSTER = "ZOSTER"
    COVID19 = "COVID19"
    HPV = "HPV"
    MMR = "MMR"
    HEPATITIS_B = "HEPATITIS_B"
    OTHER = "OTHER"


class ScreeningKind(StrEnum):
    BREAST = "BREAST"
    COLORECTAL = "COLORECTAL"
    CERVICAL_CYTOLOGY = "CERVICAL_CYTOLOGY"
    CERVICAL_HPV = "CERVICAL_HPV"


class Vaccination(Entity):
    patient: fields.ForeignKeyRelation[Patient] = fields.ForeignKeyField(
        "models.Patient", related_name="vaccinations", on_delete=fields.CASCADE
    )
    vaccine = fields.CharEnumField(VaccineCode, max_length=16)
    date = fields.DateField()
    dose_number: int | None = fields.IntField(null=True)
    lot_number: str | None = fields.CharField(max_length=64, null=True)  # type: ignore[assignment]
    professional: fields.ForeignKeyNullableRelation[Professional] = fields.ForeignKeyField(
        "models.Professional", related_name="vaccinations", null=True, on_delete=fields.SET_NULL
    )
    patient_id: UUID
    professional_id: UUID | None

    class Meta:
        table = "vaccination"
        indexes = (("patient_id", "date"),)


class Screening(Entity):
    patient: fields.ForeignKeyRelation[Patient] = fields.ForeignKeyField(
        "models.Patient", related_name="screenings", on_delete=fields.CASCADE
    )
    kind = fields.CharEnumField(ScreeningKind, max_length=24)
    date = fields.DateField()
    result: str | None = fields.CharField(max_length=500, null=True)  # type: ignore[assignment]
    patient_id: UUID

    class Meta:
        table = "screening"
        indexes = (("patient_id", "date"),)


class HealthProfile(Entity):
    """One per patient. Each section is replaced as a whole when it is updated."""

    patient: fields.OneToOneRelation[Patient] = fields.OneToOneField(
        "models.Patient", related_name="health_profile", on_delete=fields.CASCADE
    )
    allergies: list[str] = fields.JSONField(default=list)
    treatments: list[str] = fields.JSONField(default=list)
    history: list[str] = fields.JSONField(default=list)
    measurements: dict[str, Any] | None = fields.JSONField(null=True)
    advance_directives: str | None = fields.TextField(null=True)
    trusted_person: dict[str, Any] | None = fields.JSONField(null=True)
    updated_at = fields.DatetimeField(auto_now=True)
    patient_id: UUID

    class Meta:
        table = "health_profile"


# --- operations -------------------------------------------------------------------------


async def _past(patient_id: UUID, day: date, today: date, field: str) -> date:
    """A record is dated between the patient's birth and today (the rules read these dates)."""
    if day > today:
        raise Invalid("The date cannot be in the future.", field=field)
    patient = await Patient.get_or_none(id=patient_id).only("id", "birth_date")
    if day.year < 1880 or (patient is not None and day < patient.birth_date):
        raise Invalid("The date cannot be before the patient's birth.", field=field)
    return day


async def record_vaccination(
    patient_id: UUID,
    *,
    vaccine: VaccineCode,
    day: date,
    dose_number: int | None,
    lot_number: str | None,
    professional_id: UUID | None,
    today: date,
) -> Vaccination:
    await _past(patient_id, day, today, "date")
    if dose_number is not None and not 1 <= dose_number <= 20:
        raise Invalid("The dose number is between 1 and 20.", field="dose_number")
    lot = (lot_number or "").strip() or None
    if lot is not None and len(lot) > 64:
        raise Invalid("A lot number has 64 characters at most.", field="lot_number")
    if professional_id is not None and not await Professional.exists(id=professional_id):
        raise Invalid("No such professional.", field="professional_id")
    async with in_transaction() as conn:
        row = await Vaccination.create(
            patient_id=patient_id,
            vaccine=vaccine,
            date=day,
            dose_number=dose_number,
            lot_number=lot,
            professional_id=professional_id,
            using_db=conn,
        )
        await _rules_changed(patient_id, conn)
    return row


async def record_screening(
    patient_id: UUID, *, kind: ScreeningKind, day: date, result: str | None, today: date
) -> Screening:
    await _past(patient_id, day, today, "date")
    text = (result or "").strip() or None
    if text is not None and len(text) > 500:
        raise Invalid("A result has 500 characters at most.", field="result")
    async with in_transaction() as conn:
        row = await Screening.create(
            patient_id=patient_id, kind=kind, date=day, result=text, using_db=conn
        )
        await _rules_changed(patient_id, conn)
    return row


async def _rules_changed(patient_id: UUID, conn: BaseDBAsyncClient) -> None:
    """The reminder rules read the record: run them again for this space at the next job
    (after the insert, in its transaction, so a job in between cannot miss the record)."""
    await Patient.filter(id=patient_id).using_db(conn).update(rules_checked_on=None)


PROFILE_SECTIONS = (
    "allergies",
    "treatments",
    "history",
    "measurements",
    "advance_directives",
    "trusted_person",
)
MAX_ITEMS = 100
MAX_ITEM_LENGTH = 500


def _clean_items(items: list[str], field: str) -> list[str]:
    cleaned = [" ".join(item.split()) for item in items]
    cleaned = [item for item in cleaned if item]
    if len(cleaned) > MAX_ITEMS or any(len(item) > MAX_ITEM_LENGTH for item in cleaned):
        raise Invalid(f"At most {MAX_ITEMS} entries of {MAX_ITEM_LENGTH} characters.", field=field)
    return cleaned


async def update_health_profile(patient_id: UUID, changes: dict[str, Any]) -> HealthProfile:
    """Replace the given sections; sections absent from `changes` are left as they are."""
    unknown = set(changes) - set(PROFILE_SECTIONS)
    if unknown:
        raise Invalid("Unknown profile section.", field=sorted(unknown)[0])
    for name in ("allergies", "treatments", "history"):
        if name in changes:
            changes[name] = _clean_items(changes[name] or [], name)
    if "advance_directives" in changes:
        text = (changes["advance_directives"] or "").strip() or None
        if text is not None and len(text) > 10_000:
            raise Invalid(
                "Advance directives have 10,000 characters at most.", field="advance_directives"
            )
        changes["advance_directives"] = text
    async with in_transaction() as conn:
        profile, _ = await HealthProfile.get_or_create(patient_id=patient_id, using_db=conn)
        for name, value in changes.items():
            setattr(profile, name, value)
        # Only the changed columns: two updates of different sections must not undo each other.
        await profile.save(using_db=conn, update_fields=[*changes, "updated_at"])
        await profile.refresh_from_db(using_db=conn)
    return profile
