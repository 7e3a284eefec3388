"""Failure counters kept in the database, so limits hold across processes and machines.

Keys are keyed hashes (never an e-mail, NIR or address in clear).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from tortoise import fields
from tortoise.backends.base.client import BaseDBAsyncClient

from models.base import Entity, utcnow


class FailedAttempt(Entity):
    key = fields.CharField(max_length=80, db_index=True)
    at = fields.DatetimeField()

    class Meta:
        table = "failed_attempt"


async def record_failure(key: str, *, now: datetime | None = None) -> None:
    await FailedAttempt.create(key=key, at=now or utcnow())


async def failures_since(key: str, since: datetime | None) -> list[datetime]:
    query = FailedAttempt.filter(key=key)
    if since is not None:
        query = query.filter(at__gte=since)
    return list(await query.order_by("at").values_list("at", flat=True))  # type: ignore[arg-type]


async def retry_after(
    keys_limits: list[tuple[str, int]], window: timedelta, *, now: datetime | None = None
) -> int | None:
    """Seconds until the first over-limit key frees a slot, or None when all are under limit."""
    now = now or utcnow()
    waits: list[int] = []
    for key, limit in keys_limits:
        times = await failures_since(key, now - window)
        if len(times) >= limit:
            oldest_relevant = times[len(times) - limit]
            waits.append(int((oldest_relevant + window - now).total_seconds()) + 1)
    return max(waits) if waits else None


async def clear(key: str, using_db: BaseDBAsyncClient | None = None) -> None:
    await FailedAttempt.filter(key=key).using_db(using_db).delete()


async def purge_older_than(moment: datetime, *, keep_prefix: str = "nir:") -> int:
    """Drop expired login counters; NIR counters last until a code is re-issued."""
    return await FailedAttempt.filter(at__lt=moment).exclude(key__startswith=keep_prefix).delete()
