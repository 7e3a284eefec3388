"""The dossier médical: documents, the structured record, and their Patient fields."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from datetime import date, datetime
from enum import Enum, auto
from typing import Annotated, Any, TypeVar
from uuid import UUID

import strawberry
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    SelectionSetNode,
)
from strawberry.file_uploads import Upload
from tortoise.models import Model
from tortoise.queryset import QuerySet

from api.context import Info
from api.errors import BadUserInput, Forbidden, NotFound, Unauthenticated
from models import document as documents
from models import record
from models.access import Relation
from models.catalogue import AppScope
from models.document import Document as DocumentModel
from models.idempotency import Operation, Replay, created, file_digest, once
from models.record import HealthProfile as HealthProfileModel
from models.record import Screening as ScreeningModel
from models.record import Vaccination as VaccinationModel
from resolvers import ids
from resolvers.audit import logged_write, record_access, write_event
from resolvers.catalogue import PartnerApp
from resolvers.cost import READS_DATABASE, sized
from resolvers.enums import DocumentCategory, ScreeningKind, VaccineCode
from resolvers.idempotency import key_field, keyed
from resolvers.loaders import cached
from resolvers.node import Node, register
from resolvers.pagination import (
    Column,
    Connection,
    Edge,
    LazyQuery,
    Order,
    Where,
    empty_connection,
    fetch_values,
    paginate,
    stored_type,
)
from resolvers.people import (
    PATIENT_AFTER_WRITE,
    Patient,
    Professional,
    patient_after_write,
)
from resolvers.scope import PATIENT_ID, acting_for

DocumentAuthor = Annotated[
    Patient | Professional | PartnerApp,
    strawberry.union(
        "DocumentAuthor",
        description="Who deposited a document: a patient, a professional, or a partner app.",
    ),
]

Author = Patient | Professional | PartnerApp | None
NodeT = TypeVar("NodeT")

DOCUMENT_ORDER = Order((("date", True), ("created_at", True), ("id", True)))
DOCUMENT_FIELDS = (
    "id",
    "author_patient_id",
    "author_professional_id",
    "author_app_id",
    "title",
    "category",
    "date",
    "created_at",
    "mime_type",
    "size",
    "sha256",
    "hidden",
    "hidden_from_representatives",
)


class NotLoaded(Enum):
    """A document's author not looked up yet (None is a known absence)."""

    NOT_LOADED = auto()


NOT_LOADED = NotLoaded.NOT_LOADED


@strawberry.type(name="Document", description="A document of the dossier médical.")
class Document(Node):
    pk: strawberry.Private[UUID]
    author_patient_id: strawberry.Private[UUID | None]
    author_professional_id: strawberry.Private[UUID | None]
    author_app_id: strawberry.Private[UUID | None]
    title: str = strawberry.field(description="Its title, 1 to 200 characters.")
    category: DocumentCategory = strawberry.field(  # type: ignore[valid-type]
        description="What kind of document it is."
    )
    date: date = strawberry.field(
        description="The day the document is of (the date of the act), as its author gave it."
    )
    created_at: datetime = strawberry.field(description="When it was added to the dossier.")
    mime_type: str = strawberry.field(
        description=(
            "Its media type, sniffed from the bytes at upload (PDF, JPEG, PNG, TIFF, RTF or "
            "plain text), never taken from the client."
        )
    )
    size: int = strawberry.field(description="The size of its content, in bytes.")
    sha256: str = strawberry.field(
        description="The SHA-256 of its content: 64 lower-case hex digits."
    )
    hidden: bool = strawberry.field(
        description="Hidden by the holder: invisible to professionals but its author and the "
        "médecin traitant."
    )
    hidden_from_representatives: bool = strawberry.field(
        description=(
            "Deposited by a professional as hidden from legal representatives: they never "
            "see it, on any path."
        )
    )
    preloaded_author: strawberry.Private[Author | NotLoaded] = NOT_LOADED

    @strawberry.field(
        description="Who deposited it: the patient (or a representative), a pro, or a "
        "partner app granted DOCUMENTS_WRITE.",
        graphql_type=DocumentAuthor | None,
    )
    def author(self, info: Info) -> Author | Awaitable[Author]:
        """Lists preload their authors, so a page costs no coroutine nor loader call per row;
        a document on its own loads its author."""
        if isinstance(self.preloaded_author, NotLoaded):
            return self.load_author(info)
        return self.preloaded_author

    async def load_author(self, info: Info) -> Author:
        loaders = info.context.loaders
        if self.author_professional_id is not None:
            pro = await loaders.professional.load(self.author_professional_id)
            return Professional.from_model(pro) if pro else None
        if self.author_patient_id is not None:
            patient = await loaders.patient.load(self.author_patient_id)
            return Patient.from_model(patient) if patient else None
        if self.author_app_id is not None:
            app = await loaders.partner_app.load(self.author_app_id)
            return PartnerApp.from_model(app) if app else None
        return None

    @strawberry.field(description="Where to download the bytes (same bearer token).")
    def content_url(self, info: Info) -> str:
        return f"{info.context.settings.public_url}/documents/{self.id}/content"

    @strawberry.field(
        description=(
            "Whether `deleteDocument` is allowed to this viewer on this document, by the "
            "rule it applies (the holder or a legal representative, the space not closed)."
        ),
        directives=[READS_DATABASE],
    )
    async def viewer_can_delete(self, info: Info) -> bool:
        return await manages_document(info, self.pk)

    @strawberry.field(
        description=(
            "Whether `setDocumentHidden` is allowed to this viewer on this document, by the "
            "rule it applies (the same as `viewerCanDelete`'s)."
        ),
        directives=[READS_DATABASE],
    )
    async def viewer_can_hide(self, info: Info) -> bool:
        return await manages_document(info, self.pk)

    @classmethod
    def from_model(cls, row: DocumentModel) -> Document:
        return cls.from_values({name: getattr(row, name) for name in DOCUMENT_FIELDS})

    @classmethod
    def from_values(cls, row: Mapping[str, Any]) -> Document:
        """From the DOCUMENT_FIELDS of a row (`values()`: lists need no model instances)."""
        return cls(
            id=strawberry.ID(ids.encode("Document", row["id"])),
            pk=row["id"],
            author_patient_id=row["author_patient_id"],
            author_professional_id=row["author_professional_id"],
            author_app_id=row["author_app_id"],
            title=row["title"],
            category=row["category"],
            date=row["date"],
            created_at=row["created_at"],
            mime_type=row["mime_type"],
            size=row["size"],
            sha256=row["sha256"],
            hidden=row["hidden"],
            hidden_from_representatives=row["hidden_from_representatives"],
        )


# A Document of a page's stored row (`paginate`'s `stored`), each field converted when read:
# the same values as `Document.from_values`, for a page whose nodes are read for a few fields.
StoredDocument = stored_type(
    Document,
    DOCUMENT_FIELDS,
    {
        "id": Column("id", then=lambda pk: strawberry.ID(ids.encode("Document", pk))),
        "pk": Column("id"),
        **{name: Column(name) for name in DOCUMENT_FIELDS if name != "id"},
    },
)


@strawberry.type(name="Vaccination", description="An entry of the carnet de vaccination.")
class Vaccination(Node):
    pk: strawberry.Private[UUID]
    professional_id: strawberry.Private[UUID | None]
    vaccine: VaccineCode = strawberry.field(  # type: ignore[valid-type]
        description="Which vaccine."
    )
    date: date = strawberry.field(description="The day it was given.")
    dose_number: int | None = strawberry.field(
        description="Which dose of the schedule (1 to 20), when known."
    )
    lot_number: str | None = strawberry.field(
        description="The vaccine's lot number, when known (64 characters at most)."
    )

    @strawberry.field(description="Who gave it, when known.")
    async def professional(self, info: Info) -> Professional | None:
        if self.professional_id is None:
            return None
        row = await info.context.loaders.professional.load(self.professional_id)
        return Professional.from_model(row) if row else None

    @classmethod
    def from_model(cls, row: VaccinationModel) -> Vaccination:
        return cls(
            id=strawberry.ID(ids.encode("Vaccination", row.id)),
            pk=row.id,
            professional_id=row.professional_id,
            vaccine=row.vaccine,
            date=row.date,
            dose_number=row.dose_number,
            lot_number=row.lot_number,
        )


@strawberry.type(name="Screening", description="A screening test and its result.")
class Screening(Node):
    kind: ScreeningKind = strawberry.field(  # type: ignore[valid-type]
        description="Which screening."
    )
    date: date = strawberry.field(description="The day the test was done.")
    result: str | None = strawberry.field(
        description="Its result in free text (500 characters at most), when recorded."
    )

    @classmethod
    def from_model(cls, row: ScreeningModel) -> Screening:
        return cls(
            id=strawberry.ID(ids.encode("Screening", row.id)),
            kind=row.kind,
            date=row.date,
            result=row.result,
        )


@strawberry.type(description="The latest measurements, as last written (one set, no history).")
class Measurements:
    height_cm: float | None = strawberry.field(default=None, description="Height, in centimetres.")
    weight_kg: float | None = strawberry.field(default=None, description="Weight, in kilograms.")
    systolic_mmhg: int | None = strawberry.field(
        default=None, description="Systolic blood pressure, in mmHg."
    )
    diastolic_mmhg: int | None = strawberry.field(
        default=None, description="Diastolic blood pressure, in mmHg."
    )
    measured_on: date | None = strawberry.field(
        default=None, description="The day they were measured, when given."
    )


@strawberry.type(
    description="The personne de confiance: who may accompany the patient and be consulted."
)
class TrustedPerson:
    name: str = strawberry.field(description="Their name.")
    phone: str | None = strawberry.field(default=None, description="A phone number, as given.")
    relationship: str | None = strawberry.field(
        default=None, description="Who they are to the patient, in free text."
    )


# An entry list of UpdateHealthProfileInput.
_ITEMS = (
    "The {}. Absent: unchanged. A list: replaces the section (spaces collapsed, empty entries "
    f"dropped; {record.MAX_ITEMS} entries of {record.MAX_ITEM_LENGTH} characters at most). "
    "null: the section is cleared."
)


@strawberry.type(
    name="HealthProfile",
    description=(
        "The profile sections beside documents. One per patient: its id is derived from the "
        "patient's, so it exists (empty) before anything is written, and `node(id:)` "
        "reads it by the rule of `Patient.healthProfile`."
    ),
)
class HealthProfile(Node):
    allergies: list[str] = strawberry.field(
        description="Known allergies, one entry each; empty when none was written.",
        directives=[sized(record.MAX_ITEMS)],
    )
    treatments: list[str] = strawberry.field(
        description="Current treatments, one entry each.", directives=[sized(record.MAX_ITEMS)]
    )
    history: list[str] = strawberry.field(
        description="Medical history (antécédents), one entry each.",
        directives=[sized(record.MAX_ITEMS)],
    )
    measurements: Measurements | None = strawberry.field(
        description="The latest measurements; null when none were written."
    )
    advance_directives: str | None = strawberry.field(
        description="The directives anticipées, in free text; null when none were written."
    )
    trusted_person: TrustedPerson | None = strawberry.field(
        description="The personne de confiance; null when none was named."
    )
    updated_at: datetime | None = strawberry.field(
        description="When a section was last written; null while the profile is empty."
    )

    @classmethod
    def from_model(cls, row: HealthProfileModel | None, patient_pk: UUID) -> HealthProfile:
        profile_id = strawberry.ID(ids.encode("HealthProfile", patient_pk))
        if row is None:
            return cls(
                id=profile_id,
                allergies=[],
                treatments=[],
                history=[],
                measurements=None,
                advance_directives=None,
                trusted_person=None,
                updated_at=None,
            )
        m = row.measurements
        t = row.trusted_person
        return cls(
            id=profile_id,
            allergies=list(row.allergies or []),
            treatments=list(row.treatments or []),
            history=list(row.history or []),
            measurements=Measurements(
                height_cm=m.get("height_cm"),
                weight_kg=m.get("weight_kg"),
                systolic_mmhg=m.get("systolic_mmhg"),
                diastolic_mmhg=m.get("diastolic_mmhg"),
                measured_on=date.fromisoformat(m["measured_on"]) if m.get("measured_on") else None,
            )
            if m
            else None,
            advance_directives=row.advance_directives,
            trusted_person=TrustedPerson(
                name=t["name"], phone=t.get("phone"), relationship=t.get("relationship")
            )
            if t
            else None,
            updated_at=row.updated_at,
        )


@strawberry.type(name="DocumentConnection", description="A page of documents (a Relay connection).")
class DocumentConnection(Connection[Document]):
    pass


# --- Patient fields (called from resolvers/people.py) -----------------------------------


async def dossier_relation(info: Info, patient_pk: UUID) -> Relation:
    relation = await info.context.loaders.relation.load(patient_pk)
    await record_access(info, relation)
    return relation


async def patient_documents(
    info: Info,
    patient_pk: UUID,
    first: int | None,
    after: str | None,
    category: Any,
    *,
    last: int | None = None,
    before: str | None = None,
) -> DocumentConnection:
    relation = await dossier_relation(info, patient_pk)
    scope = documents.document_scope(info.context.actor, relation)
    if scope is None:
        return empty_connection(DocumentConnection)
    where = Where(*scope.sql())  # the same conditions, for the first page
    if category is not None:
        where &= Where('"category" = {}', [DocumentCategory(category).value])

    def query() -> QuerySet[DocumentModel]:
        documents = DocumentModel.filter(scope.q())
        return documents if category is None else documents.filter(category=category)

    raw = info._raw_info
    authors = any(
        selects(node.selection_set, raw.fragments, "edges", "node", "author")
        or selects(node.selection_set, raw.fragments, "nodes", "author")
        for node in raw.field_nodes
    )
    loaders = info.context.loaders
    page = await paginate(
        LazyQuery(DocumentModel, query),
        DOCUMENT_ORDER,
        first=first,
        after=after,
        last=last,
        before=before,
        wrap=Document.from_values,
        connection=DocumentConnection,
        fields=DOCUMENT_FIELDS,
        where=where,
        stored=StoredDocument,
        # The first page reads its authors with it; then preload_authors finds them loaded.
        prime={
            "author_professional_id": loaders.professional,
            "author_patient_id": loaders.patient,
            "author_app_id": loaders.partner_app,
        }
        if authors
        else None,
    )
    if authors:
        await preload_authors(info, [edge.node for edge in page.edges])
    return page


async def preload_authors(info: Info, page: list[Document]) -> None:
    """The authors of a page of documents through the loaders, every kind in one go; one
    object per author, shared by their documents."""
    loaders = info.context.loaders
    pro_ids = list({d.author_professional_id for d in page if d.author_professional_id})
    patient_ids = list(
        {d.author_patient_id for d in page if d.author_patient_id and not d.author_professional_id}
    )
    app_ids = list({d.author_app_id for d in page if d.author_app_id})
    # A first page primed the loaders with its authors (`paginate`'s `prime`).
    primed = (
        cached(loaders.professional, pro_ids),
        cached(loaders.patient, patient_ids),
        cached(loaders.partner_app, app_ids),
    )
    if primed[0] is not None and primed[1] is not None and primed[2] is not None:
        pro_rows, patient_rows, app_rows = primed[0], primed[1], primed[2]
    else:
        pro_rows, patient_rows, app_rows = await asyncio.gather(
            loaders.professional.load_many(pro_ids),
            loaders.patient.load_many(patient_ids),
            loaders.partner_app.load_many(app_ids),
        )
    pros = {
        pk: Professional.from_model(row) if row else None
        for pk, row in zip(pro_ids, pro_rows, strict=True)
    }
    patients = {
        pk: Patient.from_model(row) if row else None
        for pk, row in zip(patient_ids, patient_rows, strict=True)
    }
    apps = {
        pk: PartnerApp.from_model(row) if row else None
        for pk, row in zip(app_ids, app_rows, strict=True)
    }
    for document in page:
        author: Author = None
        if document.author_professional_id is not None:
            author = pros[document.author_professional_id]
        elif document.author_patient_id is not None:
            author = patients[document.author_patient_id]
        elif document.author_app_id is not None:
            author = apps[document.author_app_id]
        document.preloaded_author = author


def selects(
    selection_set: SelectionSetNode | None,
    fragments: Mapping[str, FragmentDefinitionNode],
    *path: str,
) -> bool:
    """Whether this selection set asks for this path of fields (through fragments, whatever
    their directives), read off the document as it stands, without strawberry's
    `selected_fields` copy of it."""
    if not path:
        return True
    inner: SelectionSetNode | None
    for selection in selection_set.selections if selection_set is not None else ():
        if isinstance(selection, FieldNode):
            if selection.name.value != path[0]:
                continue
            inner, rest = selection.selection_set, path[1:]
        elif isinstance(selection, InlineFragmentNode):
            inner, rest = selection.selection_set, path
        elif isinstance(selection, FragmentSpreadNode):
            inner, rest = fragments[selection.name.value].selection_set, path
        else:
            continue
        if selects(inner, fragments, *rest):
            return True
    return False


async def patient_vaccinations(info: Info, patient_pk: UUID) -> list[Vaccination]:
    await dossier_relation(info, patient_pk)
    rows = await info.context.loaders.vaccinations.load(patient_pk)
    return [Vaccination.from_model(row) for row in rows]


async def patient_screenings(info: Info, patient_pk: UUID) -> list[Screening]:
    await dossier_relation(info, patient_pk)
    rows = await info.context.loaders.screenings.load(patient_pk)
    return [Screening.from_model(row) for row in rows]


async def patient_health_profile(info: Info, patient_pk: UUID) -> HealthProfile:
    await dossier_relation(info, patient_pk)
    row = await info.context.loaders.health_profile.load(patient_pk)
    return HealthProfile.from_model(row, patient_pk)


# --- node -------------------------------------------------------------------------------


async def visible_documents(info: Info, pks: list[UUID]) -> dict[UUID, DocumentModel]:
    """Documents by id as the viewer may see them (the same rule as the lists)."""
    if info.context.actor.anonymous or not pks:
        return {}
    owners = set(await DocumentModel.filter(id__in=pks).values_list("patient_id", flat=True))
    relations = await info.context.loaders.relation.load_many(list(owners))  # type: ignore[arg-type]
    where = documents.document_filter(info.context.actor, {r.patient_id: r for r in relations})
    if where is None:
        return {}
    rows = await DocumentModel.filter(where, id__in=pks)
    return {row.id: row for row in rows}


@register("Document")
async def _document_nodes(info: Info, pks: list[UUID]) -> dict[UUID, Any]:
    found = await visible_documents(info, pks)
    for row in found.values():
        relation = await info.context.loaders.relation.load(row.patient_id)
        basis = documents.read_basis(relation)
        await record_access(info, relation, document_id=row.id, basis=basis)
    return {pk: Document.from_model(row) for pk, row in found.items()}


@register("HealthProfile")
async def _health_profile_nodes(info: Info, pks: list[UUID]) -> dict[UUID, Any]:
    """Keyed by the patient's id: read as `Patient.healthProfile` reads it."""
    loaders = info.context.loaders
    relations = await loaders.relation.load_many(pks)
    readable = [r.patient_id for r in relations if r.reads(AppScope.HEALTH_PROFILE_READ)]
    for relation in relations:
        if relation.patient_id in readable:
            await record_access(info, relation)
    rows = await loaders.health_profile.load_many(readable)
    return {pk: HealthProfile.from_model(row, pk) for pk, row in zip(readable, rows, strict=True)}


@register("Vaccination")
async def _vaccination_nodes(info: Info, pks: list[UUID]) -> dict[UUID, Any]:
    rows = await VaccinationModel.filter(id__in=pks)
    out: dict[UUID, Any] = {}
    for row in rows:
        relation = await info.context.loaders.relation.load(row.patient_id)
        if relation.reads(AppScope.VACCINATIONS_READ):
            await record_access(info, relation)
            out[row.id] = Vaccination.from_model(row)
    return out


@register("Screening")
async def _screening_nodes(info: Info, pks: list[UUID]) -> dict[UUID, Any]:
    rows = await ScreeningModel.filter(id__in=pks)
    out: dict[UUID, Any] = {}
    for row in rows:
        relation = await info.context.loaders.relation.load(row.patient_id)
        if relation.reads(AppScope.HEALTH_PROFILE_READ):
            await record_access(info, relation)
            out[row.id] = Screening.from_model(row)
    return out


# --- mutations --------------------------------------------------------------------------


async def new_edge(model: type[Model], pk: UUID, order: Order, node: NodeT) -> Edge[NodeT]:
    """A row just written as an edge of its list, with the cursor that list gives it: the
    order's columns read back as the list reads them (some, a commit sequence, say, are the
    database's to set)."""
    names = [name for name, _ in order.columns]
    (row,) = await fetch_values(model.filter(id=pk), names)
    return Edge(node=node, position=[row[name] for name in names])


@strawberry.input
class AddDocumentInput:
    title: str = strawberry.field(description="1 to 200 characters (spaces collapsed).")
    category: DocumentCategory = strawberry.field(  # type: ignore[valid-type]
        description="What kind of document it is."
    )
    file: Upload = strawberry.field(
        description=(
            "The content: PDF, JPEG, PNG, TIFF, RTF or plain text, sniffed from the bytes; "
            "20 MB at most by default (MAX_UPLOAD_BYTES), PAYLOAD_TOO_LARGE beyond."
        )
    )
    date: date | None = strawberry.field(default=None, description="Defaults to today.")
    hidden_from_representatives: bool | None = strawberry.field(
        default=False, description="Professionals only: legal representatives never see it."
    )
    patient_id: strawberry.ID | None = strawberry.field(default=None, description=PATIENT_ID)
    idempotency_key: str | None = key_field()


@strawberry.type
class AddDocumentPayload:
    document: Document = strawberry.field(description="The document added.")

    @strawberry.field(
        description=(
            "The new document as an edge of `Patient.documents`, with the cursor that list "
            "gives it: a client's cache inserts it there without reading the list again."
        )
    )
    async def document_edge(self) -> Edge[Document]:
        return await new_edge(DocumentModel, self.document.pk, DOCUMENT_ORDER, self.document)


@strawberry.input
class SetDocumentHiddenInput:
    document_id: strawberry.ID = strawberry.field(description="The document.")
    hidden: bool = strawberry.field(
        description="true hides it from professionals (but its author and the médecin "
        "traitant); false shows it again."
    )


@strawberry.type
class SetDocumentHiddenPayload:
    document: Document = strawberry.field(description="The document, as changed.")


@strawberry.input
class DeleteDocumentInput:
    document_id: strawberry.ID = strawberry.field(description="The document to delete.")


@strawberry.type
class DeleteDocumentPayload:
    deleted_id: strawberry.ID = strawberry.field(
        description="The id of the document deleted: a client's cache evicts it."
    )
    patient_pk: strawberry.Private[UUID]

    @strawberry.field(description=PATIENT_AFTER_WRITE)
    async def patient(self, info: Info) -> Patient | None:
        return await patient_after_write(info, self.patient_pk)


@strawberry.input
class RecordVaccinationInput:
    vaccine: VaccineCode = strawberry.field(  # type: ignore[valid-type]
        description="Which vaccine."
    )
    date: date = strawberry.field(description="The day it was given: not in the future.")
    dose_number: int | None = strawberry.field(
        default=None, description="Which dose of the schedule, 1 to 20; absent when unknown."
    )
    lot_number: str | None = strawberry.field(
        default=None, description="The lot number, 64 characters at most; absent when unknown."
    )
    professional_id: strawberry.ID | None = strawberry.field(
        default=None,
        description=(
            "Who gave it; absent: unknown, or the calling professional when a professional "
            "records it."
        ),
    )
    patient_id: strawberry.ID | None = strawberry.field(default=None, description=PATIENT_ID)


@strawberry.type
class RecordVaccinationPayload:
    vaccination: Vaccination = strawberry.field(description="The entry recorded.")
    patient_pk: strawberry.Private[UUID]

    @strawberry.field(description=PATIENT_AFTER_WRITE + " Its `vaccinations` hold the entry.")
    async def patient(self, info: Info) -> Patient | None:
        return await patient_after_write(info, self.patient_pk)


@strawberry.input
class RecordScreeningInput:
    kind: ScreeningKind = strawberry.field(  # type: ignore[valid-type]
        description="Which screening."
    )
    date: date = strawberry.field(description="The day the test was done: not in the future.")
    result: str | None = strawberry.field(
        default=None, description="Its result in free text, 500 characters at most."
    )
    patient_id: strawberry.ID | None = strawberry.field(default=None, description=PATIENT_ID)


@strawberry.type
class RecordScreeningPayload:
    screening: Screening = strawberry.field(description="The screening recorded.")
    patient_pk: strawberry.Private[UUID]

    @strawberry.field(description=PATIENT_AFTER_WRITE + " Its `screenings` hold the entry.")
    async def patient(self, info: Info) -> Patient | None:
        return await patient_after_write(info, self.patient_pk)


@strawberry.input(
    description=(
        "A whole new set of measurements: it replaces the previous one, so a value absent or "
        "null here is null afterwards (nothing is merged)."
    )
)
class MeasurementsInput:
    height_cm: float | None = strawberry.field(
        default=None, description="Height in centimetres, 20 to 260."
    )
    weight_kg: float | None = strawberry.field(
        default=None, description="Weight in kilograms, 0.3 to 400."
    )
    systolic_mmhg: int | None = strawberry.field(
        default=None, description="Systolic blood pressure in mmHg, 50 to 300."
    )
    diastolic_mmhg: int | None = strawberry.field(
        default=None,
        description="Diastolic blood pressure in mmHg, 20 to 200, below the systolic one.",
    )
    measured_on: date | None = strawberry.field(
        default=None, description="The day they were measured: not in the future."
    )


@strawberry.input(
    description="A personne de confiance: replaces the previous one whole (nothing is merged)."
)
class TrustedPersonInput:
    name: str = strawberry.field(description="Their name, 1 to 200 characters.")
    phone: str | None = strawberry.field(
        default=None, description="A phone number; absent, null or blank: none."
    )
    relationship: str | None = strawberry.field(
        default=None, description="Who they are to the patient; absent, null or blank: none."
    )


@strawberry.input(
    description=(
        "Each section is left as it is when the field is absent, replaced whole when it is "
        "given, and cleared when it is an explicit null."
    )
)
class UpdateHealthProfileInput:
    allergies: list[str] | None = strawberry.field(
        default=strawberry.UNSET, description=_ITEMS.format("allergies")
    )
    treatments: list[str] | None = strawberry.field(
        default=strawberry.UNSET, description=_ITEMS.format("current treatments")
    )
    history: list[str] | None = strawberry.field(
        default=strawberry.UNSET, description=_ITEMS.format("medical history")
    )
    measurements: MeasurementsInput | None = strawberry.field(
        default=strawberry.UNSET,
        description=(
            "Absent: unchanged. Given: replaces the whole set (a value left out becomes "
            "null). null: the measurements are cleared."
        ),
    )
    advance_directives: str | None = strawberry.field(
        default=strawberry.UNSET,
        description=(
            "Absent: unchanged. Given: replaces them (10,000 characters at most; blank "
            "clears them). null: cleared."
        ),
    )
    trusted_person: TrustedPersonInput | None = strawberry.field(
        default=strawberry.UNSET,
        description="Absent: unchanged. Given: replaces the person. null: none any more.",
    )
    patient_id: strawberry.ID | None = strawberry.field(default=None, description=PATIENT_ID)


@strawberry.type
class UpdateHealthProfilePayload:
    health_profile: HealthProfile = strawberry.field(description="The profile, as changed.")
    patient_pk: strawberry.Private[UUID]

    @strawberry.field(description=PATIENT_AFTER_WRITE)
    async def patient(self, info: Info) -> Patient | None:
        return await patient_after_write(info, self.patient_pk)


async def dossier_writer(info: Info, patient_id: strawberry.ID | None) -> Relation:
    """The patient (or representative) acting on their space, or a professional under a
    READ_WRITE consent, who must name the patient."""
    return await acting_for(
        info,
        patient_id,
        professional_may=lambda relation: relation.writes_dossier,
        refusal="Adding to this dossier needs a READ_WRITE consent.",
    )


async def manages_document(info: Info, pk: UUID) -> bool:
    """`_managed_document`'s rule for a document served to the viewer (so visible to them):
    the rows through the request's loaders, batched across a page."""
    loaders = info.context.loaders
    row = await loaders.document.load(pk)
    if row is None or info.context.actor.anonymous:
        return False
    return documents.manages_documents(await loaders.relation.load(row.patient_id))


async def _managed_document(info: Info, document_id: strawberry.ID) -> DocumentModel:
    """A document the viewer may manage (holder or representative): NOT_FOUND when they
    cannot see it at all, FORBIDDEN when they see it but may not manage it."""
    actor = info.context.actor
    if actor.anonymous:
        raise Unauthenticated()
    pk = ids.decode_as(str(document_id), "Document")
    found = await visible_documents(info, [pk])
    if pk not in found:
        raise NotFound()
    row = found[pk]
    relation = await info.context.loaders.relation.load(row.patient_id)
    if not documents.manages_documents(relation):
        if not relation.manages:
            raise Forbidden("Only the holder or a legal representative manages documents.")
        raise Forbidden("This space is closed.")
    return row


def _optional_pk(value: strawberry.ID | None, type_name: str, field: str) -> UUID | None:
    if value is None:
        return None
    try:
        return ids.decode_as(str(value), type_name)
    except NotFound:
        raise BadUserInput(f"Unknown {type_name.lower()}.", field=field) from None


@strawberry.type
class DossierMutation:
    @strawberry.mutation(
        description=(
            "Add a document (multipart upload): the patient, a professional under a "
            "READ_WRITE consent, or a partner app granted DOCUMENTS_WRITE (authored by the "
            "app). The type is sniffed from the bytes; 20 MB at most."
        )
    )
    async def add_document(self, info: Info, input: AddDocumentInput) -> AddDocumentPayload:
        relation = await acting_for(
            info,
            input.patient_id,
            professional_may=documents.adds_documents,
            refusal="Adding to this dossier needs a READ_WRITE consent.",
        )
        ctx = info.context
        data = await _read_upload(input.file, ctx.settings.max_upload_bytes)
        declared_mime = getattr(input.file, "content_type", None)
        attempt = keyed(
            info,
            Operation.ADD_DOCUMENT,
            input.idempotency_key,
            patient=relation.patient_id,
            title=input.title,
            category=input.category,
            date=input.date,
            hidden_from_representatives=bool(input.hidden_from_representatives),
            file=file_digest(data, type=declared_mime),
        )

        async def replay(earlier: Replay) -> DocumentModel:
            # Allowed to add to this dossier now (`acting_for` above): the document added.
            return await created(DocumentModel, earlier.object_id, patient_id=relation.patient_id)

        row, _ = await once(
            attempt,
            lambda: documents.add_document(
                documents.NewDocument(
                    title=input.title,
                    category=input.category,
                    data=data,
                    declared_mime=declared_mime,
                    date=input.date or ctx.today,
                    hidden_from_representatives=bool(input.hidden_from_representatives),
                ),
                patient_id=relation.patient_id,
                actor=ctx.actor,
                relation=relation,
                blobs=ctx.services.blobs,
                max_bytes=ctx.settings.max_upload_bytes,
                today=ctx.today,
                audit=write_event(info, relation),
                claim=attempt,
            ),
            replay,
        )
        return AddDocumentPayload(document=Document.from_model(row))

    @strawberry.mutation(description="Hide a document from professionals (or show it again).")
    async def set_document_hidden(
        self, info: Info, input: SetDocumentHiddenInput
    ) -> SetDocumentHiddenPayload:
        row = await _managed_document(info, input.document_id)
        relation = await info.context.loaders.relation.load(row.patient_id)
        async with logged_write(info, relation) as write:
            write.document_id = row.id
            row = await documents.set_hidden(row, input.hidden)
        return SetDocumentHiddenPayload(document=Document.from_model(row))

    @strawberry.mutation(
        description="Delete a document and, when no other row shares them, its bytes."
    )
    async def delete_document(
        self, info: Info, input: DeleteDocumentInput
    ) -> DeleteDocumentPayload:
        row = await _managed_document(info, input.document_id)
        relation = await info.context.loaders.relation.load(row.patient_id)
        await documents.delete_document(
            row, blobs=info.context.services.blobs, audit=write_event(info, relation)
        )
        return DeleteDocumentPayload(deleted_id=input.document_id, patient_pk=row.patient_id)

    @strawberry.mutation(description="Record a vaccination in the carnet.")
    async def record_vaccination(
        self, info: Info, input: RecordVaccinationInput
    ) -> RecordVaccinationPayload:
        relation = await dossier_writer(info, input.patient_id)
        actor = info.context.actor
        professional = _optional_pk(input.professional_id, "Professional", "professionalId")
        if actor.is_professional:
            professional = professional or actor.professional_id
        async with logged_write(info, relation):
            row = await record.record_vaccination(
                relation.patient_id,
                vaccine=input.vaccine,
                day=input.date,
                dose_number=input.dose_number,
                lot_number=input.lot_number,
                professional_id=professional,
                today=info.context.today,
            )
        return RecordVaccinationPayload(
            vaccination=Vaccination.from_model(row), patient_pk=relation.patient_id
        )

    @strawberry.mutation(description="Record a screening test.")
    async def record_screening(
        self, info: Info, input: RecordScreeningInput
    ) -> RecordScreeningPayload:
        relation = await dossier_writer(info, input.patient_id)
        async with logged_write(info, relation):
            row = await record.record_screening(
                relation.patient_id,
                kind=input.kind,
                day=input.date,
                result=input.result,
                today=info.context.today,
            )
        return RecordScreeningPayload(
            screening=Screening.from_model(row), patient_pk=relation.patient_id
        )

    @strawberry.mutation(description="Replace sections of the health profile.")
    async def update_health_profile(
        self, info: Info, input: UpdateHealthProfileInput
    ) -> UpdateHealthProfilePayload:
        relation = await dossier_writer(info, input.patient_id)
        changes: dict[str, Any] = {}
        for name in ("allergies", "treatments", "history", "advance_directives"):
            value = getattr(input, name)
            if value is not strawberry.UNSET:
                changes[name] = value
        if input.measurements is not strawberry.UNSET:
            m = input.measurements
            changes["measurements"] = (
                _measurements(m, info.context.today) if m is not None else None
            )
        if input.trusted_person is not strawberry.UNSET:
            t = input.trusted_person
            changes["trusted_person"] = _trusted_person(t) if t is not None else None
        async with logged_write(info, relation):
            row = await record.update_health_profile(relation.patient_id, changes)
        return UpdateHealthProfilePayload(
            health_profile=HealthProfile.from_model(row, relation.patient_id),
            patient_pk=relation.patient_id,
        )


def _measurements(m: MeasurementsInput, today: date) -> dict[str, Any]:
    checks = (
        ("height_cm", m.height_cm, 20, 260, "measurements.heightCm"),
        ("weight_kg", m.weight_kg, 0.3, 400, "measurements.weightKg"),
        ("systolic_mmhg", m.systolic_mmhg, 50, 300, "measurements.systolicMmhg"),
        ("diastolic_mmhg", m.diastolic_mmhg, 20, 200, "measurements.diastolicMmhg"),
    )
    out: dict[str, Any] = {}
    for key, value, low, high, field in checks:
        if value is not None and not low <= value <= high:
            raise BadUserInput(f"Out of range ({low} to {high}).", field=field)
        out[key] = value
    systolic, diastolic = m.systolic_mmhg, m.diastolic_mmhg
    if systolic is not None and diastolic is not None and diastolic >= systolic:
        raise BadUserInput(
            "The diastolic pressure is below the systolic one.", field="measurements.diastolicMmhg"
        )
    if m.measured_on is not None and m.measured_on > today:
        raise BadUserInput("The date cannot be in the future.", field="measurements.measuredOn")
    out["measured_on"] = m.measured_on.isoformat() if m.measured_on else None
    return out


def _trusted_person(t: TrustedPersonInput) -> dict[str, Any]:
    name = " ".join(t.name.split())
    if not name or len(name) > 200:
        raise BadUserInput("The trusted person needs a name.", field="trustedPerson.name")
    return {
        "name": name,
        "phone": (t.phone or "").strip() or None,
        "relationship": (t.relationship or "").strip() or None,
    }


async def _read_upload(file: Any, max_bytes: int) -> bytes:
    """Read at most one byte past the limit, so an oversize file is refused (by
    `validate_upload`) without holding all of it. A JSON value where the multipart map
    should have put a file is bad input, not a crash."""
    read = getattr(file, "read", None)
    if not callable(read):
        raise BadUserInput("Send the file as a multipart upload.", field="file")
    return bytes(await read(max_bytes + 1))


__all__ = [
    "Document",
    "DocumentConnection",
    "DossierMutation",
    "HealthProfile",
    "Screening",
    "Vaccination",
]
