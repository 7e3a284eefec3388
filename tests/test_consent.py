"""Consent, blocks, the médecin traitant, emergency access, patientByNir, the dashboard and
the directory, through the API as a client calls it. A denial also leaves the database as
it was."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import uuid4

import httpx

from models.audit import AccessEvent, AuditTrail
from models.consent import Block, Consent, ConsentAccess, EmergencyAccess
from models.document import Document, DocumentCategory
from models.patient import Patient, SpaceStatus
from models.professional import Profession
from models.record import HealthProfile, Screening, Vaccination
from models.reminder import Reminder, ReminderKind, ReminderStatus
from resolvers.ids import encode
from tests.factories import (
    Person,
    Staff,
    make_minor,
    make_operator,
    make_patient,
    make_professional,
)
from tests.graphql import GraphQLResult, gql

TABLES = (
    Consent,
    Block,
    EmergencyAccess,
    Reminder,
    AccessEvent,
    Patient,
    Vaccination,
    Screening,
    HealthProfile,
)

GRANT = """
mutation($input: GrantConsentInput!) {
  grantConsent(input: $input) {
    consent { id access expiresAt revokedAt active professional { id } }
  }
}"""
REVOKE = """
mutation($input: RevokeConsentInput!) {
  revokeConsent(input: $input) { consent { id access revokedAt active } }
}"""
BLOCK = """
mutation($input: BlockProfessionalInput!) { blockProfessional(input: $input) { patient { id } } }
"""
UNBLOCK = """
mutation($input: UnblockProfessionalInput!) {
  unblockProfessional(input: $input) { patient { id } }
}"""
TREATING = """
mutation($input: SetTreatingDoctorInput!) {
  setTreatingDoctor(input: $input) { patient { id treatingDoctor { id } } }
}"""
OPPOSE = """
mutation($input: SetEmergencyAccessOppositionInput!) {
  setEmergencyAccessOpposition(input: $input) { patient { id emergencyAccessOpposed } }
}"""
EMERGENCY = """
mutation($input: EmergencyAccessInput!) {
  emergencyAccess(input: $input) { patient { id firstName } }
}"""
PATIENT = "query($id: ID!) { patient(id: $id) { id firstName } }"
DOSSIER = "query($id: ID!) { patient(id: $id) { id vaccinations { vaccine } } }"
CONSENTS = """
query($id: ID!) { patient(id: $id) { consents { id access active revokedAt professional { id } } } }
"""
BY_NIR = """
query($nir: String!, $birthDate: Date!) {
  patientByNir(nir: $nir, birthDate: $birthDate) { id firstName lastName }
}"""
DASHBOARD = """
query($first: Int, $after: String) {
  viewer { ... on Professional {
    patients(first: $first, after: $after) {
      totalCount
      edges { cursor node { id lastName } }
      pageInfo { hasNextPage endCursor }
    }
  } }
}"""


async def snapshot() -> dict[str, list[dict[str, Any]]]:
    return {model.__name__: await model.all().order_by("id").values() for model in TABLES}


async def events(person: Person) -> list[tuple[str, str, str]]:
    rows = await AccessEvent.filter(patient_id=person.patient.id).order_by("at", "created_at")
    return [(e.action.value, e.basis.value, str(e.actor_id)) for e in rows]


def the_error(result: GraphQLResult) -> dict[str, Any]:
    assert len(result.errors) == 1, result.errors
    return result.errors[0]


def assert_denied(result: GraphQLResult, code: str, field: str | None = None) -> None:
    error = the_error(result)
    assert error["extensions"]["code"] == code, error
    assert error["extensions"].get("field") == field, error


async def grant(
    client: httpx.AsyncClient,
    holder: Person,
    pro: Staff,
    access: str = "READ",
    **extra: Any,
) -> dict[str, Any]:
    result = await gql(
        client,
        GRANT,
        {"input": {"professionalId": pro.id, "access": access, **extra}},
        token=holder.token,
    )
    consent: dict[str, Any] = result.ok()["grantConsent"]["consent"]
    return consent


async def sees(client: httpx.AsyncClient, pro: Staff, holder: Person) -> bool:
    result = await gql(client, PATIENT, {"id": holder.id}, token=pro.token)
    if result.codes == ["NOT_FOUND"]:
        return False
    assert result.ok() == {"patient": {"id": holder.id, "firstName": holder.patient.first_name}}
    return True


# --- grantConsent -----------------------------------------------------------------------


async def test_grant_read_consent_opens_the_dossier(client: httpx.AsyncClient) -> None:
    alice = await make_patient()
    doc = await make_professional()
    assert not await sees(client, doc, alice)

    consent = await grant(client, alice, doc)

    assert consent["access"] == "READ"
    assert consent["active"] is True
    assert consent["expiresAt"] is None
    assert consent["revokedAt"] is None
    assert consent["professional"] == {"id": doc.id}
    read = await gql(client, DOSSIER, {"id": alice.id}, token=doc.token)
    assert read.ok() == {"patient": {"id": alice.id, "vaccinations": []}}
    listed = await gql(client, CONSENTS, {"id": alice.id}, token=alice.token)
    assert listed.ok()["patient"]["consents"] == [
        {
            "id": consent["id"],
            "access": "READ",
            "active": True,
            "revokedAt": None,
            "professional": {"id": doc.id},
        }
    ]


async def test_grant_read_write_with_expiry_answers_in_utc(client: httpx.AsyncClient) -> None:
    alice = await make_patient()
    doc = await make_professional()
    year = datetime.now(UTC).year + 1

    consent = await grant(
        client, alice, doc, "READ_WRITE", expiresAt=f"{year}-06-01T12:00:00+02:00"
    )

    assert consent["access"] == "READ_WRITE"
    assert consent["active"] is True
    assert datetime.fromisoformat(consent["expiresAt"]) == datetime(year, 6, 1, 10, tzinfo=UTC)
    assert consent["expiresAt"].endswith("+00:00")
    row = await Consent.get(patient_id=alice.patient.id)
    assert row.access is ConsentAccess.READ_WRITE
    assert row.expires_at == datetime(year, 6, 1, 10, tzinfo=UTC)


async def test_a_bad_expiry_or_an_unknown_professional_is_refused(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    bob = await make_patient("Bob")
    doc = await make_professional()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"expiresAt": (datetime.now(UTC) - timedelta(minutes=1)).isoformat()}, "expiresAt"),
        ({"expiresAt": "2001-01-01T00:00:00+00:00"}, "expiresAt"),
        ({"expiresAt": "2999-01-01T00:00:00"}, "expiresAt"),  # no offset: the contract asks one
        ({"professionalId": encode("Professional", uuid4())}, "professionalId"),
        ({"professionalId": "not-an-id"}, "professionalId"),
        ({"professionalId": bob.id}, "professionalId"),
    ]
    before = await snapshot()

    for fields, field in cases:
        variables = {"professionalId": doc.id, "access": "READ", **fields}
        result = await gql(client, GRANT, {"input": variables}, token=alice.token)

        assert_denied(result, "BAD_USER_INPUT", field)
        assert await snapshot() == before


async def test_a_second_grant_replaces_the_first(client: httpx.AsyncClient) -> None:
    alice = await make_patient()
    doc = await make_professional()
    first = await grant(client, alice, doc, "READ")

    second = await grant(client, alice, doc, "READ_WRITE")

    assert second["id"] != first["id"]
    listed = await gql(client, CONSENTS, {"id": alice.id}, token=alice.token)
    states = {c["id"]: (c["access"], c["active"]) for c in listed.ok()["patient"]["consents"]}
    assert states == {first["id"]: ("READ", False), second["id"]: ("READ_WRITE", True)}
    live = await Consent.filter(patient_id=alice.patient.id, revoked_at=None).count()
    assert live == 1


async def test_granting_to_a_blocked_professional_is_a_conflict(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    doc = await make_professional()
    await gql(client, BLOCK, {"input": {"professionalId": doc.id}}, token=alice.token)
    before = await snapshot()

    result = await gql(
        client, GRANT, {"input": {"professionalId": doc.id, "access": "READ"}}, token=alice.token
    )

    assert_denied(result, "CONFLICT")
    assert await snapshot() == before


async def test_only_a_patient_grants_consent(client: httpx.AsyncClient) -> None:
    alice = await make_patient()
    doc = await make_professional()
    other = await make_professional("Martin")
    await grant(client, alice, doc, "READ_WRITE")
    operator = await make_operator()
    before = await snapshot()

    for token, code in (
        (None, "UNAUTHENTICATED"),
        (doc.token, "FORBIDDEN"),
        (operator.token, "FORBIDDEN"),
    ):
        result = await gql(
            client,
            GRANT,
            {"input": {"professionalId": other.id, "access": "READ", "patientId": alice.id}},
            token=token,
        )

        assert_denied(result, code)
        assert await snapshot() == before


# --- revokeConsent, expiry ----------------------------------------------------------------


async def test_the_holder_revokes_and_access_stops_at_once(client: httpx.AsyncClient) -> None:
    alice = await make_patient()
    doc = await make_professional()
    consent = await grant(client, alice, doc)
    assert await sees(client, doc, alice)

    result = await gql(client, REVOKE, {"input": {"consentId": consent["id"]}}, token=alice.token)

    revoked = result.ok()["revokeConsent"]["consent"]
    assert revoked["id"] == consent["id"]
    assert revoked["active"] is False
    assert revoked["revokedAt"] is not None
    assert not await sees(client, doc, alice)
    again = await gql(client, REVOKE, {"input": {"consentId": consent["id"]}}, token=alice.token)
    assert again.ok()["revokeConsent"]["consent"]["revokedAt"] == revoked["revokedAt"]


async def test_revoking_someone_elses_consent_is_not_found(client: httpx.AsyncClient) -> None:
    alice = await make_patient()
    doc = await make_professional()
    consent = await grant(client, alice, doc)
    bob = await make_patient("Bob")
    operator = await make_operator()
    before = await snapshot()

    for token, code in (
        (bob.token, "NOT_FOUND"),
        (doc.token, "NOT_FOUND"),
        (operator.token, "NOT_FOUND"),
        (None, "UNAUTHENTICATED"),
    ):
        result = await gql(client, REVOKE, {"input": {"consentId": consent["id"]}}, token=token)

        # The consent is invisible to them (node(id) answers null): no existence oracle.
        assert_denied(result, code)
        assert await snapshot() == before
        node = await gql(
            client, "query($id: ID!) { node(id: $id) { id } }", {"id": consent["id"]}, token=token
        )
        assert node.data == {"node": None}
    assert await sees(client, doc, alice)


async def test_an_expired_consent_stops_access_at_once(client: httpx.AsyncClient) -> None:
    alice = await make_patient()
    doc = await make_professional()
    consent = await grant(
        client, alice, doc, expiresAt=(datetime.now(UTC) + timedelta(hours=1)).isoformat()
    )
    assert await sees(client, doc, alice)

    await Consent.filter(patient_id=alice.patient.id).update(
        expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )

    assert not await sees(client, doc, alice)
    dossier = await gql(client, DOSSIER, {"id": alice.id}, token=doc.token)
    assert_denied(dossier, "NOT_FOUND")
    dashboard = await gql(client, DASHBOARD, token=doc.token)
    assert dashboard.ok()["viewer"]["patients"]["totalCount"] == 0
    listed = await gql(client, CONSENTS, {"id": alice.id}, token=alice.token)
    assert [(c["id"], c["active"]) for c in listed.ok()["patient"]["consents"]] == [
        (consent["id"], False)
    ]


# --- blocks -------------------------------------------------------------------------------


async def test_a_block_wins_over_a_consent(client: httpx.AsyncClient) -> None:
    alice = await make_patient()
    doc = await make_professional()
    await grant(client, alice, doc, "READ_WRITE")

    result = await gql(client, BLOCK, {"input": {"professionalId": doc.id}}, token=alice.token)

    assert result.ok() == {"blockProfessional": {"patient": {"id": alice.id}}}
    before = await snapshot()
    assert not await sees(client, doc, alice)
    node = await gql(
        client, "query($id: ID!) { node(id: $id) { id } }", {"id": alice.id}, token=doc.token
    )
    assert node.data == {"node": None}
    by_nir = await gql(
        client,
        BY_NIR,
        {"nir": alice.nir, "birthDate": alice.patient.birth_date.isoformat()},
        token=doc.token,
    )
    assert_denied(by_nir, "NOT_FOUND")
    dashboard = await gql(client, DASHBOARD, token=doc.token)
    assert dashboard.ok()["viewer"]["patients"]["totalCount"] == 0
    emergency = await gql(
        client, EMERGENCY, {"input": {"patientId": alice.id, "reason": "Urgence"}}, token=doc.token
    )
    assert_denied(emergency, "NOT_FOUND")
    assert await snapshot() == before  # the blocked professional wrote nothing, not even a log


async def test_a_block_wins_over_the_treating_doctor_and_an_emergency(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    doc = await make_professional()
    await gql(client, TREATING, {"input": {"professionalId": doc.id}}, token=alice.token)
    opened = await gql(
        client, EMERGENCY, {"input": {"patientId": alice.id, "reason": "Malaise"}}, token=doc.token
    )
    opened.ok()

    await gql(client, BLOCK, {"input": {"professionalId": doc.id}}, token=alice.token)

    assert not await sees(client, doc, alice)


async def test_unblocking_restores_the_consent(client: httpx.AsyncClient) -> None:
    alice = await make_patient()
    doc = await make_professional()
    await grant(client, alice, doc)
    await gql(client, BLOCK, {"input": {"professionalId": doc.id}}, token=alice.token)
    assert not await sees(client, doc, alice)

    result = await gql(client, UNBLOCK, {"input": {"professionalId": doc.id}}, token=alice.token)

    assert result.ok() == {"unblockProfessional": {"patient": {"id": alice.id}}}
    assert await sees(client, doc, alice)
    assert await Block.filter(patient_id=alice.patient.id).count() == 0


async def test_blocking_twice_keeps_one_block(client: httpx.AsyncClient) -> None:
    alice = await make_patient()
    doc = await make_professional()

    for _ in range(2):
        result = await gql(client, BLOCK, {"input": {"professionalId": doc.id}}, token=alice.token)
        result.ok()

    assert await Block.filter(patient_id=alice.patient.id).count() == 1


async def test_block_unblock_and_treating_doctor_refuse_an_unknown_professional(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    before = await snapshot()

    for mutation in (BLOCK, UNBLOCK, TREATING):
        for professional_id in (encode("Professional", uuid4()), "not-an-id"):
            result = await gql(
                client, mutation, {"input": {"professionalId": professional_id}}, token=alice.token
            )

            assert_denied(result, "BAD_USER_INPUT", "professionalId")
            assert await snapshot() == before


# --- médecin traitant ---------------------------------------------------------------------


async def test_the_treating_doctor_must_be_a_doctor(client: httpx.AsyncClient) -> None:
    alice = await make_patient()
    nurse = await make_professional("Petit", profession=Profession.INFIRMIER)
    before = await snapshot()

    result = await gql(client, TREATING, {"input": {"professionalId": nurse.id}}, token=alice.token)

    assert_denied(result, "BAD_USER_INPUT", "professionalId")
    assert await snapshot() == before


async def test_a_blocked_doctor_cannot_become_treating_doctor(client: httpx.AsyncClient) -> None:
    alice = await make_patient()
    doc = await make_professional()
    await gql(client, BLOCK, {"input": {"professionalId": doc.id}}, token=alice.token)
    before = await snapshot()

    result = await gql(client, TREATING, {"input": {"professionalId": doc.id}}, token=alice.token)

    assert_denied(result, "CONFLICT")
    assert await snapshot() == before


async def test_the_treating_doctor_reads_hidden_documents(client: httpx.AsyncClient) -> None:
    alice = await make_patient()
    treating = await make_professional("Durand")
    consented = await make_professional("Martin")
    await grant(client, alice, consented)
    for title, hidden in (("Visible", False), ("Caché", True)):
        await Document.create(
            patient_id=alice.patient.id,
            title=title,
            category=DocumentCategory.REPORT,
            date=date(2024, 1, 2),
            mime_type="application/pdf",
            size=1,
            sha256="0" * 64,
            hidden=hidden,
            author_patient_id=alice.patient.id,
        )

    result = await gql(
        client, TREATING, {"input": {"professionalId": treating.id}}, token=alice.token
    )

    assert result.ok() == {
        "setTreatingDoctor": {"patient": {"id": alice.id, "treatingDoctor": {"id": treating.id}}}
    }
    query = (
        "query($id: ID!) { patient(id: $id) { documents { totalCount edges { node { title } } } } }"
    )
    as_treating = await gql(client, query, {"id": alice.id}, token=treating.token)
    titles = [e["node"]["title"] for e in as_treating.ok()["patient"]["documents"]["edges"]]
    assert sorted(titles) == ["Caché", "Visible"]
    assert as_treating.ok()["patient"]["documents"]["totalCount"] == 2
    as_consented = await gql(client, query, {"id": alice.id}, token=consented.token)
    assert as_consented.ok()["patient"]["documents"] == {
        "totalCount": 1,
        "edges": [{"node": {"title": "Visible"}}],
    }
    assert sorted(await events(alice)) == sorted(
        [("READ", "TREATING_DOCTOR", str(treating.pk)), ("READ", "CONSENT", str(consented.pk))]
    )


# --- emergency access ---------------------------------------------------------------------


async def test_setting_the_emergency_opposition(client: httpx.AsyncClient) -> None:
    alice = await make_patient()

    on = await gql(client, OPPOSE, {"input": {"opposed": True}}, token=alice.token)
    assert on.ok() == {
        "setEmergencyAccessOpposition": {
            "patient": {"id": alice.id, "emergencyAccessOpposed": True}
        }
    }
    assert (await Patient.get(id=alice.patient.id)).emergency_access_opposed is True

    off = await gql(client, OPPOSE, {"input": {"opposed": False}}, token=alice.token)
    assert off.ok()["setEmergencyAccessOpposition"]["patient"]["emergencyAccessOpposed"] is False


async def test_emergency_access_opens_logs_and_alerts_the_holder(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    doc = await make_professional("Urgentiste")
    assert not await sees(client, doc, alice)
    started = datetime.now(UTC)

    result = await gql(
        client,
        EMERGENCY,
        {"input": {"patientId": alice.id, "reason": "  Patiente  inconsciente  "}},
        token=doc.token,
    )

    assert result.ok() == {
        "emergencyAccess": {"patient": {"id": alice.id, "firstName": alice.patient.first_name}}
    }
    assert await sees(client, doc, alice)
    dossier = await gql(client, DOSSIER, {"id": alice.id}, token=doc.token)
    assert dossier.ok() == {"patient": {"id": alice.id, "vaccinations": []}}
    opening = await EmergencyAccess.get(patient_id=alice.patient.id)
    assert opening.reason == "Patiente inconsciente"
    assert opening.professional_id == doc.pk
    reminders = await Reminder.filter(patient_id=alice.patient.id)
    assert len(reminders) == 1
    alert = reminders[0]
    assert alert.kind is ReminderKind.EMERGENCY_ACCESS
    assert alert.status is not ReminderStatus.DISMISSED  # PENDING, or SENT once pushed live
    assert started - timedelta(seconds=1) <= alert.due_at <= datetime.now(UTC)
    assert "Patiente inconsciente" in alert.reason
    assert "Urgentiste" in alert.reason
    # One event per request: the opening, the look at the space, the dossier read.
    assert await events(alice) == [
        ("EMERGENCY_OPEN", "EMERGENCY", str(doc.pk)),
        ("READ", "EMERGENCY", str(doc.pk)),
        ("READ", "EMERGENCY", str(doc.pk)),
    ]


async def test_emergency_access_requires_a_reason(client: httpx.AsyncClient) -> None:
    alice = await make_patient()
    doc = await make_professional()
    before = await snapshot()

    for reason in ("", "   ", "x" * 1001):
        result = await gql(
            client, EMERGENCY, {"input": {"patientId": alice.id, "reason": reason}}, token=doc.token
        )

        assert_denied(result, "BAD_USER_INPUT", "reason")
        assert await snapshot() == before


async def test_emergency_access_is_refused_when_the_holder_opposed(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    doc = await make_professional()
    await gql(client, OPPOSE, {"input": {"opposed": True}}, token=alice.token)
    before = await snapshot()

    result = await gql(
        client, EMERGENCY, {"input": {"patientId": alice.id, "reason": "Coma"}}, token=doc.token
    )

    assert_denied(result, "FORBIDDEN")
    assert await snapshot() == before
    assert not await sees(client, doc, alice)


async def test_emergency_access_is_for_professionals_on_live_spaces(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    closed = await make_patient("Cécile", status=SpaceStatus.CLOSED, email=None)
    opposed = await make_patient("Odile", status=SpaceStatus.OPPOSED, email=None)
    doc = await make_professional()
    operator = await make_operator()
    before = await snapshot()

    for patient_id, token, code in (
        (alice.id, alice.token, "FORBIDDEN"),
        (alice.id, operator.token, "FORBIDDEN"),
        (alice.id, None, "UNAUTHENTICATED"),
        (closed.id, doc.token, "NOT_FOUND"),
        (opposed.id, doc.token, "NOT_FOUND"),
        (encode("Patient", uuid4()), doc.token, "NOT_FOUND"),
    ):
        result = await gql(
            client, EMERGENCY, {"input": {"patientId": patient_id, "reason": "Coma"}}, token=token
        )

        assert_denied(result, code)
        assert await snapshot() == before


# --- a representative, for a minor ---------------------------------------------------------


async def test_a_representative_manages_all_of_it_for_a_minor(client: httpx.AsyncClient) -> None:
    mother = await make_patient("Claire")
    theo = await make_minor(mother)
    doc = await make_professional()
    other = await make_professional("Martin")
    token = mother.token

    consent = await grant(client, mother, doc, "READ_WRITE", patientId=theo.id)
    assert await sees(client, doc, theo)
    assert not await sees(client, doc, mother)
    blocked = await gql(
        client, BLOCK, {"input": {"professionalId": other.id, "patientId": theo.id}}, token=token
    )
    assert blocked.ok() == {"blockProfessional": {"patient": {"id": theo.id}}}
    unblocked = await gql(
        client, UNBLOCK, {"input": {"professionalId": other.id, "patientId": theo.id}}, token=token
    )
    assert unblocked.ok() == {"unblockProfessional": {"patient": {"id": theo.id}}}
    treating = await gql(
        client, TREATING, {"input": {"professionalId": other.id, "patientId": theo.id}}, token=token
    )
    assert treating.ok()["setTreatingDoctor"]["patient"]["treatingDoctor"] == {"id": other.id}
    opposed = await gql(
        client, OPPOSE, {"input": {"opposed": True, "patientId": theo.id}}, token=token
    )
    assert opposed.ok()["setEmergencyAccessOpposition"]["patient"] == {
        "id": theo.id,
        "emergencyAccessOpposed": True,
    }
    revoked = await gql(client, REVOKE, {"input": {"consentId": consent["id"]}}, token=token)
    assert revoked.ok()["revokeConsent"]["consent"]["active"] is False

    child = await Patient.get(id=theo.patient.id)
    assert child.treating_doctor_id == other.pk
    assert child.emergency_access_opposed is True
    assert (await Patient.get(id=mother.patient.id)).emergency_access_opposed is False
    assert await Consent.filter(patient_id=mother.patient.id).count() == 0
    assert not await sees(client, doc, theo)
    listed = await gql(client, CONSENTS, {"id": theo.id}, token=token)
    assert [c["id"] for c in listed.ok()["patient"]["consents"]] == [consent["id"]]


async def test_a_representative_of_someone_else_is_not_found(client: httpx.AsyncClient) -> None:
    mother = await make_patient("Claire")
    theo = await make_minor(mother)
    stranger = await make_patient("Bob")
    doc = await make_professional()
    consent = await grant(client, mother, doc, patientId=theo.id)
    before = await snapshot()
    pid = theo.id

    calls = [
        (GRANT, {"professionalId": doc.id, "access": "READ", "patientId": pid}),
        (BLOCK, {"professionalId": doc.id, "patientId": pid}),
        (UNBLOCK, {"professionalId": doc.id, "patientId": pid}),
        (TREATING, {"professionalId": doc.id, "patientId": pid}),
        (OPPOSE, {"opposed": True, "patientId": pid}),
        (REVOKE, {"consentId": consent["id"]}),
    ]
    for mutation, variables in calls:
        result = await gql(client, mutation, {"input": variables}, token=stranger.token)
        assert_denied(result, "NOT_FOUND")

    assert await snapshot() == before


# --- patientByNir -------------------------------------------------------------------------


async def test_a_professional_finds_a_patient_by_nir_with_one_lookup_event(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    doc = await make_professional()
    query = """
    query($nir: String!, $birthDate: Date!) {
      a: patientByNir(nir: $nir, birthDate: $birthDate) { id firstName lastName birthDate }
      b: patientByNir(nir: $nir, birthDate: $birthDate) { id }
    }"""
    spaced = f"{alice.nir[0]} {alice.nir[1:3]} {alice.nir[3:5]} {alice.nir[5:]}"

    result = await gql(
        client,
        query,
        {"nir": spaced, "birthDate": alice.patient.birth_date.isoformat()},
        token=doc.token,
    )

    assert result.ok() == {
        "a": {
            "id": alice.id,
            "firstName": "Alice",
            "lastName": "Lefebvre",
            "birthDate": alice.patient.birth_date.isoformat(),
        },
        "b": {"id": alice.id},
    }
    assert await events(alice) == [("LOOKUP", "LOOKUP", str(doc.pk))]
    # A look-up is no basis: the dossier stays closed to them.
    assert not await sees(client, doc, alice)


async def test_a_lookup_under_consent_records_its_basis(client: httpx.AsyncClient) -> None:
    alice = await make_patient()
    doc = await make_professional()
    await grant(client, alice, doc)

    result = await gql(
        client,
        BY_NIR,
        {"nir": alice.nir, "birthDate": alice.patient.birth_date.isoformat()},
        token=doc.token,
    )

    assert result.ok()["patientByNir"]["id"] == alice.id
    assert await events(alice) == [("LOOKUP", "CONSENT", str(doc.pk))]


async def test_an_operator_finds_a_patient_by_nir(client: httpx.AsyncClient) -> None:
    alice = await make_patient()
    operator = await make_operator()

    result = await gql(
        client,
        BY_NIR,
        {"nir": alice.nir, "birthDate": alice.patient.birth_date.isoformat()},
        token=operator.token,
    )

    assert result.ok()["patientByNir"]["id"] == alice.id
    assert await events(alice) == [("LOOKUP", "OPERATOR", str(operator.pk))]


async def test_patient_by_nir_is_for_professionals_and_operators(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    bob = await make_patient("Bob")
    variables = {"nir": alice.nir, "birthDate": alice.patient.birth_date.isoformat()}
    before = await snapshot()

    for token, code in (
        (bob.token, "FORBIDDEN"),
        (alice.token, "FORBIDDEN"),
        (None, "UNAUTHENTICATED"),
    ):
        result = await gql(client, BY_NIR, variables, token=token)

        assert_denied(result, code)
        assert result.data in (None, {"patientByNir": None})
        assert await snapshot() == before


async def test_patient_by_nir_not_found(client: httpx.AsyncClient) -> None:
    doc = await make_professional()
    alice = await make_patient()
    unknown = await make_patient("Nina", email=None)
    await Patient.filter(id=unknown.patient.id).update(nir_hash="x" * 64)
    opposed = await make_patient("Odile", status=SpaceStatus.OPPOSED, email=None)
    closed = await make_patient("Cécile", status=SpaceStatus.CLOSED, email=None)
    cases = [
        (alice.nir, alice.patient.birth_date + timedelta(days=1)),
        (unknown.nir, unknown.patient.birth_date),
        (opposed.nir, opposed.patient.birth_date),
        (closed.nir, closed.patient.birth_date),
    ]
    before = await snapshot()

    for nir, birth in cases:
        result = await gql(
            client, BY_NIR, {"nir": nir, "birthDate": birth.isoformat()}, token=doc.token
        )

        assert_denied(result, "NOT_FOUND")
        assert nir not in result.response.text
        assert await snapshot() == before


async def test_an_operator_still_finds_a_closed_space(client: httpx.AsyncClient) -> None:
    closed = await make_patient("Cécile", status=SpaceStatus.CLOSED, email=None)
    operator = await make_operator()

    result = await gql(
        client,
        BY_NIR,
        {"nir": closed.nir, "birthDate": closed.patient.birth_date.isoformat()},
        token=operator.token,
    )

    assert result.ok()["patientByNir"]["id"] == closed.id
    assert await events(closed) == [("LOOKUP", "OPERATOR", str(operator.pk))]


async def test_an_invalid_nir_is_bad_input_without_echoing_it(client: httpx.AsyncClient) -> None:
    alice = await make_patient()
    doc = await make_professional()
    wrong_key = alice.nir[:13] + f"{(int(alice.nir[13:]) + 1) % 100:02d}"
    before = await snapshot()

    result = await gql(
        client,
        BY_NIR,
        {"nir": wrong_key, "birthDate": alice.patient.birth_date.isoformat()},
        token=doc.token,
    )

    assert_denied(result, "BAD_USER_INPUT", "nir")
    assert wrong_key not in result.response.text
    assert wrong_key[:13] not in result.response.text
    assert await snapshot() == before


# --- Professional.patients, the dashboard ----------------------------------------------------


async def test_the_dashboard_lists_active_consents_only_and_paginates(
    client: httpx.AsyncClient,
) -> None:
    doc = await make_professional()
    names = ["Arnaud", "Blanc", "Colin", "Dupont", "Etienne"]
    people = [await make_patient("P", name) for name in names]
    for person in people:
        await grant(client, person, doc)
    revoked, blocked, expired = (
        await make_patient("R", "Aaron"),
        await make_patient("B", "Abel"),
        await make_patient("E", "Abry"),
    )
    await gql(
        client,
        REVOKE,
        {"input": {"consentId": (await grant(client, revoked, doc))["id"]}},
        token=revoked.token,
    )
    await grant(client, blocked, doc)
    await gql(client, BLOCK, {"input": {"professionalId": doc.id}}, token=blocked.token)
    await grant(client, expired, doc)
    await Consent.filter(patient_id=expired.patient.id).update(
        expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    other = await make_professional("Martin")
    await grant(client, await make_patient("O", "Autre"), other)

    seen: list[str] = []
    after = None
    pages = []
    while True:
        result = await gql(client, DASHBOARD, {"first": 2, "after": after}, token=doc.token)
        page = result.ok()["viewer"]["patients"]
        pages.append(page)
        seen += [edge["node"]["lastName"] for edge in page["edges"]]
        assert page["totalCount"] == 5
        if not page["pageInfo"]["hasNextPage"]:
            break
        assert page["pageInfo"]["endCursor"] == page["edges"][-1]["cursor"]
        after = page["pageInfo"]["endCursor"]

    assert seen == names
    assert [len(p["edges"]) for p in pages] == [2, 2, 1]


PROFESSIONAL_PATIENTS = """
query($id: ID!) { node(id: $id) { ... on Professional { id patients { totalCount } } } }
"""


async def test_the_dashboard_is_its_professionals_only(client: httpx.AsyncClient) -> None:
    alice = await make_patient()
    doc = await make_professional()
    await grant(client, alice, doc)
    other = await make_professional("Martin")
    before = await snapshot()

    for token in (other.token, alice.token):
        result = await gql(client, PROFESSIONAL_PATIENTS, {"id": doc.id}, token=token)

        assert result.data == {"node": {"id": doc.id, "patients": None}}
        assert result.codes == ["FORBIDDEN"]
        assert result.errors[0]["path"] == ["node", "patients"]
        assert await snapshot() == before


# --- the directory ------------------------------------------------------------------------


async def test_the_directory_searches_professionals(client: httpx.AsyncClient) -> None:
    alice = await make_patient()
    durand = await make_professional("Durand")
    dupont = await make_professional("Dupont", profession=Profession.PHARMACIEN)
    await make_professional("Martin")
    query = """
    query($search: String!, $first: Int) {
      professionals(search: $search, first: $first) { id lastName profession rpps }
    }"""

    by_name = await gql(client, query, {"search": "du"}, token=alice.token)
    assert [p["id"] for p in by_name.ok()["professionals"]] == [dupont.id, durand.id]
    rpps = by_name.ok()["professionals"][1]["rpps"]
    by_rpps = await gql(client, query, {"search": rpps}, token=alice.token)
    assert [p["lastName"] for p in by_rpps.ok()["professionals"]] == ["Durand"]
    two_terms = await gql(client, query, {"search": "paul dup"}, token=alice.token)
    assert [p["lastName"] for p in two_terms.ok()["professionals"]] == ["Dupont"]
    capped = await gql(client, query, {"search": "", "first": 1}, token=alice.token)
    assert len(capped.ok()["professionals"]) == 1
    anonymous = await gql(client, query, {"search": "du"})
    assert_denied(anonymous, "UNAUTHENTICATED")


async def test_a_representatives_consent_changes_are_access_events_the_holders_are_not(
    client: httpx.AsyncClient,
) -> None:
    mother = await make_patient("Claire")
    theo = await make_minor(mother)
    doc = await make_professional()
    token = mother.token

    await grant(client, mother, doc, "READ", patientId=theo.id)
    await grant(client, mother, doc, "READ")  # her own space: the holder's acts are not logged
    for mutation, variables in (
        (BLOCK, {"professionalId": doc.id, "patientId": theo.id}),
        (UNBLOCK, {"professionalId": doc.id, "patientId": theo.id}),
        (TREATING, {"professionalId": doc.id, "patientId": theo.id}),
        (OPPOSE, {"opposed": True, "patientId": theo.id}),
    ):
        assert not (await gql(client, mutation, {"input": variables}, token=token)).errors

    logged = await events(theo)
    # one WRITE per change (the payloads' reads of the space are READ events besides)
    assert [action for action, _, _ in logged].count("WRITE") == 5
    assert {basis for _, basis, _ in logged} == {"REPRESENTATIVE"}
    assert len({actor for _, _, actor in logged}) == 1
    assert await events(mother) == []


async def test_a_change_whose_access_event_cannot_be_written_is_not_made(
    client: httpx.AsyncClient, monkeypatch: Any
) -> None:
    mother = await make_patient("Claire")
    theo = await make_minor(mother)
    doc = await make_professional()
    before = await snapshot()

    async def failing(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the audit table is unavailable")

    monkeypatch.setattr(AuditTrail, "record", failing)
    result = await gql(
        client,
        GRANT,
        {"input": {"professionalId": doc.id, "access": "READ", "patientId": theo.id}},
        token=mother.token,
    )
    opened = await gql(
        client, EMERGENCY, {"input": {"patientId": theo.id, "reason": "Urgence"}}, token=doc.token
    )

    assert result.codes == ["INTERNAL_SERVER_ERROR"]
    assert opened.codes == ["INTERNAL_SERVER_ERROR"]
    assert await snapshot() == before  # no consent, no emergency access, no alert
