"""The structured record (carnet de vaccination, screenings, health profile): who may write
it, what is refused, and the access events its reads and writes leave. A denial also leaves
the database as it was."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import uuid4

import httpx
import pytest

from models.audit import AccessEvent
from models.consent import Block, Consent, ConsentAccess, EmergencyAccess
from models.patient import Patient
from models.record import HealthProfile, Screening, Vaccination
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

TABLES = (Vaccination, Screening, HealthProfile, AccessEvent, Consent, Block, Patient)

VACCINATE = """
mutation($input: RecordVaccinationInput!) {
  recordVaccination(input: $input) {
    vaccination { id vaccine date doseNumber lotNumber professional { id } }
  }
}"""
SCREEN = """
mutation($input: RecordScreeningInput!) {
  recordScreening(input: $input) { screening { id kind date result } }
}"""
PROFILE = """
allergies treatments history advanceDirectives
measurements { heightCm weightKg systolicMmhg diastolicMmhg measuredOn }
trustedPerson { name phone relationship }
"""
UPDATE = (
    "mutation($input: UpdateHealthProfileInput!) "
    "{ updateHealthProfile(input: $input) { healthProfile { " + PROFILE + " } } }"
)
EMPTY_PROFILE: dict[str, Any] = {
    "allergies": [],
    "treatments": [],
    "history": [],
    "advanceDirectives": None,
    "measurements": None,
    "trustedPerson": None,
}
YESTERDAY = (date.today() - timedelta(days=1)).isoformat()


async def snapshot() -> dict[str, list[dict[str, Any]]]:
    return {model.__name__: await model.all().order_by("id").values() for model in TABLES}


async def events(person: Person) -> list[tuple[str, str, str]]:
    rows = await AccessEvent.filter(patient_id=person.patient.id).order_by("at", "created_at")
    return [(e.action.value, e.basis.value, str(e.actor_id)) for e in rows]


def assert_denied(result: GraphQLResult, code: str, field: str | None = None) -> None:
    assert len(result.errors) == 1, result.errors
    error = result.errors[0]
    assert error["extensions"]["code"] == code, error
    assert error["extensions"].get("field") == field, error


async def consent(holder: Person, pro: Staff, access: ConsentAccess) -> None:
    await Consent.create(
        patient_id=holder.patient.id,
        professional_id=pro.pk,
        access=access,
        granted_at=datetime.now(UTC),
    )


async def vaccinate(client: httpx.AsyncClient, token: str | None, **fields: Any) -> GraphQLResult:
    return await gql(
        client, VACCINATE, {"input": {"vaccine": "DTP", "date": YESTERDAY, **fields}}, token=token
    )


async def update(client: httpx.AsyncClient, token: str | None, **fields: Any) -> GraphQLResult:
    return await gql(client, UPDATE, {"input": fields}, token=token)


# --- recordVaccination --------------------------------------------------------------------


async def test_the_holder_records_a_vaccination(client: httpx.AsyncClient) -> None:
    alice = await make_patient()
    nurse = await make_professional("Petit")

    result = await vaccinate(
        client,
        alice.token,
        vaccine="INFLUENZA",
        doseNumber=2,
        lotNumber="  AB-123 ",
        professionalId=nurse.id,
    )

    vaccination = result.ok()["recordVaccination"]["vaccination"]
    assert vaccination == {
        "id": vaccination["id"],
        "vaccine": "INFLUENZA",
        "date": YESTERDAY,
        "doseNumber": 2,
        "lotNumber": "AB-123",
        "professional": {"id": nurse.id},
    }
    carnet = await gql(
        client, "{ viewer { ... on Patient { vaccinations { id vaccine } } } }", token=alice.token
    )
    assert carnet.ok()["viewer"]["vaccinations"] == [
        {"id": vaccination["id"], "vaccine": "INFLUENZA"}
    ]
    assert await events(alice) == []  # the holder's own acts are not access events


BAD_VACCINATIONS: list[tuple[dict[str, Any], str]] = [
    ({"date": (date.today() + timedelta(days=2)).isoformat()}, "date"),
    ({"date": "1879-12-31"}, "date"),
    ({"date": "1979-01-01"}, "date"),  # before Alice was born (1980-03-14)
    ({"doseNumber": 0}, "doseNumber"),
    ({"doseNumber": -1}, "doseNumber"),
    ({"doseNumber": 21}, "doseNumber"),
    ({"lotNumber": "L" * 65}, "lotNumber"),
    ({"professionalId": "not-an-id"}, "professionalId"),
    ({"professionalId": encode("Professional", uuid4())}, "professionalId"),
    ({"professionalId": encode("Patient", uuid4())}, "professionalId"),
]


async def test_bad_vaccination_input_is_refused(client: httpx.AsyncClient) -> None:
    alice = await make_patient(birth_date=date(1980, 3, 14))
    before = await snapshot()

    for fields, field in BAD_VACCINATIONS:
        result = await vaccinate(client, alice.token, **fields)

        assert result.codes == ["BAD_USER_INPUT"], fields
        assert result.errors[0]["extensions"]["field"] == field, fields
        assert await snapshot() == before, fields


async def test_the_bounds_are_accepted(client: httpx.AsyncClient) -> None:
    alice = await make_patient(birth_date=date(1980, 3, 14))

    for fields in ({"doseNumber": 1, "date": "1980-03-14"}, {"doseNumber": 20}):
        result = await vaccinate(client, alice.token, lotNumber="L" * 64, **fields)

        vaccination = result.ok()["recordVaccination"]["vaccination"]
        assert vaccination["doseNumber"] == fields["doseNumber"]
        assert vaccination["lotNumber"] == "L" * 64


async def test_a_read_write_professional_records_as_themselves(client: httpx.AsyncClient) -> None:
    alice = await make_patient()
    doc = await make_professional()
    await consent(alice, doc, ConsentAccess.READ_WRITE)

    result = await vaccinate(client, doc.token, patientId=alice.id, vaccine="ZOSTER")

    vaccination = result.ok()["recordVaccination"]["vaccination"]
    assert vaccination["professional"] == {"id": doc.id}
    row = await Vaccination.get(patient_id=alice.patient.id)
    assert row.professional_id == doc.pk
    assert await events(alice) == [("WRITE", "CONSENT", str(doc.pk))]


async def test_a_professional_may_name_who_gave_the_dose(client: httpx.AsyncClient) -> None:
    alice = await make_patient()
    doc = await make_professional()
    nurse = await make_professional("Petit")
    await consent(alice, doc, ConsentAccess.READ_WRITE)

    result = await vaccinate(client, doc.token, patientId=alice.id, professionalId=nurse.id)

    assert result.ok()["recordVaccination"]["vaccination"]["professional"] == {"id": nurse.id}


async def test_a_representative_records_for_a_minor(client: httpx.AsyncClient) -> None:
    mother = await make_patient("Claire")
    theo = await make_minor(mother)

    result = await vaccinate(client, mother.token, patientId=theo.id, vaccine="MMR")

    result.ok()
    assert await Vaccination.filter(patient_id=theo.patient.id).count() == 1
    assert await Vaccination.filter(patient_id=mother.patient.id).count() == 0
    assert await events(theo) == [("WRITE", "REPRESENTATIVE", str(mother.patient.id))]


# --- who may write the record -------------------------------------------------------------

WRITES: list[tuple[str, dict[str, Any]]] = [
    (VACCINATE, {"vaccine": "DTP", "date": YESTERDAY}),
    (SCREEN, {"kind": "COLORECTAL", "date": YESTERDAY}),
    (UPDATE, {"allergies": ["Pollen"]}),
]
CASES = [
    ("READ consent", "FORBIDDEN", None),
    ("treating doctor", "FORBIDDEN", None),
    ("emergency", "FORBIDDEN", None),
    ("blocked READ_WRITE", "NOT_FOUND", None),
    ("no basis", "NOT_FOUND", None),
    ("no patientId", "BAD_USER_INPUT", "patientId"),
    ("operator", "FORBIDDEN", None),
    ("anonymous", "UNAUTHENTICATED", None),
    ("another patient", "NOT_FOUND", None),
    ("representative of another", "NOT_FOUND", None),
]


@pytest.mark.parametrize(("case", "code", "field"), CASES)
async def test_who_may_not_write_the_record(
    client: httpx.AsyncClient, case: str, code: str, field: str | None
) -> None:
    alice = await make_patient()
    target = alice
    doc = await make_professional()
    token: str | None = doc.token
    now = datetime.now(UTC)
    if case == "READ consent":
        await consent(alice, doc, ConsentAccess.READ)
    elif case == "treating doctor":
        await Patient.filter(id=alice.patient.id).update(treating_doctor_id=doc.pk)
    elif case == "emergency":
        await EmergencyAccess.create(
            patient_id=alice.patient.id,
            professional_id=doc.pk,
            reason="Coma",
            opened_at=now,
            expires_at=now + timedelta(hours=1),
        )
    elif case == "blocked READ_WRITE":
        await consent(alice, doc, ConsentAccess.READ_WRITE)
        await Block.create(patient_id=alice.patient.id, professional_id=doc.pk)
    elif case == "no patientId":
        await consent(alice, doc, ConsentAccess.READ_WRITE)
    elif case == "operator":
        token = (await make_operator()).token
    elif case == "anonymous":
        token = None
    elif case == "another patient":
        token = (await make_patient("Bob")).token
    elif case == "representative of another":
        target = await make_minor(await make_patient("Claire"))
        token = (await make_patient("Bob")).token
    before = await snapshot()

    for mutation, fields in WRITES:
        variables = dict(fields)
        if case != "no patientId":
            variables["patientId"] = target.id

        result = await gql(client, mutation, {"input": variables}, token=token)

        assert_denied(result, code, field)
        assert await snapshot() == before


# --- recordScreening ----------------------------------------------------------------------


async def test_a_screening_is_recorded(client: httpx.AsyncClient) -> None:
    alice = await make_patient()
    doc = await make_professional()
    await consent(alice, doc, ConsentAccess.READ_WRITE)

    mine = await gql(
        client,
        SCREEN,
        {"input": {"kind": "CERVICAL_HPV", "date": YESTERDAY, "result": "  Négatif "}},
        token=alice.token,
    )
    theirs = await gql(
        client,
        SCREEN,
        {"input": {"kind": "BREAST", "date": "2020-05-04", "patientId": alice.id}},
        token=doc.token,
    )

    screening = mine.ok()["recordScreening"]["screening"]
    assert screening == {
        "id": screening["id"],
        "kind": "CERVICAL_HPV",
        "date": YESTERDAY,
        "result": "Négatif",
    }
    assert theirs.ok()["recordScreening"]["screening"]["result"] is None
    assert await Screening.filter(patient_id=alice.patient.id).count() == 2
    assert await events(alice) == [("WRITE", "CONSENT", str(doc.pk))]


async def test_bad_screening_input_is_refused(client: httpx.AsyncClient) -> None:
    alice = await make_patient(birth_date=date(1980, 3, 14))
    before = await snapshot()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"date": (date.today() + timedelta(days=2)).isoformat()}, "date"),
        ({"date": "1979-12-31"}, "date"),
        ({"result": "r" * 501}, "result"),
    ]

    for fields, field in cases:
        result = await gql(
            client,
            SCREEN,
            {"input": {"kind": "COLORECTAL", "date": YESTERDAY, **fields}},
            token=alice.token,
        )

        assert_denied(result, "BAD_USER_INPUT", field)
        assert await snapshot() == before


# --- updateHealthProfile ------------------------------------------------------------------


async def test_a_partial_update_keeps_the_other_sections(client: httpx.AsyncClient) -> None:
    alice = await make_patient()
    first = await update(
        client,
        alice.token,
        allergies=["  Pénicilline ", "", "Pollen  de  bouleau"],
        treatments=["Levothyrox 75 µg"],
        measurements={"heightCm": 168, "weightKg": 61.5, "measuredOn": YESTERDAY},
        trustedPerson={"name": " Marc  Lefebvre ", "phone": "0601020304", "relationship": "Frère"},
        advanceDirectives="Pas d'acharnement.",
    )
    assert first.ok()["updateHealthProfile"]["healthProfile"] == {
        "allergies": ["Pénicilline", "Pollen de bouleau"],
        "treatments": ["Levothyrox 75 µg"],
        "history": [],
        "advanceDirectives": "Pas d'acharnement.",
        "measurements": {
            "heightCm": 168.0,
            "weightKg": 61.5,
            "systolicMmhg": None,
            "diastolicMmhg": None,
            "measuredOn": YESTERDAY,
        },
        "trustedPerson": {"name": "Marc Lefebvre", "phone": "0601020304", "relationship": "Frère"},
    }

    second = await update(client, alice.token, history=["Appendicectomie (2003)"])

    profile = second.ok()["updateHealthProfile"]["healthProfile"]
    assert profile == {
        **first.ok()["updateHealthProfile"]["healthProfile"],
        "history": ["Appendicectomie (2003)"],
    }
    read = await gql(
        client,
        "{ viewer { ... on Patient { healthProfile { " + PROFILE + " } } } }",
        token=alice.token,
    )
    assert read.ok()["viewer"]["healthProfile"] == profile
    assert await HealthProfile.filter(patient_id=alice.patient.id).count() == 1


async def test_null_clears_a_section(client: httpx.AsyncClient) -> None:
    alice = await make_patient()
    await update(
        client,
        alice.token,
        allergies=["Pollen"],
        treatments=["Ventoline"],
        history=["Asthme"],
        measurements={"heightCm": 170},
        trustedPerson={"name": "Marc"},
        advanceDirectives="Texte",
    )

    result = await update(
        client,
        alice.token,
        allergies=None,
        treatments=None,
        history=None,
        measurements=None,
        trustedPerson=None,
        advanceDirectives=None,
    )

    assert result.ok()["updateHealthProfile"]["healthProfile"] == EMPTY_PROFILE


async def test_an_empty_profile_reads_as_empty(client: httpx.AsyncClient) -> None:
    alice = await make_patient()

    result = await gql(
        client,
        "{ viewer { ... on Patient { healthProfile { " + PROFILE + " } } } }",
        token=alice.token,
    )

    assert result.ok()["viewer"]["healthProfile"] == EMPTY_PROFILE


BAD_PROFILES: list[tuple[dict[str, Any], str]] = [
    ({"measurements": {"heightCm": 19.9}}, "measurements.heightCm"),
    ({"measurements": {"heightCm": 260.1}}, "measurements.heightCm"),
    ({"measurements": {"weightKg": 0.29}}, "measurements.weightKg"),
    ({"measurements": {"weightKg": 400.1}}, "measurements.weightKg"),
    ({"measurements": {"systolicMmhg": 49}}, "measurements.systolicMmhg"),
    ({"measurements": {"systolicMmhg": 301}}, "measurements.systolicMmhg"),
    ({"measurements": {"diastolicMmhg": 19}}, "measurements.diastolicMmhg"),
    ({"measurements": {"diastolicMmhg": 201}}, "measurements.diastolicMmhg"),
    (
        {"measurements": {"systolicMmhg": 80, "diastolicMmhg": 120}},
        "measurements.diastolicMmhg",
    ),
    (
        {"measurements": {"measuredOn": (date.today() + timedelta(days=2)).isoformat()}},
        "measurements.measuredOn",
    ),
    ({"trustedPerson": {"name": "   "}}, "trustedPerson.name"),
    ({"trustedPerson": {"name": "n" * 201}}, "trustedPerson.name"),
    ({"allergies": [f"a{i}" for i in range(101)]}, "allergies"),
    ({"treatments": ["t" * 501]}, "treatments"),
    ({"history": ["h" * 501]}, "history"),
    ({"advanceDirectives": "d" * 10_001}, "advanceDirectives"),
]


async def test_bad_profile_input_is_refused(client: httpx.AsyncClient) -> None:
    alice = await make_patient()
    await update(client, alice.token, allergies=["Pollen"])
    before = await snapshot()

    for fields, field in BAD_PROFILES:
        result = await update(client, alice.token, **fields)

        assert result.codes == ["BAD_USER_INPUT"], fields
        assert result.errors[0]["extensions"]["field"] == field, fields
        assert await snapshot() == before, fields


async def test_measurements_at_the_bounds_are_accepted(client: httpx.AsyncClient) -> None:
    alice = await make_patient()

    result = await update(
        client,
        alice.token,
        measurements={
            "heightCm": 260,
            "weightKg": 0.3,
            "systolicMmhg": 300,
            "diastolicMmhg": 200,
            "measuredOn": date.today().isoformat(),
        },
    )

    assert result.ok()["updateHealthProfile"]["healthProfile"]["measurements"] == {
        "heightCm": 260.0,
        "weightKg": 0.3,
        "systolicMmhg": 300,
        "diastolicMmhg": 200,
        "measuredOn": date.today().isoformat(),
    }


async def test_a_read_write_professional_updates_the_profile(client: httpx.AsyncClient) -> None:
    alice = await make_patient()
    doc = await make_professional()
    await consent(alice, doc, ConsentAccess.READ_WRITE)
    await update(client, alice.token, allergies=["Pollen"])

    result = await update(
        client, doc.token, patientId=alice.id, treatments=["Amoxicilline 1 g x3/j"]
    )

    profile = result.ok()["updateHealthProfile"]["healthProfile"]
    assert profile["allergies"] == ["Pollen"]
    assert profile["treatments"] == ["Amoxicilline 1 g x3/j"]
    assert await events(alice) == [("WRITE", "CONSENT", str(doc.pk))]


# --- reads: one READ event per request ----------------------------------------------------

READ_ALL = """
query($id: ID!) {
  patient(id: $id) {
    vaccinations { vaccine }
    screenings { kind }
    healthProfile { allergies }
    treatingDoctor { id }
    documents { totalCount }
  }
  again: patient(id: $id) { vaccinations { date } healthProfile { treatments } }
}"""


async def test_a_consented_read_of_many_fields_is_one_event_per_request(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    doc = await make_professional()
    await consent(alice, doc, ConsentAccess.READ)
    await vaccinate(client, alice.token)
    await update(client, alice.token, allergies=["Pollen"])
    vaccination = await Vaccination.get(patient_id=alice.patient.id)

    first = await gql(client, READ_ALL, {"id": alice.id}, token=doc.token)

    assert first.ok()["patient"] == {
        "vaccinations": [{"vaccine": "DTP"}],
        "screenings": [],
        "healthProfile": {"allergies": ["Pollen"]},
        "treatingDoctor": None,
        "documents": {"totalCount": 0},
    }
    assert await events(alice) == [("READ", "CONSENT", str(doc.pk))]
    rows = await AccessEvent.filter(patient_id=alice.patient.id)
    assert rows[0].document_id is None

    node = await gql(
        client,
        "query($id: ID!) { node(id: $id) { ... on Vaccination { vaccine } } }",
        {"id": encode("Vaccination", vaccination.id)},
        token=doc.token,
    )

    assert node.ok() == {"node": {"vaccine": "DTP"}}
    assert await events(alice) == [("READ", "CONSENT", str(doc.pk))] * 2
    assert len({row.request_id for row in await AccessEvent.all()}) == 2


async def test_only_the_health_profile_read_is_an_event_too(client: httpx.AsyncClient) -> None:
    alice = await make_patient()
    doc = await make_professional()
    await consent(alice, doc, ConsentAccess.READ)

    result = await gql(
        client,
        "query($id: ID!) { patient(id: $id) { healthProfile { history } } }",
        {"id": alice.id},
        token=doc.token,
    )

    assert result.ok() == {"patient": {"healthProfile": {"history": []}}}
    assert await events(alice) == [("READ", "CONSENT", str(doc.pk))]


async def test_a_representative_read_is_logged_the_holders_is_not(
    client: httpx.AsyncClient,
) -> None:
    mother = await make_patient("Claire")
    theo = await make_minor(mother)
    query = "query($id: ID!) { patient(id: $id) { vaccinations { id } screenings { id } } }"

    for _ in range(2):
        (await gql(client, query, {"id": theo.id}, token=mother.token)).ok()
    (await gql(client, query, {"id": mother.id}, token=mother.token)).ok()

    assert await events(theo) == [("READ", "REPRESENTATIVE", str(mother.patient.id))] * 2
    assert await events(mother) == []


async def test_record_nodes_are_hidden_without_a_basis(client: httpx.AsyncClient) -> None:
    alice = await make_patient()
    stranger = await make_professional("Martin")
    await vaccinate(client, alice.token)
    await gql(client, SCREEN, {"input": {"kind": "BREAST", "date": YESTERDAY}}, token=alice.token)
    ids = [
        encode("Vaccination", (await Vaccination.get(patient_id=alice.patient.id)).id),
        encode("Screening", (await Screening.get(patient_id=alice.patient.id)).id),
    ]
    before = await snapshot()

    result = await gql(
        client,
        "query($ids: [ID!]!) { nodes(ids: $ids) { id } }",
        {"ids": ids},
        token=stranger.token,
    )

    assert result.data == {"nodes": [None, None]}
    assert await snapshot() == before
