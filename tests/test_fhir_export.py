"""GET /export/{patientId}.fhir.json: the whole space as one FHIR R4B Bundle, every resource
valid under `fhir.resources.R4B`, for the holder and the legal representatives only, itself
logged, and streamed."""

from __future__ import annotations

import base64
import hashlib
import json
import tracemalloc
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import date
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle
from starlette.applications import Starlette
from tortoise.backends.base.executor import EXECUTOR_CACHE

from api.app import create_app
from api.config import Settings
from models import fhir
from models.access import Actor, relations
from models.account import Role
from models.appointment import Appointment, AppointmentStatus
from models.audit import AccessAction, AccessBasis, AccessEvent
from models.base import paris_today, utcnow
from models.blobs import BlobStore
from models.consent import Block, Consent, ConsentAccess, EmergencyAccess
from models.document import Document, DocumentCategory
from models.message import Attachment, Conversation, Message
from models.patient import Patient, SpaceStatus
from models.record import Screening, ScreeningKind, Vaccination, VaccineCode
from resolvers.ids import decode_as, encode
from tests.catalogue_support import connect, register_app
from tests.factories import make_minor, make_operator, make_patient, make_professional
from tests.test_demo import demo, log_in, post, seeded_once  # noqa: F401 (fixtures)
from tests.test_documents import PDF, add, grant

DEMO_PASSWORD = "demo-password-2026"
VIEWER = "{ viewer { ... on Patient { id dependents { id firstName } } } }"


@pytest.fixture(autouse=True)
def fresh_query_cache() -> Iterator[None]:
    """The demo tests run SQLite in-process, whatever the suite runs on (tests/test_demo)."""
    EXECUTOR_CACHE.clear()
    yield
    EXECUTOR_CACHE.clear()


@asynccontextmanager
async def demo_api() -> AsyncIterator[tuple[httpx.AsyncClient, BlobStore]]:
    """The app on the demo's data directory (tests/test_demo `api`), and its blob store."""
    app = create_app(Settings.from_env())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.9", 4242))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http, app.state.services.blobs


async def export(client: httpx.AsyncClient, patient_id: str, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return await client.get(f"/export/{patient_id}.fhir.json", headers=headers)


def validated(response: httpx.Response) -> dict[str, Any]:
    """The Bundle, after checking it and every resource in it as FHIR R4B."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/fhir+json"
    assert response.headers["cache-control"] == "no-store"
    bundle: dict[str, Any] = json.loads(response.content)
    Bundle.model_validate(bundle)
    assert bundle["type"] == "collection"
    for entry in bundle["entry"]:
        resource = entry["resource"]
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        assert entry["fullUrl"] == f"urn:uuid:{resource['id']}"
    urls = [entry["fullUrl"] for entry in bundle["entry"]]
    assert len(urls) == len(set(urls))
    # every reference between entries resolves within the Bundle
    for reference in references(bundle):
        assert reference in urls, reference
    return bundle


def references(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        if isinstance(value.get("reference"), str):
            yield value["reference"]
        for item in value.values():
            yield from references(item)
    elif isinstance(value, list):
        for item in value:
            yield from references(item)


def of_type(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def codes(concept: dict[str, Any], system: str) -> list[str]:
    return [c["code"] for c in concept.get("coding", []) if c["system"] == system]


# --- the demo world, every space --------------------------------------------------------


async def test_each_demo_space_exports_as_valid_fhir_r4b_faithfully(demo: Path) -> None:  # noqa: F811
    # given the demo world: Jean, Camille, and her son Léo whom she represents
    async with demo_api() as (http, blobs):
        jean = await log_in(http, "jean@demo.espace-sante.localhost", DEMO_PASSWORD)
        camille = await log_in(http, "camille@demo.espace-sante.localhost", DEMO_PASSWORD)
        jean_id = (await post(http, {"query": VIEWER}, jean))["viewer"]["id"]
        camille_viewer = (await post(http, {"query": VIEWER}, camille))["viewer"]
        (leo,) = camille_viewer["dependents"]
        spaces = [(jean_id, jean), (camille_viewer["id"], camille), (leo["id"], camille)]

        # when each space is exported by its holder or representative
        bundles = [validated(await export(http, space, token)) for space, token in spaces]

        # then each Bundle is valid FHIR R4B and holds each row of its space, as what it is
        for (space, _), bundle in zip(spaces, bundles, strict=True):
            await faithful(bundle, decode_as(space, "Patient"), blobs)
        jean_pk = decode_as(jean_id, "Patient")
        (night,) = await EmergencyAccess.filter(patient_id=jean_pk)

    # and the demo world has every kind of record somewhere
    kinds = Counter(e["resource"]["resourceType"] for b in bundles for e in b["entry"])
    assert set(kinds) == {
        "Patient",
        "Practitioner",
        "DocumentReference",
        "Immunization",
        "Observation",
        "AllergyIntolerance",
        "Condition",
        "MedicationStatement",
        "Consent",
        "Appointment",
        "Communication",
        "AuditEvent",
    }
    # and Jean's night at the emergency department: its reason and period on the opening
    (opening,) = [
        r
        for r in of_type(bundles[0], "AuditEvent")
        if [c["code"] for c in r["subtype"]] == ["EMERGENCY_OPEN"]
    ]
    assert opening["purposeOfEvent"][0]["text"] == night.reason
    assert opening["period"] == {
        "start": fhir.instant(night.opened_at),
        "end": fhir.instant(night.expires_at),
    }
    assert codes(opening["purposeOfEvent"][0], fhir.TERMINOLOGY + "v3-ActReason") == ["ETREAT"]


async def faithful(bundle: dict[str, Any], pk: UUID, blobs: BlobStore) -> None:
    """Each row of the space is in the Bundle once, as what it is."""
    (patient,) = of_type(bundle, "Patient")
    assert patient["id"] == str(pk)
    row = await Patient.get(id=pk)
    assert patient["birthDate"] == row.birth_date.isoformat()
    assert patient["name"][0]["family"] == row.last_name
    # documents, with their bytes, inline, and FHIR's SHA-1 of them
    documents = {str(d.id): d for d in await Document.filter(patient_id=pk)}
    exported = [r for r in of_type(bundle, "DocumentReference") if r["id"] in documents]
    assert {r["id"] for r in exported} == set(documents)
    for resource in exported:
        document = documents[resource["id"]]
        attachment = resource["content"][0]["attachment"]
        data = base64.b64decode(attachment["data"])
        assert hashlib.sha256(data).hexdigest() == document.sha256
        assert data == await blobs.read(document.sha256)
        sha1 = hashlib.sha1(data, usedforsecurity=False).digest()
        assert attachment["hash"] == base64.b64encode(sha1).decode()
        assert (attachment["contentType"], attachment["size"]) == (
            document.mime_type,
            document.size,
        )
        loinc = codes(resource["type"], "http://loinc.org")
        assert loinc == [fhir.DOCUMENT_TYPES[document.category][0]]
    # the structured record
    vaccinations = {str(v.id): v for v in await Vaccination.filter(patient_id=pk)}
    immunizations = of_type(bundle, "Immunization")
    assert {r["id"] for r in immunizations} == set(vaccinations)
    for resource in immunizations:
        vaccine = vaccinations[resource["id"]].vaccine
        expected = [fhir.VACCINES[vaccine][0]] if vaccine in fhir.VACCINES else []
        assert codes(resource["vaccineCode"], fhir.ATC) == expected
    screenings = {str(s.id): s for s in await Screening.filter(patient_id=pk)}
    observed = {r["id"]: r for r in of_type(bundle, "Observation")}
    for pk_text, screening in screenings.items():
        assert codes(observed[pk_text]["code"], "http://loinc.org") == [
            fhir.SCREENINGS[screening.kind][0]
        ]
    # consents and blocks, appointments, messages with their attachments
    consent_ids = {str(c.id) for c in await Consent.filter(patient_id=pk)}
    consent_ids |= {str(b.id) for b in await Block.filter(patient_id=pk)}
    assert consent_ids <= {r["id"] for r in of_type(bundle, "Consent")}
    appointments = {str(a.id) for a in await Appointment.filter(patient_id=pk)}
    assert {r["id"] for r in of_type(bundle, "Appointment")} == appointments
    conversations = await Conversation.filter(patient_id=pk).values_list("id", flat=True)
    messages = await Message.filter(conversation_id__in=conversations)
    communications = {r["id"]: r for r in of_type(bundle, "Communication")}
    assert set(communications) == {str(m.id) for m in messages}
    for attachment_row in await Attachment.filter(message_id__in=[m.id for m in messages]):
        payload = communications[str(attachment_row.message_id)]["payload"]
        (inline,) = [
            p["contentAttachment"]
            for p in payload
            if p.get("contentAttachment", {}).get("title") == attachment_row.filename
        ]
        assert hashlib.sha256(base64.b64decode(inline["data"])).hexdigest() == attachment_row.sha256
    # the access log, the export itself included (an event of its own, before the Bundle)
    events = {str(e.id): e for e in await AccessEvent.filter(patient_id=pk)}
    audit = {r["id"]: r for r in of_type(bundle, "AuditEvent")}
    assert set(events) <= set(audit)
    exports = [e for e in events.values() if e.action is AccessAction.EXPORT]
    assert len(exports) == 1 and str(exports[0].id) in audit
    emergencies = {str(e.id) for e in await EmergencyAccess.filter(patient_id=pk)}
    assert set(audit) - set(events) <= emergencies  # only unmatched openings of their own


def test_every_code_of_the_domain_has_its_fhir_mapping() -> None:
    """A new category, kind, action or basis must be mapped before it can be exported."""
    assert set(fhir.DOCUMENT_TYPES) == set(DocumentCategory)
    assert set(fhir.SCREENINGS) == set(ScreeningKind)
    assert set(fhir.VACCINES) == set(VaccineCode) - {VaccineCode.OTHER}
    assert set(fhir.AUDIT_ACTIONS) == set(AccessAction)
    assert set(fhir.PURPOSES) == set(AccessBasis)
    assert set(fhir.APPOINTMENT_STATUS) == set(AppointmentStatus)


# --- who may export ---------------------------------------------------------------------


async def test_the_holder_exports_and_the_export_is_logged(client: httpx.AsyncClient) -> None:
    holder = await make_patient("Alice", "Lefebvre")
    doctor = await make_professional("Garnier")
    await grant(holder, doctor, ConsentAccess.READ_WRITE)
    document = await add(client, doctor.token, patientId=holder.id, title="Bilan")

    bundle = validated(await export(client, holder.id, holder.token))

    (event,) = await AccessEvent.filter(patient_id=holder.patient.id, action=AccessAction.EXPORT)
    assert (event.actor_id, event.basis, event.document_id) == (
        holder.patient.id,
        AccessBasis.HOLDER,
        None,
    )
    (reference,) = of_type(bundle, "DocumentReference")
    assert reference["id"] == str(decode_as(document, "Document"))
    assert reference["author"] == [
        {"reference": f"urn:uuid:{doctor.pk}", "display": "Paul Garnier"}
    ]
    (practitioner,) = of_type(bundle, "Practitioner")
    assert practitioner["id"] == str(doctor.pk)
    # the export's own event is in it, as an Export
    (own,) = [r for r in of_type(bundle, "AuditEvent") if r["id"] == str(event.id)]
    assert own["type"]["code"] == "110106"


async def test_a_representative_exports_a_minors_space_but_not_what_is_hidden_from_them(
    client: httpx.AsyncClient,
) -> None:
    # given a minor's dossier with a document a professional hid from representatives
    parent = await make_patient("Nadia", "Moreau")
    child = await make_minor(parent)
    doctor = await make_professional("Garnier")
    await grant(child, doctor, ConsentAccess.READ_WRITE)
    shown = await add(client, doctor.token, patientId=child.id, title="Vaccins")
    hidden = await add(
        client, doctor.token, patientId=child.id, title="Secret", hiddenFromRepresentatives=True
    )
    hidden_pk = str(decode_as(hidden, "Document"))

    bundle = validated(await export(client, child.id, parent.token))

    assert [r["id"] for r in of_type(bundle, "DocumentReference")] == [
        str(decode_as(shown, "Document"))
    ]
    assert hidden_pk not in json.dumps(bundle)  # nor any trace of it in the log
    assert "Secret" not in json.dumps(bundle)
    (event,) = await AccessEvent.filter(patient_id=child.patient.id, action=AccessAction.EXPORT)
    assert (event.actor_id, event.basis) == (parent.patient.id, AccessBasis.REPRESENTATIVE)


async def test_nobody_else_exports_a_space(client: httpx.AsyncClient) -> None:
    # given a space that a treating doctor, a consenting one, an operator and another
    # patient all know of
    holder = await make_patient("Alice", "Lefebvre")
    treating = await make_professional("Traitant")
    consented = await make_professional("Garnier")
    await grant(holder, consented, ConsentAccess.READ_WRITE)
    await Patient.filter(id=holder.patient.id).update(treating_doctor_id=treating.pk)
    other = await make_patient("Bruno", "Moreau")
    operator = await make_operator()
    # and a partner app the holder granted every reading scope
    scopes = ["IDENTITY_READ", "DOCUMENTS_READ", "HEALTH_PROFILE_READ", "VACCINATIONS_READ"]
    app = await register_app(client, operator.token, scopes=scopes)
    app_token = (await connect(client, str(holder.token), app, scopes=scopes))["access_token"]
    before = await AccessEvent.all().count()

    answers = [
        await export(client, holder.id, token)
        for token in (treating.token, consented.token, operator.token, other.token, app_token)
    ]
    anonymous = await export(client, holder.id, None)
    unknown = await export(client, encode("Patient", UUID(int=7)), holder.token)
    malformed = await export(client, "not-an-id", holder.token)

    # then each gets nothing, as for an id that does not exist, and nothing is logged
    for answer in [*answers, unknown, malformed]:
        assert answer.status_code == 404
        assert answer.json() == {
            "errors": [{"message": "Not found.", "extensions": {"code": "NOT_FOUND"}}]
        }
    assert anonymous.status_code == 401
    assert anonymous.json()["errors"][0]["extensions"] == {"code": "UNAUTHENTICATED"}
    assert await AccessEvent.all().count() == before


async def test_a_closed_space_is_archived_not_exported(client: httpx.AsyncClient) -> None:
    holder = await make_patient("Alice", "Lefebvre")
    await Patient.filter(id=holder.patient.id).update(status=SpaceStatus.CLOSED)
    before = await AccessEvent.all().count()

    answer = await export(client, holder.id, holder.token)

    assert answer.status_code == 403
    assert answer.json()["errors"][0] == {
        "message": "This space is closed.",
        "extensions": {"code": "FORBIDDEN"},
    }
    assert await AccessEvent.all().count() == before


# --- streamed ---------------------------------------------------------------------------


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Starlette]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


async def test_a_large_space_never_sits_whole_in_memory(app: Starlette) -> None:
    # given a space of 16 MB of documents
    transport = httpx.ASGITransport(app=app, client=("127.0.0.9", 4242))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        holder = await make_patient("Alice", "Lefebvre")
        size = 4 * 1024 * 1024
        for n in range(4):
            data = PDF[:-6] + bytes([n]) * size + b"%%EOF\n"
            await add(
                client, holder.token, data, title=f"Scanner {n}", date=date.today().isoformat()
            )
    services = app.state.services
    actor = Actor(
        role=Role.PATIENT, patient_id=holder.patient.id, patient_status=SpaceStatus.ACTIVE
    )
    now = utcnow()
    relation = (await relations(actor, [holder.patient.id], paris_today(now), now))[
        holder.patient.id
    ]
    export_ = fhir.Export(
        actor=actor,
        relation=relation,
        blobs=services.blobs,
        vault=services.vault,
        now=now,
        today=paris_today(now),
    )

    # when it is written out, the pieces handed on one at a time
    tracemalloc.start()
    try:
        total = pieces = largest = 0
        digest = hashlib.sha256()
        async for piece in export_.stream():
            total += len(piece)
            pieces += 1
            largest = max(largest, len(piece))
            digest.update(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # then the 21 MB of JSON went through in pieces, never more than a few of them held
    assert total > 4 * size * 4 // 3
    assert pieces > 100
    assert largest < 256 * 1024
    assert peak < 4 * 1024 * 1024, f"peak {peak} bytes"
