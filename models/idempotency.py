"""Safe retries: an idempotency key on the mutations that create (`sendMessage`,
`startConversation`, `addDocument`, `createAppointment`).

A client that never got the answer sends the same request again with the same key: within
`LIFETIME`, the same viewer (an account; a partner app, for the one space it acts for) and
the same operation get the first result back, and nothing more is created. The same key
with another input is refused (CONFLICT), as Stripe does: a key names one request.

Atomicity: the key's row is written by the operation's own transaction, right after the
object it records (`Claim.record`, or `Claim.row` among its writes), so one never exists
without the other. Two attempts racing with one key both get to that INSERT, and the unique
constraint lets one commit: on PostgreSQL the loser's INSERT waits for the winner's commit,
then fails; on SQLite the transactions run one after the other and the loser's fails. The
loser's transaction rolls back whole (its bytes released by the operation's own failure
path), and `once` then answers the winner's result, outside any transaction.

A replay creates nothing, not even an access event: the caller runs the operation's
permission checks first (as it would now), then `once` reloads what the key created.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from tortoise import fields
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.models import Model

from models.base import Entity
from models.errors import Conflict, Forbidden, Invalid, NotFound

if TYPE_CHECKING:
    from models.access import Actor

LIFETIME = timedelta(days=1)
MAX_KEY = 255

T = TypeVar("T")
M = TypeVar("M", bound=Model)


class Operation(StrEnum):
    SEND_MESSAGE = "sendMessage"
    START_CONVERSATION = "startConversation"
    ADD_DOCUMENT = "addDocument"
    CREATE_APPOINTMENT = "createAppointment"


class IdempotencyKey(Entity):
    """A key a viewer sent with an operation, and what its first attempt created."""

    # Whose key: "account:<id>", or "app:<app id>:<patient id>" for a partner app's token.
    viewer = fields.CharField(max_length=100)
    operation = fields.CharEnumField(Operation, max_length=32)
    key = fields.CharField(max_length=MAX_KEY)
    # SHA-256 of the input the key came with (`fingerprint`): another input is a CONFLICT.
    fingerprint = fields.CharField(max_length=64)
    object_id = fields.UUIDField()  # what the operation created
    second_id = fields.UUIDField(null=True)  # startConversation: its first message

    class Meta:
        table = "idempotency_key"
        table_description = "Idempotency keys of the last day and what each one created."
        unique_together = (("viewer", "operation", "key"),)
        indexes = (("created_at",),)


def clean_key(key: str) -> str:
    if not 1 <= len(key) <= MAX_KEY or not all(" " <= c <= "~" for c in key) or not key.strip():
        raise Invalid(
            f"An idempotency key has 1 to {MAX_KEY} printable ASCII characters "
            "(a UUID, for instance).",
            field="idempotency_key",
        )
    return key


def viewer_of(actor: Actor) -> str:
    """Whose keys: a signed-in account's, or a partner app's for the space it acts for."""
    if actor.app_id is not None and actor.acting_for is not None:
        return f"app:{actor.app_id}:{actor.acting_for}"
    if actor.account_id is not None:
        return f"account:{actor.account_id}"
    raise Forbidden()


def fingerprint(values: Mapping[str, Any]) -> str:
    """The input of a request, canonically: the same input always gives the same digest."""
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def file_digest(data: bytes, **about: str | None) -> dict[str, Any]:
    """A file in a fingerprint: its bytes' digest and what the operation keeps of it."""
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), **about}


@dataclass(frozen=True)
class Replay:
    """What the key's first attempt created."""

    object_id: UUID
    second_id: UUID | None


@dataclass(frozen=True)
class Claim:
    """One attempt of an operation with a key."""

    viewer: str
    operation: Operation
    key: str
    fingerprint: str
    now: datetime

    async def earlier(self) -> Replay | None:
        """What an earlier attempt with this key created, if any within `LIFETIME`;
        CONFLICT if it came with another input. An expired row is dropped: the key is new."""
        row = await IdempotencyKey.get_or_none(
            viewer=self.viewer, operation=self.operation, key=self.key
        )
        if row is None:
            return None
        if row.created_at <= self.now - LIFETIME:
            await IdempotencyKey.filter(id=row.id, created_at__lte=self.now - LIFETIME).delete()
            return None
        if row.fingerprint != self.fingerprint:
            raise Conflict(
                "This idempotency key was already used with a different input; "
                "a new request needs a new key."
            )
        return Replay(row.object_id, row.second_id)

    async def record(
        self,
        object_id: UUID,
        second_id: UUID | None = None,
        *,
        using_db: BaseDBAsyncClient | None = None,
    ) -> None:
        """In the transaction that created `object_id`, right after it: a concurrent
        attempt with the same key fails here (and rolls back) or waits here for this one."""
        await self.row(object_id, second_id).save(using_db=using_db, force_create=True)

    def row(self, object_id: UUID, second_id: UUID | None = None) -> IdempotencyKey:
        """The key's row, unsaved: what `record` inserts (a caller writing its own
        transaction inserts it there, as `record` would)."""
        return IdempotencyKey(
            viewer=self.viewer,
            operation=self.operation,
            key=self.key,
            fingerprint=self.fingerprint,
            object_id=object_id,
            second_id=second_id,
            created_at=self.now,
        )


def claim(
    actor: Actor,
    operation: Operation,
    key: str | None,
    *,
    values: Mapping[str, Any],
    now: datetime,
) -> Claim | None:
    """The attempt's claim on `key`, or None without a key. `values`: the whole input but
    the key, as the operation reads it (a file by `file_digest`)."""
    if key is None:
        return None
    return Claim(
        viewer=viewer_of(actor),
        operation=operation,
        key=clean_key(key),
        fingerprint=fingerprint(values),
        now=now.astimezone(UTC),  # SQLite compares timestamps as text: UTC like the rows
    )


async def once(
    attempt: Claim | None,
    create: Callable[[], Awaitable[T]],
    replay: Callable[[Replay], Awaitable[T]],
) -> tuple[T, bool]:
    """The operation's result and whether this call created it: `create` (which records
    the claim in its transaction), or, for a key already used, `replay` of its result."""
    if attempt is None:
        return await create(), True
    if (found := await attempt.earlier()) is not None:
        return await replay(found), False
    try:
        return await create(), True
    except IntegrityError:
        # Lost a race on the key (or the row's other constraints): the winner has committed.
        found = await attempt.earlier()
        if found is None:
            raise
        return await replay(found), False


async def created(model: type[M], pk: UUID | None, **where: Any) -> M:
    """What a key created, still there (and where the input said): NOT_FOUND otherwise."""
    row = None if pk is None else await model.filter(id=pk, **where).first()
    if row is None:
        raise NotFound("What this idempotency key created no longer exists.")
    return row


async def purge_expired(now: datetime) -> int:
    """Keys past their lifetime (run-jobs); how many rows went."""
    cutoff = now.astimezone(UTC) - LIFETIME
    return await IdempotencyKey.filter(created_at__lte=cutoff).delete()


__all__ = [
    "LIFETIME",
    "Claim",
    "IdempotencyKey",
    "Operation",
    "Replay",
    "claim",
    "clean_key",
    "created",
    "file_digest",
    "fingerprint",
    "once",
    "purge_expired",
    "viewer_of",
]
