"""Who is calling, and the single place that decides which rows an actor may see.

Every path (queries, `node`, lists, counts, downloads, subscriptions, jobs) asks this
module, as query filters, so counts and pages are filtered in SQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from string import Formatter
from uuid import UUID

from pypika_tortoise.context import SqlContext
from pypika_tortoise.terms import Term, ValueWrapper
from tortoise.expressions import Q, Subquery

from models.account import Role
from models.audit import AccessBasis, ActorRole
from models.base import parameter_prefix, utcnow
from models.catalogue import AppScope
from models.consent import Block, Consent, ConsentAccess
from models.establishment import Establishment, EstablishmentMember
from models.patient import Patient, Representation, SpaceStatus, is_minor, minor_cutoff
from models.sqlite_thread import select_rows

__all__ = [
    "ANONYMOUS",
    "Actor",
    "Relation",
    "is_member",
    "is_minor",
    "live_managed_patient_ids",
    "live_managed_spaces",
    "member_establishments",
    "member_of",
    "memberships",
    "relations",
    "visible_by_relation",
    "visible_patients",
]

LIVE_SPACES = (SpaceStatus.PENDING, SpaceStatus.ACTIVE)
# The spaces a holder or a representative manages: live, or closed (to reopen or delete).
MANAGED_SPACES = (*LIVE_SPACES, SpaceStatus.CLOSED)


@dataclass(frozen=True)
class Actor:
    role: Role | None = None
    account_id: UUID | None = None
    session_id: UUID | None = None
    patient_id: UUID | None = None
    professional_id: UUID | None = None
    operator_id: UUID | None = None
    patient_status: SpaceStatus | None = None
    # A partner app's access token (models/catalogue.py): the app, its grant, the one space
    # it acts for and the scopes granted; `app_client` names its list of documents.
    app_id: UUID | None = None
    app_client: str | None = None
    grant_id: UUID | None = None
    acting_for: UUID | None = None
    scopes: frozenset[AppScope] = frozenset()
    granted_by_representative: bool = False

    @property
    def anonymous(self) -> bool:
        return self.role is None and self.app_id is None

    @property
    def is_app(self) -> bool:
        return self.app_id is not None

    @property
    def is_patient(self) -> bool:
        return self.role is Role.PATIENT

    @property
    def is_professional(self) -> bool:
        return self.role is Role.PROFESSIONAL

    @property
    def is_operator(self) -> bool:
        return self.role is Role.OPERATOR

    @property
    def space_open(self) -> bool:
        """A patient whose own space is closed may only see its status and ask for deletion."""
        return self.role is Role.PATIENT and self.patient_status is SpaceStatus.ACTIVE

    @property
    def id(self) -> UUID | None:
        return self.patient_id or self.professional_id or self.operator_id or self.app_id

    @property
    def audit_role(self) -> ActorRole | None:
        if self.app_id is not None:
            return ActorRole.PARTNER_APP
        return ActorRole(self.role.value) if self.role else None


ANONYMOUS = Actor()


@dataclass
class Relation:
    """Everything that ties an actor to one patient, computed once per request."""

    patient_id: UUID
    holder: bool = False
    representative: bool = False
    operator: bool = False
    consent: ConsentAccess | None = None
    treating_doctor: bool = False
    emergency: bool = False
    conversation: bool = False
    blocked: bool = False
    space_live: bool = True
    # A partner app acting for this space: the scopes granted (None for anyone else), and
    # whether a legal representative granted them (the app then never sees what is hidden
    # from representatives).
    app_scopes: frozenset[AppScope] | None = None
    app_by_representative: bool = False
    # The patient's row, when the relation was read with it (a professional's relation is:
    # the same statement), so that a lookup by id needs no second one; None otherwise.
    row: Patient | None = field(default=None, repr=False, compare=False)

    @property
    def manages(self) -> bool:
        """Holder or legal representative: may read and manage the whole space."""
        return self.holder or self.representative

    @property
    def dossier_basis(self) -> AccessBasis | None:
        """Why a professional may read the dossier; a block wins over everything."""
        if self.blocked or not self.space_live:
            return None
        if self.treating_doctor:
            return AccessBasis.TREATING_DOCTOR
        if self.consent is not None:
            return AccessBasis.CONSENT
        if self.emergency:
            return AccessBasis.EMERGENCY
        return None

    @property
    def reads_dossier(self) -> bool:
        """A closed space's dossier is archived: not even its holder reads it until reopened."""
        return (self.manages and self.space_live) or self.dossier_basis is not None

    def reads(self, scope: AppScope) -> bool:
        """Reads this part of the dossier (`scope` names it): as `reads_dossier` says, and for
        a partner app, when the space granted it that scope."""
        if self.app_scopes is not None:
            return self.space_live and scope in self.app_scopes
        return self.reads_dossier

    @property
    def writes_dossier(self) -> bool:
        if self.manages:
            return self.space_live
        return self.dossier_basis is not None and self.consent is ConsentAccess.READ_WRITE

    @property
    def books_appointments(self) -> bool:
        """The patient side, a professional under a consent or as médecin traitant, or an
        appointment platform granted APPOINTMENTS_WRITE."""
        if self.app_scopes is not None:
            return self.space_live and AppScope.APPOINTMENTS_WRITE in self.app_scopes
        if self.manages:
            return self.space_live
        return self.dossier_basis in (AccessBasis.CONSENT, AccessBasis.TREATING_DOCTOR)

    @property
    def visible(self) -> bool:
        """May see the space at all (identity at least)."""
        if self.manages or self.operator:
            return True
        if self.app_scopes is not None:
            return self.space_live
        return (
            not self.blocked
            and self.space_live
            and (self.dossier_basis is not None or self.conversation)
        )

    @property
    def audit_basis(self) -> AccessBasis | None:
        """The basis an access event records; None for the holder, whose reads are not logged."""
        if self.holder:
            return None
        if self.representative:
            return AccessBasis.REPRESENTATIVE
        if self.operator:
            return AccessBasis.OPERATOR
        if self.app_scopes is not None:
            return AccessBasis.APP
        if self.dossier_basis is not None:
            return self.dossier_basis
        if self.conversation:
            return AccessBasis.CONVERSATION
        return None


# What ties a professional to spaces, as subqueries of patient ids, hand-written because
# every request runs them (the ORM takes ~0.4 ms to build each one). The same conditions as
# `active_consent` and models/message.py's `open_conversation_patients`. {pro} is the
# professional's id, {now} the moment.
CONSENTING = (
    "SELECT patient_id FROM consent WHERE professional_id = {pro} AND revoked_at IS NULL"
    " AND (expires_at IS NULL OR expires_at > {now})"
)
CONSENTING_READ_WRITE = CONSENTING + " AND access = 'READ_WRITE'"
IN_EMERGENCY = (
    "SELECT patient_id FROM emergency_access WHERE professional_id = {pro} AND expires_at > {now}"
)
# The establishments whose shared inbox the professional is a member of (see `member_of`).
MEMBER_OF = "SELECT establishment_id FROM establishment_member WHERE professional_id = {pro}"
# The professional's own conversations, and those of the inboxes they are a member of: an
# establishment's conversation is its members', its starter's only while a member.
TAKES_PART = (
    "((professional_id = {pro} AND establishment_id IS NULL)"
    " OR establishment_id IN (" + MEMBER_OF + "))"
)
IN_CONVERSATION = (
    "SELECT patient_id FROM conversation WHERE closed_at IS NULL AND "  # noqa: S608 (constants)
    + TAKES_PART
)
BLOCKING = "SELECT patient_id FROM block WHERE professional_id = {pro}"
# The spaces a professional may see at all: live, not blocked, and a basis or a conversation.
VISIBLE_TO_PROFESSIONAL = (  # noqa: S608 (constants only)
    "SELECT id FROM patient WHERE status IN ({live})"
    " AND (treating_doctor_id = {{pro}} OR id IN ({consenting}) OR id IN ({in_emergency})"
    " OR id IN ({in_conversation})) AND id NOT IN ({blocking})"
).format(
    live=", ".join(f"'{status.value}'" for status in LIVE_SPACES),
    consenting=CONSENTING,
    in_emergency=IN_EMERGENCY,
    in_conversation=IN_CONVERSATION,
    blocking=BLOCKING,
)
# The spaces whose dossier a professional reads (`Relation.dossier_basis`): live, not blocked,
# and médecin traitant, consent or emergency; a conversation alone shows identity only.
DOSSIER_OF_PROFESSIONAL = (  # noqa: S608 (constants only)
    "SELECT id FROM patient WHERE status IN ({live})"
    " AND (treating_doctor_id = {{pro}} OR id IN ({consenting}) OR id IN ({in_emergency}))"
    " AND id NOT IN ({blocking})"
).format(
    live=", ".join(f"'{status.value}'" for status in LIVE_SPACES),
    consenting=CONSENTING,
    in_emergency=IN_EMERGENCY,
    blocking=BLOCKING,
)


class PatientIds(Term):
    """One of those subqueries in a filter (`Q(id__in=PatientIds(...))`), its parameters
    numbered as the query's dialect wants."""

    def __init__(self, sql: str, **params: object) -> None:
        super().__init__()
        self.sql = sql
        self.params = params

    def get_sql(self, ctx: SqlContext) -> str:
        parts = ["("]
        for text, name, _, _ in Formatter().parse(self.sql):
            parts.append(text)
            if name is not None:
                parts.append(ValueWrapper(self.params[name]).get_sql(ctx))
        parts.append(")")
        return "".join(parts)


def active_consent(professional_id: UUID, now: datetime) -> Q:
    """Filter on Consent: live consents of one professional."""
    return Q(professional_id=professional_id, revoked_at=None) & (
        Q(expires_at=None) | Q(expires_at__gt=now)
    )


def dossier_patient_ids(professional_id: UUID, now: datetime) -> PatientIds:
    """The ids of the spaces whose dossier the professional reads now (`Relation.reads_dossier`
    for each of them), as a subquery: a filter `Q(patient_id__in=...)` on their rows."""
    return PatientIds(DOSSIER_OF_PROFESSIONAL, pro=str(professional_id), now=now)


def consenting_patients(professional_id: UUID, now: datetime) -> Q:
    """Filter on Patient: live spaces that granted the professional an active consent."""
    return (
        Q(
            id__in=Subquery(
                Consent.filter(active_consent(professional_id, now)).values("patient_id")
            )
        )
        & ~Q(id__in=Subquery(Block.filter(professional_id=professional_id).values("patient_id")))
        & Q(status__in=list(LIVE_SPACES))
    )


def member_of(professional_id: UUID) -> Q:
    """Filter on Establishment (or on anything with an `establishment_id`, through
    `member_establishments`): the establishments whose shared inbox the professional is a
    member of. Membership is a row, so removing a member ends every path at once."""
    return Q(id__in=member_establishments(professional_id))


def member_establishments(professional_id: UUID) -> Subquery:
    """The ids of the establishments the professional is a member of, as a subquery."""
    return Subquery(
        EstablishmentMember.filter(professional_id=professional_id).values("establishment_id")
    )


async def memberships(actor: Actor, establishment_ids: list[UUID]) -> set[UUID]:
    """Which of these establishments' shared inboxes the actor is a member of."""
    if not actor.is_professional or actor.professional_id is None or not establishment_ids:
        return set()
    found = await Establishment.filter(
        member_of(actor.professional_id), id__in=establishment_ids
    ).values_list("id", flat=True)
    return {UUID(str(pk)) for pk in found}


async def is_member(actor: Actor, establishment_id: UUID) -> bool:
    """Whether the actor is a member of the establishment's shared inbox."""
    return establishment_id in await memberships(actor, [establishment_id])


def open_conversation_patients(professional_id: UUID) -> Q:
    """Filter on Patient: an open conversation shows the professional the patient's identity."""
    from models.message import open_conversation_patients as conversation_filter

    return conversation_filter(professional_id)


def _dependents(representative_id: UUID, today: date, statuses: tuple[SpaceStatus, ...]) -> Q:
    dependents = Representation.filter(representative_id=representative_id).values("dependent_id")
    return Q(
        id__in=Subquery(dependents),
        birth_date__gt=minor_cutoff(today),
        status__in=list(statuses),
    )


def live_managed_spaces(actor: Actor, today: date) -> Q | None:
    """Filter on Patient: the live spaces a patient acts for (their own while open, their
    minors'), whose messages and alerts reach them; None for anyone else."""
    if not actor.is_patient or actor.patient_id is None or not actor.space_open:
        return None
    return Q(id=actor.patient_id) | _dependents(actor.patient_id, today, LIVE_SPACES)


async def live_managed_patient_ids(actor: Actor, today: date) -> list[UUID]:
    """The ids of `live_managed_spaces` (none for anyone but a patient)."""
    spaces = live_managed_spaces(actor, today)
    if spaces is None:
        return []
    return [UUID(str(pk)) for pk in await Patient.filter(spaces).values_list("id", flat=True)]


def visible_patients(actor: Actor, today: date, now: datetime | None = None) -> Q:
    """Filter on Patient: the spaces the actor may see at all (identity at least)."""
    now = now or utcnow()
    if actor.is_operator:
        return Q(status__in=[SpaceStatus.PENDING, SpaceStatus.ACTIVE, SpaceStatus.CLOSED])
    if actor.is_patient and actor.patient_id is not None:
        own = Q(id=actor.patient_id)
        if not actor.space_open:
            return own
        # A closed space stays in sight of those who manage it, as of its holder: to reopen
        # it or ask for its deletion. Its dossier is archived (`Relation.reads_dossier`).
        return own | _dependents(actor.patient_id, today, MANAGED_SPACES)
    if actor.is_professional and actor.professional_id is not None:
        pro = str(actor.professional_id)
        return Q(id__in=PatientIds(VISIBLE_TO_PROFESSIONAL, pro=pro, now=now))
    if actor.is_app and actor.acting_for is not None:
        # The one space its grant is for; another patient is not found.
        return Q(id=actor.acting_for, status__in=list(LIVE_SPACES))
    return Q(id__in=[])


def visible_by_relation(actor: Actor, found: list[Relation]) -> dict[UUID, Patient] | None:
    """Spaces looked up by id that the actor may see, decided by their relations alone, with
    their rows; None when those relations cannot decide: ask `visible_patients`.

    A professional's relations are read with the rows, and `Relation.visible` is then exactly
    `visible_patients`' condition (live, not blocked, and médecin traitant, consent,
    emergency or conversation: the same CONSENTING, BLOCKING, ... subqueries), so the lookup
    costs no second statement. Other viewers' relations are read without the rows: their
    lookups keep the filter.
    """
    if not actor.is_professional or actor.professional_id is None:
        return None
    return {r.patient_id: r.row for r in found if r.row is not None and r.visible}


async def relations(
    actor: Actor, patient_ids: list[UUID], today: date, now: datetime | None = None
) -> dict[UUID, Relation]:
    """The relation of the actor to each patient (no basis at all means: not visible)."""
    now = now or utcnow()
    result = {pid: Relation(pid) for pid in patient_ids}
    if actor.anonymous or not patient_ids:
        return result
    if actor.is_professional and actor.professional_id is not None:
        await _professional_relations(actor.professional_id, result, now)
        return result
    statuses = dict(await Patient.filter(id__in=patient_ids).values_list("id", "status"))
    for pid, relation in result.items():
        relation.space_live = statuses.get(pid) in LIVE_SPACES
    if actor.is_operator:
        for pid, status in statuses.items():
            if status is not SpaceStatus.OPPOSED:
                result[pid].operator = True
        return result
    if actor.is_app:
        if actor.acting_for in result:
            relation = result[actor.acting_for]
            relation.app_scopes = actor.scopes
            relation.app_by_representative = actor.granted_by_representative
        return result
    if actor.is_patient and actor.patient_id is not None:
        if actor.patient_id in result:
            result[actor.patient_id].holder = True
        others = [pid for pid in patient_ids if pid != actor.patient_id]
        if others and actor.space_open:
            links = await Representation.filter(
                representative_id=actor.patient_id, dependent_id__in=others
            ).prefetch_related("dependent")
            for link in links:
                dependent = link.dependent
                if is_minor(dependent.birth_date, today) and dependent.status in MANAGED_SPACES:
                    result[dependent.id].representative = True
        return result
    return result


# A professional's relation to some spaces in one statement, as every request that touches a
# space computes it: the facts above, with numbered parameters ({p}1 the professional, {p}2
# the moment), and the patient's row itself (see `Relation.row`). Only constants go into the
# text.
_PROFESSIONAL_RELATIONS = f"""
SELECT *,
    id IN ({CONSENTING}) AS consent,
    id IN ({CONSENTING_READ_WRITE}) AS read_write,
    id IN ({BLOCKING}) AS blocked,
    id IN ({IN_EMERGENCY}) AS emergency,
    id IN ({IN_CONVERSATION}) AS conversation
FROM patient WHERE id IN ({{ids}})
""".replace("{pro}", "{p}1").replace("{now}", "{p}2")  # noqa: S608
# The statement per parameter prefix and number of ids, made once (a request runs it at least
# once, nearly always for one id).
_RELATIONS_SQL: dict[tuple[str, int], str] = {}


def _professional_relations_sql(p: str, count: int) -> str:
    sql = _RELATIONS_SQL.get((p, count))
    if sql is None:
        ids = ", ".join(f"{p}{n + 3}" for n in range(count))
        sql = _PROFESSIONAL_RELATIONS.format(p=p, ids=ids)
        if count <= 8:  # the usual sizes only: the cache stays small
            _RELATIONS_SQL[(p, count)] = sql
    return sql


async def _professional_relations(pid: UUID, result: dict[UUID, Relation], now: datetime) -> None:
    db = Patient._meta.db  # the transaction's connection inside one
    ids = list(result)
    sql = _professional_relations_sql(parameter_prefix(db), len(ids))
    for relation in result.values():
        relation.space_live = False  # until its row says otherwise: an unknown id is not live
    records = await select_rows(db, sql, [str(pid), now, *map(str, ids)])
    for record in records:
        # The patient's instance as `Patient.raw` makes it (its executor's `execute_select`
        # calls the same `_init_from_db`, which reads the model's columns only), without
        # building an executor per call; the facts are read off the record itself.
        row = Patient._init_from_db(**record)
        relation = result[row.id]
        relation.row = row
        relation.space_live = row.status in LIVE_SPACES
        if record["consent"]:  # READ_WRITE wins over READ
            read_write = bool(record["read_write"])
            relation.consent = ConsentAccess.READ_WRITE if read_write else ConsentAccess.READ
        relation.blocked = bool(record["blocked"])
        relation.treating_doctor = row.treating_doctor_id == pid
        relation.emergency = bool(record["emergency"])
        relation.conversation = bool(record["conversation"])
