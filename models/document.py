"""Documents of the dossier médical: rows here, bytes in the content-addressed blob store."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum, StrEnum, auto
from typing import Any
from uuid import UUID

from tortoise import fields
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from models.access import Actor, Relation
from models.audit import AccessBasis
from models.base import Entity
from models.blobs import BlobStore, validate_upload
from models.catalogue import AppScope, PartnerApp
from models.errors import Forbidden, Invalid, NotFound
from models.idempotency import Claim
from models.patient import Patient
from models.professional import Professional

# Writes the access event of a change to a document, given its id (resolvers/audit.py).
Audit = Callable[[UUID], Awaitable[None]]
logger = logging.getLogger(__name__)


class DocumentCategory(StrEnum):
    PRESCRIPTION = "PRESCRIPTION"
    LAB_RESULT = "LAB_RESULT"
    IMAGING = "IMAGING"
    REPORT = "REPORT"
    TREATMENT = "TREATMENT"
    VACCINATION = "VACCINATION"
    ADMINISTRATIVE = "ADMINISTRATIVE"
    OTHER = "OTHER"


class Document(Entity):
    patient: fields.ForeignKeyRelation[Patient] = fields.ForeignKeyField(
        "models.Patient", related_name="documents", on_delete=fields.CASCADE
    )
    title = fields.CharField(max_length=200)
    category = fields.CharEnumField(DocumentCategory, max_length=16)
    date = fields.DateField()
    mime_type = fields.CharField(max_length=64)
    size = fields.IntField()
    sha256 = fields.CharField(max_length=64, db_index=True)
    hidden = fields.BooleanField(default=False)
    hidden_from_representatives = fields.BooleanField(default=False)
    author_patient: fields.ForeignKeyNullableRelation[Patient] = fields.ForeignKeyField(
        "models.Patient", related_name="authored_documents", null=True, on_delete=fields.SET_NULL
    )
    author_professional: fields.ForeignKeyNullableRelation[Professional] = fields.ForeignKeyField(
        "models.Professional",
        related_name="authored_documents",
        null=True,
        on_delete=fields.SET_NULL,
    )
    # A partner app granted DOCUMENTS_WRITE that added it (models/catalogue.py).
    author_app: fields.ForeignKeyNullableRelation[PartnerApp] = fields.ForeignKeyField(
        "models.PartnerApp", related_name="authored_documents", null=True, on_delete=fields.SET_NULL
    )
    patient_id: UUID
    author_patient_id: UUID | None
    author_professional_id: UUID | None
    author_app_id: UUID | None

    class Meta:
        table = "document"
        # A page's order, newest first (migration 0016): read backwards, no sort.
        indexes = (("patient_id", "date", "created_at", "id"),)


class Shown(Enum):
    """Which documents of one dossier a viewer reads."""

    ALL = auto()
    NOT_HIDDEN_FROM_REPRESENTATIVES = auto()
    NOT_HIDDEN_OR_AUTHORED = auto()  # hidden by the holder, yet deposited by this professional
    AUTHORED = auto()  # only what this professional deposited
    NOT_HIDDEN = auto()  # a partner app: what a professional under a READ consent sees
    NOT_HIDDEN_AT_ALL = auto()  # the same, under a grant a legal representative gave


@dataclass(frozen=True)
class DocumentScope:
    """What one viewer reads of one patient's dossier (decided by `document_scope`), as an
    ORM filter and, for the pages every dossier read runs, as the same conditions in SQL."""

    patient_id: UUID
    shown: Shown
    professional_id: UUID | None = None  # the viewer, for NOT_HIDDEN_OR_AUTHORED and AUTHORED

    def q(self) -> Q:
        """Filter on Document."""
        own = Q(patient_id=self.patient_id)
        authored = Q(author_professional_id=self.professional_id)
        if self.shown is Shown.NOT_HIDDEN_FROM_REPRESENTATIVES:
            return own & Q(hidden_from_representatives=False)
        if self.shown is Shown.NOT_HIDDEN:
            return own & Q(hidden=False)
        if self.shown is Shown.NOT_HIDDEN_AT_ALL:
            return own & Q(hidden=False, hidden_from_representatives=False)
        if self.shown is Shown.NOT_HIDDEN_OR_AUTHORED:
            return own & (Q(hidden=False) | authored)
        if self.shown is Shown.AUTHORED:
            return own & authored
        return own

    def sql(self) -> tuple[str, list[Any]]:
        """The same conditions as `q()` on the document table, one `{}` per parameter (to be
        numbered by the caller, see `models.base.parameter_prefix`), and the parameters."""
        own = '"patient_id" = {}'
        params: list[Any] = [str(self.patient_id)]
        if self.shown is Shown.NOT_HIDDEN_FROM_REPRESENTATIVES:
            return own + ' AND "hidden_from_representatives" = FALSE', params
        if self.shown is Shown.NOT_HIDDEN:
            return own + ' AND "hidden" = FALSE', params
        if self.shown is Shown.NOT_HIDDEN_AT_ALL:
            return own + ' AND "hidden" = FALSE AND "hidden_from_representatives" = FALSE', params
        if self.professional_id is None:  # as Q(author_professional_id=None)
            authored = '"author_professional_id" IS NULL'
        else:
            authored = '"author_professional_id" = {}'
            params.append(str(self.professional_id))
        if self.shown is Shown.NOT_HIDDEN_OR_AUTHORED:
            return f'{own} AND ("hidden" = FALSE OR {authored})', params
        if self.shown is Shown.AUTHORED:
            return f"{own} AND {authored}", params
        return own, params[:1]


def document_scope(actor: Actor, relation: Relation) -> DocumentScope | None:
    """What the actor reads of one patient's dossier; None when nothing is readable."""
    pid = relation.patient_id
    if relation.manages and not relation.space_live:
        return None  # archived with the closed space
    if relation.holder:
        return DocumentScope(pid, Shown.ALL)
    if relation.representative:
        return DocumentScope(pid, Shown.NOT_HIDDEN_FROM_REPRESENTATIVES)
    if relation.app_scopes is not None:
        # A partner app reads what a professional under a READ consent would: never a hidden
        # document, nor, under a representative's grant, one hidden from representatives.
        if not relation.reads(AppScope.DOCUMENTS_READ):
            return None
        if relation.app_by_representative:
            return DocumentScope(pid, Shown.NOT_HIDDEN_AT_ALL)
        return DocumentScope(pid, Shown.NOT_HIDDEN)
    if not actor.is_professional or relation.blocked or not relation.space_live:
        return None
    if relation.treating_doctor:
        return DocumentScope(pid, Shown.ALL)
    if relation.dossier_basis is not None:
        return DocumentScope(pid, Shown.NOT_HIDDEN_OR_AUTHORED, actor.professional_id)
    # Without a dossier basis, a professional still reads what they deposited themselves.
    return DocumentScope(pid, Shown.AUTHORED, actor.professional_id)


def readable_documents(actor: Actor, relation: Relation) -> Q | None:
    """Filter on Document for one patient's dossier; None when nothing is readable."""
    scope = document_scope(actor, relation)
    return None if scope is None else scope.q()


def document_filter(actor: Actor, relations: dict[UUID, Relation]) -> Q | None:
    """Filter on Document across several patients (node, nodes, downloads)."""
    parts = [q for r in relations.values() if (q := readable_documents(actor, r)) is not None]
    if not parts:
        return None
    combined = parts[0]
    for part in parts[1:]:
        combined |= part
    return combined


async def readable_document(
    actor: Actor, pk: UUID, *, today: date, now: datetime
) -> tuple[Document, Relation] | None:
    """One document as the actor may see it, by the same rule as every list (downloads)."""
    from models.access import relations

    owner = await Document.filter(id=pk).values_list("patient_id", flat=True)
    if not owner or actor.anonymous:
        return None
    found = await relations(actor, [owner[0]], today, now)  # type: ignore[list-item]
    relation = found[owner[0]]  # type: ignore[index]
    where = readable_documents(actor, relation)
    if where is None:
        return None
    row = await Document.filter(where, id=pk).first()
    return (row, relation) if row else None


def read_basis(relation: Relation) -> AccessBasis | None:
    """The basis an access event records for reading one of this dossier's documents.

    None for the holder. Without a dossier basis, the only documents a professional reads
    are those they deposited: the basis is AUTHOR, even when a conversation shows them the
    patient's identity.
    """
    if relation.holder:
        return None
    if relation.app_scopes is not None:
        return AccessBasis.APP
    if not relation.manages and relation.dossier_basis is None:
        return AccessBasis.AUTHOR
    return relation.audit_basis


# --- operations -------------------------------------------------------------------------

MAX_TITLE = 200


@dataclass(frozen=True)
class NewDocument:
    title: str
    category: DocumentCategory
    data: bytes
    declared_mime: str | None
    date: date
    hidden_from_representatives: bool = False


def clean_title(title: str) -> str:
    cleaned = " ".join(title.split())
    if not cleaned or len(cleaned) > MAX_TITLE:
        raise Invalid(f"A title is required ({MAX_TITLE} characters at most).", field="title")
    return cleaned


async def blob_in_use(sha256: str) -> bool:
    """Documents and message attachments share the blob store."""
    from models.message import Attachment

    return (
        await Document.filter(sha256=sha256).exists()
        or await Attachment.filter(sha256=sha256).exists()
    )


async def release_blob(blobs: BlobStore, sha256: str) -> None:
    """Remove bytes no row refers to any more (rows share identical bytes)."""
    if not await blob_in_use(sha256):
        await blobs.delete(sha256)


async def store_bytes(blobs: BlobStore, data: bytes) -> tuple[str, bool]:
    """Write the bytes before the row; tells whether this call created the file."""
    existed = await blobs.exists(hashlib.sha256(data).hexdigest())
    stored = await blobs.put(data)
    return stored.sha256, not existed


async def ensure_bytes(blobs: BlobStore, sha256: str, data: bytes) -> None:
    """After the commit: a concurrent delete may have released identical bytes; restore."""
    if not await blobs.exists(sha256):
        await blobs.put(data)


def manages_documents(relation: Relation) -> bool:
    """Who hides, shows again or deletes a document they see: the holder or a legal
    representative of a space that is not closed."""
    return relation.manages and relation.space_live


def adds_documents(relation: Relation) -> bool:
    """Who adds to a dossier: the patient side, a professional under a READ_WRITE consent,
    or a partner app the space granted DOCUMENTS_WRITE (the document is then the app's)."""
    if relation.app_scopes is not None:
        return relation.reads(AppScope.DOCUMENTS_WRITE)  # the scope, on a live space
    return relation.writes_dossier


async def add_document(
    new: NewDocument,
    *,
    patient_id: UUID,
    actor: Actor,
    relation: Relation,
    blobs: BlobStore,
    max_bytes: int,
    today: date,
    audit: Audit | None = None,
    claim: Claim | None = None,
) -> Document:
    """`audit` writes the access event of the addition in its transaction: no document
    without its trace (and no bytes left behind when that fails). `claim`: the idempotency
    key it records (models/idempotency.py)."""
    if not adds_documents(relation):
        raise Forbidden("You may not add documents to this dossier.")
    title = clean_title(new.title)
    if new.date > today:
        raise Invalid("A document cannot be dated in the future.", field="date")
    if new.hidden_from_representatives and not actor.is_professional:
        raise Invalid(
            "Only a professional deposits a document hidden from legal representatives.",
            field="hidden_from_representatives",
        )
    mime = validate_upload(new.data, declared_mime=new.declared_mime, max_bytes=max_bytes)
    sha, created = await store_bytes(blobs, new.data)
    try:
        async with in_transaction():
            document = await Document.create(
                patient_id=patient_id,
                title=title,
                category=new.category,
                date=new.date,
                mime_type=mime,
                size=len(new.data),
                sha256=sha,
                hidden_from_representatives=new.hidden_from_representatives,
                author_patient_id=actor.patient_id if actor.is_patient else None,
                author_professional_id=actor.professional_id if actor.is_professional else None,
                author_app_id=actor.app_id if actor.is_app else None,
            )
            if claim is not None:
                await claim.record(document.id)
            if audit is not None:
                await audit(document.id)
    except BaseException:
        if created:
            await release_blob(blobs, sha)
        raise
    await ensure_bytes(blobs, sha, new.data)
    return document


async def set_hidden(document: Document, hidden: bool) -> Document:
    if document.hidden != hidden:
        document.hidden = hidden
        await document.save(update_fields=["hidden"])
    return document


async def delete_document(
    document: Document, *, blobs: BlobStore, audit: Audit | None = None
) -> UUID:
    """The row goes with its access event (`audit`), then, once committed, the bytes if no
    other row shares them."""
    async with in_transaction():
        deleted = await Document.filter(id=document.id).delete()
        if not deleted:
            raise NotFound()
        if audit is not None:
            await audit(document.id)
    try:
        await release_blob(blobs, document.sha256)
    except OSError:
        logger.exception("could not remove the bytes of a deleted document; left for later")
    return document.id
