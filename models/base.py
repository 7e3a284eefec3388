"""Conventions shared by every table: UUID primary keys and UTC timestamps."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from tortoise import fields
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.models import Model

PARIS = ZoneInfo("Europe/Paris")


def utcnow() -> datetime:
    return datetime.now(UTC)


def parameter_prefix(db: BaseDBAsyncClient) -> str:
    """How hand-written SQL numbers its parameters on this connection: `?1` or `$1`.

    The few statements that every request runs are written out (the ORM takes longer to
    build them than the database to run them); only constants go into their text.
    """
    return _PARAMETER_PREFIX[db.capabilities.dialect]


_PARAMETER_PREFIX = {"sqlite": "?", "postgres": "$"}


def paris_today(now: datetime | None = None) -> date:
    """Day-based rules (ages, due dates) are computed on the calendar of Europe/Paris."""
    return (now or utcnow()).astimezone(PARIS).date()


class Entity(Model):
    """A row with a random UUID key, so no identifier a client sees is sequential."""

    id = fields.UUIDField(primary_key=True, default=uuid.uuid4)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        abstract = True
