"""Erasing a space: its rows inside the caller's transaction, its bytes once that commits.

Used when a person opposes the creation of their space (only the proof of opposition is
kept: the patient row, emptied by the caller) and by the purge of closed spaces (the
patient row goes too). Documents and message attachments keep their bytes in the
content-addressed blob store, which the database cannot cascade to: the caller collects
their digests inside the transaction and releases them after the commit, so that no row
ever points to bytes that are gone, and a failed commit leaves the bytes in place.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from uuid import UUID

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import Q, Subquery
from tortoise.fields.base import OnDelete
from tortoise.fields.relational import BackwardFKRelation, ForeignKeyFieldInstance
from tortoise.models import Model

from models.account import Account
from models.appointment import Appointment
from models.blobs import BlobStore
from models.document import Document, release_blob
from models.idempotency import IdempotencyKey
from models.message import Attachment, Conversation, Message
from models.patient import Patient

logger = logging.getLogger(__name__)


def _references() -> list[tuple[type[Model], str, OnDelete]]:
    """Every foreign key to a patient row: (model, column, what deleting the patient does).

    Read from the models, so that a table added later is erased without being listed here.
    """
    meta = Patient._meta
    found: list[tuple[type[Model], str, OnDelete]] = []
    for name in sorted(meta.backward_fk_fields | meta.backward_o2o_fields):
        backward = meta.fields_map[name]
        assert isinstance(backward, BackwardFKRelation)
        model: type[Model] = backward.related_model
        column = backward.relation_field
        forward = next(
            field
            for field in model._meta.fields_map.values()
            if isinstance(field, ForeignKeyFieldInstance)  # one-to-one fields too
            and field.source_field == column
            and field.related_model is Patient
        )
        found.append((model, column, OnDelete(forward.on_delete)))
    return found


async def space_blobs(patient_id: UUID, *, using_db: BaseDBAsyncClient) -> set[str]:
    """The digests of the bytes the space's rows point to: its documents, and the
    attachments of its conversations."""
    documents = (
        await Document.filter(patient_id=patient_id)
        .using_db(using_db)
        .values_list("sha256", flat=True)
    )
    attachments = (
        await Attachment.filter(message__conversation__patient_id=patient_id)
        .using_db(using_db)
        .values_list("sha256", flat=True)
    )
    return {str(sha) for sha in [*documents, *attachments]}


async def erase_idempotency_keys(patient_id: UUID, *, using_db: BaseDBAsyncClient) -> int:
    """Delete the idempotency keys that name the space or what was created in it: no
    foreign key reaches them (models/idempotency.py), yet each keeps, for a day, the id of a
    document, appointment, conversation or message of the space, a digest of its input, and
    for a partner app the patient's id. Run before the rows they name go."""
    created = (
        Q(object_id__in=Subquery(Document.filter(patient_id=patient_id).values("id")))
        | Q(object_id__in=Subquery(Appointment.filter(patient_id=patient_id).values("id")))
        | Q(object_id__in=Subquery(Conversation.filter(patient_id=patient_id).values("id")))
        | Q(
            object_id__in=Subquery(Message.filter(conversation__patient_id=patient_id).values("id"))
        )
    )
    accounts = (
        await Account.filter(patient_id=patient_id).using_db(using_db).values_list("id", flat=True)
    )
    whose = Q(viewer__in=[f"account:{account}" for account in accounts]) | Q(
        viewer__endswith=f":{patient_id}"  # a partner app's, "app:<app id>:<patient id>"
    )
    deleted: int = await IdempotencyKey.filter(created | whose).using_db(using_db).delete()
    return deleted


async def erase_space_rows(patient_id: UUID, *, using_db: BaseDBAsyncClient) -> set[str]:
    """Delete every row of the space but the patient row itself, inside the caller's
    transaction: exactly what deleting the patient row would remove (its dossier, health
    profile, vaccinations, screenings, consents, blocks, emergency accesses, access log,
    appointments and reminders, conversations with their messages and attachments, calendar
    feed, activation codes, account and sessions, representation links both ways), the
    references it would clear, and the idempotency keys naming the space or its objects.
    Returns the digests of the bytes to release after the commit.
    """
    digests = await space_blobs(patient_id, using_db=using_db)
    await erase_idempotency_keys(patient_id, using_db=using_db)
    for model, column, on_delete in _references():
        rows = model.filter(**{column: patient_id}).using_db(using_db)
        if on_delete is OnDelete.CASCADE:
            await rows.delete()  # their own children (messages, attachments...) cascade
        elif on_delete is OnDelete.SET_NULL:
            await rows.update(**{column: None})
        else:  # a new kind of reference: decide here what erasing a space does to it
            raise RuntimeError(f"{model.__name__}.{column}: ON DELETE {on_delete.value}")
    return digests


async def release_blobs(blobs: BlobStore, digests: Iterable[str]) -> None:
    """After the commit: remove the bytes no row points to any more (rows share identical
    bytes). A failure is logged and leaves the file: an orphan file holds nothing a row can
    reach, whereas a row without its bytes would be a broken document."""
    for sha in sorted(set(digests)):
        try:
            await release_blob(blobs, sha)
        except OSError:
            logger.exception("could not remove the bytes of an erased space; left in place")
