"""Messagerie santé over HTTP: who starts, replies, closes; attachments; reads; lists; access."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import httpx
import pytest

from api.config import Settings
from models import clock
from models.audit import AccessAction, AccessBasis, AccessEvent
from models.consent import Block
from models.document import Document as DocumentModel
from models.patient import Patient, SpaceStatus
from resolvers.ids import decode_as, encode
from tests.factories import make_minor, make_operator, make_patient, make_professional
from tests.graphql import gql
from tests.messaging_support import (
    CLOSE,
    CONVERSATION,
    EXECUTABLE,
    JPEG,
    MARK_READ,
    NODE,
    PDF,
    PNG,
    RTF,
    START,
    TEXT,
    TIFF,
    File,
    download,
    error,
    save,
    send,
    snapshot,
    start,
    started,
    stored_files,
)

MB = 1024 * 1024
PATIENT_CONVERSATIONS = """query($id: ID!) { patient(id: $id) { firstName
  conversations(first: 10) { totalCount edges { node { id subject unreadCount } } } } }"""
DASHBOARD = """query($first: Int, $after: String) { viewer { ... on Professional {
  conversations(first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor }
    edges { cursor node { subject patient { firstName } } } } } } }"""


async def conversation_as(client: httpx.AsyncClient, token: str | None, cid: str) -> Any:
    return (await gql(client, CONVERSATION, {"id": cid}, token=token)).ok()["node"]


# --- who starts -------------------------------------------------------------------------


async def test_a_professional_starts_a_conversation_with_a_first_message(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    doc = await make_professional("Martin")

    payload = await started(client, doc, alice)

    conversation, message = payload["conversation"], payload["message"]
    assert conversation == {
        "id": conversation["id"],
        "subject": "Résultats de votre bilan",
        "closed": False,
        "unreadCount": 0,
        "patient": {"id": alice.id, "firstName": "Alice"},
        "professional": {"id": doc.id},
    }
    assert message == {
        "id": message["id"],
        "body": "Bonjour, voici vos résultats.",
        "sentAt": message["sentAt"],
        "readAt": None,
        "sender": {"__typename": "Professional", "id": doc.id, "lastName": "Martin"},
        "onBehalfOf": None,
        "attachments": [],
    }
    seen = await conversation_as(client, alice.token, conversation["id"])
    assert seen["unreadCount"] == 1
    assert [e["node"]["id"] for e in seen["messages"]["edges"]] == [message["id"]]


async def test_a_patient_or_an_operator_cannot_start_a_conversation(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await make_patient()
    bob = await make_patient("Bob")
    operator = await make_operator()
    before = await snapshot(settings)

    for token in (alice.token, operator.token):
        result = await start(client, token, bob.id, files=[("a.pdf", PDF, "application/pdf")])
        assert result.data is None
        assert error(result) == ("FORBIDDEN", None)

    assert await snapshot(settings) == before


async def test_an_anonymous_caller_cannot_start_a_conversation(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await make_patient()
    before = await snapshot(settings)

    result = await start(client, None, alice.id)

    assert result.data is None
    assert error(result) == ("UNAUTHENTICATED", None)
    assert await snapshot(settings) == before


async def test_an_unknown_blocked_closed_or_pending_patient_is_not_found(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    doc = await make_professional()
    blocking = await make_patient("Bea")
    await Block.create(patient_id=blocking.patient.id, professional_id=doc.pk)
    closed = await make_patient("Cleo", status=SpaceStatus.CLOSED)
    pending = await make_patient("Paula", status=SpaceStatus.PENDING, email=None)
    targets = [
        encode("Patient", uuid.uuid4()),
        doc.id,  # an id of another type
        "not-an-id",
        blocking.id,
        closed.id,
        pending.id,
    ]
    before = await snapshot(settings)

    for target in targets:
        result = await start(client, doc.token, target, files=[("a.pdf", PDF, "application/pdf")])
        assert result.data is None, target
        assert error(result) == ("NOT_FOUND", None), target

    assert await snapshot(settings) == before


async def test_a_blank_subject_or_body_is_bad_input(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await make_patient()
    doc = await make_professional()
    before = await snapshot(settings)

    no_subject = await start(client, doc.token, alice.id, subject="   ")
    no_body = await start(client, doc.token, alice.id, body=" \n ")
    too_long = await start(client, doc.token, alice.id, body="x" * 10_001)

    assert error(no_subject) == ("BAD_USER_INPUT", "subject")
    assert error(no_body) == ("BAD_USER_INPUT", "body")
    assert error(too_long) == ("BAD_USER_INPUT", "body")
    assert await snapshot(settings) == before


# --- replies ----------------------------------------------------------------------------


async def test_the_patient_replies_in_a_conversation_started_with_them(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    doc = await make_professional()
    cid = (await started(client, doc, alice))["conversation"]["id"]

    reply = (await send(client, alice.token, cid, "  Merci docteur.  ")).ok()["sendMessage"]
    answer = (await send(client, doc.token, cid, "Avec plaisir.")).ok()["sendMessage"]

    assert reply["message"]["body"] == "Merci docteur."
    assert reply["message"]["sender"] == {
        "__typename": "Patient",
        "id": alice.id,
        "firstName": "Alice",
    }
    assert reply["message"]["onBehalfOf"] is None
    assert answer["message"]["sender"]["id"] == doc.id
    bodies = [
        e["node"]["body"]
        for e in (await conversation_as(client, doc.token, cid))["messages"]["edges"]
    ]
    assert bodies == ["Bonjour, voici vos résultats.", "Merci docteur.", "Avec plaisir."]


async def test_another_patient_or_professional_cannot_post_in_a_conversation(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await make_patient()
    bob = await make_patient("Bob")
    doc = await make_professional()
    other = await make_professional("Durand")
    cid = (await started(client, doc, alice))["conversation"]["id"]
    before = await snapshot(settings)

    for token in (bob.token, other.token):
        result = await send(client, token, cid, files=[("a.pdf", PDF, "application/pdf")])
        assert result.data is None
        assert error(result) == ("NOT_FOUND", None)

    assert await snapshot(settings) == before


async def test_an_operator_or_anonymous_caller_cannot_post(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await make_patient()
    doc = await make_professional()
    operator = await make_operator()
    cid = (await started(client, doc, alice))["conversation"]["id"]
    before = await snapshot(settings)

    by_operator = await send(client, operator.token, cid)
    anonymous = await send(client, None, cid)

    assert error(by_operator) == ("FORBIDDEN", None)
    assert error(anonymous) == ("UNAUTHENTICATED", None)
    assert await snapshot(settings) == before


async def test_a_blocked_professional_can_no_longer_post_nor_see_the_conversation(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await make_patient()
    doc = await make_professional()
    payload = await started(client, doc, alice, [("a.pdf", PDF, "application/pdf")])
    cid, attachment = payload["conversation"]["id"], payload["message"]["attachments"][0]["id"]
    await Block.create(patient_id=alice.patient.id, professional_id=doc.pk)
    before = await snapshot(settings)

    posted = await send(client, doc.token, cid)
    seen = await gql(client, NODE, {"id": cid}, token=doc.token)
    dashboard = await gql(client, DASHBOARD, {"first": 10}, token=doc.token)

    assert error(posted) == ("NOT_FOUND", None)
    assert error(seen) == ("NOT_FOUND", None)
    assert (await download(client, attachment, doc.token)).status_code == 404
    assert dashboard.ok()["viewer"]["conversations"]["totalCount"] == 0
    assert await snapshot(settings) == before
    # The patient still reads what was said.
    assert (await conversation_as(client, alice.token, cid))["messages"]["totalCount"] == 1


# --- closing ----------------------------------------------------------------------------


async def test_only_the_professional_of_the_conversation_closes_it(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await make_patient()
    doc = await make_professional()
    other = await make_professional("Durand")
    cid = (await started(client, doc, alice))["conversation"]["id"]
    before = await snapshot(settings)

    by_patient = await gql(client, CLOSE, {"id": cid}, token=alice.token)
    by_other = await gql(client, CLOSE, {"id": cid}, token=other.token)

    assert error(by_patient) == ("FORBIDDEN", None)
    assert error(by_other) == ("NOT_FOUND", None)
    assert await snapshot(settings) == before

    closed = await gql(client, CLOSE, {"id": cid}, token=doc.token)
    again = await gql(client, CLOSE, {"id": cid}, token=doc.token)

    assert closed.ok() == {"closeConversation": {"conversation": {"id": cid, "closed": True}}}
    assert again.ok() == closed.ok()


async def test_no_one_posts_in_a_closed_conversation(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    parent = await make_patient("Claire")
    child = await make_minor(parent)
    alice = await make_patient()
    doc = await make_professional()
    cid = (await started(client, doc, alice))["conversation"]["id"]
    minor_cid = (await started(client, doc, child))["conversation"]["id"]
    for conversation in (cid, minor_cid):
        (await gql(client, CLOSE, {"id": conversation}, token=doc.token)).ok()
    before = await snapshot(settings)

    attempts = [
        (doc.token, cid),
        (alice.token, cid),
        (doc.token, minor_cid),
        (parent.token, minor_cid),
    ]
    for token, conversation in attempts:
        result = await send(client, token, conversation, files=[("a.txt", TEXT, "text/plain")])
        assert result.data is None
        assert error(result) == ("CONFLICT", None)

    assert await snapshot(settings) == before


# --- attachments ------------------------------------------------------------------------


async def test_every_accepted_type_is_attached_with_its_sniffed_type(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await make_patient()
    doc = await make_professional()
    files: list[File] = [
        ("bilan.pdf", PDF, "application/pdf"),
        ("photo.jpg", JPEG, "image/jpg"),
        ("radio.png", PNG, "image/png"),
        ("scan.tiff", TIFF, "application/octet-stream"),
        ("lettre.rtf", RTF, "text/rtf"),
        ("../../notes.txt", TEXT, "text/plain; charset=utf-8"),
    ]

    message = (await started(client, doc, alice, files))["message"]

    described = [
        (a["filename"], a["mimeType"], a["size"], a["sha256"]) for a in message["attachments"]
    ]
    assert described == [
        ("bilan.pdf", "application/pdf", len(PDF), hashlib.sha256(PDF).hexdigest()),
        ("photo.jpg", "image/jpeg", len(JPEG), hashlib.sha256(JPEG).hexdigest()),
        ("radio.png", "image/png", len(PNG), hashlib.sha256(PNG).hexdigest()),
        ("scan.tiff", "image/tiff", len(TIFF), hashlib.sha256(TIFF).hexdigest()),
        ("lettre.rtf", "application/rtf", len(RTF), hashlib.sha256(RTF).hexdigest()),
        ("notes.txt", "text/plain", len(TEXT), hashlib.sha256(TEXT).hexdigest()),
    ]
    first = message["attachments"][0]
    assert first["contentUrl"] == f"http://testserver/attachments/{first['id']}/content"
    assert len(stored_files(settings)) == 6


@pytest.mark.parametrize(
    "refused",
    [
        ("setup.pdf", EXECUTABLE, "application/pdf"),  # a renamed executable
        ("photo.png", PDF, "image/png"),  # a lying declared type
        ("vide.txt", b"", "text/plain"),  # empty
        ("page.txt", b"<html><script>alert(1)</script></html>", "text/plain"),
    ],
)
@pytest.mark.parametrize("operation", ["start", "send"])
async def test_a_refused_attachment_names_its_index_and_leaves_nothing(
    client: httpx.AsyncClient, settings: Settings, refused: File, operation: str
) -> None:
    alice = await make_patient()
    doc = await make_professional()
    cid = (await started(client, doc, alice))["conversation"]["id"]
    files: list[File] = [("ok.pdf", PDF, "application/pdf"), refused]
    before = await snapshot(settings)

    if operation == "start":
        result = await start(client, doc.token, alice.id, files=files)
    else:
        result = await send(client, alice.token, cid, files=files)

    assert result.data is None
    assert error(result) == ("BAD_USER_INPUT", "attachments.1")
    assert await snapshot(settings) == before


async def test_an_attachment_over_5_mb_is_too_large_and_one_of_5_mb_accepted(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await make_patient()
    doc = await make_professional()
    cid = (await started(client, doc, alice))["conversation"]["id"]
    big = PDF + b"0" * (5 * MB + 1 - len(PDF))
    before = await snapshot(settings)

    refused = await send(
        client,
        alice.token,
        cid,
        files=[("a.pdf", PDF, "application/pdf"), ("big.pdf", big, "application/pdf")],
    )

    assert refused.data is None
    assert error(refused) == ("PAYLOAD_TOO_LARGE", "attachments.1")
    assert await snapshot(settings) == before

    accepted = await send(client, alice.token, cid, files=[("max.pdf", big[:-1], "")])
    assert accepted.ok()["sendMessage"]["message"]["attachments"][0]["size"] == 5 * MB


async def test_more_than_ten_attachments_is_bad_input_and_ten_accepted(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await make_patient()
    doc = await make_professional()
    cid = (await started(client, doc, alice))["conversation"]["id"]
    files: list[File] = [(f"{i}.txt", f"note {i}\n".encode(), "text/plain") for i in range(11)]
    before = await snapshot(settings)

    refused = await send(client, doc.token, cid, files=files)

    assert refused.data is None
    assert error(refused) == ("BAD_USER_INPUT", "attachments")
    assert await snapshot(settings) == before

    accepted = await send(client, doc.token, cid, files=files[:10])
    assert len(accepted.ok()["sendMessage"]["message"]["attachments"]) == 10


async def test_a_failed_post_keeps_bytes_a_document_shares_and_removes_its_own(
    client: httpx.AsyncClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await make_patient()
    doc = await make_professional()
    cid = (await started(client, doc, alice))["conversation"]["id"]
    shared = await DocumentModel.create(
        patient_id=alice.patient.id,
        title="Bilan",
        category="LAB_RESULT",
        date=alice.patient.birth_date,
        mime_type="application/pdf",
        size=len(PDF),
        sha256=hashlib.sha256(PDF).hexdigest(),
        author_patient_id=alice.patient.id,
    )
    await settings.blob_store().put(PDF)
    before = await snapshot(settings)

    async def insert_fails(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk full")

    monkeypatch.setattr(clock, "positioned", insert_fails)  # the transaction storing it
    result = await send(
        client,
        alice.token,
        cid,
        files=[("a.pdf", PDF, "application/pdf"), ("b.png", PNG, "image/png")],
    )

    assert result.data is None
    assert error(result) == ("INTERNAL_SERVER_ERROR", None)
    assert await snapshot(settings) == before
    assert await DocumentModel.exists(id=shared.id)


async def test_deleting_a_document_keeps_the_bytes_an_attachment_shares(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    doc = await make_professional()
    attachment = (await started(client, doc, alice, [("cr.pdf", PDF, "application/pdf")]))[
        "message"
    ]["attachments"][0]
    document = (await save(client, alice.token, attachment["id"])).ok()["saveAttachment"][
        "document"
    ]

    deleted = await gql(
        client,
        "mutation($id: ID!) { deleteDocument(input: {documentId: $id}) { deletedId } }",
        {"id": document["id"]},
        token=alice.token,
    )

    assert deleted.ok() == {"deleteDocument": {"deletedId": document["id"]}}
    for token in (alice.token, doc.token):
        response = await download(client, attachment["id"], token)
        assert response.status_code == 200
        assert response.content == PDF


# --- saving an attachment into the dossier ---------------------------------------------


async def test_the_holder_saves_an_attachment_into_the_dossier(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    doc = await make_professional()
    attachment = (await started(client, doc, alice, [("cr.rtf", RTF, "text/rtf")]))["message"][
        "attachments"
    ][0]

    result = await save(client, alice.token, attachment["id"], title=" Lettre  de liaison ")

    document = result.ok()["saveAttachment"]["document"]
    assert document == {
        "id": document["id"],
        "title": "Lettre de liaison",
        "category": "REPORT",
        "mimeType": "application/rtf",
        "size": len(RTF),
        "sha256": hashlib.sha256(RTF).hexdigest(),
        "hidden": False,
        "author": {"__typename": "Patient", "id": alice.id},
    }
    row = await DocumentModel.get(id=decode_as(document["id"], "Document"))
    assert row.patient_id == alice.patient.id
    content = await client.get(
        f"/documents/{document['id']}/content",
        headers={"Authorization": f"Bearer {alice.token}"},
    )
    assert content.status_code == 200
    assert content.content == RTF
    assert await AccessEvent.filter(patient_id=alice.patient.id).count() == 0


async def test_a_professional_or_operator_cannot_save_an_attachment(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await make_patient()
    doc = await make_professional()
    operator = await make_operator()
    attachment = (await started(client, doc, alice, [("a.pdf", PDF, "application/pdf")]))[
        "message"
    ]["attachments"][0]
    before = await snapshot(settings)

    by_doc = await save(client, doc.token, attachment["id"])
    by_operator = await save(client, operator.token, attachment["id"])
    anonymous = await save(client, None, attachment["id"])

    assert error(by_doc) == ("FORBIDDEN", None)
    assert error(by_operator) == ("FORBIDDEN", None)
    assert error(anonymous) == ("UNAUTHENTICATED", None)
    assert await snapshot(settings) == before


async def test_another_patient_cannot_save_an_attachment_and_a_bad_title_is_refused(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await make_patient()
    bob = await make_patient("Bob")
    doc = await make_professional()
    attachment = (await started(client, doc, alice, [("a.pdf", PDF, "application/pdf")]))[
        "message"
    ]["attachments"][0]
    before = await snapshot(settings)

    by_bob = await save(client, bob.token, attachment["id"])
    unknown = await save(client, alice.token, encode("Attachment", uuid.uuid4()))
    blank = await save(client, alice.token, attachment["id"], title="  ")

    assert error(by_bob) == ("NOT_FOUND", None)
    assert error(unknown) == ("NOT_FOUND", None)
    assert error(blank) == ("BAD_USER_INPUT", "title")
    assert await snapshot(settings) == before


async def test_the_representative_saves_into_the_minors_dossier_with_a_write_event(
    client: httpx.AsyncClient,
) -> None:
    parent = await make_patient("Claire")
    child = await make_minor(parent)
    doc = await make_professional()
    attachment = (await started(client, doc, child, [("v.png", PNG, "image/png")]))["message"][
        "attachments"
    ][0]

    result = await save(client, parent.token, attachment["id"], category="VACCINATION")

    document = result.ok()["saveAttachment"]["document"]
    assert document["author"] == {"__typename": "Patient", "id": parent.id}
    assert document["category"] == "VACCINATION"
    row = await DocumentModel.get(id=decode_as(document["id"], "Document"))
    assert row.patient_id == child.patient.id
    events = await AccessEvent.filter(patient_id=child.patient.id).values_list(
        "actor_id", "action", "basis", "document_id"
    )
    assert events == [(parent.patient.id, AccessAction.WRITE, AccessBasis.REPRESENTATIVE, row.id)]


# --- read receipts ----------------------------------------------------------------------


async def test_unread_counts_and_read_receipts_per_side(client: httpx.AsyncClient) -> None:
    alice = await make_patient()
    doc = await make_professional()
    cid = (await started(client, doc, alice))["conversation"]["id"]
    (await send(client, doc.token, cid, "Pensez à prendre rendez-vous.")).ok()

    assert (await conversation_as(client, alice.token, cid))["unreadCount"] == 2
    assert (await conversation_as(client, doc.token, cid))["unreadCount"] == 0

    marked = await gql(client, MARK_READ, {"id": cid}, token=alice.token)

    assert marked.ok() == {"markConversationRead": {"conversation": {"id": cid, "unreadCount": 0}}}
    seen_by_doc = await conversation_as(client, doc.token, cid)
    read_at = [e["node"]["readAt"] for e in seen_by_doc["messages"]["edges"]]
    assert all(isinstance(value, str) for value in read_at), read_at
    assert (await conversation_as(client, alice.token, cid))["unreadCount"] == 0

    (await send(client, alice.token, cid, "C'est noté.")).ok()

    as_doc = await conversation_as(client, doc.token, cid)
    assert as_doc["unreadCount"] == 1
    assert as_doc["messages"]["edges"][-1]["node"]["readAt"] is None
    assert (await conversation_as(client, alice.token, cid))["unreadCount"] == 0

    (await gql(client, MARK_READ, {"id": cid}, token=doc.token)).ok()

    as_alice = await conversation_as(client, alice.token, cid)
    assert as_alice["messages"]["edges"][-1]["node"]["readAt"] is not None
    assert (await conversation_as(client, doc.token, cid))["unreadCount"] == 0


async def test_the_representative_reads_for_the_minors_side(client: httpx.AsyncClient) -> None:
    parent = await make_patient("Claire")
    child = await make_minor(parent)
    doc = await make_professional()
    cid = (await started(client, doc, child))["conversation"]["id"]

    assert (await conversation_as(client, parent.token, cid))["unreadCount"] == 1
    (await gql(client, MARK_READ, {"id": cid}, token=parent.token)).ok()

    message = (await conversation_as(client, doc.token, cid))["messages"]["edges"][0]["node"]
    assert message["readAt"] is not None


async def test_a_non_participant_cannot_mark_a_conversation_read(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await make_patient()
    bob = await make_patient("Bob")
    doc = await make_professional()
    other = await make_professional("Durand")
    operator = await make_operator()
    cid = (await started(client, doc, alice))["conversation"]["id"]
    before = await snapshot(settings)

    results = [
        await gql(client, MARK_READ, {"id": cid}, token=token)
        for token in (bob.token, other.token, operator.token, None)
    ]

    assert [error(r) for r in results] == [
        ("NOT_FOUND", None),
        ("NOT_FOUND", None),
        ("FORBIDDEN", None),
        ("UNAUTHENTICATED", None),
    ]
    assert await snapshot(settings) == before


# --- lists ------------------------------------------------------------------------------


async def test_the_holder_and_the_representative_list_the_patients_conversations(
    client: httpx.AsyncClient,
) -> None:
    parent = await make_patient("Claire")
    child = await make_minor(parent)
    doc = await make_professional()
    other = await make_professional("Durand")
    await started(client, doc, parent)
    child_cid = (await started(client, doc, child))["conversation"]["id"]
    (await start(client, other.token, child.id, subject="Vaccins")).ok()

    own = await gql(client, PATIENT_CONVERSATIONS, {"id": parent.id}, token=parent.token)
    minor = await gql(client, PATIENT_CONVERSATIONS, {"id": child.id}, token=parent.token)

    assert own.ok()["patient"]["conversations"]["totalCount"] == 1
    listed = minor.ok()["patient"]["conversations"]
    assert listed["totalCount"] == 2
    assert [e["node"]["subject"] for e in listed["edges"]] == [
        "Vaccins",
        "Résultats de votre bilan",
    ]
    assert listed["edges"][1]["node"]["id"] == child_cid
    viewer = await gql(
        client,
        "{ viewer { ... on Patient { conversations { totalCount } } } }",
        token=parent.token,
    )
    assert viewer.ok() == {"viewer": {"conversations": {"totalCount": 1}}}


async def test_a_professional_cannot_list_a_patients_conversations(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await make_patient()
    doc = await make_professional()
    other = await make_professional("Durand")
    await started(client, doc, alice)
    before = await snapshot(settings)

    in_conversation = await gql(client, PATIENT_CONVERSATIONS, {"id": alice.id}, token=doc.token)
    without_basis = await gql(client, PATIENT_CONVERSATIONS, {"id": alice.id}, token=other.token)

    assert in_conversation.data == {"patient": {"firstName": "Alice", "conversations": None}}
    assert error(in_conversation) == ("FORBIDDEN", None)
    assert in_conversation.errors[0]["path"] == ["patient", "conversations"]
    assert without_basis.data == {"patient": None}
    assert error(without_basis) == ("NOT_FOUND", None)
    assert (await snapshot(settings))["conversations"] == before["conversations"]


async def test_the_professional_dashboard_pages_across_patients_latest_first(
    client: httpx.AsyncClient,
) -> None:
    doc = await make_professional()
    other = await make_professional("Durand")
    people = [await make_patient(name) for name in ("Alice", "Bob", "Chloé")]
    cids = [
        (await start(client, doc.token, p.id, subject=f"Sujet {p.patient.first_name}")).ok()[
            "startConversation"
        ]["conversation"]["id"]
        for p in people
    ]
    (await start(client, other.token, people[0].id, subject="Ailleurs")).ok()
    (await send(client, people[0].token, cids[0], "Je relance.")).ok()

    first = (await gql(client, DASHBOARD, {"first": 2}, token=doc.token)).ok()
    page = first["viewer"]["conversations"]
    assert page["totalCount"] == 3
    assert page["pageInfo"]["hasNextPage"] is True
    assert [e["node"]["subject"] for e in page["edges"]] == ["Sujet Alice", "Sujet Chloé"]
    assert page["edges"][0]["node"]["patient"] == {"firstName": "Alice"}

    after = page["pageInfo"]["endCursor"]
    second = (await gql(client, DASHBOARD, {"first": 2, "after": after}, token=doc.token)).ok()
    rest = second["viewer"]["conversations"]
    assert rest["totalCount"] == 3
    assert rest["pageInfo"]["hasNextPage"] is False
    assert [e["node"]["subject"] for e in rest["edges"]] == ["Sujet Bob"]


async def test_no_one_but_the_professional_reads_their_dashboard(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    doc = await make_professional()
    other = await make_professional("Durand")
    await started(client, doc, alice)
    query = """query($id: ID!) { node(id: $id) { ... on Professional { lastName
      conversations { totalCount } } } }"""

    for token in (other.token, alice.token):
        result = await gql(client, query, {"id": doc.id}, token=token)
        assert result.data == {"node": {"lastName": "Bernard", "conversations": None}}
        assert error(result) == ("FORBIDDEN", None)
    own = await gql(client, query, {"id": doc.id}, token=doc.token)
    assert own.ok() == {"node": {"lastName": "Bernard", "conversations": {"totalCount": 1}}}


# --- representatives and identity -------------------------------------------------------


async def test_a_representative_reads_and_writes_in_the_minors_conversation(
    client: httpx.AsyncClient,
) -> None:
    parent = await make_patient("Claire")
    child = await make_minor(parent)
    doc = await make_professional()
    cid = (await started(client, doc, child))["conversation"]["id"]

    reply = (await send(client, parent.token, cid, "Il va mieux.")).ok()["sendMessage"]["message"]

    assert reply["sender"] == {"__typename": "Patient", "id": parent.id, "firstName": "Claire"}
    assert reply["onBehalfOf"] == {"id": child.id, "firstName": "Théo"}
    seen = await conversation_as(client, doc.token, cid)
    assert seen["patient"] == {"id": child.id, "firstName": "Théo"}
    assert seen["messages"]["edges"][1]["node"]["onBehalfOf"] == {
        "id": child.id,
        "firstName": "Théo",
    }
    assert (await conversation_as(client, parent.token, cid))["messages"]["totalCount"] == 2


async def test_the_professional_sees_the_patients_identity_but_not_the_dossier(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    doc = await make_professional()
    cid = (await started(client, doc, alice))["conversation"]["id"]
    fields = "firstName lastName birthDate sex nir documents { totalCount }"

    direct = await gql(
        client,
        f"query($id: ID!) {{ patient(id: $id) {{ {fields} }} }}",
        {"id": alice.id},
        token=doc.token,
    )
    through = await gql(
        client,
        "query($id: ID!) { node(id: $id) { ... on Conversation { patient { " + fields + " } } } }",
        {"id": cid},
        token=doc.token,
    )

    identity = {
        "firstName": "Alice",
        "lastName": "Lefebvre",
        "birthDate": "1980-03-14",
        "sex": "FEMALE",
        "nir": None,
        "documents": None,
    }
    assert direct.data == {"patient": identity}
    assert sorted((e["path"][-1], e["extensions"]["code"]) for e in direct.errors) == [
        ("documents", "FORBIDDEN"),
        ("nir", "FORBIDDEN"),
    ]
    assert through.data == {"node": {"patient": identity}}
    assert sorted(e["extensions"]["code"] for e in through.errors) == ["FORBIDDEN", "FORBIDDEN"]


async def test_node_answers_not_found_to_non_participants(client: httpx.AsyncClient) -> None:
    parent = await make_patient("Claire")
    child = await make_minor(parent)
    bob = await make_patient("Bob")
    doc = await make_professional()
    other = await make_professional("Durand")
    operator = await make_operator()
    payload = await started(client, doc, child, [("a.pdf", PDF, "application/pdf")])
    targets = {
        "Conversation": payload["conversation"]["id"],
        "Message": payload["message"]["id"],
        "Attachment": payload["message"]["attachments"][0]["id"],
    }

    for kind, gid in targets.items():
        for token in (doc.token, parent.token):
            assert (await gql(client, NODE, {"id": gid}, token=token)).ok() == {
                "node": {"__typename": kind, "id": gid}
            }
        for token in (bob.token, other.token, operator.token, None):
            result = await gql(client, NODE, {"id": gid}, token=token)
            assert result.data == {"node": None}, (kind, token)
            assert error(result) == ("NOT_FOUND", None)


# --- the download route -----------------------------------------------------------------


async def test_participants_download_the_exact_bytes(client: httpx.AsyncClient) -> None:
    parent = await make_patient("Claire")
    child = await make_minor(parent)
    alice = await make_patient()
    doc = await make_professional()
    to_alice = (await started(client, doc, alice, [("cr.pdf", PDF, "application/pdf")]))["message"][
        "attachments"
    ][0]["id"]
    to_child = (await started(client, doc, child, [("t.txt", TEXT, "text/plain")]))["message"][
        "attachments"
    ][0]["id"]

    for attachment, data, mime, tokens in [
        (to_alice, PDF, "application/pdf", (alice.token, doc.token)),
        (to_child, TEXT, "text/plain", (parent.token, doc.token)),
    ]:
        for token in tokens:
            response = await download(client, attachment, token)
            assert response.status_code == 200
            assert response.content == data
            assert response.headers["content-type"].split(";")[0] == mime
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["content-disposition"].startswith("attachment;")


async def test_others_get_a_json_not_found_and_anonymous_a_json_401(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    bob = await make_patient("Bob")
    doc = await make_professional()
    other = await make_professional("Durand")
    operator = await make_operator()
    attachment = (await started(client, doc, alice, [("cr.pdf", PDF, "application/pdf")]))[
        "message"
    ]["attachments"][0]["id"]
    cid = (await started(client, doc, bob))["conversation"]["id"]

    denied = [(attachment, t) for t in (bob.token, other.token, operator.token)] + [
        (encode("Attachment", uuid.uuid4()), alice.token),
        (cid, doc.token),  # an id of another type
        ("garbage", alice.token),
    ]
    for gid, token in denied:
        response = await download(client, gid, token)
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("application/json")
        assert response.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"

    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        response = await client.get(f"/attachments/{attachment}/content", headers=headers)
        assert response.status_code == 401
        assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_an_attachment_variable_that_is_not_a_file_is_bad_input(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await make_patient()
    doc = await make_professional()
    before = await snapshot(settings)
    variables = {
        "input": {
            "patientId": alice.id,
            "subject": "Bilan",
            "body": "Bonjour",
            "attachments": ["JVBERi0xLjQK"],
        }
    }

    result = await gql(client, START, variables, token=doc.token)

    assert result.data is None
    assert error(result) == ("BAD_USER_INPUT", "attachments.0")
    assert await snapshot(settings) == before


async def test_a_closed_space_takes_its_conversations_out_of_the_professionals_reach(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await make_patient()
    bob = await make_patient("Bob")
    doc = await make_professional()
    payload = await started(client, doc, alice, [("a.pdf", PDF, "application/pdf")])
    cid, attachment = payload["conversation"]["id"], payload["message"]["attachments"][0]["id"]
    await started(client, doc, bob)
    await Patient.filter(id=alice.patient.id).update(status=SpaceStatus.CLOSED)
    before = await snapshot(settings)

    posted = await send(client, doc.token, cid)
    seen = await gql(client, NODE, {"id": cid}, token=doc.token)
    dashboard = await gql(client, DASHBOARD, {"first": 10}, token=doc.token)

    assert error(posted) == ("NOT_FOUND", None)
    assert error(seen) == ("NOT_FOUND", None)
    assert (await download(client, attachment, doc.token)).status_code == 404
    assert dashboard.ok()["viewer"]["conversations"]["totalCount"] == 1
    assert await snapshot(settings) == before
