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
from models.consent import Consent as ConsentModel
from models.patient import Patient as PatientModel
from models.patient import reveal_nir
from models.professional import Establishment as EstablishmentModel
from models.professional import Professional as ProfessionalModel
from models.professional import name_terms, search_directory
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
    ConsentAccess,
    ConversationPurpose,
    DocumentCategory,
    Profession,
    ReminderStatus,
    Sector,
    Sex,
    SpaceStatus,
)
from resolvers.node import Node, register
from resolvers.pagination import (
    PAGE,
    After,
    Before,
    Connection,
    Edge,
    First,
    Last,
    Order,
    paginate,
)
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
from resolvers.scope import may_act_for

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
# The dashboard's filters on a list of conversations.
UNREAD = (
    "true: only the conversations holding messages the viewer has not read (`unreadCount` "
    "above zero); false: only those without; absent: both."
)
OPEN = "true: only the open conversations; false: only the closed ones; absent: both."
# An identity field of a space.
_IDENTITY = (
    "{}: whoever sees the space; a partner app only under IDENTITY_READ (a refusal nulls "
    "the patient, with FORBIDDEN on this field)."
)
# The search of a professional's patients: by name, as the directory searches.
MAX_SEARCH = 200
SEARCH = (
    "Only the patients whose first or last name contains every term (4 at most) of this, "
    "whatever its case; never matched against the NIR (that look-up is `patientByNir`). "
    f"{MAX_SEARCH} characters at most (more is BAD_USER_INPUT)."
)


# The range arguments of the appointment lists (a patient's, a professional's).
RangeFrom = Annotated[
    datetime | None,
    strawberry.argument(
        name="from", description="Those ending at or after this moment (with offset)."
    ),
]
RangeTo = Annotated[
    datetime | None,
    strawberry.argument(description="Those starting before this moment (with offset)."),
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
    finess: str = strawberry.field(description="Its FINESS number: 9 characters.")
    name: str = strawberry.field(
        description=(
            "Empty for one that only a professional's registration named, until an operator "
            "registers it."
        )
    )

    @strawberry.field(
        description=(
            "The shared inbox, latest activity first (by `lastMessageAt`, newest first), by "
            "`purpose` if given, `unread` (by this member's own reading) and `open` as on "
            "`Professional.conversations`: its members only. Every member reads, answers, "
            "marks read and closes them."
        ),
        extensions=guard(IsEstablishmentMember()),
        directives=[PAGE],
    )
    async def conversations(
        self,
        info: Info,
        first: First = None,
        after: After = None,
        last: Last = None,
        before: Before = None,
        purpose: Annotated[
            ConversationPurpose | None,  # type: ignore[valid-type]
            strawberry.argument(description="Only the conversations of this purpose; absent: all."),
        ] = None,
        unread: Annotated[bool | None, strawberry.argument(description=UNREAD)] = None,
        open_: Annotated[bool | None, strawberry.argument(name="open", description=OPEN)] = None,
    ) -> ConversationConnectionRef | None:
        from resolvers.establishment import establishment_conversations

        return await establishment_conversations(
            info,
            self.pk,
            first,
            after,
            purpose,
            last=last,
            before=before,
            unread=unread,
            open_=open_,
        )

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
    rpps: str = strawberry.field(description="Their RPPS number: 11 digits.")
    first_name: str = strawberry.field(description="As in the directory.")
    last_name: str = strawberry.field(description="As in the directory.")
    profession: Profession = strawberry.field(  # type: ignore[valid-type]
        description="Their profession, as registered."
    )
    sector: Sector = strawberry.field(  # type: ignore[valid-type]
        description="The sector they practise in."
    )

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
            "The patients who granted this professional an active consent (the dashboard), "
            "alphabetical by last name, then first name; each edge carries that consent "
            "(`access`, `expiresAt`); `search` keeps those of a name. Readable by that "
            "professional only."
        ),
        extensions=guard(IsThisProfessional()),
        directives=[PAGE],
    )
    async def patients(
        self,
        info: Info,
        first: First = None,
        after: After = None,
        last: Last = None,
        before: Before = None,
        search: Annotated[str | None, strawberry.argument(description=SEARCH)] = None,
    ) -> PatientConnection | None:
        from resolvers.consent import linking_consents

        ctx = info.context
        query = PatientModel.filter(access.consenting_patients(self.pk, ctx.now))
        if search is not None:
            if len(search) > MAX_SEARCH:
                raise BadUserInput(f"`search` has {MAX_SEARCH} characters at most.", field="search")
            names = name_terms(search)
            query = query.filter(*names) if names is not None else query.filter(id__in=[])
        page = await paginate(
            query,
            PATIENT_ORDER,
            first=first,
            after=after,
            last=last,
            before=before,
            wrap=Patient.from_model,
            connection=PatientConnection,
        )
        linked = await linking_consents(self.pk, [edge.node.pk for edge in page.edges], ctx.now)
        page.edges = [PatientEdge.of(edge, linked.get(edge.node.pk)) for edge in page.edges]
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
        description=(
            "All of this professional's conversations, across patients (the dashboard), "
            "latest activity first (by `lastMessageAt`, newest first); `unread` and `open` "
            "filter them. Readable by that professional only."
        ),
        extensions=guard(IsThisProfessional()),
        directives=[PAGE],
    )
    async def conversations(
        self,
        info: Info,
        first: First = None,
        after: After = None,
        last: Last = None,
        before: Before = None,
        unread: Annotated[bool | None, strawberry.argument(description=UNREAD)] = None,
        open_: Annotated[bool | None, strawberry.argument(name="open", description=OPEN)] = None,
    ) -> ConversationConnectionRef | None:
        from resolvers.messaging import professional_conversations

        return await professional_conversations(
            info, self.pk, first, after, last=last, before=before, unread=unread, open_=open_
        )

    @strawberry.field(
        description=(
            "This professional's own appointments, with any patient, earliest first (by "
            "`startsAt`); `from`/`to` keep those that overlap the range. Only those of the "
            "spaces whose dossier the professional reads now (consent, médecin traitant or "
            "emergency access; not blocked; space live), as on every path to an "
            "appointment; each space shown is an access event. Readable by that "
            "professional only."
        ),
        extensions=guard(IsThisProfessional()),
        directives=[PAGE],
    )
    async def appointments(
        self,
        info: Info,
        first: First = None,
        after: After = None,
        last: Last = None,
        before: Before = None,
        from_: RangeFrom = None,
        to: RangeTo = None,
    ) -> AppointmentConnectionRef | None:
        from resolvers.agenda import professional_appointments

        return await professional_appointments(
            info, self.pk, first, after, from_, to, last=last, before=before
        )

    @strawberry.field(
        description=(
            "How many messages this professional has not read across their conversations, "
            "their own and those of the inboxes they are a member of (by their own reading): "
            "the sum of their `unreadCount`. Readable by that professional only."
        ),
        extensions=guard(IsThisProfessional()),
        directives=[READS_DATABASE],
    )
    async def unread_message_count(self, info: Info) -> int | None:
        from resolvers.messaging import unread_total

        return await unread_total(info)

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
    email: str = strawberry.field(description="The operator's login e-mail.")

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
    deletion_due: strawberry.Private[datetime | None]
    # A partner app reads them under IDENTITY_READ only (everyone else who sees the space
    # does): they are non-null, so a refusal nulls the patient, with FORBIDDEN on the field.
    first_name: str = strawberry.field(
        description=_IDENTITY.format("First name, as enrolled"), extensions=guard(SeesIdentity())
    )
    last_name: str = strawberry.field(
        description=_IDENTITY.format("Last name, as enrolled"), extensions=guard(SeesIdentity())
    )
    birth_date: date = strawberry.field(
        description=_IDENTITY.format("Birth date"), extensions=guard(SeesIdentity())
    )
    sex: Sex = strawberry.field(  # type: ignore[valid-type]
        description=_IDENTITY.format("Sex"), extensions=guard(SeesIdentity())
    )
    status: SpaceStatus = strawberry.field(  # type: ignore[valid-type]
        description="Where the space stands in its lifecycle: whoever sees the space."
    )

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
        description=(
            "Documents of the dossier, newest first by `date`, then by when they were added, "
            "as this viewer may see them."
        ),
        extensions=guard_read(ReadsDossier(AppScope.DOCUMENTS_READ)),
        directives=[PAGE],
    )
    async def documents(
        self,
        info: Info,
        first: First = None,
        after: After = None,
        last: Last = None,
        before: Before = None,
        category: Annotated[
            DocumentCategory | None,  # type: ignore[valid-type]
            strawberry.argument(description="Only the documents of this category; absent: all."),
        ] = None,
    ) -> DocumentConnectionRef | None:
        from resolvers.dossier import patient_documents

        return await patient_documents(
            info, self.pk, first, after, category, last=last, before=before
        )

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
            "When a closed space whose deletion was requested (requestDeletion) is deleted at "
            "the latest; null while none was requested: holder and representative only."
        ),
        extensions=guard_read(ManagesPatient()),
    )
    def delete_by(self) -> datetime | None:
        return self.deletion_due

    @strawberry.field(
        description=(
            "Who accessed the dossier, newest first (by `at`): holder and representative "
            "only. A representative does not see the events about documents hidden from them."
        ),
        extensions=guard_read(ManagesPatient()),
        directives=[PAGE],
    )
    async def access_log(
        self,
        info: Info,
        first: First = None,
        after: After = None,
        last: Last = None,
        before: Before = None,
    ) -> AccessEventConnectionRef | None:
        from resolvers.consent import patient_access_log

        return await patient_access_log(info, self.pk, first, after, last=last, before=before)

    @strawberry.field(
        description=(
            "Conversations with professionals, latest activity first (by `lastMessageAt`, "
            "newest first): holder and representative."
        ),
        extensions=guard_read(ManagesPatient()),
        directives=[PAGE],
    )
    async def conversations(
        self,
        info: Info,
        first: First = None,
        after: After = None,
        last: Last = None,
        before: Before = None,
    ) -> ConversationConnectionRef | None:
        from resolvers.messaging import patient_conversations

        return await patient_conversations(info, self.pk, first, after, last=last, before=before)

    @strawberry.field(
        description=(
            "Appointments and their history, earliest first (by `startsAt`); `from`/`to` keep "
            "those that overlap the range."
        ),
        extensions=guard_read(ReadsDossier(AppScope.APPOINTMENTS_READ)),
        directives=[PAGE],
    )
    async def appointments(
        self,
        info: Info,
        first: First = None,
        after: After = None,
        last: Last = None,
        before: Before = None,
        from_: RangeFrom = None,
        to: RangeTo = None,
    ) -> AppointmentConnectionRef | None:
        from resolvers.agenda import patient_appointments

        return await patient_appointments(
            info, self.pk, first, after, from_, to, last=last, before=before
        )

    @strawberry.field(
        description="Reminders, latest due first (by `dueAt`): holder and representative only.",
        extensions=guard_read(ManagesPatient()),
        directives=[PAGE],
    )
    async def reminders(
        self,
        info: Info,
        first: First = None,
        after: After = None,
        last: Last = None,
        before: Before = None,
        status: Annotated[
            ReminderStatus | None,  # type: ignore[valid-type]
            strawberry.argument(description="Only the reminders of this status; absent: all."),
        ] = None,
    ) -> ReminderConnectionRef | None:
        from resolvers.agenda import patient_reminders

        return await patient_reminders(
            info, self.pk, first, after, status, last=last, before=before
        )

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

    @strawberry.field(
        description=(
            "The professionals this space blocks (blockProfessional: a block wins over any "
            "consent), by last name, then first name: holder and representative only."
        ),
        extensions=guard_read(ManagesPatient()),
        directives=[RECORD],
    )
    async def blocked_professionals(self, info: Info) -> list[Professional] | None:
        rows = await info.context.loaders.blocked_professionals.load(self.pk)
        return [Professional.from_model(row) for row in rows]

    @strawberry.field(
        description=(
            "How many messages of this space's conversations the viewer has not read: the sum "
            "of their `unreadCount`. Holder and representative only."
        ),
        extensions=guard_read(ManagesPatient()),
        directives=[READS_DATABASE],
    )
    async def unread_message_count(self, info: Info) -> int | None:
        from resolvers.messaging import unread_total

        return await unread_total(info, patient_pk=self.pk)

    @strawberry.field(
        description=(
            "Whether the viewer reads this dossier (`documents` answers rather than "
            "FORBIDDEN): the holder or a representative of a space not closed, a professional "
            "with a basis who is not blocked, a partner app granted DOCUMENTS_READ."
        ),
        directives=[READS_DATABASE],
    )
    async def viewer_can_read_dossier(self, info: Info) -> bool:
        return await ReadsDossier(AppScope.DOCUMENTS_READ).has_permission(self, info)

    @strawberry.field(
        description=(
            "Whether `addDocument` is allowed to this viewer on this space, by the rule it "
            "applies: the holder or a representative of a space not closed, a professional "
            "under a READ_WRITE consent (not blocked), a partner app granted DOCUMENTS_WRITE."
        ),
        directives=[READS_DATABASE],
    )
    async def viewer_can_write_dossier(self, info: Info) -> bool:
        from models.document import adds_documents

        relation = await info.context.loaders.relation.load(self.pk)
        return may_act_for(info.context.actor, relation, adds_documents)

    @strawberry.field(
        description=(
            "Whether `createAppointment` is allowed to this viewer for this space, by the rule "
            "it applies: the patient side, a professional under a consent or the médecin "
            "traitant (not blocked), an appointment platform granted APPOINTMENTS_WRITE."
        ),
        directives=[READS_DATABASE],
    )
    async def viewer_can_book_appointment(self, info: Info) -> bool:
        from resolvers.agenda import books_appointments

        relation = await info.context.loaders.relation.load(self.pk)
        return may_act_for(info.context.actor, relation, books_appointments)

    @strawberry.field(
        description=(
            "Whether `startConversation` (in the viewer's own name) is allowed to this viewer "
            "with this patient, by the rule it applies: a professional, the space active, and "
            "not blocking them. An establishment's inbox also needs membership."
        ),
        directives=[READS_DATABASE],
    )
    async def viewer_can_start_conversation(self, info: Info) -> bool:
        from models.message import may_start_conversation

        actor = info.context.actor
        if not actor.is_professional:
            return False
        relation = await info.context.loaders.relation.load(self.pk)
        return may_start_conversation(actor, self.status, blocked=relation.blocked)

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
            deletion_due=row.delete_by,
        )


PATIENT_ORDER = Order((("last_name", False), ("first_name", False), ("id", False)))


@strawberry.type(
    name="PatientEdge",
    description="A patient of a professional's dashboard, and the consent that links them.",
)
class PatientEdge(Edge[Patient]):
    access: ConsentAccess | None = strawberry.field(  # type: ignore[valid-type]
        default=None,
        description=(
            "What the patient's live consent grants this professional (READ or READ_WRITE); "
            "null only if it ended while the page was read."
        ),
    )
    expires_at: datetime | None = strawberry.field(
        default=None, description="When that consent ends by itself; null: until revoked."
    )

    @classmethod
    def of(cls, edge: Edge[Patient], consent: ConsentModel | None) -> PatientEdge:
        return cls(
            node=edge.node,
            position=edge.position,
            access=consent.access if consent is not None else None,
            expires_at=consent.expires_at if consent is not None else None,
        )


@strawberry.type(
    name="PatientConnection",
    description="A page of a professional's patients (a Relay connection).",
)
class PatientConnection(Connection[Patient]):
    edges: list[PatientEdge] = strawberry.field(  # type: ignore[assignment]
        description=(
            "The page, in the list's order (a backward page too), each patient with its "
            "cursor and the consent that links them."
        )
    )


Viewer = Annotated[
    Patient | Professional | Operator | PartnerApp,
    strawberry.union(
        "Viewer", description="Who is calling: a patient, a professional, an operator or an app."
    ),
]


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


# The `patient` field of the payloads of mutations that change a space.
PATIENT_AFTER_WRITE = (
    "The patient as the mutation left it, for a client's cache to merge; null when the "
    "viewer no longer sees the space (read by the rule of `patient(id:)`, at that moment)."
)


async def patient_after_write(info: Info, pk: UUID) -> Patient | None:
    """A space as a mutation left it, for its payload (a client's cache merges it by id):
    read by the rule of `patient(id:)`, decided again now, since the write may have changed
    what the viewer may see; null when the viewer no longer sees the space. The request's
    loaders may hold the row and the relation as they were before: they are read afresh."""
    ctx = info.context
    relation = (await access.relations(ctx.actor, [pk], ctx.today, ctx.now))[pk]
    ctx.loaders.relation.prime(pk, relation, force=True)
    row = (await read_patients(info, [pk])).get(pk)
    if row is None:
        return None
    ctx.loaders.patient.prime(pk, row, force=True)
    return Patient.from_model(row)


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
    async def patient(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="A patient's global `id`.")],
    ) -> Patient | None:
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
        self,
        info: Info,
        search: Annotated[
            str,
            strawberry.argument(
                description=(
                    "Terms that each must appear in the first or last name (case ignored), or "
                    "an RPPS number (11 digits)."
                )
            ),
        ],
        first: Annotated[
            int | None,
            strawberry.argument(
                description=(
                    f"How many to answer: 20 when absent or null, at most {MAX_DIRECTORY_PAGE} "
                    f"(more answers {MAX_DIRECTORY_PAGE}); negative is BAD_USER_INPUT."
                )
            ),
        ] = 20,
    ) -> list[Professional]:
        if first is not None and first < 0:
            raise BadUserInput("`first` cannot be negative.", field="first")
        limit = min(20 if first is None else first, MAX_DIRECTORY_PAGE)
        rows = await search_directory(search, limit=limit) if limit else []
        return [Professional.from_model(row) for row in rows]
