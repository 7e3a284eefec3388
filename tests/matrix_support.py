"""The scenario builder of the permission matrix: one subject space per actor kind, holding
every kind of object, and the actor in the relation its column names."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid4

import httpx
from stdnum import luhn

from models import consent as consents
from models.audit import AccessAction, AccessEvent
from models.base import utcnow
from models.consent import Consent, ConsentAccess
from models.document import Document, set_hidden
from models.establishment import add_member, register_establishment, remove_member
from resolvers.ids import decode_as, encode
from tests.factories import (
    Person,
    Staff,
    make_minor,
    make_operator,
    make_patient,
    make_professional,
)
from tests.graphql import gql


class Kind(StrEnum):
    """The columns of the matrix, in table order."""

    ANONYMOUS = "anonymous"
    HOLDER = "holder"
    REPRESENTATIVE = "representative"
    OTHER_PATIENT = "other_patient"
    NO_CONSENT = "no_consent"
    READ = "read"
    READ_WRITE = "read_write"
    EXPIRED = "expired"
    REVOKED = "revoked"
    BLOCKED = "blocked"
    TREATING = "treating"
    EMERGENCY = "emergency"
    OPPOSED = "opposed"
    OPERATOR = "operator"
    # Establishments (an admission conversation with the subject in a hospital's inbox): a
    # member who did not start it, its starter once removed from the hospital, and a member
    # of another establishment.
    MEMBER = "member"
    FORMER_MEMBER = "former_member"
    OTHER_ESTABLISHMENT = "other_establishment"
    # Partner apps granted by the holder: one with every scope, one with IDENTITY_READ only.
    # They send only documents registered on their list (tests/test_access_matrix.py).
    APP_ALL = "app_all"
    APP_IDENTITY = "app_identity"


# The professionals who deposit the subject's professional documents themselves (under a
# READ_WRITE consent they held then): the author rule is exercised after expiry, revocation
# and a block.
AUTHORS = {Kind.READ_WRITE, Kind.EXPIRED, Kind.REVOKED, Kind.BLOCKED}
ESTABLISHMENT_KINDS = {Kind.MEMBER, Kind.FORMER_MEMBER, Kind.OTHER_ESTABLISHMENT}
APP_SCOPES = {
    Kind.APP_ALL: [
        "IDENTITY_READ",
        "DOCUMENTS_READ",
        "HEALTH_PROFILE_READ",
        "VACCINATIONS_READ",
        "APPOINTMENTS_READ",
    ],
    Kind.APP_IDENTITY: ["IDENTITY_READ"],
}
_finess_serial = itertools.count(1)


def pdf(label: str) -> bytes:
    return f"%PDF-1.4\n% {label}\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n".encode()


@dataclass
class Scenario:
    kind: Kind
    token: str | None
    subject_pk: UUID
    actor_pk: UUID | None = None
    ids: dict[str, str] = field(default_factory=dict)  # object name -> global id
    content: dict[str, bytes] = field(default_factory=dict)  # document name -> bytes
    app_client: str | None = None  # a partner app's client id: its list of documents

    @property
    def subject_id(self) -> str:
        return encode("Patient", self.subject_pk)

    def pk(self, name: str, type_name: str) -> UUID:
        return decode_as(self.ids[name], type_name)


def missing_id(type_name: str) -> str:
    return encode(type_name, uuid4())


async def _upload(
    client: httpx.AsyncClient, token: str, variables: dict[str, Any], data: bytes
) -> str:
    operations = {
        "query": "mutation($input: AddDocumentInput!) { addDocument(input: $input) "
        "{ document { id } } }",
        "variables": {"input": {**variables, "file": None}},
    }
    response = await client.post(
        "/graphql",
        data={
            "operations": json.dumps(operations),
            "map": json.dumps({"0": ["variables.input.file"]}),
        },
        files={"0": ("document.pdf", data, "application/pdf")},
        headers={"Authorization": f"Bearer {token}", "Apollo-Require-Preflight": "true"},
    )
    body = response.json()
    assert not body.get("errors"), body
    return str(body["data"]["addDocument"]["document"]["id"])


async def _ok(client: httpx.AsyncClient, query: str, variables: dict[str, Any], token: str) -> Any:
    return (await gql(client, query, variables, token=token)).ok()


def _finess() -> str:
    base = f"75{next(_finess_serial):06d}"
    return base + luhn.calc_check_digit(base)


async def _inbox(client: httpx.AsyncClient, kind: Kind, actor: Staff, subject: Person) -> None:
    """An admission conversation with the subject in a hospital's shared inbox, and the actor
    as `kind` says: a member who did not start it, its starter removed from the hospital
    since, or a member of another establishment."""
    now = utcnow()
    hospital = await register_establishment(_finess(), f"Hôpital ({kind})")
    starter = actor if kind is Kind.FORMER_MEMBER else await make_professional("Admissions")
    await add_member(hospital.id, starter.pk, now=now)  # type: ignore[arg-type]
    if kind is Kind.MEMBER:
        await add_member(hospital.id, actor.pk, now=now)  # type: ignore[arg-type]
    elif kind is Kind.OTHER_ESTABLISHMENT:
        clinic = await register_establishment(_finess(), f"Clinique ({kind})")
        await add_member(clinic.id, actor.pk, now=now)  # type: ignore[arg-type]
    await _ok(
        client,
        "mutation($input: StartConversationInput!) { startConversation(input: $input)"
        " { conversation { id } } }",
        {
            "input": {
                "patientId": subject.id,
                "subject": "Votre admission",
                "body": "Merci de nous renvoyer le questionnaire d'admission.",
                "establishmentId": encode("Establishment", hospital.id),
                "purpose": "ADMISSION",
            }
        },
        starter.token,
    )
    if kind is Kind.FORMER_MEMBER:
        await remove_member(hospital.id, actor.pk)  # type: ignore[arg-type]


async def build(client: httpx.AsyncClient, kind: Kind) -> Scenario:
    """The subject, its dossier (a plain document, one hidden by the holder, two deposited
    by a professional as hidden from legal representatives, one of which the holder also
    hid), a vaccination, a screening, a health profile, a consent, a treating doctor, an
    access event, and the actor of the column in its relation to the subject."""
    now = utcnow()
    holder = await make_patient("Alice", "Lefebvre")
    assert holder.token is not None
    manager_token = holder.token
    subject = holder
    scoped: dict[str, Any] = {}
    actor_token: str | None = None
    actor_pk: UUID | None = None
    if kind is Kind.REPRESENTATIVE:
        subject = await make_minor(holder, "Théo")
        scoped = {"patientId": subject.id}
        actor_token, actor_pk = holder.token, holder.patient.id
    elif kind is Kind.HOLDER:
        actor_token, actor_pk = holder.token, holder.patient.id
    elif kind is Kind.OTHER_PATIENT:
        other = await make_patient("Bruno", "Moreau")
        actor_token, actor_pk = other.token, other.patient.id
    elif kind is Kind.OPERATOR:
        operator = await make_operator()
        actor_token, actor_pk = operator.token, operator.pk  # type: ignore[assignment]
    spk = subject.patient.id
    scenario = Scenario(kind=kind, token=actor_token, subject_pk=spk, actor_pk=actor_pk)

    colleague = await make_professional("Collègue")
    await consents.grant_consent(
        spk,
        colleague.pk,  # type: ignore[arg-type]
        ConsentAccess.READ_WRITE,
        expires_at=now + timedelta(days=90),
        now=now,
    )
    actor = None
    if kind not in {
        Kind.ANONYMOUS,
        Kind.HOLDER,
        Kind.REPRESENTATIVE,
        Kind.OTHER_PATIENT,
        Kind.OPERATOR,
        *APP_SCOPES,
    }:
        actor = await make_professional(kind.value.capitalize())
        scenario.token = actor.token
        actor_pk = scenario.actor_pk = actor.pk  # type: ignore[assignment]
    await consents.set_treating_doctor(
        spk,
        actor_pk if kind is Kind.TREATING and actor_pk else colleague.pk,  # type: ignore[arg-type]
    )
    if kind is Kind.READ and actor_pk:
        await consents.grant_consent(spk, actor_pk, ConsentAccess.READ, expires_at=None, now=now)
    if kind in AUTHORS and actor_pk:
        await consents.grant_consent(
            spk, actor_pk, ConsentAccess.READ_WRITE, expires_at=now + timedelta(hours=1), now=now
        )

    # The dossier.
    for name, hide in (("plain", False), ("hidden", True)):
        data = pdf(f"{kind}-{name}")
        doc_id = await _upload(
            client, manager_token, {"title": name, "category": "REPORT", **scoped}, data
        )
        scenario.ids[name], scenario.content[name] = doc_id, data
        if hide:
            await _ok(
                client,
                "mutation($id: ID!) { setDocumentHidden(input: {documentId: $id, hidden: true})"
                " { document { id } } }",
                {"id": doc_id},
                manager_token,
            )
    author = actor if kind in AUTHORS and actor else colleague
    for name in ("pro", "pro_hidden"):
        data = pdf(f"{kind}-{name}")
        doc_id = await _upload(
            client,
            author.token,
            {
                "title": name,
                "category": "LAB_RESULT",
                "patientId": subject.id,
                "hiddenFromRepresentatives": True,
            },
            data,
        )
        scenario.ids[name], scenario.content[name] = doc_id, data
    # The representative cannot see it, so the holder's hiding is applied by the domain.
    await set_hidden(await Document.get(id=decode_as(scenario.ids["pro_hidden"], "Document")), True)
    vaccination = await _ok(
        client,
        "mutation($input: RecordVaccinationInput!) { recordVaccination(input: $input)"
        " { vaccination { id } } }",
        {
            "input": {
                "vaccine": "DTP",
                "date": (date.today() - timedelta(days=30)).isoformat(),
                "doseNumber": 2,
                "lotNumber": "LOT-42",
                "professionalId": colleague.id,
                **scoped,
            }
        },
        manager_token,
    )
    scenario.ids["vaccination"] = vaccination["recordVaccination"]["vaccination"]["id"]
    screening = await _ok(
        client,
        "mutation($input: RecordScreeningInput!) { recordScreening(input: $input)"
        " { screening { id } } }",
        {
            "input": {
                "kind": "COLORECTAL",
                "date": (date.today() - timedelta(days=60)).isoformat(),
                "result": "négatif",
                **scoped,
            }
        },
        manager_token,
    )
    scenario.ids["screening"] = screening["recordScreening"]["screening"]["id"]
    await _ok(
        client,
        "mutation($input: UpdateHealthProfileInput!) { updateHealthProfile(input: $input)"
        " { healthProfile { allergies } } }",
        {"input": {"allergies": ["pénicilline"], **scoped}},
        manager_token,
    )
    colleague_consent = await Consent.get(professional_id=colleague.pk, patient_id=spk)
    scenario.ids["consent"] = encode("Consent", colleague_consent.id)
    event = await AccessEvent.get(
        patient_id=spk,
        document_id=decode_as(scenario.ids["pro"], "Document"),
        action=AccessAction.WRITE,
    )
    scenario.ids["event"] = encode("AccessEvent", event.id)

    # The actor's relation, once the dossier is written.
    if kind is Kind.EXPIRED and actor_pk:
        await Consent.filter(professional_id=actor_pk, patient_id=spk).update(
            expires_at=now - timedelta(minutes=1)
        )
    elif kind is Kind.REVOKED and actor_pk:
        await consents.revoke_consent(
            await Consent.get(professional_id=actor_pk, patient_id=spk), now=utcnow()
        )
    elif kind is Kind.BLOCKED and actor_pk:
        await _ok(
            client,
            "mutation($p: ID!) { blockProfessional(input: {professionalId: $p})"
            " { patient { id } } }",
            {"p": actor.id if actor else ""},
            manager_token,
        )
        assert await Consent.exists(professional_id=actor_pk, patient_id=spk, revoked_at=None)
    elif kind in (Kind.EMERGENCY, Kind.OPPOSED) and actor:
        if kind is Kind.OPPOSED:
            await _ok(
                client,
                "mutation { setEmergencyAccessOpposition(input: {opposed: true})"
                " { patient { id } } }",
                {},
                manager_token,
            )
        opened = await gql(
            client,
            'mutation($id: ID!) { emergencyAccess(input: {patientId: $id, reason: "Coma"})'
            " { patient { id } } }",
            {"id": subject.id},
            token=actor.token,
        )
        if kind is Kind.EMERGENCY:
            opened.ok()
        else:
            assert opened.codes == ["FORBIDDEN"], opened.body
    elif kind in ESTABLISHMENT_KINDS and actor:
        await _inbox(client, kind, actor, subject)
    elif kind in APP_SCOPES:
        await _app(client, scenario, manager_token, APP_SCOPES[kind])
    return scenario


async def _app(
    client: httpx.AsyncClient, scenario: Scenario, holder_token: str, scopes: list[str]
) -> None:
    """A partner app referenced with `scopes`, granted them by the holder, and its token."""
    from tests.catalogue_support import connect, register_app

    operator = await make_operator()
    app = await register_app(client, operator.token, scopes=scopes, confidential=False)
    tokens = await connect(client, holder_token, app, scopes=scopes)
    scenario.token = tokens["access_token"]
    scenario.actor_pk = decode_as(app.id, "PartnerApp")
    scenario.app_client = app.client_id
