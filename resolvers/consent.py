"""Consent, blocks, médecin traitant, emergency access, look-ups and the access log."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated
from uuid import UUID

import strawberry
from tortoise.transactions import in_transaction

from api.context import Info
from api.errors import BadUserInput, NotFound, Unauthenticated
from api.jobs import alert
from models import access
from models import consent as consents
from models.audit import AccessAction, AccessBasis, readable_log
from models.audit import AccessEvent as AccessEventModel
from models.consent import Consent as ConsentModel
from models.identifiers import normalize_nir
from models.patient import Patient as PatientModel
from models.patient import SpaceStatus
from models.reminder import raise_now
from resolvers import ids
from resolvers.audit import logged_write, record_access
from resolvers.catalogue import PartnerApp
from resolvers.dossier import Document
from resolvers.enums import AccessAction as AccessActionEnum
from resolvers.enums import AccessBasis as AccessBasisEnum
from resolvers.enums import ActorRole, ConsentAccess
from resolvers.node import Node, register
from resolvers.pagination import Connection, Order, paginate
from resolvers.people import (
    PATIENT_AFTER_WRITE,
    Establishment,
    Operator,
    Patient,
    Professional,
    patient_after_write,
)
from resolvers.permissions import (
    IsProfessional,
    IsProfessionalOrOperator,
    SeesReferencedDocument,
    guard,
)
from resolvers.post_only import NIR_POST_ONLY
from resolvers.scope import SPACE_ID, patient_scope

Actor = Annotated[
    Patient | Professional | Operator | PartnerApp,
    strawberry.union("AccessActor", description="Who accessed the dossier."),
]

ACCESS_LOG_ORDER = Order((("at", True), ("id", True)))


@strawberry.type(
    name="Consent", description="A professional's right to read (or add to) the dossier."
)
class Consent(Node):
    pk: strawberry.Private[UUID]
    professional_id: strawberry.Private[UUID]
    access: ConsentAccess = strawberry.field(  # type: ignore[valid-type]
        description="What it grants."
    )
    granted_at: datetime = strawberry.field(description="When it was granted.")
    expires_at: datetime | None = strawberry.field(
        description="When it ends by itself; null: until revoked."
    )
    revoked_at: datetime | None = strawberry.field(
        description="When the holder revoked it; null while not revoked."
    )
    active: bool = strawberry.field(
        description="Whether it works now: neither revoked nor expired."
    )

    @strawberry.field(description="The professional it lets in.")
    async def professional(self, info: Info) -> Professional | None:
        row = await info.context.loaders.professional.load(self.professional_id)
        return Professional.from_model(row) if row else None

    @classmethod
    def from_model(cls, row: ConsentModel, now: datetime) -> Consent:
        return cls(
            id=strawberry.ID(ids.encode("Consent", row.id)),
            pk=row.id,
            professional_id=row.professional_id,
            access=row.access,
            granted_at=row.granted_at,
            expires_at=row.expires_at,
            revoked_at=row.revoked_at,
            active=row.active_at(now),
        )


@strawberry.type(name="AccessEvent", description="One access to the dossier by someone else.")
class AccessEvent(Node):
    actor_id: strawberry.Private[UUID]
    document_id: strawberry.Private[UUID | None]
    establishment_id: strawberry.Private[UUID | None]
    at: datetime = strawberry.field(description="When it happened.")
    action: AccessActionEnum = strawberry.field(  # type: ignore[valid-type]
        description="What was done."
    )
    role: ActorRole = strawberry.field(  # type: ignore[valid-type]
        description="In which role the actor acted."
    )
    basis: AccessBasisEnum = strawberry.field(  # type: ignore[valid-type]
        description="By what right."
    )

    @strawberry.field(
        description="Who accessed: a representative, a professional, an operator, a partner app."
    )
    async def actor(self, info: Info) -> Actor | None:
        loaders = info.context.loaders
        if self.role == "PARTNER_APP":
            app = await loaders.partner_app.load(self.actor_id)
            return PartnerApp.from_model(app) if app else None
        if self.role == "PROFESSIONAL":
            pro = await loaders.professional.load(self.actor_id)
            return Professional.from_model(pro) if pro else None
        if self.role == "OPERATOR":
            op = await loaders.operator.load(self.actor_id)
            return Operator.from_model(op) if op else None
        if self.role == "PATIENT":
            patient = await loaders.patient.load(self.actor_id)
            return Patient.from_model(patient) if patient else None
        return None

    @strawberry.field(
        description=(
            "The document concerned, when there is one and the viewer may read it; null "
            "otherwise, alike for a deleted document and for one the viewer may not read."
        ),
        extensions=guard(SeesReferencedDocument(), fail_silently=True),
    )
    async def document(self, info: Info) -> Document | None:
        if self.document_id is None:
            return None
        row = await info.context.loaders.document.load(self.document_id)
        return Document.from_model(row) if row else None

    @strawberry.field(
        description=(
            "The establishment whose shared inbox the access went through (a member reading "
            "a message of the patient's); null otherwise."
        )
    )
    async def establishment(self, info: Info) -> Establishment | None:
        if self.establishment_id is None:
            return None
        row = await info.context.loaders.establishment.load(self.establishment_id)
        return Establishment.from_model(row) if row else None

    @classmethod
    def from_model(cls, row: AccessEventModel) -> AccessEvent:
        return cls(
            id=strawberry.ID(ids.encode("AccessEvent", row.id)),
            actor_id=row.actor_id,
            document_id=row.document_id,
            establishment_id=row.establishment_id,
            at=row.at,
            action=row.action,
            role=row.actor_role,
            basis=row.basis,
        )


@strawberry.type(
    name="AccessEventConnection", description="A page of the access log (a Relay connection)."
)
class AccessEventConnection(Connection[AccessEvent]):
    pass


# --- Patient fields ---------------------------------------------------------------------


async def patient_consents(info: Info, patient_pk: UUID) -> list[Consent]:
    rows = await info.context.loaders.consents.load(patient_pk)
    relation = await info.context.loaders.relation.load(patient_pk)
    await record_access(info, relation)
    return [Consent.from_model(row, info.context.now) for row in rows]


async def patient_access_log(
    info: Info,
    patient_pk: UUID,
    first: int | None,
    after: str | None,
    *,
    last: int | None = None,
    before: str | None = None,
) -> AccessEventConnection:
    relation = await info.context.loaders.relation.load(patient_pk)
    await record_access(info, relation)
    query = AccessEventModel.filter(readable_log(relation))
    return await paginate(
        query,
        ACCESS_LOG_ORDER,
        first=first,
        after=after,
        last=last,
        before=before,
        wrap=AccessEvent.from_model,
        connection=AccessEventConnection,
    )


# --- Professional fields ----------------------------------------------------------------


async def linking_consents(
    professional_pk: UUID, patient_pks: list[UUID], now: datetime
) -> dict[UUID, ConsentModel]:
    """For each of these spaces, the live consent that links it to the professional (the
    basis of `Professional.patients`), read in one statement. There is one each
    (`grant_consent` replaces the live one); were there two, the one that grants more, then
    the latest, as `models.access.Relation` decides (READ_WRITE wins over READ)."""
    if not patient_pks:
        return {}
    rows = await ConsentModel.filter(
        access.active_consent(professional_pk, now), patient_id__in=patient_pks
    )
    rows.sort(key=lambda row: (row.access is consents.ConsentAccess.READ_WRITE, row.granted_at))
    return {row.patient_id: row for row in rows}  # the last one of each space wins


@register("Consent")
async def _consent_nodes(info: Info, pks: list[UUID]) -> dict[UUID, object]:
    rows = await ConsentModel.filter(id__in=pks)
    out: dict[UUID, object] = {}
    for row in rows:
        relation = await info.context.loaders.relation.load(row.patient_id)
        if relation.manages:
            await record_access(info, relation)
            out[row.id] = Consent.from_model(row, info.context.now)
    return out


@register("AccessEvent")
async def _event_nodes(info: Info, pks: list[UUID]) -> dict[UUID, object]:
    rows = await AccessEventModel.filter(id__in=pks)
    out: dict[UUID, object] = {}
    for row in rows:
        relation = await info.context.loaders.relation.load(row.patient_id)
        # The rule of the list: an event left out of it is not found by id either.
        if relation.manages and await AccessEventModel.exists(readable_log(relation), id=row.id):
            await record_access(info, relation)
            out[row.id] = AccessEvent.from_model(row)
    return out


# --- queries ----------------------------------------------------------------------------


@strawberry.type
class ConsentQuery:
    @strawberry.field(
        description=(
            "PROFESSIONAL or OPERATOR: find a patient by NIR and birth date. Logged as a "
            "LOOKUP in the holder's access log. NOT_FOUND when nothing matches. Served over "
            "POST only (`@postOnly`): over GET, 405 with `Allow: POST`."
        ),
        extensions=guard(IsProfessionalOrOperator()),
        directives=[NIR_POST_ONLY],
    )
    async def patient_by_nir(
        self,
        info: Info,
        nir: Annotated[
            str,
            strawberry.argument(
                description="The 15-character NIR (key included); spaces are ignored."
            ),
        ],
        birth_date: Annotated[
            date, strawberry.argument(description="The patient's birth date, which must match.")
        ],
    ) -> Patient | None:
        ctx = info.context
        number = normalize_nir(nir)
        row = await PatientModel.get_or_none(nir_hash=ctx.vault.keyed_hash(number, purpose="nir"))
        if row is None or row.birth_date != birth_date or row.status is SpaceStatus.OPPOSED:
            raise NotFound()
        if ctx.actor.is_professional and row.status not in access.LIVE_SPACES:
            raise NotFound()  # a closed space is archived: an operator still finds it
        relation = await ctx.loaders.relation.load(row.id)
        if relation.blocked:
            raise NotFound()
        if ctx.actor.is_operator:
            basis = AccessBasis.OPERATOR
        else:
            basis = relation.dossier_basis or AccessBasis.LOOKUP
        await record_access(info, relation, action=AccessAction.LOOKUP, basis=basis)
        return Patient.from_model(row)


# --- mutations --------------------------------------------------------------------------


def _professional_pk(value: strawberry.ID) -> UUID:
    try:
        return ids.decode_as(str(value), "Professional")
    except NotFound:
        raise BadUserInput("Unknown professional.", field="professionalId") from None


@strawberry.input
class GrantConsentInput:
    professional_id: strawberry.ID = strawberry.field(
        description="The professional (BAD_USER_INPUT if unknown; CONFLICT if blocked)."
    )
    access: ConsentAccess = strawberry.field(  # type: ignore[valid-type]
        description="What to grant; replaces that professional's live consent, if any."
    )
    expires_at: datetime | None = strawberry.field(
        default=None,
        description="When it ends by itself: in the future, with an offset; absent: until revoked.",
    )
    patient_id: strawberry.ID | None = strawberry.field(default=None, description=SPACE_ID)


@strawberry.type
class GrantConsentPayload:
    consent: Consent = strawberry.field(description="The consent granted.")
    patient_pk: strawberry.Private[UUID]

    @strawberry.field(description=PATIENT_AFTER_WRITE)
    async def patient(self, info: Info) -> Patient | None:
        return await patient_after_write(info, self.patient_pk)


@strawberry.input
class RevokeConsentInput:
    consent_id: strawberry.ID = strawberry.field(description="The consent to revoke.")


@strawberry.type
class RevokeConsentPayload:
    consent: Consent = strawberry.field(description="The consent, revoked.")
    patient_pk: strawberry.Private[UUID]

    @strawberry.field(description=PATIENT_AFTER_WRITE)
    async def patient(self, info: Info) -> Patient | None:
        return await patient_after_write(info, self.patient_pk)


@strawberry.input
class BlockProfessionalInput:
    professional_id: strawberry.ID = strawberry.field(description="The professional to block.")
    patient_id: strawberry.ID | None = strawberry.field(default=None, description=SPACE_ID)


@strawberry.type
class BlockProfessionalPayload:
    patient: Patient = strawberry.field(description="The patient, as changed.")


@strawberry.input
class UnblockProfessionalInput:
    professional_id: strawberry.ID = strawberry.field(description="The professional to unblock.")
    patient_id: strawberry.ID | None = strawberry.field(default=None, description=SPACE_ID)


@strawberry.type
class UnblockProfessionalPayload:
    patient: Patient = strawberry.field(description="The patient, as changed.")


@strawberry.input
class SetTreatingDoctorInput:
    professional_id: strawberry.ID = strawberry.field(
        description="The professional to designate as médecin traitant."
    )
    patient_id: strawberry.ID | None = strawberry.field(default=None, description=SPACE_ID)


@strawberry.type
class SetTreatingDoctorPayload:
    patient: Patient = strawberry.field(description="The patient, as changed.")


@strawberry.input
class SetEmergencyAccessOppositionInput:
    opposed: bool = strawberry.field(
        description="true: no professional may open the dossier in an emergency; false: allowed."
    )
    patient_id: strawberry.ID | None = strawberry.field(default=None, description=SPACE_ID)


@strawberry.type
class SetEmergencyAccessOppositionPayload:
    patient: Patient = strawberry.field(description="The patient, as changed.")


@strawberry.input
class EmergencyAccessInput:
    patient_id: strawberry.ID = strawberry.field(description="The patient whose dossier to open.")
    reason: str = strawberry.field(
        description=(
            "Why, 1 to 1,000 characters: the holder is alerted at once and reads it in the alert."
        )
    )


@strawberry.type
class EmergencyAccessPayload:
    patient: Patient = strawberry.field(description="The patient whose dossier is now open.")


async def _patient(info: Info, pk: UUID) -> Patient:
    """The space as the mutation left it (the request's loader may hold the row before)."""
    row = await PatientModel.get_or_none(id=pk)
    if row is None:
        raise NotFound()
    info.context.loaders.patient.prime(pk, row, force=True)
    return Patient.from_model(row)


async def _consent_of_manager(info: Info, consent_id: strawberry.ID) -> ConsentModel:
    if info.context.actor.anonymous:
        raise Unauthenticated()
    pk = ids.decode_as(str(consent_id), "Consent")
    row = await ConsentModel.get_or_none(id=pk)
    if row is None:
        raise NotFound()
    relation = await info.context.loaders.relation.load(row.patient_id)
    if not relation.manages:
        raise NotFound()
    return row


@strawberry.type
class ConsentMutation:
    @strawberry.mutation(
        description="Let a professional read (READ) or also add to (READ_WRITE) the dossier."
    )
    async def grant_consent(self, info: Info, input: GrantConsentInput) -> GrantConsentPayload:
        pk, relation = await patient_scope(info, input.patient_id)
        async with logged_write(info, relation):
            row = await consents.grant_consent(
                pk,
                _professional_pk(input.professional_id),
                input.access,
                expires_at=input.expires_at,
                now=info.context.now,
            )
        return GrantConsentPayload(
            consent=Consent.from_model(row, info.context.now), patient_pk=row.patient_id
        )

    @strawberry.mutation(description="Withdraw a consent; it stops working at once.")
    async def revoke_consent(self, info: Info, input: RevokeConsentInput) -> RevokeConsentPayload:
        row = await _consent_of_manager(info, input.consent_id)
        _, relation = await patient_scope(
            info, strawberry.ID(ids.encode("Patient", row.patient_id))
        )
        async with logged_write(info, relation):
            row = await consents.revoke_consent(row, now=info.context.now)
        return RevokeConsentPayload(
            consent=Consent.from_model(row, info.context.now), patient_pk=row.patient_id
        )

    @strawberry.mutation(description="Block a professional: a block wins over any consent.")
    async def block_professional(
        self, info: Info, input: BlockProfessionalInput
    ) -> BlockProfessionalPayload:
        pk, relation = await patient_scope(info, input.patient_id)
        async with logged_write(info, relation):
            await consents.block_professional(pk, _professional_pk(input.professional_id))
        return BlockProfessionalPayload(patient=await _patient(info, pk))

    @strawberry.mutation(description="Lift a block.")
    async def unblock_professional(
        self, info: Info, input: UnblockProfessionalInput
    ) -> UnblockProfessionalPayload:
        pk, relation = await patient_scope(info, input.patient_id)
        async with logged_write(info, relation):
            await consents.unblock_professional(pk, _professional_pk(input.professional_id))
        return UnblockProfessionalPayload(patient=await _patient(info, pk))

    @strawberry.mutation(
        description="Designate the médecin traitant, who reads everything, hidden documents too."
    )
    async def set_treating_doctor(
        self, info: Info, input: SetTreatingDoctorInput
    ) -> SetTreatingDoctorPayload:
        pk, relation = await patient_scope(info, input.patient_id)
        async with logged_write(info, relation):
            await consents.set_treating_doctor(pk, _professional_pk(input.professional_id))
        return SetTreatingDoctorPayload(patient=await _patient(info, pk))

    @strawberry.mutation(description="Oppose (or allow again) emergency access to the space.")
    async def set_emergency_access_opposition(
        self, info: Info, input: SetEmergencyAccessOppositionInput
    ) -> SetEmergencyAccessOppositionPayload:
        pk, relation = await patient_scope(info, input.patient_id)
        async with logged_write(info, relation):
            await consents.set_emergency_opposition(pk, input.opposed)
        return SetEmergencyAccessOppositionPayload(patient=await _patient(info, pk))

    @strawberry.mutation(
        description=(
            "PROFESSIONAL: open a dossier without consent in an emergency, giving a reason. "
            "Logged, and the holder is alerted at once. FORBIDDEN when the holder opposed."
        ),
        extensions=guard(IsProfessional()),
    )
    async def emergency_access(
        self, info: Info, input: EmergencyAccessInput
    ) -> EmergencyAccessPayload:
        ctx = info.context
        pk = ids.decode_as(str(input.patient_id), "Patient")
        row = await PatientModel.get_or_none(id=pk)
        if row is None or row.status.value not in ("ACTIVE", "PENDING"):
            raise NotFound()
        assert ctx.actor.professional_id is not None
        # The opening, its access event and the holder's alert: all three or none.
        async with in_transaction():
            emergency = await consents.open_emergency_access(
                pk, ctx.actor.professional_id, reason=input.reason, now=ctx.now
            )
            # The relation now has an emergency basis; the request's loader may hold the
            # old one.
            relation = (await access.relations(ctx.actor, [pk], ctx.today, ctx.now))[pk]
            ctx.loaders.relation.prime(pk, relation, force=True)
            await record_access(
                info, relation, action=AccessAction.EMERGENCY_OPEN, basis=AccessBasis.EMERGENCY
            )
            raised = await raise_now(pk, f"EMERGENCY_ACCESS:{emergency.id}", now=ctx.now)
        # Pushed once committed, through the same path as every reminder.
        await alert(ctx.services.bus, raised, ctx.now)
        return EmergencyAccessPayload(patient=Patient.from_model(row))
