"""Access events from the GraphQL paths: one per request, actor, patient, document, action."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from uuid import UUID

from tortoise.transactions import in_transaction

from api.context import Info
from models.access import Relation
from models.audit import AccessAction, AccessBasis


async def record_access(
    info: Info,
    relation: Relation,
    *,
    action: AccessAction = AccessAction.READ,
    document_id: UUID | None = None,
    basis: AccessBasis | None = None,
) -> None:
    """Log a read or write by anyone but the holder (the holder's own reads are not events)."""
    basis = basis or relation.audit_basis
    if basis is None:
        return
    await info.context.audit.record(
        patient_id=relation.patient_id, action=action, basis=basis, document_id=document_id
    )


def write_event(info: Info, relation: Relation) -> Callable[[UUID], Awaitable[None]]:
    """The access event of a write to one document, for a domain function to write inside
    its own transaction (see models/document.py `Audit`)."""

    async def audit(document_id: UUID) -> None:
        await record_access(info, relation, action=AccessAction.WRITE, document_id=document_id)

    return audit


@dataclass
class LoggedWrite:
    """What a write tells its access event: the document it touched, once known."""

    document_id: UUID | None = None


@asynccontextmanager
async def logged_write(
    info: Info, relation: Relation, *, action: AccessAction = AccessAction.WRITE
) -> AsyncIterator[LoggedWrite]:
    """A write by anyone but the holder and its access event, committed together or not at
    all: no change without its trace. The writes inside join this transaction (the domain's
    own transactions become savepoints)."""
    write = LoggedWrite()
    async with in_transaction():
        yield write
        await record_access(info, relation, action=action, document_id=write.document_id)
