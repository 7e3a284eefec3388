"""Failure counters kept in the database, so limits hold across processes and machines.

Keys are keyed hashes (never an e-mail, NIR or address in clear).

An attempt is *reserved* before the password or code is checked: `reserve` counts the key's
failures and, under its limit, records one more, atomically; the caller `release`s it when
the check succeeds, and otherwise leaves it as the failure it was. So of any number of
concurrent guesses, at most the limit are ever evaluated: a check-then-act counter (count,
verify, then record) lets every guess of a burst through before the first is recorded.

Atomicity: one `attempt_key` row per key is upserted first in the reserving transaction,
which holds that row's lock (PostgreSQL) or the database's write lock (SQLite) until the
commit; so reservations of one key run one after the other, and each counts the failures
every earlier one committed. Keys are locked in a fixed order, so two keys never deadlock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from tortoise import fields
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from models.base import Entity
from models.errors import RateLimited

# What RATE_LIMITED answers for a key without a window: it stays locked until cleared.
LOCKED_RETRY_AFTER = 3600


# One failure (or an attempt reserved and not yet released) counted against a key.
class FailedAttempt(Entity):
    key = fields.CharField(max_length=80, db_index=True)
    at = fields.DatetimeField()

    class Meta:
        table = "failed_attempt"


class AttemptKey(Entity):
    """One row per limited key, locked while an attempt of that key is reserved."""

    key = fields.CharField(max_length=80, unique=True)
    touched_at = fields.DatetimeField()

    class Meta:
        table = "attempt_key"


@dataclass(frozen=True)
class Limit:
    key: str
    limit: int
    # Failures older than this no longer count; None: they count until `clear`.
    window: timedelta | None = None


@dataclass(frozen=True)
class Reservation:
    """The attempts `reserve` recorded: failures unless released."""

    ids: tuple[UUID, ...]

    async def release(self, using_db: BaseDBAsyncClient | None = None) -> None:
        """The attempt succeeded: it is not a failure."""
        await FailedAttempt.filter(id__in=list(self.ids)).using_db(using_db).delete()


async def reserve(
    limits: Sequence[Limit],
    *,
    now: datetime,
    message: str | None = None,
    locked_retry_after: int = LOCKED_RETRY_AFTER,
) -> Reservation:
    """One attempt against every key, or none: RATE_LIMITED when any key is at its limit."""
    ordered = sorted({limit.key: limit for limit in limits}.values(), key=lambda x: x.key)
    async with in_transaction() as conn:
        for limit in ordered:
            # Insert or update, so the row exists and is locked until the commit.
            await AttemptKey.bulk_create(
                [AttemptKey(key=limit.key, touched_at=now)],
                on_conflict=["key"],
                update_fields=["touched_at"],
                using_db=conn,
            )
        waits: list[int] = []
        for limit in ordered:
            query = FailedAttempt.filter(key=limit.key).using_db(conn)
            if limit.window is not None:
                query = query.filter(at__gte=now - limit.window)
            times: list[datetime] = list(
                await query.order_by("at").values_list("at", flat=True)  # type: ignore[arg-type]
            )
            if len(times) < limit.limit:
                continue
            if limit.window is None:
                waits.append(locked_retry_after)
            else:
                # The moment enough of the counted failures have left the window.
                frees_at = times[len(times) - limit.limit] + limit.window
                waits.append(int((frees_at - now).total_seconds()) + 1)
        if waits:
            raise RateLimited(message, retry_after=max(waits))
        reserved = [FailedAttempt(key=limit.key, at=now) for limit in ordered]
        await FailedAttempt.bulk_create(reserved, using_db=conn)
    return Reservation(ids=tuple(attempt.id for attempt in reserved))


async def clear(key: str, using_db: BaseDBAsyncClient | None = None) -> None:
    await FailedAttempt.filter(key=key).using_db(using_db).delete()


async def purge_older_than(moment: datetime, *, keep_prefix: str = "nir:") -> int:
    """Drop expired login counters (NIR counters last until a code is re-issued), and the
    lock rows of keys untouched since (`reserve` makes them again)."""
    await AttemptKey.filter(touched_at__lt=moment).delete()
    return await FailedAttempt.filter(at__lt=moment).exclude(key__startswith=keep_prefix).delete()
