"""Partner apps that write: documents added under DOCUMENTS_WRITE (authored by the app),
platform appointments changed only by the app that booked them, a reused authorisation code
revoking what it gave, and run-jobs purging dead codes and tokens. Every refusal is checked
to change nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from api.config import Settings
from models.appointment import Appointment
from models.audit import AccessAction, AccessBasis, AccessEvent, ActorRole
from models.base import utcnow
from models.catalogue import AppGrant, AppToken, AuthorizationCode, IssuedTokens, exchange_code
from models.document import Document
from models.errors import Conflict
from models.persisted import sha256_hex
from resolvers.ids import decode_as
from tests.blob_support import cli
from tests.catalogue_support import (
    App,
    Service,
    catalogue_state,
    code_of,
    connect,
    exchange,
    grant,
    pkce,
    register_app,
    run,
    service,
    token_request,
)
from tests.factories import Person, make_operator, make_patient, make_professional
from tests.graphql import GraphQLResult, gql

__all__ = ["service"]

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
ADD = (
    "mutation Add($input: AddDocumentInput!) { addDocument(input: $input) { document { id "
    "title author { __typename ... on PartnerApp { name } } } } }"
)
ME = "query Me { viewer { ... on PartnerApp { actingFor { id } } } }"
BOOK = (
    "mutation Book($input: CreateAppointmentInput!) { createAppointment(input: $input) "
    "{ appointment { id source } } }"
)
MOVE = (
    "mutation Move($input: UpdateAppointmentInput!) { updateAppointment(input: $input) "
    "{ appointment { id title } } }"
)
CANCEL = (
    "mutation Cancel($input: CancelAppointmentInput!) { cancelAppointment(input: $input) "
    "{ appointment { id status } } }"
)
DOSSIER = """query($id: ID!) { patient(id: $id) { documents(first: 10) {
  edges { node { title author { __typename ... on PartnerApp { name } } } } } } }"""
HIDE = """mutation($id: ID!) {
  setDocumentHidden(input: {documentId: $id, hidden: true}) { document { id } } }"""
CONSENT = (
    """mutation($input: GrantConsentInput!) { grantConsent(input: $input) { consent { id } } }"""
)


async def _app(
    service: Service,
    *,
    scopes: list[str],
    granted: list[str] | None = None,
    name: str = "Carnet Connecté",
    documents: dict[str, str] | None = None,
    patient: Person | None = None,
) -> tuple[App, Person, dict[str, Any]]:
    operator = await make_operator()
    app = await register_app(
        service.http,
        operator.token,
        scopes=scopes,
        documents=documents or {"add": ADD, "me": ME},
        name=name,
    )
    patient = patient or await make_patient("Camille", "Durand")
    assert patient.token is not None
    tokens = await connect(service.http, patient.token, app, scopes=granted or scopes)
    return app, patient, tokens


async def _upload(http: httpx.AsyncClient, token: str, app: App, **fields: Any) -> GraphQLResult:
    """addDocument as an app sends it: a multipart upload naming its registered document by
    hash (it may send no text)."""
    variables = {"input": {"title": "Relevé de tension", "category": "OTHER", **fields}}
    variables["input"]["file"] = None
    operations = {
        "variables": variables,
        "extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha256_hex(ADD)}},
    }
    response = await http.post(
        "/graphql",
        data={
            "operations": json.dumps(operations),
            "map": json.dumps({"0": ["variables.input.file"]}),
        },
        files={"0": ("releve.pdf", PDF, "application/pdf")},
        headers={"Authorization": f"Bearer {token}", "Apollo-Require-Preflight": "true"},
    )
    return GraphQLResult(response)


async def _dossier_state() -> tuple[Any, ...]:
    documents = await Document.all().order_by("id").values_list("id", "author_app_id")
    events = await AccessEvent.all().order_by("id").values_list("id", "action", "basis")
    return (documents, events, await catalogue_state())


# --- documents --------------------------------------------------------------------------


async def test_an_app_with_documents_write_adds_a_document_it_authors(service: Service) -> None:
    # given an app granted DOCUMENTS_WRITE, and a professional under a READ consent
    app, patient, tokens = await _app(service, scopes=["DOCUMENTS_WRITE"])
    doctor = await make_professional()
    assert patient.token is not None
    await gql(
        service.http,
        CONSENT,
        {"input": {"professionalId": doctor.id, "access": "READ"}},
        token=patient.token,
    )
    before = await AccessEvent.filter(action=AccessAction.WRITE).count()

    # when the app adds a document to its patient's dossier
    added = await _upload(service.http, tokens["access_token"], app)

    # then it is stored in that dossier, authored by the app, with the app's WRITE event
    document = added.ok()["addDocument"]["document"]
    assert document["title"] == "Relevé de tension"
    assert document["author"] == {"__typename": "PartnerApp", "name": "Carnet Connecté"}
    row = await Document.get(id=decode_as(document["id"], "Document"))
    app_pk = decode_as(app.id, "PartnerApp")
    assert (row.patient_id, row.author_app_id) == (patient.patient.id, app_pk)
    assert (row.author_patient_id, row.author_professional_id) == (None, None)
    writes = await AccessEvent.filter(action=AccessAction.WRITE).order_by("-seq")
    assert len(writes) == before + 1
    event = writes[0]
    assert (event.patient_id, event.actor_id, event.actor_role, event.basis) == (
        patient.patient.id,
        app_pk,
        ActorRole.PARTNER_APP,
        AccessBasis.APP,
    )
    assert event.document_id == row.id

    # and it follows the patient's rules: the holder and the consented professional see it,
    # with the app as its author, until the holder hides it from professionals
    expected = [
        {
            "node": {
                "title": "Relevé de tension",
                "author": {"__typename": "PartnerApp", "name": "Carnet Connecté"},
            }
        }
    ]
    own = await gql(service.http, DOSSIER, {"id": patient.id}, token=patient.token)
    seen = await gql(service.http, DOSSIER, {"id": patient.id}, token=doctor.token)
    assert own.ok()["patient"]["documents"]["edges"] == expected
    assert seen.ok()["patient"]["documents"]["edges"] == expected
    await gql(service.http, HIDE, {"id": document["id"]}, token=patient.token)
    hidden = await gql(service.http, DOSSIER, {"id": patient.id}, token=doctor.token)
    assert hidden.ok()["patient"]["documents"]["edges"] == []


async def test_an_app_without_documents_write_adds_nothing(service: Service) -> None:
    # given an app that may ask for DOCUMENTS_WRITE, granted DOCUMENTS_READ only
    app, patient, tokens = await _app(
        service, scopes=["DOCUMENTS_READ", "DOCUMENTS_WRITE"], granted=["DOCUMENTS_READ"]
    )
    before = await _dossier_state()

    # when it adds a document
    refused = await _upload(service.http, tokens["access_token"], app)

    # then it is refused, and nothing is stored nor logged
    assert refused.codes == ["FORBIDDEN"]
    assert await _dossier_state() == before

    # and once the patient grants it DOCUMENTS_WRITE, the same request adds the document
    assert patient.token is not None
    writer = await connect(
        service.http, patient.token, app, scopes=["DOCUMENTS_READ", "DOCUMENTS_WRITE"]
    )
    added = await _upload(service.http, writer["access_token"], app)
    assert added.ok()["addDocument"]["document"]["author"]["__typename"] == "PartnerApp"
    assert await Document.filter(patient_id=patient.patient.id).count() == 1


async def test_an_app_never_adds_to_another_patient(service: Service) -> None:
    # given an app granted DOCUMENTS_WRITE by one patient, and another patient
    app, patient, tokens = await _app(service, scopes=["DOCUMENTS_WRITE"])
    other = await make_patient("Louis", "Martin")
    before = await _dossier_state()

    # when it names the other patient
    refused = await _upload(service.http, tokens["access_token"], app, patientId=other.id)

    # then that patient is not found, and nothing changes
    assert refused.codes == ["NOT_FOUND"]
    assert await _dossier_state() == before
    assert await Document.filter(patient_id=other.patient.id).count() == 0

    # while naming its own patient adds to that dossier
    own = await _upload(service.http, tokens["access_token"], app, patientId=patient.id)
    assert own.ok()["addDocument"]["document"]["title"] == "Relevé de tension"
    assert await Document.filter(patient_id=patient.patient.id).count() == 1


# --- platform appointments --------------------------------------------------------------


async def test_a_platform_moves_and_cancels_only_what_it_booked_itself(service: Service) -> None:
    # given two platforms granted by the same patient, and an appointment the first booked
    documents = {"book": BOOK, "move": MOVE, "cancel": CANCEL}
    first, patient, first_tokens = await _app(
        service, scopes=["APPOINTMENTS_WRITE"], name="Plateforme A", documents=documents
    )
    second, _, second_tokens = await _app(
        service,
        scopes=["APPOINTMENTS_READ", "APPOINTMENTS_WRITE"],
        name="Plateforme B",
        documents=documents,
        patient=patient,
    )
    writer_only, _, writer_tokens = await _app(
        service,
        scopes=["APPOINTMENTS_WRITE"],
        name="Plateforme C",
        documents=documents,
        patient=patient,
    )
    start = utcnow().replace(microsecond=0) + timedelta(days=4)
    slot = {"startsAt": start.isoformat(), "endsAt": (start + timedelta(minutes=30)).isoformat()}
    booked = await run(
        service.http,
        first_tokens["access_token"],
        first.documents["book"],
        {"input": {"title": "Kiné", **slot}},
    )
    appointment_id = booked.ok()["createAppointment"]["appointment"]["id"]
    row = await Appointment.get(id=decode_as(appointment_id, "Appointment"))
    assert row.app_id == decode_as(first.id, "PartnerApp")
    before = (await _dossier_state(), await Appointment.all().values_list("id", "title", "status"))

    # when the other platforms move or cancel it
    moved = await run(
        service.http,
        second_tokens["access_token"],
        second.documents["move"],
        {"input": {"appointmentId": appointment_id, "title": "Autre"}},
    )
    cancelled = await run(
        service.http,
        second_tokens["access_token"],
        second.documents["cancel"],
        {"input": {"appointmentId": appointment_id}},
    )
    blind = await run(
        service.http,
        writer_tokens["access_token"],
        writer_only.documents["cancel"],
        {"input": {"appointmentId": appointment_id}},
    )

    # then the one that reads the agenda is forbidden, the other does not even find it, and
    # nothing changes
    assert moved.codes == ["FORBIDDEN"]
    assert cancelled.codes == ["FORBIDDEN"]
    assert blind.codes == ["NOT_FOUND"]
    after = (await _dossier_state(), await Appointment.all().values_list("id", "title", "status"))
    assert after == before

    # and the platform that booked it still moves and cancels it
    own_move = await run(
        service.http,
        first_tokens["access_token"],
        first.documents["move"],
        {"input": {"appointmentId": appointment_id, "title": "Kiné (déplacé)"}},
    )
    own_cancel = await run(
        service.http,
        first_tokens["access_token"],
        first.documents["cancel"],
        {"input": {"appointmentId": appointment_id}},
    )
    assert own_move.ok()["updateAppointment"]["appointment"]["title"] == "Kiné (déplacé)"
    assert own_cancel.ok()["cancelAppointment"]["appointment"]["status"] == "CANCELLED"


# --- a reused authorisation code --------------------------------------------------------


async def test_a_reused_code_revokes_the_tokens_already_issued_from_it(service: Service) -> None:
    # given a code exchanged once, and its refresh token rotated once
    operator = await make_operator()
    app = await register_app(
        service.http, operator.token, scopes=["IDENTITY_READ"], documents={"me": ME}
    )
    patient = await make_patient()
    assert patient.token is not None
    verifier, challenge = pkce()
    granted = await grant(
        service.http, patient.token, app, scopes=["IDENTITY_READ"], challenge=challenge
    )
    code = code_of(granted.ok()["grantAppAccess"]["redirectTo"])
    first = (await exchange(service.http, app, code, verifier)).json()
    rotated = await token_request(
        service.http,
        app,
        {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
    )
    latest = rotated.json()
    assert (await run(service.http, latest["access_token"], app.documents["me"])).ok()

    # when the code comes back
    reused = await exchange(service.http, app, code, verifier)

    # then it is refused, and every token issued from it is revoked with its grant
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    assert await AppToken.filter(revoked_at=None).count() == 0
    assert await AppGrant.filter(revoked_at=None).count() == 0
    refused = await run(service.http, latest["access_token"], app.documents["me"])
    assert refused.codes == ["UNAUTHENTICATED"]
    refresh = await token_request(
        service.http,
        app,
        {"grant_type": "refresh_token", "refresh_token": latest["refresh_token"]},
    )
    assert refresh.json()["error"] == "invalid_grant"


async def test_a_code_reused_while_it_is_being_exchanged_revokes_in_the_refusal(
    service: Service,
) -> None:
    # given a code whose exchange committed while a second one was deciding
    operator = await make_operator()
    app = await register_app(service.http, operator.token, scopes=["IDENTITY_READ"])
    patient = await make_patient()
    assert patient.token is not None
    verifier, challenge = pkce()
    granted = await grant(
        service.http, patient.token, app, scopes=["IDENTITY_READ"], challenge=challenge
    )
    code = code_of(granted.ok()["grantAppAccess"]["redirectTo"])
    assert (await exchange(service.http, app, code, verifier)).status_code == 200
    row = await AuthorizationCode.get()

    # when the second exchange is written (its claim on the code then fails)
    vault = service.app.state.services.vault
    issued = IssuedTokens("at.second", "rt.second", ["IDENTITY_READ"])
    try:
        await exchange_code(row.id, issued, vault=vault, now=utcnow())
        raise AssertionError("the second exchange was accepted")
    except Conflict:
        pass

    # then the grant of the first is revoked in that refusal, and no second grant exists
    assert await AppGrant.all().values_list("revoked_at", flat=True) != [None]
    assert await AppGrant.all().count() == 1
    assert await AppToken.filter(revoked_at=None).count() == 0
    assert await AppToken.all().count() == 1


# --- purge ------------------------------------------------------------------------------


async def test_run_jobs_deletes_expired_codes_and_tokens_and_those_of_ended_grants(
    service: Service, settings: Settings
) -> None:
    # given a live grant whose token is rotated, an ended grant, and a code never exchanged
    operator = await make_operator()
    app = await register_app(
        service.http, operator.token, scopes=["IDENTITY_READ"], documents={"me": ME}
    )
    live_patient = await make_patient("Inès", "Roux")
    ended_patient = await make_patient("Marc", "Petit")
    assert live_patient.token is not None and ended_patient.token is not None
    live = await connect(service.http, live_patient.token, app, scopes=["IDENTITY_READ"])
    latest = (
        await token_request(
            service.http,
            app,
            {"grant_type": "refresh_token", "refresh_token": live["refresh_token"]},
        )
    ).json()
    await connect(service.http, ended_patient.token, app, scopes=["IDENTITY_READ"])
    revoke = "mutation($id: ID!) { revokeAppAccess(input: {appId: $id}) { patient { id } } }"
    (await gql(service.http, revoke, {"id": app.id}, token=ended_patient.token)).ok()
    _, challenge = pkce()
    await grant(
        service.http, live_patient.token, app, scopes=["IDENTITY_READ"], challenge=challenge
    )
    assert await AuthorizationCode.all().count() == 3
    assert await AppToken.all().count() == 3

    # when run-jobs runs now: only the ended grant's token goes (the codes are not yet past
    # their keeping, the rotated token is kept to detect its reuse)
    soon = datetime.now(UTC).isoformat()
    now_run = await cli(settings, "run-jobs", "--now", soon)
    assert now_run[0] == 0
    assert "app_credentials_purged: 1" in now_run[1].splitlines()
    assert await AppToken.all().count() == 2
    assert (await run(service.http, latest["access_token"], app.documents["me"])).ok()

    # and two days on: the codes are gone; the tokens stay until their refresh expires
    later = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    second = await cli(settings, "run-jobs", "--now", later)
    assert "app_credentials_purged: 3" in second[1].splitlines()
    assert await AuthorizationCode.all().count() == 0
    assert await AppToken.all().count() == 2

    # and past the refresh tokens' 30 days, the tokens go too; the grants stay
    end = (datetime.now(UTC) + timedelta(days=31)).isoformat()
    last = await cli(settings, "run-jobs", "--now", end)
    assert "app_credentials_purged: 2" in last[1].splitlines()
    assert await AppToken.all().count() == 0
    assert await AppGrant.all().count() == 2
