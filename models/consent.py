"""Consent, blocks, the médecin traitant and emergency access ("bris de glace")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from uuid import UUID

from tortoise import fields
from tortoise.transactions import in_transaction

from models.base import PARIS, Entity
from models.errors import Conflict, Forbidden, Invalid, NotFound
from models.patient import Patient
from models.professional import Profession, Professional

EMERGENCY_ACCESS_DURATION = timedelta(hours=24)


class ConsentAccess(StrEnum):
    READ = "READ"
    READ_WRITE = "READ_WRITE"


class Consent(Entity):
    patient: fields.ForeignKeyRelation[Patient] = fields.ForeignKeyField(
        "models.Patient", related_name="consents", on_delete=fields.CASCADE
    )
    professional: fields.ForeignKeyRelation[Professional] = fields.ForeignKeyField(
        "models.Professional", related_name="consents", on_delete=fields.CASCADE
    )
    access = fields.CharEnumField(ConsentAccess, max_length=16)
    granted_at = fields.DatetimeField()
    expires_at = fields.DatetimeField(null=True)
    revoked_at = fields.DatetimeField(null=True)
    patient_id: UUID
    professional_id: UUID

    class Meta:
        table = "consent"
        indexes = (("professional_id", "patient_id"),)

    def active_at(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


class Block(Entity):
    """A blocked professional sees nothing of the space, whatever consent exists."""

    patient: fields.ForeignKeyRelation[Patient] = fields.ForeignKeyField(
        "models.Patient", related_name="blocks", on_delete=fields.CASCADE
    )
    professional: fields.ForeignKeyRelation[Professional] = fields.ForeignKeyField(
        "models.Professional", related_name="blocks", on_delete=fields.CASCADE
    )
    patient_id: UUID
    professional_id: UUID

    class Meta:
        table = "block"
        unique_together = (("patient", "professional"),)
        indexes = (("professional_id",),)  # BLOCKING's WHERE (migration 0017)


class EmergencyAccess(Entity):
    patient: fields.ForeignKeyRelation[Patient] = fields.ForeignKeyField(
        "models.Patient", related_name="emergency_accesses", on_delete=fields.CASCADE
    )
    professional: fields.ForeignKeyRelation[Professional] = fields.ForeignKeyField(
        "models.Professional", related_name="emergency_accesses", on_delete=fields.CASCADE
    )
    reason = fields.TextField()
    opened_at = fields.DatetimeField()
    expires_at = fields.DatetimeField()
    patient_id: UUID
    professional_id: UUID

    class Meta:
        table = "emergency_access"
        indexes = (("professional_id", "patient_id"),)


# --- operations -------------------------------------------------------------------------


async def _professional(professional_id: UUID) -> Professional:
    """The professional named by an input: an unknown one is the input's fault, answered as a
    malformed id is (`professionalId`)."""
    professional = await Professional.get_or_none(id=professional_id)
    if professional is None:
        raise Invalid("Unknown professional.", field="professional_id")
    return professional


async def grant_consent(
    patient_id: UUID,
    professional_id: UUID,
    access: ConsentAccess,
    *,
    expires_at: datetime | None,
    now: datetime,
) -> Consent:
    """A new grant replaces the live one of that professional (one live consent each)."""
    await _professional(professional_id)
    if expires_at is not None:
        # Without an offset the moment is ambiguous (the contract asks for one).
        if expires_at.tzinfo is None or expires_at.utcoffset() is None:
            raise Invalid("The expiry needs a UTC offset.", field="expires_at")
        expires_at = expires_at.astimezone(UTC)
        if expires_at <= now:
            raise Invalid("The expiry must be in the future.", field="expires_at")
    if await Block.exists(patient_id=patient_id, professional_id=professional_id):
        raise Conflict("This professional is blocked: unblock them first.")
    async with in_transaction() as conn:
        await (
            Consent.filter(patient_id=patient_id, professional_id=professional_id, revoked_at=None)
            .using_db(conn)
            .update(revoked_at=now)
        )
        return await Consent.create(
            patient_id=patient_id,
            professional_id=professional_id,
            access=access,
            granted_at=now,
            expires_at=expires_at,
            using_db=conn,
        )


async def revoke_consent(consent: Consent, *, now: datetime) -> Consent:
    if consent.revoked_at is None:
        if await Consent.filter(id=consent.id, revoked_at=None).update(revoked_at=now):
            consent.revoked_at = now
        else:  # revoked meanwhile (another request, or a newer grant): keep that moment
            await consent.refresh_from_db()
    return consent


async def block_professional(patient_id: UUID, professional_id: UUID) -> None:
    await _professional(professional_id)
    await Block.get_or_create(patient_id=patient_id, professional_id=professional_id)


async def unblock_professional(patient_id: UUID, professional_id: UUID) -> None:
    await _professional(professional_id)
    await Block.filter(patient_id=patient_id, professional_id=professional_id).delete()


async def set_treating_doctor(patient_id: UUID, professional_id: UUID) -> None:
    professional = await _professional(professional_id)
    if professional.profession is not Profession.MEDECIN:
        raise Invalid("The médecin traitant must be a doctor.", field="professional_id")
    if await Block.exists(patient_id=patient_id, professional_id=professional_id):
        raise Conflict("This professional is blocked: unblock them first.")
    await Patient.filter(id=patient_id).update(treating_doctor_id=professional_id)


async def set_emergency_opposition(patient_id: UUID, opposed: bool) -> None:
    await Patient.filter(id=patient_id).update(emergency_access_opposed=opposed)


MAX_REASON = 1000


async def open_emergency_access(
    patient_id: UUID, professional_id: UUID, *, reason: str, now: datetime
) -> EmergencyAccess:
    """Bris de glace: logged, and the holder is alerted at once by an EMERGENCY_ACCESS reminder."""
    from models.reminder import Reminder, ReminderKind

    reason = " ".join(reason.split())
    if not reason or len(reason) > MAX_REASON:
        raise Invalid("A reason is required (1000 characters at most).", field="reason")
    if await Block.exists(patient_id=patient_id, professional_id=professional_id):
        # A blocked professional sees nothing of the space: answered as an unknown id.
        raise NotFound()
    patient = await Patient.get(id=patient_id)
    if patient.emergency_access_opposed:
        raise Forbidden("The holder opposed emergency access to this space.")
    professional = await _professional(professional_id)
    async with in_transaction() as conn:
        access = await EmergencyAccess.create(
            patient_id=patient_id,
            professional_id=professional_id,
            reason=reason,
            opened_at=now,
            expires_at=now + EMERGENCY_ACCESS_DURATION,
            using_db=conn,
        )
        await Reminder.create(
            patient_id=patient_id,
            kind=ReminderKind.EMERGENCY_ACCESS,
            key=f"EMERGENCY_ACCESS:{access.id}",
            rule="EMERGENCY_ACCESS",
            title="Accès d'urgence à votre dossier",
            reason=(
                f"{professional.first_name} {professional.last_name} a ouvert votre dossier "
                f"en urgence le {now.astimezone(PARIS):%d/%m/%Y à %H:%M}. Motif : {reason}"
            ),
            due_at=now,
            using_db=conn,
        )
    return access
