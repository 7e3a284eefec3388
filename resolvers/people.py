"""Patients, professionals, operators: their types, `viewer`, `patient`, the directory."""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

import strawberry
from tortoise.expressions import Q

from api.context import Info
from api.errors import BadUserInput, NotFound
from models import access
from models.account import Operator as OperatorModel
from models.audit import AccessAction, AccessBasis
from models.catalogue import AppScope
from models.patient import Patient as PatientModel
from models.patient import reveal_nir
from models.professional import Establishment as EstablishmentModel
from models.professional import Professional as ProfessionalModel
from models.professional import search_directory
from resolvers import ids
from resolvers.audit import record_access
from resolvers.catalogue import (
    APP_GRANTS,
    AppGrant,
    PartnerApp,
    app_viewer,
    patient_app_grants,
)
from resolvers.cost import FAMILY, READS_DATABASE, RECORD, SLICED_BY_FIRST, sized
from resolvers.enums import (
    ConversationPurpose,
    DocumentCategory,
    Profession,
    ReminderStatus,
    Sector,
    Sex,
    SpaceStatus,
)
from resolvers.node import Node, register
from resolvers.pagination import PAGE, Connection, Order, paginate
from resolvers.permissions import (
    HolderOnly,
    IsAuthenticated,
    IsEstablishmentMember,
    IsEstablishmentMemberOrOperator,
    IsThisProfessional,
    IsThisProfessionalOrOperator,
    ManagesPatient,
    ReadsDossier,
    SeesIdentity,
    guard,
    guard_read,
)

if TYPE_CHECKING:
    from resolvers.agenda import AppointmentConnection, ReminderConnection
    from resolvers.consent import AccessEventConnection, Consent
    from resolvers.dossier import DocumentConnection, HealthProfile, Screening, Vaccination
    from resolvers.establishment import EstablishmentMember
    from resolvers.messaging import ConversationConnection

DocumentConnectionRef = Annotated["DocumentConnection", strawberry.lazy("resolvers.dossier")]
HealthProfileRef = Annotated["HealthProfile", strawberry.lazy("resolvers.dossier")]
VaccinationRef = Annotated["Vaccination", strawberry.lazy("resolvers.dossier")]
ScreeningRef = Annotated["Screening", strawberry.lazy("resolvers.dossier")]
ConsentRef = Annotated["Consent", strawberry.lazy("resolvers.consent")]
ConversationConnectionRef = Annotated[
    "ConversationConnection", strawberry.lazy("resolvers.messaging")
]
AppointmentConnectionRef = Annotated["AppointmentConnection", strawberry.lazy("resolvers.agenda")]
ReminderConnectionRef = Annotated["ReminderConnection", strawberry.lazy("resolvers.agenda")]
AccessEventConnectionRef = Annotated["AccessEventConnection", strawberry.lazy("resolvers.consent")]
# An establishment's members, or the establishments a professional is a member of: not
# paginated, and what an inbox holds in practice, with room to spare (an estimate).
MEMBERS = sized(50)
EstablishmentMemberRef = Annotated[
    "EstablishmentMember", strawberry.lazy("resolvers.establishment")
]


@strawberry.type(
    name="Establishment",
    description=(
        "A health, medico-social or social establishment (FINESS), and its shared inbox: the "
        "conversations its members hold with patients in its name."
    ),
)
class Establishment(Node):
    pk: strawberry.Private[UUID]
    finess: str
    name: str = strawberry.field(
        description=(
            "Empty for one that only a professional's registration named, until an operator "
            "registers it."
        )
    )

    @strawberry.field(
        description=(
            "The shared inbox, latest first, by `purpose` if given: its members only. "
            "Every member reads, answers, marks read and closes them."
        ),
        extensions=guard(IsEstablishmentMember()),
        directives=[PAGE],
    )
    async def conversations(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        purpose: ConversationPurpose | None = None,  # type: ignore[valid-type]
    ) -> ConversationConnectionRef | None:
        from resolvers.establishment import establishment_conversations

        return await establishment_conversations(info, self.pk, first, after, purpose)

    @strawberry.field(
        description="Who answers the inbox, earliest first: its members and operators only.",
        extensions=guard(IsEstablishmentMemberOrOperator()),
        directives=[MEMBERS],
    )
    async def members(self, info: Info) -> list[EstablishmentMemberRef] | None:
        from resolvers.establishment import establishment_members

        return await establishment_members(info, self.pk)

    @classmethod
    def from_model(cls, row: EstablishmentModel) -> Establishment:
        return cls(
            id=strawberry.ID(ids.encode("Establishment", row.id)),
            pk=row.id,
            finess=row.finess,
            name=row.name,
        )


@strawberry.type(name="Professional", description="A health, medico-social or social professional.")
class Professional(Node):
    pk: strawberry.Private[UUID]
    establishment_id: strawberry.Private[UUID | None]
    rpps: str
    first_name: str
    last_name: str
    profession: Profession  # type: ignore[valid-type]
    sector: Sector  # type: ignore[valid-type]

    @strawberry.field(
        description=(
            "The establishment declared at registration (directory information); the "
            "inboxes the professional answers are `memberOf`."
        )
    )
    async def establishment(self, info: Info) -> Establishment | None:
        if self.establishment_id is None:
            return None
        row = await info.context.loaders.establishment.load(self.establishment_id)
        return Establishment.from_model(row) if row else None

    @strawberry.field(
        description=(
            "The patients who granted this professional an active consent (the dashboard); "
            "readable by that professional only."
        ),
        extensions=guard(IsThisProfessional()),
        directives=[PAGE],
    )
    async def patients(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> PatientConnection | None:
        ctx = info.context
        query = PatientModel.filter(access.consenting_patients(self.pk, ctx.now))
        page = await paginate(
            query,
            PATIENT_ORDER,
            first=first,
            after=after,
            wrap=Patient.from_model,
            connection=PatientConnection,
        )
        for edge in page.edges:
            await ctx.audit.record(
                patient_id=edge.node.pk, action=AccessAction.READ, basis=AccessBasis.CONSENT
            )
        return page

    @strawberry.field(
        description=(
            "The establishments whose shared inbox this professional is a member of: that "
            "professional and operators only."
        ),
        extensions=guard(IsThisProfessionalOrOperator()),
        directives=[MEMBERS],
    )
    async def member_of(self, info: Info) -> list[Establishment] | None:
        from resolvers.establishment import professional_memberships

        return await professional_memberships(info, self.pk)

    @strawberry.field(
        description="All of this professional's conversations, across patients (the dashboard).",
        extensions=guard(IsThisProfessional()),
        directives=[PAGE],
    )
    async def conversations(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> ConversationConnectionRef | None:
        from resolvers.messaging import professional_conversations

        return await professional_conversations(info, self.pk, first, after)

    @classmethod
    def from_model(cls, row: ProfessionalModel) -> Professional:
        return cls(
            id=strawberry.ID(ids.encode("Professional", row.id)),
            pk=row.id,
            establishment_id=row.establishment_id,
            rpps=row.rpps,
            first_name=row.first_name,
            last_name=row.last_name,
            profession=row.profession,
            sector=row.sector,
        )


@strawberry.type(name="Operator", description="Enrols people; sees identity and status only.")
class Operator(Node):
    pk: strawberry.Private[UUID]
    email: str

    @classmethod
    def from_model(cls, row: OperatorModel) -> Operator:
        return cls(id=strawberry.ID(ids.encode("Operator", row.id)), pk=row.id, email=row.email)


@strawberry.type(
    name="Patient",
    description=(
        "The holder of a space. Identity and status are visible to whoever may see the space; "
        "guarded fields answer null with a FORBIDDEN error to anyone else."
    ),
)
class Patient(Node):
    pk: strawberry.Private[UUID]
    nir_encrypted: strawberry.Private[bytes | None]
    treating_doctor_id: strawberry.Private[UUID | None]
    emergency_opposed: strawberry.Private[bool]
    # A partner app reads them under IDENTITY_READ only (everyone else who sees the space
    # does): they are non-null, so a refusal nulls the patient, with FORBIDDEN on the field.
    first_name: str = strawberry.field(extensions=guard(SeesIdentity()))
    last_name: str = strawberry.field(extensions=guard(SeesIdentity()))
    birth_date: date = strawberry.field(extensions=guard(SeesIdentity()))
    sex: Sex = strawberry.field(extensions=guard(SeesIdentity()))  # type: ignore[valid-type]
    status: SpaceStatus  # type: ignore[valid-type]

    @strawberry.field(
        description="The social-security number: holder and legal representative only.",
        extensions=guard_read(ManagesPatient()),
    )
    def nir(self, info: Info) -> str | None:
        if self.nir_encrypted is None:
            return None
        return reveal_nir(info.context.vault, self.pk, self.nir_encrypted)

    @strawberry.field(
        description="The minors this holder represents: holder only.",
        extensions=guard(HolderOnly()),
        directives=[FAMILY],
    )
    async def dependents(self, info: Info) -> list[Patient] | None:
        rows = await info.context.loaders.dependents.load(self.pk)
        return [Patient.from_model(row) for row in rows]

    @strawberry.field(
        description="The legal representatives of this minor: holder and representative only.",
        extensions=guard_read(ManagesPatient()),
        directives=[FAMILY],
    )
    async def representatives(self, info: Info) -> list[Patient] | None:
        rows = await info.context.loaders.representatives.load(self.pk)
        return [Patient.from_model(row) for row in rows]

    @strawberry.field(
        description="Documents of the dossier, newest first, as this viewer may see them.",
        extensions=guard_read(ReadsDossier(AppScope.DOCUMENTS_READ)),
        directives=[PAGE],
    )
    async def documents(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        category: DocumentCategory | None = None,  # type: ignore[valid-type]
    ) -> DocumentConnectionRef | None:
        from resolvers.dossier import patient_documents

        return await patient_documents(info, self.pk, first, after, category)

    @strawberry.field(
        description="Allergies, treatments, history, measurements, directives, trusted person.",
        extensions=guard_read(ReadsDossier(AppScope.HEALTH_PROFILE_READ)),
    )
    async def health_profile(self, info: Info) -> HealthProfileRef | None:
        from resolvers.dossier import patient_health_profile

        return await patient_health_profile(info, self.pk)

    @strawberry.field(
        description="The médecin traitant.",
        extensions=guard_read(ReadsDossier(AppScope.HEALTH_PROFILE_READ)),
    )
    async def treating_doctor(self, info: Info) -> Professional | None:
        if self.treating_doctor_id is None:
            return None
        row = await info.context.loaders.professional.load(self.treating_doctor_id)
        return Professional.from_model(row) if row else None

    @strawberry.field(
        description="The carnet de vaccination.",
        extensions=guard_read(ReadsDossier(AppScope.VACCINATIONS_READ)),
        directives=[RECORD],
    )
    async def vaccinations(self, info: Info) -> list[VaccinationRef] | None:
        from resolvers.dossier import patient_vaccinations

        return await patient_vaccinations(info, self.pk)

    @strawberry.field(
        description="Screening tests.",
        extensions=guard_read(ReadsDossier(AppScope.HEALTH_PROFILE_READ)),
        directives=[RECORD],
    )
    async def screenings(self, info: Info) -> list[ScreeningRef] | None:
        from resolvers.dossier import patient_screenings

        return await patient_screenings(info, self.pk)

    @strawberry.field(
        description="Consents given to professionals: holder and representative only.",
        extensions=guard_read(ManagesPatient()),
        directives=[RECORD],
    )
    async def consents(self, info: Info) -> list[ConsentRef] | None:
        from resolvers.consent import patient_consents

        return await patient_consents(info, self.pk)

    @strawberry.field(
        description="Whether emergency access is opposed: holder and representative only.",
        extensions=guard_read(ManagesPatient()),
    )
    def emergency_access_opposed(self) -> bool | None:
        return self.emergency_opposed

    @strawberry.field(
        description=(
            "Who accessed the dossier, newest first: holder and representative only. A "
            "representative does not see the events about documents hidden from them."
        ),
        extensions=guard_read(ManagesPatient()),
        directives=[PAGE],
    )
    async def access_log(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> AccessEventConnectionRef | None:
        from resolvers.consent import patient_access_log

        return await patient_access_log(info, self.pk, first, after)

    @strawberry.field(
        description="Conversations with professionals, latest first: holder and representative.",
        extensions=guard_read(ManagesPatient()),
        directives=[PAGE],
    )
    async def conversations(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> ConversationConnectionRef | None:
        from resolvers.messaging import patient_conversations

        return await patient_conversations(info, self.pk, first, after)

    @strawberry.field(
        description=(
            "Appointments and their history, by start time; `from`/`to` keep those that "
            "overlap the range."
        ),
        extensions=guard_read(ReadsDossier(AppScope.APPOINTMENTS_READ)),
        directives=[PAGE],
    )
    async def appointments(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        from_: Annotated[datetime | None, strawberry.argument(name="from")] = None,
        to: datetime | None = None,
    ) -> AppointmentConnectionRef | None:
        from resolvers.agenda import patient_appointments

        return await patient_appointments(info, self.pk, first, after, from_, to)

    @strawberry.field(
        description="Reminders, latest due first: holder and representative only.",
        extensions=guard_read(ManagesPatient()),
        directives=[PAGE],
    )
    async def reminders(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        status: ReminderStatus | None = None,  # type: ignore[valid-type]
    ) -> ReminderConnectionRef | None:
        from resolvers.agenda import patient_reminders

        return await patient_reminders(info, self.pk, first, after, status)

    @strawberry.field(
        description=(
            "The private iCalendar URL for calendar apps (times and places only): holder and "
            "representative only. rotateCalendarFeed replaces it."
        ),
        extensions=guard_read(ManagesPatient()),
        directives=[READS_DATABASE],
    )
    async def calendar_feed_url(self, info: Info) -> str | None:
        from resolvers.agenda import patient_calendar_feed_url

        return await patient_calendar_feed_url(info, self.pk)

    @strawberry.field(
        description=(
            "The partner apps this space granted access to, each with its scopes and its last "
            "use (to the minute): holder and representative only. revokeAppAccess ends one."
        ),
        extensions=guard_read(ManagesPatient()),
        directives=[APP_GRANTS],
    )
    async def app_grants(self, info: Info) -> list[AppGrant] | None:
        return await patient_app_grants(info, self.pk)

    @classmethod
    def from_model(cls, row: PatientModel) -> Patient:
        return cls(
            id=strawberry.ID(ids.encode("Patient", row.id)),
            pk=row.id,
            nir_encrypted=row.nir_encrypted,
            first_name=row.first_name,
            last_name=row.last_name,
            birth_date=row.birth_date,
            sex=row.sex,
            status=row.status,
            treating_doctor_id=row.treating_doctor_id,
            emergency_opposed=row.emergency_access_opposed,
        )


PATIENT_ORDER = Order((("last_name", False), ("first_name", False), ("id", False)))


@strawberry.type(name="PatientConnection")
class PatientConnection(Connection[Patient]):
    pass


Viewer = Annotated[Patient | Professional | Operator | PartnerApp, strawberry.union("Viewer")]


async def visible_patients(info: Info, pks: list[UUID]) -> dict[UUID, PatientModel]:
    ctx = info.context
    rows = await PatientModel.filter(Q(id__in=pks) & access.visible_patients(ctx.actor, ctx.today))
    return {row.id: row for row in rows}


async def read_patients(info: Info, pks: list[UUID]) -> dict[UUID, PatientModel]:
    """Spaces fetched by id: reading one is an access event for anyone but its holder."""
    loaders = info.context.loaders
    if info.context.actor.is_professional:
        # The relations (needed anyway) decide and bring the rows: one statement in all.
        relations = await loaders.relation.load_many(pks)
        decided = access.visible_by_relation(info.context.actor, relations)
        if decided is not None:
            loaders.patient.prime_many(decided)  # e.g. the holder as a document's author
            for relation in relations:
                if relation.patient_id in decided:
                    await record_access(info, relation)
            return decided
    found = await visible_patients(info, pks)
    for relation in await loaders.relation.load_many(list(found)):
        await record_access(info, relation)
    return found


@register("Patient")
async def _patient_nodes(info: Info, pks: list[UUID]) -> dict[UUID, Any]:
    return {pk: Patient.from_model(row) for pk, row in (await read_patients(info, pks)).items()}


@register("Professional")
async def _professional_nodes(info: Info, pks: list[UUID]) -> dict[UUID, Any]:
    if info.context.actor.anonymous:
        return {}
    rows = await ProfessionalModel.filter(id__in=pks)
    return {row.id: Professional.from_model(row) for row in rows}


@register("Establishment")
async def _establishment_nodes(info: Info, pks: list[UUID]) -> dict[UUID, Any]:
    if info.context.actor.anonymous:
        return {}
    rows = await EstablishmentModel.filter(id__in=pks)
    return {row.id: Establishment.from_model(row) for row in rows}


@register("Operator")
async def _operator_nodes(info: Info, pks: list[UUID]) -> dict[UUID, Any]:
    actor = info.context.actor
    if actor.operator_id is None:
        return {}
    rows = await OperatorModel.filter(id__in=[pk for pk in pks if pk == actor.operator_id])
    return {row.id: Operator.from_model(row) for row in rows}


async def viewer_of(
    info: Info,
    *,
    patient_id: UUID | None,
    professional_id: UUID | None,
    operator_id: UUID | None,
) -> Patient | Professional | Operator | None:
    loaders = info.context.loaders
    if patient_id is not None:
        patient = await loaders.patient.load(patient_id)
        return Patient.from_model(patient) if patient else None
    if professional_id is not None:
        professional = await loaders.professional.load(professional_id)
        return Professional.from_model(professional) if professional else None
    if operator_id is not None:
        operator = await loaders.operator.load(operator_id)
        return Operator.from_model(operator) if operator else None
    return None


MAX_DIRECTORY_PAGE = 50


@strawberry.type
class PeopleQuery:
    @strawberry.field(description="Who is calling; null when anonymous.")
    async def viewer(self, info: Info) -> Viewer | None:
        actor = info.context.actor
        if actor.is_app:
            return await app_viewer(info)
        return await viewer_of(
            info,
            patient_id=actor.patient_id,
            professional_id=actor.professional_id,
            operator_id=actor.operator_id,
        )

    @strawberry.field(
        description=(
            "A space by id: its holder, a legal representative, a professional with a basis, "
            "or an operator (identity and status only). NOT_FOUND otherwise."
        )
    )
    async def patient(self, info: Info, id: strawberry.ID) -> Patient | None:
        pk = ids.decode_as(str(id), "Patient")
        found = await read_patients(info, [pk])
        if pk not in found:
            raise NotFound()
        return Patient.from_model(found[pk])

    @strawberry.field(
        description="The professional directory: search by name or RPPS (authenticated users).",
        extensions=guard(IsAuthenticated()),
        directives=[SLICED_BY_FIRST],
    )
    async def professionals(
        self, info: Info, search: str, first: int | None = 20
    ) -> list[Professional]:
        if first is not None and first < 0:
            raise BadUserInput("`first` cannot be negative.", field="first")
        limit = min(20 if first is None else first, MAX_DIRECTORY_PAGE)
        rows = await search_directory(search, limit=limit) if limit else []
        return [Professional.from_model(row) for row in rows]
