"""Health, medico-social and social professionals, and the establishments they belong to."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from uuid import UUID

from tortoise import fields
from tortoise.transactions import in_transaction

from api.errors import BadUserInput, Conflict
from models.base import Entity
from models.identifiers import check_password, normalize_email, normalize_finess, normalize_rpps
from models.passwords import hash_password


class Sector(StrEnum):
    HEALTH = "HEALTH"
    MEDICO_SOCIAL = "MEDICO_SOCIAL"
    SOCIAL = "SOCIAL"


class Profession(StrEnum):
    MEDECIN = "MEDECIN"
    PHARMACIEN = "PHARMACIEN"
    INFIRMIER = "INFIRMIER"
    SAGE_FEMME = "SAGE_FEMME"
    CHIRURGIEN_DENTISTE = "CHIRURGIEN_DENTISTE"
    MASSEUR_KINESITHERAPEUTE = "MASSEUR_KINESITHERAPEUTE"
    PSYCHOLOGUE = "PSYCHOLOGUE"
    ASSISTANT_SERVICE_SOCIAL = "ASSISTANT_SERVICE_SOCIAL"
    EDUCATEUR_SPECIALISE = "EDUCATEUR_SPECIALISE"
    OTHER = "OTHER"


class Establishment(Entity):
    finess = fields.CharField(max_length=9, unique=True)
    name = fields.CharField(max_length=200, default="")

    class Meta:
        table = "establishment"


class Professional(Entity):
    rpps = fields.CharField(max_length=11, unique=True)
    first_name = fields.CharField(max_length=100)
    last_name = fields.CharField(max_length=100)
    profession = fields.CharEnumField(Profession, max_length=32)
    sector = fields.CharEnumField(Sector, max_length=16)
    establishment: fields.ForeignKeyNullableRelation[Establishment] = fields.ForeignKeyField(
        "models.Establishment", related_name="professionals", null=True, on_delete=fields.SET_NULL
    )
    establishment_id: UUID | None

    class Meta:
        table = "professional"
        indexes = (("last_name", "first_name"),)


# --- operations -------------------------------------------------------------------------


@dataclass(frozen=True)
class Registration:
    rpps: str
    first_name: str
    last_name: str
    profession: Profession
    sector: Sector
    email: str
    password: str
    finess: str | None = None


async def register_professional(data: Registration) -> Professional:
    from models.account import Account, Role

    rpps = normalize_rpps(data.rpps)
    email = normalize_email(data.email)
    first_name = " ".join(data.first_name.split())
    last_name = " ".join(data.last_name.split())
    if not first_name or not last_name or len(first_name) > 100 or len(last_name) > 100:
        raise BadUserInput("First and last names are required.", field="lastName")
    finess = normalize_finess(data.finess) if data.finess else None
    check_password(data.password, email=email, names=[first_name, last_name])
    if await Professional.exists(rpps=rpps):
        raise Conflict("A professional with this RPPS is already registered.")
    if await Account.exists(email=email):
        raise Conflict("This e-mail address is already in use.")
    password_hash = await hash_password(data.password)
    async with in_transaction() as conn:
        establishment = None
        if finess:
            establishment, _ = await Establishment.get_or_create(
                finess=finess, defaults={"name": ""}, using_db=conn
            )
        professional = await Professional.create(
            rpps=rpps,
            first_name=first_name,
            last_name=last_name,
            profession=data.profession,
            sector=data.sector,
            establishment=establishment,
            using_db=conn,
        )
        await Account.create(
            email=email,
            password_hash=password_hash,
            role=Role.PROFESSIONAL,
            professional_id=professional.id,
            using_db=conn,
        )
    return professional
