"""The holder of a space, and the legal-representative links of minors."""

from __future__ import annotations

from datetime import date, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING
from uuid import UUID

from dateutil.relativedelta import relativedelta
from tortoise import fields
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q

from models.base import Entity
from models.crypto import DecryptionError, Vault, row_context
from models.errors import Conflict, Invalid, NotFound

if TYPE_CHECKING:
    from models.professional import Professional

MAJORITY_AGE = 18


class Sex(StrEnum):
    FEMALE = "FEMALE"
    MALE = "MALE"


class SpaceStatus(StrEnum):
    PENDING = "PENDING"
    ACTIVE = "ACTIVE"
    OPPOSED = "OPPOSED"
    CLOSED = "CLOSED"


class Patient(Entity):
    # The NIR is never stored in clear: AES-GCM ciphertext bound to this row (`seal_nir`),
    # plus a keyed hash for look-ups.
    nir_encrypted = fields.BinaryField(null=True)
    nir_hash = fields.CharField(max_length=64, unique=True)
    first_name = fields.CharField(max_length=100)
    last_name = fields.CharField(max_length=100)
    birth_date = fields.DateField()
    sex = fields.CharEnumField(Sex, max_length=8)
    status = fields.CharEnumField(SpaceStatus, max_length=8, default=SpaceStatus.PENDING)
    contact_email = fields.CharField(max_length=254, null=True)
    postal_address: dict[str, str] | None = fields.JSONField(null=True)
    activated_at = fields.DatetimeField(null=True)
    opposed_at = fields.DatetimeField(null=True)
    closed_at = fields.DatetimeField(null=True)
    archived_until = fields.DatetimeField(null=True)
    delete_by = fields.DatetimeField(null=True)
    emergency_access_opposed = fields.BooleanField(default=False)
    # The day the reminder rules last ran for this space (reset when the record changes).
    rules_checked_on = fields.DateField(null=True)
    treating_doctor: fields.ForeignKeyNullableRelation[Professional] = fields.ForeignKeyField(
        "models.Professional", related_name="treated_patients", null=True, on_delete=fields.SET_NULL
    )
    treating_doctor_id: UUID | None

    class Meta:
        table = "patient"
        # (birth_date, sex): the candidates of a FranceConnect login (models/franceconnect.py).
        indexes = (("last_name", "first_name"), ("birth_date", "sex"))


def _nir_context(patient_id: UUID) -> str:
    # Written out rather than taken from Meta: it is in every stored ciphertext, so renaming
    # the table must not change it (models/migrations/0003_row_bound_encryption.py).
    return row_context("patient", "nir_encrypted", patient_id)


def seal_nir(vault: Vault, patient_id: UUID, nir: str) -> bytes:
    """The NIR as stored in its patient row: encrypted, and bound to that row."""
    return vault.encrypt(nir, context=_nir_context(patient_id))


def reveal_nir(vault: Vault, patient_id: UUID, sealed: bytes) -> str:
    """The NIR of this patient row.

    Raises DecryptionError for a ciphertext that is not this row's (copied from another
    row, altered, or sealed under another key): it never yields another person's NIR.
    """
    try:
        return vault.decrypt(sealed, context=_nir_context(patient_id))
    except DecryptionError:
        raise DecryptionError(
            f"the NIR of patient {patient_id} does not decrypt for its row"
        ) from None


class Representation(Entity):
    """A legal representative of a minor. The link ends by itself on the 18th birthday."""

    representative: fields.ForeignKeyRelation[Patient] = fields.ForeignKeyField(
        "models.Patient", related_name="dependent_links", on_delete=fields.CASCADE
    )
    dependent: fields.ForeignKeyRelation[Patient] = fields.ForeignKeyField(
        "models.Patient", related_name="representative_links", on_delete=fields.CASCADE
    )
    representative_id: UUID
    dependent_id: UUID

    class Meta:
        table = "representation"
        unique_together = (("representative", "dependent"),)


def is_minor(birth_date: date, today: date) -> bool:
    return birth_date + relativedelta(years=MAJORITY_AGE) > today


def minor_cutoff(today: date) -> date:
    """People born after this day are minors today: the filter form of `is_minor`.

    The latest birth date already of age. relativedelta makes someone born on 29 February
    of age on 28 February of a common year; plain subtraction would miss that one day.
    """
    cutoff = today - relativedelta(years=MAJORITY_AGE)
    following = cutoff + timedelta(days=1)
    if not is_minor(following, today):
        cutoff = following
    return cutoff


def represented_by(representative_id: UUID, today: date) -> Q:
    """Patients (minors) the given patient currently represents, as a filter on Patient."""
    return Q(
        representative_links__representative_id=representative_id,
        birth_date__gt=minor_cutoff(today),
    )


def age_on(birth_date: date, day: date) -> int:
    return relativedelta(day, birth_date).years


ALREADY_LINKED = "This representative is already linked to this minor."


async def add_dependent(representative_id: UUID, dependent_id: UUID, *, today: date) -> Patient:
    """Link a further legal representative to a minor (operator action)."""
    representative = await Patient.get_or_none(id=representative_id)
    dependent = await Patient.get_or_none(id=dependent_id)
    if representative is None:
        raise NotFound("No such representative.")
    if dependent is None:
        raise NotFound("No such dependent.")
    if representative.status is not SpaceStatus.ACTIVE or not representative.first_name:
        raise Invalid("The representative must hold an active space.", field="representative_id")
    if is_minor(representative.birth_date, today):
        raise Invalid("The representative must be an adult.", field="representative_id")
    if not is_minor(dependent.birth_date, today):
        raise Invalid("Only a minor can be added as a dependent.", field="dependent_id")
    if dependent.status not in (SpaceStatus.PENDING, SpaceStatus.ACTIVE):
        raise Invalid("This space cannot take a representative.", field="dependent_id")
    if representative.id == dependent.id:
        raise Invalid("A person cannot represent themselves.", field="dependent_id")
    if await Representation.exists(representative_id=representative.id, dependent_id=dependent.id):
        raise Conflict(ALREADY_LINKED)
    try:
        await Representation.create(representative_id=representative.id, dependent_id=dependent.id)
    except IntegrityError:
        # The same link was added concurrently, between the check and the insert.
        raise Conflict(ALREADY_LINKED) from None
    return representative
