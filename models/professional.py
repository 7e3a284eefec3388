"""Health, medico-social and social professionals, and the establishments they belong to."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from uuid import UUID

from tortoise import fields
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from models.base import Entity
from models.errors import Conflict, Invalid
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


NAME_LENGTH = 100
# A directory search uses this many of its terms; each must match the name or the RPPS.
DIRECTORY_TERMS = 4


class Professional(Entity):
    rpps = fields.CharField(max_length=11, unique=True)
    first_name = fields.CharField(max_length=NAME_LENGTH)
    last_name = fields.CharField(max_length=NAME_LENGTH)
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


async def search_directory(search: str, *, limit: int) -> list[Professional]:
    """Professionals whose first or last name contains every term (case-insensitive), or
    whose RPPS number is the term; by name. At most `limit`, and `DIRECTORY_TERMS` terms.

    A term is compared with the RPPS column only when it is an RPPS number (11 digits,
    separators allowed): anything else cannot match it, and the ORM refuses a value longer
    than the column. A term longer than a name, or holding a NUL (which PostgreSQL refuses
    in text), cannot match anything: the answer is then empty, without a query.
    """
    names = name_terms(search)
    if names is None:
        return []
    query = Professional.all()
    for term, matches in zip(search.split(), names, strict=False):
        rpps = _as_rpps(term)
        if rpps is not None:
            matches |= Q(rpps=rpps)
        query = query.filter(matches)
    return await query.order_by("last_name", "first_name", "id").limit(limit)


def name_terms(search: str) -> list[Q] | None:
    """How a search matches names (the directory's, a professional's patients'): one filter
    per term of `search`, `DIRECTORY_TERMS` at most, on any row with a `first_name` and a
    `last_name` (of `NAME_LENGTH` at most), which must all match: the first or the last name
    contains the term, whatever its case. None when a term cannot match any name (longer
    than a name, or holding a NUL, which PostgreSQL refuses in text): no query is needed."""
    filters = []
    for term in search.split()[:DIRECTORY_TERMS]:
        if len(term) > NAME_LENGTH or "\x00" in term:
            return None
        filters.append(Q(last_name__icontains=term) | Q(first_name__icontains=term))
    return filters


def _as_rpps(term: str) -> str | None:
    try:
        return normalize_rpps(term)
    except Invalid:
        return None


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
    if not cleaned or len(cleaned) > NAME_LENGTH:
        raise Invalid("A name is required (100 characters at most).", field=field)
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
