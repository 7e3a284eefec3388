"""Health, medico-social and social professionals, and the establishments they belong to."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from uuid import UUID

from tortoise import fields
from tortoise.exceptions import IntegrityError
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


def _clean_name(value: str, field: str) -> str:
    cleaned = " ".join(value.split())
    if not cleaned or len(cleaned) > 100:
        raise BadUserInput("A name is required (100 characters at most).", field=field)
    return cleaned


async def register_professional(data: Registration) -> Professional:
    from models.account import Account

    rpps = normalize_rpps(data.rpps)
    email = normalize_email(data.email)
    first_name = _clean_name(data.first_name, "firstName")
    last_name = _clean_name(data.last_name, "lastName")
    finess = normalize_finess(data.finess) if data.finess else None
    check_password(data.password, email=email, names=[first_name, last_name])
    if await Professional.exists(rpps=rpps):
        raise Conflict("A professional with this RPPS is already registered.")
    if await Account.exists(email=email):
        raise Conflict("This e-mail address is already in use.")
    password_hash = await hash_password(data.password)
    clean = replace(
        data, rpps=rpps, first_name=first_name, last_name=last_name, email=email, finess=finess
    )
    try:
        return await _create(clean, password_hash)
    except IntegrityError:
        # A concurrent registration took the RPPS or the e-mail after the checks above.
        raise Conflict("A professional with this RPPS or e-mail is already registered.") from None


async def _create(data: Registration, password_hash: str) -> Professional:
    from models.account import Account, Role

    async with in_transaction() as conn:
        establishment = None
        if data.finess:
            establishment, _ = await Establishment.get_or_create(
                finess=data.finess, defaults={"name": ""}, using_db=conn
            )
        professional = await Professional.create(
            rpps=data.rpps,
            first_name=data.first_name,
            last_name=data.last_name,
            profession=data.profession,
            sector=data.sector,
            establishment=establishment,
            using_db=conn,
        )
        await Account.create(
            email=data.email,
            password_hash=password_hash,
            role=Role.PROFESSIONAL,
            professional_id=professional.id,
            using_db=conn,
        )
    return professional
