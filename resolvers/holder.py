"""The holder's powers over the access rules and the log: who can see a document
(`whoCanSee`), a dossier as one professional would read it (`previewAs`), and the check of
the log's hash chain (`verifyAccessLog`). For the holder and legal representatives only.

whoCanSee and previewAs are computed by the rules of every real read (models/visibility.py),
reading nothing as the professional and logging nothing in their name; a representative's
use of them is a read of the minor's dossier, logged as such (basis REPRESENTATIVE).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

import strawberry

from api.context import Info
from api.errors import BadUserInput, Forbidden, NotFound, Unauthenticated
from models import visibility
from models.audit import AccessEvent as AccessEventModel
from models.audit import readable_log, verify_chain
from models.document import Document as DocumentModel
from models.document import DocumentScope, document_scope
from models.errors import Invalid
from resolvers import ids
from resolvers.audit import record_access
from resolvers.cost import RECORD
from resolvers.dossier import (
    DOCUMENT_FIELDS,
    DOCUMENT_ORDER,
    Document,
    DocumentConnection,
    visible_documents,
)
from resolvers.enums import AccessBasis
from resolvers.pagination import PAGE, After, Before, First, Last, empty_connection, paginate
from resolvers.people import Professional
from resolvers.scope import SPACE_ID, patient_scope


@strawberry.type(
    name="Visibility", description="A professional who could read a document now, and why."
)
class Visibility:
    professional_id: strawberry.Private[UUID]
    basis: AccessBasis = strawberry.field(  # type: ignore[valid-type]
        description="What their read would be logged with: TREATING_DOCTOR, CONSENT, "
        "EMERGENCY, or AUTHOR (they deposited it, and have no other basis)."
    )
    until: datetime | None = strawberry.field(
        description="When that basis ends by itself (a consent's expiry, the end of an "
        "emergency access); null when it lasts until the holder changes it."
    )

    @strawberry.field(description="The professional who could read it.")
    async def professional(self, info: Info) -> Professional:
        row = await info.context.loaders.professional.load(self.professional_id)
        assert row is not None  # read from the rows that tie them to the space
        return Professional.from_model(row)


@strawberry.type(
    name="DossierPreview",
    description="The dossier as one professional would read it today, by the same rules as "
    "their own reads; nothing is read as them, nothing logged in their name.",
)
class DossierPreview:
    professional_id: strawberry.Private[UUID]
    scope: strawberry.Private[visibility.Preview]
    viewer_documents: strawberry.Private[DocumentScope]
    basis: AccessBasis | None = strawberry.field(  # type: ignore[valid-type]
        description="Why they would read the dossier (TREATING_DOCTOR, CONSENT, EMERGENCY); "
        "null: they have no basis, and read at most the documents they deposited."
    )
    until: datetime | None = strawberry.field(
        description="When that basis ends by itself; null when it does not."
    )

    @strawberry.field(description="The professional whose view this is.")
    async def professional(self, info: Info) -> Professional:
        row = await info.context.loaders.professional.load(self.professional_id)
        assert row is not None  # checked by previewAs
        return Professional.from_model(row)

    @strawberry.field(
        description=(
            "The documents they would see (those the viewer sees too), newest first by "
            "`date`, then by when they were added."
        ),
        directives=[PAGE],
    )
    async def documents(
        self,
        info: Info,
        first: First = None,
        after: After = None,
        last: Last = None,
        before: Before = None,
    ) -> DocumentConnection:
        where = visibility.visible_to_both(self.viewer_documents, self.scope.documents)
        if where is None:
            return empty_connection(DocumentConnection)
        return await paginate(
            DocumentModel.filter(where),
            DOCUMENT_ORDER,
            first=first,
            after=after,
            last=last,
            before=before,
            wrap=Document.from_values,
            connection=DocumentConnection,
            fields=DOCUMENT_FIELDS,
        )


@strawberry.type(
    name="AccessLogVerification",
    description="The check of a space's access log: each event carries the hash of the one "
    "before it (a chain per space), recomputed here from the first.",
)
class AccessLogVerification:
    valid: bool = strawberry.field(
        description="No event altered, removed or inserted, from the first to the last."
    )
    events: int = strawberry.field(description="How many events the viewer's log holds.")
    first_broken_at: datetime | None = strawberry.field(
        description="Where the chain first breaks: the moment of the first event that does "
        "not verify (for a removed event, the one after it; for events removed from the "
        "end, the last one recorded). Null when valid; for a representative, null also when "
        "the break is among events they do not read, and no later one they read."
    )


async def _document_for_manager(info: Info, document_id: strawberry.ID) -> DocumentModel:
    """A document the viewer sees and manages: NOT_FOUND when they cannot see it at all,
    FORBIDDEN when they see it but do not manage the space (a professional)."""
    if info.context.actor.anonymous:
        raise Unauthenticated()
    pk = ids.decode_as(str(document_id), "Document")
    found = await visible_documents(info, [pk])
    if pk not in found:
        raise NotFound()
    row = found[pk]
    relation = await info.context.loaders.relation.load(row.patient_id)
    if not relation.manages:
        raise Forbidden("Only the holder or a legal representative sees who can see it.")
    return row


def _professional_pk(professional_id: strawberry.ID) -> UUID:
    try:
        return ids.decode_as(str(professional_id), "Professional")
    except NotFound:
        raise BadUserInput("Unknown professional.", field="professionalId") from None


@strawberry.type
class HolderQuery:
    @strawberry.field(
        description=(
            "HOLDER or legal REPRESENTATIVE: every professional who could read this document "
            "now, and why (a representative cannot ask about a document hidden from "
            "representatives: NOT_FOUND, as for any document they do not see)."
        ),
        directives=[RECORD],  # as many as the space has consents, at most, and a few
    )
    async def who_can_see(
        self,
        info: Info,
        document_id: Annotated[
            strawberry.ID, strawberry.argument(description="A document of the caller's space.")
        ],
    ) -> list[Visibility]:
        ctx = info.context
        row = await _document_for_manager(info, document_id)
        relation = await ctx.loaders.relation.load(row.patient_id)
        readers = await visibility.readers(row, today=ctx.today, now=ctx.now)
        await record_access(info, relation, document_id=row.id)
        return [
            Visibility(professional_id=r.professional_id, basis=r.basis, until=r.until)
            for r in readers
        ]

    @strawberry.field(
        description=(
            "HOLDER or legal REPRESENTATIVE (`patientId`: absent, the viewer's own space): "
            "the dossier as this professional would read it today, by the same rules as "
            "their own reads. Reads nothing as them and logs nothing in their name. "
            "BAD_USER_INPUT (professionalId) for an unknown professional."
        )
    )
    async def preview_as(
        self,
        info: Info,
        *,
        patient_id: Annotated[
            strawberry.ID | None, strawberry.argument(description=SPACE_ID)
        ] = None,
        professional_id: Annotated[
            strawberry.ID, strawberry.argument(description="The professional to preview as.")
        ],
    ) -> DossierPreview:
        ctx = info.context
        pk, relation = await patient_scope(info, patient_id)
        professional = _professional_pk(professional_id)
        viewer = document_scope(ctx.actor, relation)
        assert viewer is not None  # a live space its viewer manages
        try:
            seen = await visibility.preview(pk, professional, today=ctx.today, now=ctx.now)
        except Invalid:
            raise BadUserInput("Unknown professional.", field="professionalId") from None
        await record_access(info, relation)
        return DossierPreview(
            professional_id=professional,
            scope=seen,
            viewer_documents=viewer,
            basis=seen.basis,
            until=seen.until,
        )

    @strawberry.field(
        description=(
            "HOLDER or legal REPRESENTATIVE (`patientId`: absent, the viewer's own space, "
            "closed or not): recompute the hash chain of the space's access log and say "
            "whether any event was altered, removed or inserted, and where first."
        )
    )
    async def verify_access_log(
        self,
        info: Info,
        patient_id: Annotated[
            strawberry.ID | None, strawberry.argument(description=SPACE_ID)
        ] = None,
    ) -> AccessLogVerification:
        pk, relation = await patient_scope(info, patient_id, allow_closed=True)
        checked = await verify_chain(pk)
        broken = checked.broken
        if relation.holder:
            return AccessLogVerification(
                valid=broken is None,
                events=checked.events,
                first_broken_at=broken.at if broken is not None else None,
            )
        # A representative learns nothing of the events they do not read: neither how many
        # there are, nor when one of them is. Counted before their check is logged.
        events = await AccessEventModel.filter(readable_log(relation)).count()
        at = None
        if broken is not None and broken.event_id is not None:
            first = (
                await AccessEventModel.filter(readable_log(relation), seq__gte=broken.seq)
                .order_by("seq")
                .first()
            )
            at = first.at if first is not None else None
        await record_access(info, relation)
        return AccessLogVerification(valid=broken is None, events=events, first_broken_at=at)
