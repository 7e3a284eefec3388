"""Establishments in the messagerie (hospitals, clinics, medico-social homes: FINESS) and the
members of their shared inbox: professionals an operator attaches, and detaches.

The `Establishment` row itself lives with the professionals (models/professional.py): its
table predates the inbox, and a professional's registration may name one (`finess`), which
makes a placeholder without a name until an operator registers it here. That declared
establishment is directory information only: the inbox belongs to the members below, and
to them alone (models/access.py decides what membership lets a professional see).
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from tortoise import fields
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from models.base import Entity
from models.errors import Conflict, Invalid, NotFound
from models.identifiers import normalize_finess
from models.professional import Establishment, Professional

__all__ = [
    "Establishment",
    "EstablishmentMember",
    "add_member",
    "register_establishment",
    "remove_member",
]

NAME_LENGTH = 200  # the column of models/professional.py's Establishment


class EstablishmentMember(Entity):
    """A professional who reads and answers the establishment's shared inbox.

    Removing a member deletes the row: access ends with it (the access log keeps who read
    what, and for which establishment)."""

    establishment: fields.ForeignKeyRelation[Establishment] = fields.ForeignKeyField(
        "models.Establishment", related_name="members", on_delete=fields.CASCADE
    )
    professional: fields.ForeignKeyRelation[Professional] = fields.ForeignKeyField(
        "models.Professional", related_name="memberships", on_delete=fields.CASCADE
    )
    since = fields.DatetimeField()
    establishment_id: UUID
    professional_id: UUID

    class Meta:
        table = "establishment_member"
        unique_together = (("establishment", "professional"),)
        # Every request of a professional asks which inboxes they belong to.
        indexes = (("professional_id", "establishment_id"),)


def _clean_name(name: str) -> str:
    cleaned = " ".join(name.split())
    if not cleaned or len(cleaned) > NAME_LENGTH:
        raise Invalid(f"A name has 1 to {NAME_LENGTH} characters.", field="name")
    return cleaned


async def register_establishment(finess: str, name: str) -> Establishment:
    """A new establishment, or the placeholder a professional's registration made for this
    FINESS (no name yet) now named. CONFLICT when it is registered already."""
    number = normalize_finess(finess)
    clean = _clean_name(name)
    try:
        async with in_transaction() as conn:
            named = (
                await Establishment.filter(finess=number, name="").using_db(conn).update(name=clean)
            )
            if not named:
                await Establishment.create(finess=number, name=clean, using_db=conn)
    except IntegrityError:
        # Registered already, or concurrently by another operator.
        raise Conflict("An establishment with this FINESS number is already registered.") from None
    return await Establishment.get(finess=number)


async def _parties(establishment_id: UUID, professional_id: UUID) -> None:
    if not await Establishment.exists(id=establishment_id):
        raise NotFound()
    if not await Professional.exists(id=professional_id):
        raise NotFound()


async def add_member(establishment_id: UUID, professional_id: UUID, *, now: datetime) -> None:
    """Attach a professional to the establishment's shared inbox (an operator's act)."""
    await _parties(establishment_id, professional_id)
    try:
        await EstablishmentMember.create(
            establishment_id=establishment_id, professional_id=professional_id, since=now
        )
    except IntegrityError:
        raise Conflict("This professional is already a member of the establishment.") from None


async def remove_member(establishment_id: UUID, professional_id: UUID) -> None:
    """Detach a member: from the commit on, no path lets them see the inbox (HTTP, open
    sockets and downloads all decide by membership, models/access.py)."""
    await _parties(establishment_id, professional_id)
    removed = await EstablishmentMember.filter(
        establishment_id=establishment_id, professional_id=professional_id
    ).delete()
    if not removed:
        raise Conflict("This professional is not a member of the establishment.")
