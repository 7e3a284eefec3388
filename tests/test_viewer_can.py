"""`viewerCan…` over the permission matrix: for every kind of viewer (tests/matrix_support.py)
and every object of its world, what the capability field answers is what the operation then
does. Each viewer's world is its own; the capabilities are read first, in one request, then
every operation is tried (the mutations that change nothing first, the closing and deleting
ones last, each on objects no other try needs afterwards), and each outcome is compared with
the capability read before it: a success where it said true, a refusal where it said false.

An object the viewer cannot see has no capability to read: its operation must then be
refused too (NOT_FOUND, or UNAUTHENTICATED for an anonymous caller).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest
import pytest_asyncio
from argon2 import PasswordHasher

import models.passwords
from api.app import create_app
from models import persisted
from models.account import Account
from models.appointment import Appointment, AppointmentSource, AppointmentStatus
from models.base import utcnow
from models.consent import Consent
from models.message import Conversation
from models.patient import Patient, SpaceStatus, reveal_nir
from resolvers.ids import encode
from tests.conftest import PG_URL, UNLIMITED_BUDGET, _settings, _truncate_all
from tests.factories import _token, vault
from tests.matrix_support import APP_SCOPES, Kind, Scenario, _app, build, pdf

pytestmark = pytest.mark.asyncio(loop_scope="module")

# Besides the matrix's columns: a partner app granted the write scopes, and the holder of a
# space closed since (its dossier archived, nothing to change until it is reopened).
APP_WRITER = "app_writer"
HOLDER_CLOSED = "holder_closed"
VIEWERS = [*(kind.value for kind in Kind), APP_WRITER, HOLDER_CLOSED]
WRITER_SCOPES = [*APP_SCOPES[Kind.APP_ALL], "DOCUMENTS_WRITE", "APPOINTMENTS_WRITE"]

# The refusals an operation may answer; anything else (BAD_USER_INPUT...) is a broken try.
REFUSALS = {"FORBIDDEN", "NOT_FOUND", "UNAUTHENTICATED", "CONFLICT"}

PATIENT_CAPS = (
    "viewerCanReadDossier viewerCanWriteDossier viewerCanBookAppointment viewerCanStartConversation"
)
DOCUMENTS = ("plain", "hidden", "pro", "pro_hidden")
CONVERSATIONS = ("own", "own_closed", "colleague", "colleague_closed", "inbox", "inbox_closed")
APPOINTMENTS = ("by_patient", "by_colleague", "by_actor", "by_app", "cancelled")

ADD_DOCUMENT = (
    "mutation($input: AddDocumentInput!) { addDocument(input: $input) { document { id } } }"
)
CREATE_APPOINTMENT = (
    "mutation($input: CreateAppointmentInput!) { createAppointment(input: $input)"
    " { appointment { id } } }"
)
START_CONVERSATION = (
    "mutation($input: StartConversationInput!) { startConversation(input: $input)"
    " { conversation { id } } }"
)
SET_HIDDEN = (
    "mutation($id: ID!, $hidden: Boolean!) { setDocumentHidden(input: {documentId: $id,"
    " hidden: $hidden}) { document { id } } }"
)
DELETE_DOCUMENT = "mutation($id: ID!) { deleteDocument(input: {documentId: $id}) { deletedId } }"
SEND_MESSAGE = (
    'mutation($id: ID!) { sendMessage(input: {conversationId: $id, body: "Bien reçu."})'
    " { message { id } } }"
)
CLOSE = (
    "mutation($id: ID!) { closeConversation(input: {conversationId: $id}) { conversation { id } } }"
)
UPDATE_APPOINTMENT = (
    'mutation($id: ID!) { updateAppointment(input: {appointmentId: $id, title: "Contrôle"})'
    " { appointment { id } } }"
)
CANCEL_APPOINTMENT = (
    "mutation($id: ID!) { cancelAppointment(input: {appointmentId: $id}) { appointment { id } } }"
)
PATIENT = "query($id: ID!) { patient(id: $id) { " + PATIENT_CAPS + " } }"
BY_NIR = (
    "query($nir: String!, $birthDate: Date!) { patientByNir(nir: $nir, birthDate: $birthDate)"
    " { " + PATIENT_CAPS + " } }"
)


@dataclass
class Viewer:
    """A viewer's world: the matrix's scenario, and the objects added for the operations."""

    name: str
    scenario: Scenario
    nir: str
    birth_date: str
    objects: dict[str, str] = field(default_factory=dict)  # name -> global id
    hidden: dict[str, bool] = field(default_factory=dict)  # document name -> hidden


@dataclass
class Outcome:
    ok: bool
    codes: list[str]


class Client:
    def __init__(self, http: httpx.AsyncClient, viewer: Viewer) -> None:
        self.http = http
        self.viewer = viewer

    @property
    def headers(self) -> dict[str, str]:
        token = self.viewer.scenario.token
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def _document(self, query: str) -> dict[str, Any]:
        """The request's body: the text, or for a partner app its registered document."""
        client = self.viewer.scenario.app_client
        if client is None:
            return {"query": query}
        sha = persisted.sha256_hex(query)
        entry = persisted.ManifestEntry(sha, query, None, None)
        await persisted.load_manifest(
            persisted.Manifest("viewer-can", (entry,)), client=client, registered_by="viewer-can"
        )
        return {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha}}}

    async def send(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        body = {**await self._document(query), "variables": variables}
        response = await self.http.post("/graphql", json=body, headers=self.headers)
        return dict(response.json())

    async def upload(self, variables: dict[str, Any], data: bytes) -> dict[str, Any]:
        operations = {**await self._document(ADD_DOCUMENT), "variables": variables}
        response = await self.http.post(
            "/graphql",
            data={
                "operations": json.dumps(operations),
                "map": json.dumps({"0": ["variables.input.file"]}),
            },
            files={"0": ("document.pdf", data, "application/pdf")},
            headers={**self.headers, "Apollo-Require-Preflight": "true"},
        )
        return dict(response.json())


def outcome(body: dict[str, Any]) -> Outcome:
    codes = [e.get("extensions", {}).get("code") for e in body.get("errors") or []]
    assert set(codes) <= REFUSALS, body  # a refusal, never a broken request
    data = body.get("data") or {}
    return Outcome(ok=not codes and any(v is not None for v in data.values()), codes=codes)


# --- the worlds ----------------------------------------------------------------------------


async def _objects(viewer: Viewer) -> None:
    """Conversations (open and closed: the viewer's own, a colleague's, the hospital inbox's)
    and appointments (booked by the patient side, a colleague, the viewer, an app; one
    cancelled) of the subject, made directly."""
    scenario = viewer.scenario
    spk = scenario.subject_pk
    now = utcnow()
    consent = await Consent.get(id=scenario.pk("consent", "Consent"))
    colleague = consent.professional_id
    actor_pro = scenario.actor_pk if await _is_professional(scenario.actor_pk) else None
    inbox = await Conversation.filter(patient_id=spk, establishment_id__not_isnull=True).first()

    async def conversation(name: str, professional: UUID, **extra: Any) -> None:
        row = await Conversation.create(
            patient_id=spk,
            professional_id=professional,
            subject=name,
            last_message_at=now,
            **extra,
        )
        viewer.objects[name] = encode("Conversation", row.id)

    if actor_pro is not None:
        await conversation("own", actor_pro)
        await conversation("own_closed", actor_pro, closed_at=now)
    await conversation("colleague", colleague)
    await conversation("colleague_closed", colleague, closed_at=now)
    if inbox is not None:
        viewer.objects["inbox"] = encode("Conversation", inbox.id)
        await conversation(
            "inbox_closed",
            inbox.professional_id,
            establishment_id=inbox.establishment_id,
            closed_at=now,
        )

    async def appointment(name: str, source: AppointmentSource, **extra: Any) -> None:
        starts = now + timedelta(days=7)
        row = await Appointment.create(
            patient_id=spk,
            starts_at=starts,
            ends_at=starts + timedelta(minutes=30),
            title=name,
            source=source,
            **extra,
        )
        viewer.objects[name] = encode("Appointment", row.id)

    await appointment("by_patient", AppointmentSource.PATIENT)
    await appointment("by_colleague", AppointmentSource.PROFESSIONAL, professional_id=colleague)
    await appointment(
        "cancelled",
        AppointmentSource.PROFESSIONAL,
        professional_id=colleague,
        status=AppointmentStatus.CANCELLED,
    )
    if actor_pro is not None:
        await appointment("by_actor", AppointmentSource.PROFESSIONAL, professional_id=actor_pro)
    if scenario.app_client is not None:
        await appointment("by_app", AppointmentSource.PLATFORM, app_id=scenario.actor_pk)
    for name in DOCUMENTS:
        viewer.objects[name] = scenario.ids[name]
        viewer.hidden[name] = name in ("hidden", "pro_hidden")


async def _is_professional(pk: UUID | None) -> bool:
    from models.professional import Professional

    return pk is not None and await Professional.exists(id=pk)


async def make_viewer(http: httpx.AsyncClient, name: str) -> Viewer:
    kind = Kind.HOLDER if name == HOLDER_CLOSED else Kind.APP_ALL if name == APP_WRITER else None
    scenario = await build(http, kind or Kind(name))
    subject = await Patient.get(id=scenario.subject_pk)
    if name == APP_WRITER:
        holder = await Account.get(patient_id=scenario.subject_pk)
        await _app(http, scenario, await _token(holder), WRITER_SCOPES)
    assert subject.nir_encrypted is not None
    viewer = Viewer(
        name=name,
        scenario=scenario,
        nir=reveal_nir(vault, subject.id, subject.nir_encrypted),
        birth_date=subject.birth_date.isoformat(),
    )
    await _objects(viewer)
    if name == HOLDER_CLOSED:
        await Patient.filter(id=subject.id).update(status=SpaceStatus.CLOSED)
    return viewer


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http(
    db_template: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[httpx.AsyncClient]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            models.passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
        )
        folder = tmp_path_factory.mktemp("viewer_can")
        if PG_URL:
            await _truncate_all(db_template)
            url = db_template
        else:
            shutil.copyfile(db_template, folder / "db.sqlite3")
            url = f"sqlite://{folder / 'db.sqlite3'}"
        app = create_app(_settings(folder, url, **UNLIMITED_BUDGET))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=("127.0.0.9", 4242))
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                yield c


# --- reading the capabilities --------------------------------------------------------------

FRAGMENT = {
    "Document": "... on Document { viewerCanDelete viewerCanHide }",
    "Conversation": "... on Conversation { viewerCanReply viewerCanClose }",
    "Appointment": "... on Appointment { viewerCanUpdate viewerCanCancel }",
}


def _type_of(name: str) -> str:
    if name in DOCUMENTS:
        return "Document"
    return "Conversation" if name in CONVERSATIONS else "Appointment"


async def capabilities(client: Client) -> tuple[dict[str, bool] | None, dict[str, Any]]:
    """The viewer's capabilities on the space (None: it does not see the space, not even as
    a professional finding it by NIR) and on each object (None: it does not see it)."""
    viewer = client.viewer
    body = await client.send(PATIENT, {"id": viewer.scenario.subject_id})
    space = (body.get("data") or {}).get("patient")
    if space is None and viewer.name not in ("anonymous",):
        found = await client.send(BY_NIR, {"nir": viewer.nir, "birthDate": viewer.birth_date})
        space = (found.get("data") or {}).get("patientByNir")
    names = list(viewer.objects)
    query = (
        "query { "
        + " ".join(
            f'o{i}: node(id: "{viewer.objects[name]}") {{ {FRAGMENT[_type_of(name)]} }}'
            for i, name in enumerate(names)
        )
        + " }"
    )
    body = await client.send(query, {})
    data = body.get("data") or {}
    for error in body.get("errors") or []:
        assert error["extensions"]["code"] == "NOT_FOUND", error  # an unseen object only
    return space, {name: data.get(f"o{i}") for i, name in enumerate(names)}


# --- the operations ------------------------------------------------------------------------


@dataclass
class Check:
    capability: str
    target: str
    said: bool | None  # None: the viewer does not see the target
    did: Outcome

    def agrees(self) -> bool:
        if self.said is None:
            return not self.did.ok
        return self.said == self.did.ok


async def run_viewer(http: httpx.AsyncClient, name: str) -> list[Check]:
    viewer = await make_viewer(http, name)
    client = Client(http, viewer)
    space, objects = await capabilities(client)
    checks: list[Check] = []

    def said(target: str, capability: str) -> bool | None:
        found = space if target == "subject" else objects[target]
        return None if found is None else bool(found[capability])

    async def attempt(capability: str, target: str, body: dict[str, Any]) -> None:
        checks.append(Check(capability, target, said(target, capability), outcome(body)))

    subject_id = viewer.scenario.subject_id
    # Operations that create (and change nothing of what the others try).
    await attempt(
        "viewerCanWriteDossier",
        "subject",
        await client.upload(
            {
                "input": {
                    "title": "Compte rendu",
                    "category": "REPORT",
                    "patientId": subject_id,
                    "file": None,
                }
            },
            pdf(f"viewer-can-{name}"),
        ),
    )
    starts = utcnow() + timedelta(days=10)
    await attempt(
        "viewerCanBookAppointment",
        "subject",
        await client.send(
            CREATE_APPOINTMENT,
            {
                "input": {
                    "patientId": subject_id,
                    "title": "Consultation",
                    "startsAt": starts.isoformat(),
                    "endsAt": (starts + timedelta(minutes=20)).isoformat(),
                }
            },
        ),
    )
    await attempt(
        "viewerCanStartConversation",
        "subject",
        await client.send(
            START_CONVERSATION,
            {"input": {"patientId": subject_id, "subject": "Résultats", "body": "Bonjour."}},
        ),
    )
    # Operations that leave their target as they found it.
    for doc in DOCUMENTS:
        variables = {"id": viewer.objects[doc], "hidden": viewer.hidden[doc]}
        await attempt("viewerCanHide", doc, await client.send(SET_HIDDEN, variables))
    for conversation in CONVERSATIONS:
        if conversation in viewer.objects:
            variables = {"id": viewer.objects[conversation]}
            await attempt(
                "viewerCanReply", conversation, await client.send(SEND_MESSAGE, variables)
            )
    for appointment in APPOINTMENTS:
        if appointment in viewer.objects:
            variables = {"id": viewer.objects[appointment]}
            body = await client.send(UPDATE_APPOINTMENT, variables)
            await attempt("viewerCanUpdate", appointment, body)
    # Operations that end their target, each tried once, after everything else on it.
    for appointment in APPOINTMENTS:
        if appointment in viewer.objects:
            variables = {"id": viewer.objects[appointment]}
            body = await client.send(CANCEL_APPOINTMENT, variables)
            await attempt("viewerCanCancel", appointment, body)
    for conversation in CONVERSATIONS:
        if conversation in viewer.objects:
            variables = {"id": viewer.objects[conversation]}
            await attempt("viewerCanClose", conversation, await client.send(CLOSE, variables))
    for doc in DOCUMENTS:
        body = await client.send(DELETE_DOCUMENT, {"id": viewer.objects[doc]})
        await attempt("viewerCanDelete", doc, body)
    return checks


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def matrix(http: httpx.AsyncClient) -> dict[str, list[Check]]:
    return {name: await run_viewer(http, name) for name in VIEWERS}


@pytest.mark.parametrize("name", VIEWERS)
async def test_each_capability_is_what_the_operation_then_does(
    matrix: dict[str, list[Check]], name: str
) -> None:
    disagreements = [
        f"{c.capability} on {c.target}: said {c.said}, the operation "
        + ("succeeded" if c.did.ok else f"answered {c.did.codes}")
        for c in matrix[name]
        if not c.agrees()
    ]
    assert not disagreements, "\n".join(disagreements)


# What the matrix must show, so that agreement is not the agreement of two refusals: the
# viewer each capability is true for (the others, seeing the target, read false).
EXPECTED_TRUE = {
    ("viewerCanWriteDossier", "subject"): {"holder", "representative", "read_write", APP_WRITER},
    ("viewerCanBookAppointment", "subject"): {
        "holder",
        "representative",
        "read",
        "read_write",
        "treating",
        APP_WRITER,
    },
    ("viewerCanStartConversation", "subject"): {
        "no_consent",
        "read",
        "read_write",
        "expired",
        "revoked",
        "treating",
        "emergency",
        "opposed",
        "member",
        "former_member",
        "other_establishment",
    },
    ("viewerCanHide", "plain"): {"holder", "representative"},
    ("viewerCanDelete", "hidden"): {"holder", "representative"},
    ("viewerCanHide", "pro_hidden"): {"holder"},  # hidden from representatives
    ("viewerCanReply", "colleague"): {"holder", "representative"},
    ("viewerCanReply", "colleague_closed"): set(),
    ("viewerCanClose", "colleague_closed"): set(),  # only its professional side
    ("viewerCanReply", "own"): {
        "no_consent",
        "opposed",
        "read",
        "read_write",
        "expired",
        "revoked",
        "treating",
        "emergency",
        "member",
        "former_member",
        "other_establishment",
    },
    ("viewerCanClose", "own_closed"): {
        "no_consent",
        "opposed",
        "read",
        "read_write",
        "expired",
        "revoked",
        "treating",
        "emergency",
        "member",
        "former_member",
        "other_establishment",
    },
    ("viewerCanReply", "inbox"): {"member"},
    ("viewerCanReply", "inbox_closed"): set(),
    ("viewerCanClose", "inbox"): {"member"},
    ("viewerCanUpdate", "by_patient"): {
        "holder",
        "representative",
        "read",
        "read_write",
        "treating",
    },
    ("viewerCanCancel", "by_colleague"): {
        "holder",
        "representative",
        "read",
        "read_write",
        "treating",
    },
    ("viewerCanUpdate", "by_app"): {APP_WRITER},
    ("viewerCanCancel", "cancelled"): set(),
}


async def test_the_matrix_exercises_both_answers(matrix: dict[str, list[Check]]) -> None:
    wrong = []
    for (capability, target), expected in EXPECTED_TRUE.items():
        true_for = {
            name
            for name, checks in matrix.items()
            for c in checks
            if c.capability == capability and c.target == target and c.said
        }
        if true_for != expected:
            wrong.append(f"{capability} on {target}: true for {sorted(true_for)}")
    assert not wrong, "\n".join(wrong)
    said = {c.said for checks in matrix.values() for c in checks}
    assert said == {True, False, None}
