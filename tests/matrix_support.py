"""The scenario builder of the permission matrix: one subject space per actor kind, holding
every kind of object, and the actor in the relation its column names."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid4

import httpx

from models import consent as consents
from models.audit import AccessAction, AccessEvent
from models.base import utcnow
from models.consent import Consent, ConsentAccess
from models.document import Document, set_hidden
from resolvers.ids import decode_as, encode
from tests.factories import make_minor, make_operator, make_patient, make_professional
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


# The professionals who deposit the subject's professional documents themselves (under a
# READ_WRITE consent they held then): the author rule is exercised after expiry, revocation
# and a block.
AUTHORS = {Kind.READ_WRITE, Kind.EXPIRED, Kind.REVOKED, Kind.BLOCKED}


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
    return scenario
