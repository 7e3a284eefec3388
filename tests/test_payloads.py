"""Payloads a client's cache can merge (issue 18, item 3): each mutation returns the objects
it changed with their ids (`patient`, the health profile's own id), and addDocument and
sendMessage the new edge with the cursor its list gives it. The returned patient is read
by the rule of `patient(id:)` at that moment: a viewer who no longer sees the space gets
null. tests/e2e/test_apollo_cache.py shows it in a real normalised cache."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import httpx
import pytest

from models import record
from models.audit import AccessEvent
from models.consent import Block, Consent, ConsentAccess
from models.patient import Patient as PatientModel
from models.record import HealthProfile as HealthProfileModel
from resolvers.ids import encode
from tests.factories import PASSWORD, Person, Staff, make_operator, make_patient, make_professional
from tests.graphql import GraphQLResult, gql
from tests.lifecycle_support import CLOSE, login
from tests.messaging_support import PDF, send, started

PATIENT = """query($id: ID!) { patient(id: $id) { id
  healthProfile { id allergies }
  documents(first: 10) { totalCount edges { cursor node { id title } } } } }"""
PROFILE = """query($id: ID!) { patient(id: $id) { id healthProfile { id allergies } } }"""
PROFILE_NODE = (
    "query($id: ID!) { node(id: $id) { __typename id ... on HealthProfile { allergies } } }"
)
UPDATE = """mutation($input: UpdateHealthProfileInput!) { updateHealthProfile(input: $input) {
  healthProfile { id allergies } patient { id healthProfile { id allergies } } } }"""
ROTATE = """mutation { rotateCalendarFeed(input: {}) {
  calendarFeedUrl patient { id calendarFeedUrl } } }"""
DELETE = """mutation($id: ID!) { deleteDocument(input: {documentId: $id}) { deletedId
  patient { id documents(first: 10) { totalCount edges { node { id } } } } } }"""
GRANT = """mutation($input: GrantConsentInput!) { grantConsent(input: $input) {
  consent { id active } patient { id consents { id active access } } } }"""
REVOKE = """mutation($id: ID!) { revokeConsent(input: {consentId: $id}) {
  consent { id active } patient { id consents { id active } } } }"""
REQUEST_DELETION = """mutation($password: String!) {
  requestDeletion(input: {password: $password}) { deleteBy patient { id status deleteBy } } }"""
ADD = """mutation($input: AddDocumentInput!) { addDocument(input: $input) {
  document { id } documentEdge { cursor node { id } } } }"""
MESSAGES = """query($id: ID!, $after: String) { node(id: $id) { ... on Conversation {
  messages(first: 50, after: $after) { edges { cursor node { id } } } } } }"""
SENT = """mutation($input: SendMessageInput!) { sendMessage(input: $input) {
  message { id cursor } messageEdge { cursor node { id body } } } }"""


def profile_id(person: Person) -> str:
    return encode("HealthProfile", person.patient.id)


async def consent(person: Person, pro: Staff, access: ConsentAccess) -> Consent:
    return await Consent.create(
        patient_id=person.patient.id,
        professional_id=pro.pk,
        access=access,
        granted_at=datetime.now().astimezone(),
    )


async def reads(person: Person) -> list[tuple[str, str]]:
    rows = await AccessEvent.filter(patient_id=person.patient.id).order_by("at", "created_at")
    return [(e.action.value, e.basis.value) for e in rows]


async def add_document(client: httpx.AsyncClient, token: str | None, title: str) -> Any:
    """addDocument (a multipart upload), asking for the new edge."""
    variables = {"input": {"title": title, "category": "LAB_RESULT", "file": None}}
    response = await client.post(
        "/graphql",
        data={
            "operations": json.dumps({"query": ADD, "variables": variables}),
            "map": json.dumps({"0": ["variables.input.file"]}),
        },
        files={"0": ("report.pdf", PDF, "application/pdf")},
        headers={"Authorization": f"Bearer {token}", "Apollo-Require-Preflight": "true"},
    )
    return GraphQLResult(response).ok()["addDocument"]


def only_code(result: GraphQLResult) -> str:
    assert len(result.errors) == 1, result.errors
    return str(result.errors[0]["extensions"]["code"])


# --- HealthProfile.id and node ------------------------------------------------------------


async def test_the_health_profile_has_an_id_derived_from_its_patient_and_the_same_everywhere(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    before = (await gql(client, PROFILE, {"id": alice.id}, token=alice.token)).ok()
    # none written yet: it has its id all the same (the one it keeps once written)
    assert before["patient"]["healthProfile"] == {"id": profile_id(alice), "allergies": []}

    updated = await gql(
        client, UPDATE, {"input": {"allergies": ["Pénicilline"]}}, token=alice.token
    )

    expected = {"id": profile_id(alice), "allergies": ["Pénicilline"]}
    payload = updated.ok()["updateHealthProfile"]
    assert payload == {
        "healthProfile": expected,
        "patient": {"id": alice.id, "healthProfile": expected},
    }
    after = (await gql(client, PROFILE, {"id": alice.id}, token=alice.token)).ok()
    assert after["patient"]["healthProfile"] == expected
    assert profile_id(alice) != alice.id  # a Patient id and a HealthProfile id never collide


async def test_node_reads_a_health_profile_by_the_rule_of_patient_health_profile(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    await HealthProfileModel.create(patient_id=alice.patient.id, allergies=["Arachide"])
    reader = await make_professional("Lecteur")
    await consent(alice, reader, ConsentAccess.READ)
    blocked = await make_professional("Bloque")
    await consent(alice, blocked, ConsentAccess.READ_WRITE)
    await Block.create(patient_id=alice.patient.id, professional_id=blocked.pk)
    talker = await make_professional("Messagerie")
    await started(client, talker, alice)  # an open conversation: identity only
    stranger = await make_professional("Inconnu")
    operator = await make_operator()
    bob = await make_patient("Bob")
    node = {"id": profile_id(alice)}
    seen = {"__typename": "HealthProfile", "id": profile_id(alice), "allergies": ["Arachide"]}

    assert (await gql(client, PROFILE_NODE, node, token=alice.token)).ok() == {"node": seen}
    assert (await gql(client, PROFILE_NODE, node, token=reader.token)).ok() == {"node": seen}
    for token in (blocked.token, talker.token, stranger.token, operator.token, bob.token, None):
        result = await gql(client, PROFILE_NODE, node, token=token)
        assert result.data == {"node": None}
        assert only_code(result) == "NOT_FOUND"
    # as through the patient: one with an open conversation sees it, but not its profile
    through = await gql(client, PROFILE, {"id": alice.id}, token=talker.token)
    assert through.data == {"patient": {"id": alice.id, "healthProfile": None}}
    assert only_code(through) == "FORBIDDEN"


async def test_a_professional_reading_a_health_profile_by_node_is_an_access_event(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    reader = await make_professional("Lecteur")
    await consent(alice, reader, ConsentAccess.READ)

    result = await gql(client, PROFILE_NODE, {"id": profile_id(alice)}, token=reader.token)

    assert result.ok()["node"]["allergies"] == []
    assert await reads(alice) == [("READ", "CONSENT")]


# --- patient on the payloads ----------------------------------------------------------------


async def test_a_professional_updating_the_profile_gets_the_patient_as_they_may_read_it(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    writer = await make_professional("Redacteur")
    await consent(alice, writer, ConsentAccess.READ_WRITE)

    result = await gql(
        client,
        UPDATE,
        {"input": {"patientId": alice.id, "allergies": ["Latex"]}},
        token=writer.token,
    )

    expected = {"id": profile_id(alice), "allergies": ["Latex"]}
    assert result.ok()["updateHealthProfile"] == {
        "healthProfile": expected,
        "patient": {"id": alice.id, "healthProfile": expected},
    }
    # the write, then the payload's read of the space: as `patient(id:)` reads it
    assert await reads(alice) == [("WRITE", "CONSENT"), ("READ", "CONSENT")]


async def test_a_professional_who_lost_access_meanwhile_gets_no_patient_in_the_payload(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a professional whose consent is revoked while their write commits (the
    # holder's revocation landing between the write and the payload's read)
    alice = await make_patient()
    writer = await make_professional("Redacteur")
    granted = await consent(alice, writer, ConsentAccess.READ_WRITE)
    write = record.update_health_profile

    async def written_then_revoked(*args: Any, **kwargs: Any) -> Any:
        row = await write(*args, **kwargs)
        await Consent.filter(id=granted.id).update(revoked_at=datetime.now().astimezone())
        return row

    monkeypatch.setattr(record, "update_health_profile", written_then_revoked)

    # when they update the profile and ask for the patient
    result = await gql(
        client,
        """mutation($input: UpdateHealthProfileInput!) { updateHealthProfile(input: $input) {
          healthProfile { allergies } patient { id firstName lastName healthProfile { id } } } }""",
        {"input": {"patientId": alice.id, "allergies": ["Latex"]}},
        token=writer.token,
    )

    # then the write is done, the patient is null, and no read of the space is logged
    assert result.ok()["updateHealthProfile"] == {
        "healthProfile": {"allergies": ["Latex"]},
        "patient": None,
    }
    assert await reads(alice) == [("WRITE", "CONSENT")]
    after = await gql(client, PROFILE, {"id": alice.id}, token=writer.token)
    assert after.data == {"patient": None}
    assert only_code(after) == "NOT_FOUND"


async def test_rotating_the_calendar_feed_returns_the_patient_with_the_new_url(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    old = (await gql(client, ROTATE, token=alice.token)).ok()["rotateCalendarFeed"]

    new = (await gql(client, ROTATE, token=alice.token)).ok()["rotateCalendarFeed"]

    assert new["calendarFeedUrl"] != old["calendarFeedUrl"]
    assert new["patient"] == {"id": alice.id, "calendarFeedUrl": new["calendarFeedUrl"]}


async def test_deleting_a_document_returns_the_patient_without_it(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    kept = (await add_document(client, alice.token, "Gardé"))["document"]["id"]
    gone = (await add_document(client, alice.token, "Supprimé"))["document"]["id"]

    result = await gql(client, DELETE, {"id": gone}, token=alice.token)

    assert result.ok()["deleteDocument"] == {
        "deletedId": gone,
        "patient": {
            "id": alice.id,
            "documents": {"totalCount": 1, "edges": [{"node": {"id": kept}}]},
        },
    }


async def test_granting_a_consent_returns_the_patient_with_its_consents(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    pro = await make_professional()
    variables = {"input": {"professionalId": pro.id, "access": "READ"}}
    first = (await gql(client, GRANT, variables, token=alice.token)).ok()["grantConsent"]
    variables["input"]["access"] = "READ_WRITE"

    second = (await gql(client, GRANT, variables, token=alice.token)).ok()["grantConsent"]

    # the new grant replaced the live one: both show in the patient's consents, newest first
    assert second["patient"] == {
        "id": alice.id,
        "consents": [
            {"id": second["consent"]["id"], "active": True, "access": "READ_WRITE"},
            {"id": first["consent"]["id"], "active": False, "access": "READ"},
        ],
    }


async def test_revoking_a_consent_returns_the_patient_with_it_inactive(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    pro = await make_professional()
    granted = await consent(alice, pro, ConsentAccess.READ)
    consent_id = encode("Consent", granted.id)

    result = await gql(client, REVOKE, {"id": consent_id}, token=alice.token)

    assert result.ok()["revokeConsent"] == {
        "consent": {"id": consent_id, "active": False},
        "patient": {"id": alice.id, "consents": [{"id": consent_id, "active": False}]},
    }


async def test_requesting_deletion_returns_the_patient_with_its_deadline(
    client: httpx.AsyncClient,
) -> None:
    # given a holder who closed her space and logged in again
    alice = await make_patient()
    assert alice.email is not None
    (await gql(client, CLOSE, {"input": {"password": PASSWORD}}, token=alice.token)).ok()
    token = (await login(client, alice.email, PASSWORD)).ok()["login"]["token"]
    viewer = "{ viewer { ... on Patient { id status deleteBy } } }"
    assert (await gql(client, viewer, token=token)).ok()["viewer"]["deleteBy"] is None

    result = await gql(client, REQUEST_DELETION, {"password": PASSWORD}, token=token)

    payload = result.ok()["requestDeletion"]
    assert payload["patient"] == {
        "id": alice.id,
        "status": "CLOSED",
        "deleteBy": payload["deleteBy"],
    }
    row = await PatientModel.get(id=alice.patient.id)
    assert row.delete_by == datetime.fromisoformat(payload["deleteBy"])


async def test_delete_by_is_for_the_holder_and_representatives_only(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    pro = await make_professional()
    await consent(alice, pro, ConsentAccess.READ)
    query = "query($id: ID!) { patient(id: $id) { id deleteBy } }"

    mine = await gql(client, query, {"id": alice.id}, token=alice.token)
    theirs = await gql(client, query, {"id": alice.id}, token=pro.token)

    assert mine.ok() == {"patient": {"id": alice.id, "deleteBy": None}}
    assert theirs.data == {"patient": {"id": alice.id, "deleteBy": None}}
    assert only_code(theirs) == "FORBIDDEN"


# --- the new edges ------------------------------------------------------------------------


async def test_add_document_returns_the_edge_with_the_cursor_of_patient_documents(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    older = await add_document(client, alice.token, "Ancien")

    newer = await add_document(client, alice.token, "Récent")

    edge = newer["documentEdge"]
    assert edge["node"] == {"id": newer["document"]["id"]}
    listed = (await gql(client, PATIENT, {"id": alice.id}, token=alice.token)).ok()
    edges = listed["patient"]["documents"]["edges"]
    assert [e["node"]["id"] for e in edges] == [newer["document"]["id"], older["document"]["id"]]
    assert [e["cursor"] for e in edges] == [edge["cursor"], older["documentEdge"]["cursor"]]
    # and it is a cursor the list takes: after it, the older one
    after = await gql(
        client,
        """query($id: ID!, $after: String) { patient(id: $id) {
          documents(first: 10, after: $after) { edges { node { id } } } } }""",
        {"id": alice.id, "after": edge["cursor"]},
        token=alice.token,
    )
    assert after.ok()["patient"]["documents"]["edges"] == [
        {"node": {"id": older["document"]["id"]}}
    ]


async def test_send_message_returns_the_edge_with_the_cursor_of_conversation_messages(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    pro = await make_professional()
    conversation = (await started(client, pro, alice))["conversation"]["id"]
    first = (await gql(client, MESSAGES, {"id": conversation}, token=alice.token)).ok()

    result = await gql(
        client,
        SENT,
        {"input": {"conversationId": conversation, "body": "Merci."}},
        token=alice.token,
    )

    payload = result.ok()["sendMessage"]
    edge = payload["messageEdge"]
    assert edge["node"] == {"id": payload["message"]["id"], "body": "Merci."}
    assert edge["cursor"] == payload["message"]["cursor"]
    listed = (await gql(client, MESSAGES, {"id": conversation}, token=alice.token)).ok()
    assert listed["node"]["messages"]["edges"][-1] == {
        "cursor": edge["cursor"],
        "node": {"id": payload["message"]["id"]},
    }
    # after the message before it, exactly the new one; after it, nothing
    before = first["node"]["messages"]["edges"][-1]["cursor"]
    following = await gql(
        client, MESSAGES, {"id": conversation, "after": before}, token=alice.token
    )
    assert following.ok()["node"]["messages"]["edges"] == [
        {"cursor": edge["cursor"], "node": {"id": payload["message"]["id"]}}
    ]
    rest = await gql(
        client, MESSAGES, {"id": conversation, "after": edge["cursor"]}, token=alice.token
    )
    assert rest.ok()["node"]["messages"]["edges"] == []


async def test_mark_read_returns_the_conversation_with_its_unread_count(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    pro = await make_professional()
    conversation = (await started(client, pro, alice))["conversation"]["id"]
    (await send(client, pro.token, conversation, "Et ceci.")).ok()
    unread = "query($id: ID!) { node(id: $id) { ... on Conversation { id unreadCount } } }"
    assert (await gql(client, unread, {"id": conversation}, token=alice.token)).ok() == {
        "node": {"id": conversation, "unreadCount": 2}
    }

    result = await gql(
        client,
        """mutation($id: ID!) { markConversationRead(input: {conversationId: $id}) {
          conversation { id unreadCount } } }""",
        {"id": conversation},
        token=alice.token,
    )

    assert result.ok()["markConversationRead"] == {
        "conversation": {"id": conversation, "unreadCount": 0}
    }


async def test_recording_a_vaccination_or_a_screening_returns_the_patient_with_it(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    nurse = await make_professional("Infirmier")
    await consent(alice, nurse, ConsentAccess.READ_WRITE)

    vaccinated = await gql(
        client,
        """mutation($input: RecordVaccinationInput!) { recordVaccination(input: $input) {
          vaccination { id } patient { id vaccinations { id } } } }""",
        {"input": {"patientId": alice.id, "vaccine": "DTP", "date": "2024-05-02"}},
        token=nurse.token,
    )
    screened = await gql(
        client,
        """mutation($input: RecordScreeningInput!) { recordScreening(input: $input) {
          screening { id } patient { id screenings { id } } } }""",
        {"input": {"kind": "BREAST", "date": "2024-05-02"}},
        token=alice.token,
    )

    vaccination = vaccinated.ok()["recordVaccination"]
    assert vaccination["patient"] == {
        "id": alice.id,
        "vaccinations": [{"id": vaccination["vaccination"]["id"]}],
    }
    screening = screened.ok()["recordScreening"]
    assert screening["patient"] == {
        "id": alice.id,
        "screenings": [{"id": screening["screening"]["id"]}],
    }


async def test_saving_an_attachment_returns_the_edge_with_the_cursor_of_patient_documents(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    pro = await make_professional()
    started_with = await started(client, pro, alice, files=[("cr.pdf", PDF, "application/pdf")])
    attachment = started_with["message"]["attachments"][0]["id"]

    result = await gql(
        client,
        """mutation($input: SaveAttachmentInput!) { saveAttachment(input: $input) {
          document { id } documentEdge { cursor node { id } } } }""",
        {"input": {"attachmentId": attachment, "title": "Compte rendu", "category": "REPORT"}},
        token=alice.token,
    )

    payload = result.ok()["saveAttachment"]
    listed = (await gql(client, PATIENT, {"id": alice.id}, token=alice.token)).ok()
    document = {"id": payload["document"]["id"], "title": "Compte rendu"}
    assert listed["patient"]["documents"]["edges"] == [
        {"cursor": payload["documentEdge"]["cursor"], "node": document}
    ]
    assert payload["documentEdge"]["node"] == {"id": payload["document"]["id"]}
