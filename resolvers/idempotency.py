"""The `idempotencyKey` of the mutations that create (models/idempotency.py)."""

from __future__ import annotations

from typing import Any

import strawberry

from api.context import Info
from models import idempotency
from models.message import Upload

KEY_DESCRIPTION = (
    "Makes a retry safe: sent again by the same viewer (an account; a partner app, for the "
    "space it acts for) with this operation within 24 hours, the same key answers what the "
    "first request created and creates nothing more, provided the viewer may still do the "
    "operation (else its FORBIDDEN or NOT_FOUND, as it would answer now). The same key with "
    "a different input answers CONFLICT. 1 to 255 printable ASCII characters: a new UUID per "
    "request, kept for its retries, is a good key."
)


def key_field() -> Any:
    """The optional `idempotencyKey` field of an input."""
    return strawberry.field(default=None, description=KEY_DESCRIPTION)


def keyed(
    info: Info, operation: idempotency.Operation, key: str | None, **values: Any
) -> idempotency.Claim | None:
    """This request's claim on its key (None without one); `values`: the rest of its input,
    as the operation reads it (files by `idempotency.file_digest`)."""
    ctx = info.context
    return idempotency.claim(ctx.actor, operation, key, values=values, now=ctx.now)


def attachment_digests(uploads: list[Upload]) -> list[dict[str, Any]]:
    return [
        idempotency.file_digest(u.data, filename=u.filename, type=u.declared_mime) for u in uploads
    ]
