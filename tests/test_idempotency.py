"""Safe retries: `idempotencyKey` on sendMessage, startConversation, addDocument and
createAppointment (models/idempotency.py)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from api.config import Settings
from api.jobs import run_jobs
from models.appointment import Appointment
from models.audit import AccessEvent
from models.base import utcnow
from models.blobs import Blob, BlobStore, StoredBlob
from models.consent import Block, Consent, ConsentAccess
from models.document import Document
from models.establishment import EstablishmentMember
from models.idempotency import IdempotencyKey
from models.message import Conversation, Message
from models.persisted import sha256_hex
from models.professional import Establishment
from models.reminder import Reminder
from resolvers.ids import encode
from tests.catalogue_support import Service, connect, register_app, service
from tests.factories import Person, Staff, make_minor, make_patient, make_professional
from tests.graphql import GraphQLResult, gql
from tests.messaging_support import PDF, multipart, stored_files

__all__ = ["service"]

KEY = "5f0c6a52-7d8e-4a7b-9f3e-2b1d0c9e8a7f"
MESSAGE = "id body sentAt attachments { id filename sha256 }"
SEND = f"""mutation($input: SendMessageInput!) {{
  sendMessage(input: $input) {{ message {{ {MESSAGE} }} }} }}"""
START = f"""mutation($input: StartConversationInput!) {{ startConversation(input: $input) {{
  conversation {{ id subject }} message {{ {MESSAGE} }} }} }}"""
ADD = """mutation($input: AddDocumentInput!) {
  addDocument(input: $input) { document { id title } } }"""
BOOK = """mutation($input: CreateAppointmentInput!) {
  createAppointment(input: $input) { appointment { id title } } }"""
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 16


# --- helpers ----------------------------------------------------------------------------


async def send(
    client: httpx.AsyncClient,
    token: str | None,
    conversation_id: str,
    *,
    key: str | None = KEY,
    body: str = "Merci docteur.",
    files: list[tuple[str, bytes, str]] | None = None,
) -> GraphQLResult:
    variables: dict[str, Any] = {"input": {"conversationId": conversation_id, "body": body}}
    if key is not None:
        variables["input"]["idempotencyKey"] = key
    if files is not None:
        return await multipart(client, SEND, variables, files, token=token)
    return await gql(client, SEND, variables, token=token)


def message_id(result: GraphQLResult) -> str:
    return str(result.ok()["sendMessage"]["message"]["id"])


async def start(
    client: httpx.AsyncClient, staff: Staff, person: Person, *, key: str | None = KEY
) -> GraphQLResult:
    variables = {
        "input": {
            "patientId": person.id,
            "subject": "Vos résultats",
            "body": "Bonjour, voici vos résultats.",
            "idempotencyKey": key,
        }
    }
    return await gql(client, START, variables, token=staff.token)


async def upload(
    client: httpx.AsyncClient,
    token: str | None,
    data: bytes = PDF,
    *,
    key: str | None = KEY,
    persisted: bool = False,
    **fields: Any,
) -> GraphQLResult:
    """addDocument as a multipart upload; `persisted`: by its hash, as a partner app sends it."""
    variables = {"input": {"title": "Bilan", "category": "LAB_RESULT", **fields, "file": None}}
    if key is not None:
        variables["input"]["idempotencyKey"] = key
    operations: dict[str, Any] = {"query": ADD, "variables": variables}
    if persisted:
        hashed = {"persistedQuery": {"version": 1, "sha256Hash": sha256_hex(ADD)}}
        operations = {"variables": variables, "extensions": hashed}
    response = await client.post(
        "/graphql",
        data={
            "operations": json.dumps(operations),
            "map": json.dumps({"0": ["variables.input.file"]}),
        },
        files={"0": ("bilan.pdf", data, "application/pdf")},
        headers={"Authorization": f"Bearer {token}", "Apollo-Require-Preflight": "true"},
    )
    return GraphQLResult(response)


def document_id(result: GraphQLResult) -> str:
    return str(result.ok()["addDocument"]["document"]["id"])


def slot(**extra: Any) -> dict[str, Any]:
    start = (datetime.now(UTC) + timedelta(days=5)).replace(microsecond=0)
    return {
        "startsAt": start.isoformat(),
        "endsAt": (start + timedelta(minutes=30)).isoformat(),
        "title": "Consultation",
        "idempotencyKey": KEY,
        **extra,
    }


async def book(client: httpx.AsyncClient, token: str | None, **extra: Any) -> GraphQLResult:
    return await gql(client, BOOK, {"input": slot(**extra)}, token=token)


def code(result: GraphQLResult) -> tuple[str, Any]:
    assert len(result.errors) == 1, result.body
    extensions = result.errors[0]["extensions"]
    return extensions["code"], extensions.get("field")


async def rows() -> dict[str, int]:
    """How many rows every operation here may create."""
    return {
        "conversations": await Conversation.all().count(),
        "messages": await Message.all().count(),
        "documents": await Document.all().count(),
        "appointments": await Appointment.all().count(),
        "reminders": await Reminder.all().count(),
        "blobs": await Blob.all().count(),
        "access_events": await AccessEvent.all().count(),
        "keys": await IdempotencyKey.all().count(),
    }


async def conversation_of(client: httpx.AsyncClient) -> tuple[Person, Staff, str]:
    alice = await make_patient()
    doc = await make_professional("Martin")
    return alice, doc, await started(client, doc, alice)


async def started(client: httpx.AsyncClient, staff: Staff, person: Person) -> str:
    """The id of a conversation started without a key."""
    payload = (await start(client, staff, person, key=None)).ok()["startConversation"]
    return str(payload["conversation"]["id"])


async def consent(person: Person, staff: Staff, access: ConsentAccess) -> Consent:
    return await Consent.create(
        patient_id=person.patient.id, professional_id=staff.pk, access=access, granted_at=utcnow()
    )


# --- sendMessage ------------------------------------------------------------------------


async def test_a_retried_message_answers_the_first_and_sends_nothing_more(
    client: httpx.AsyncClient,
) -> None:
    alice, _, conversation = await conversation_of(client)
    first = await send(client, alice.token, conversation)
    before = await rows()

    again = await send(client, alice.token, conversation)

    assert message_id(again) == message_id(first)
    assert again.data == first.data
    assert await rows() == before
    assert await Message.filter(body="Merci docteur.").count() == 1


async def test_without_a_key_every_request_sends_a_message(client: httpx.AsyncClient) -> None:
    alice, _, conversation = await conversation_of(client)

    first = await send(client, alice.token, conversation, key=None)
    second = await send(client, alice.token, conversation, key=None)

    assert message_id(first) != message_id(second)
    assert await Message.filter(body="Merci docteur.").count() == 2
    assert await IdempotencyKey.all().count() == 0


async def test_the_same_key_with_another_input_is_a_conflict(client: httpx.AsyncClient) -> None:
    alice, _, conversation = await conversation_of(client)
    await send(client, alice.token, conversation)
    before = await rows()

    other = await send(client, alice.token, conversation, body="Autre chose.")

    assert code(other) == ("CONFLICT", None)
    assert "idempotency key" in other.errors[0]["message"]
    assert "different input" in other.errors[0]["message"]
    assert await rows() == before


async def test_another_viewer_with_the_same_key_gets_a_message_of_their_own(
    client: httpx.AsyncClient,
) -> None:
    alice, doc, conversation = await conversation_of(client)

    by_alice = await send(client, alice.token, conversation, body="Bonjour.")
    by_doc = await send(client, doc.token, conversation, body="Bonjour.")

    assert message_id(by_alice) != message_id(by_doc)
    assert await Message.filter(body="Bonjour.").count() == 2


async def test_a_representative_and_the_minor_s_other_representative_keep_their_own_keys(
    client: httpx.AsyncClient,
) -> None:
    # two accounts writing for one child: a key is the account's, not the space's
    mother = await make_patient("Claire")
    child = await make_minor(mother)
    father = await make_patient("Marc")
    from models.patient import Representation

    await Representation.create(representative_id=father.patient.id, dependent_id=child.patient.id)
    doc = await make_professional()
    conversation = await started(client, doc, child)

    by_mother = await send(client, mother.token, conversation)
    by_father = await send(client, father.token, conversation)

    assert message_id(by_mother) != message_id(by_father)
    assert await Message.filter(body="Merci docteur.").count() == 2


async def test_a_key_is_scoped_to_its_operation(client: httpx.AsyncClient) -> None:
    alice = await make_patient()
    doc = await make_professional()
    payload = (await start(client, doc, alice)).ok()["startConversation"]

    sent = await send(client, doc.token, payload["conversation"]["id"])

    assert message_id(sent) != payload["message"]["id"]
    assert await Message.filter(conversation_id=_pk(payload["conversation"]["id"])).count() == 2


async def test_ten_identical_requests_at_once_send_one_message(client: httpx.AsyncClient) -> None:
    alice, _, conversation = await conversation_of(client)
    before = await rows()

    results = await asyncio.gather(*(send(client, alice.token, conversation) for _ in range(10)))

    ids = {message_id(result) for result in results}
    assert len(ids) == 1
    assert await Message.filter(body="Merci docteur.").count() == 1
    after = await rows()
    assert after["messages"] == before["messages"] + 1
    assert after["keys"] == before["keys"] + 1


async def test_requests_at_once_with_one_key_and_two_inputs_send_one_and_refuse_the_other(
    client: httpx.AsyncClient,
) -> None:
    alice, _, conversation = await conversation_of(client)

    results = await asyncio.gather(
        *(send(client, alice.token, conversation, body=f"Message {n % 2}") for n in range(6))
    )

    answered = [r for r in results if not r.errors]
    refused = [r for r in results if r.errors]
    assert len({message_id(r) for r in answered}) == 1
    assert {code(r) for r in refused} == {("CONFLICT", None)}
    assert len(answered) == 3 and len(refused) == 3
    assert await Message.filter(body__startswith="Message ").count() == 1


async def test_a_retried_message_with_an_attachment_stores_its_bytes_once(
    client: httpx.AsyncClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, _, conversation = await conversation_of(client)
    files = [("scan.png", PNG, "image/png")]
    first = await send(client, alice.token, conversation, files=files)
    before, files_before = await rows(), stored_files(settings)
    puts: list[int] = []
    original = BlobStore.put

    async def counted(self: BlobStore, data: bytes) -> StoredBlob:
        puts.append(len(data))
        return await original(self, data)

    monkeypatch.setattr(BlobStore, "put", counted)

    again = await send(client, alice.token, conversation, files=files)

    assert again.data == first.data
    assert puts == []
    assert await rows() == before
    assert stored_files(settings) == files_before


async def test_another_file_under_the_same_key_is_a_conflict(client: httpx.AsyncClient) -> None:
    alice, _, conversation = await conversation_of(client)
    await send(client, alice.token, conversation, files=[("scan.png", PNG, "image/png")])
    before = await rows()

    other = await send(
        client, alice.token, conversation, files=[("scan.pdf", PDF, "application/pdf")]
    )

    assert code(other) == ("CONFLICT", None)
    assert await rows() == before


async def test_a_retry_after_the_conversation_closed_answers_the_message_sent(
    client: httpx.AsyncClient,
) -> None:
    # the message was sent before the close: the retry learns it, it does not send again
    alice, _, conversation = await conversation_of(client)
    first = await send(client, alice.token, conversation)
    await Conversation.filter(id=_pk(conversation)).update(closed_at=utcnow())

    again = await send(client, alice.token, conversation)

    assert message_id(again) == message_id(first)
    fresh = await send(client, alice.token, conversation, key="another-key")
    assert code(fresh) == ("CONFLICT", None)


async def test_a_retry_after_losing_access_answers_as_sending_would_now(
    client: httpx.AsyncClient,
) -> None:
    alice, doc, conversation = await conversation_of(client)
    await send(client, doc.token, conversation, body="Vos résultats sont prêts.")
    await Block.create(patient_id=alice.patient.id, professional_id=doc.pk)
    before = await rows()

    again = await send(client, doc.token, conversation, body="Vos résultats sont prêts.")
    new = await send(client, doc.token, conversation, key="a-new-key")

    assert code(again) == code(new) == ("NOT_FOUND", None)
    assert again.data is None
    assert await rows() == before


async def test_a_representative_no_longer_one_gets_not_found(client: httpx.AsyncClient) -> None:
    mother = await make_patient("Claire")
    child = await make_minor(mother)
    doc = await make_professional()
    conversation = await started(client, doc, child)
    await send(client, mother.token, conversation)
    from models.patient import Representation

    await Representation.filter(representative_id=mother.patient.id).delete()

    again = await send(client, mother.token, conversation)

    assert code(again) == ("NOT_FOUND", None)


# --- the key itself ---------------------------------------------------------------------


@pytest.mark.parametrize("key", ["", " ", "x" * 256, "clé", "a\nb", "tab\there", "\x00"])
async def test_a_key_outside_1_to_255_printable_characters_is_refused(
    client: httpx.AsyncClient, key: str
) -> None:
    alice, _, conversation = await conversation_of(client)
    before = await rows()

    result = await send(client, alice.token, conversation, key=key)

    assert code(result) == ("BAD_USER_INPUT", "idempotencyKey")
    assert await rows() == before


@pytest.mark.parametrize("key", ["k", "x" * 255, "order 42/retry:~!"])
async def test_a_key_of_1_to_255_printable_characters_is_accepted(
    client: httpx.AsyncClient, key: str
) -> None:
    alice, _, conversation = await conversation_of(client)

    first = await send(client, alice.token, conversation, key=key)
    again = await send(client, alice.token, conversation, key=key)

    assert message_id(first) == message_id(again)


async def test_a_key_lasts_a_day_and_run_jobs_purges_it(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice, _, conversation = await conversation_of(client)
    first = await send(client, alice.token, conversation)
    sent = utcnow()

    within = await run_jobs(settings, now=sent + timedelta(hours=23))
    assert within["idempotency_keys_purged"] == 0
    assert message_id(await send(client, alice.token, conversation)) == message_id(first)

    after = await run_jobs(settings, now=sent + timedelta(days=1, minutes=1))
    assert after["idempotency_keys_purged"] == 1
    assert await IdempotencyKey.all().count() == 0

    again = await send(client, alice.token, conversation)
    assert message_id(again) != message_id(first)
    assert await Message.filter(body="Merci docteur.").count() == 2


async def test_a_key_older_than_a_day_is_new_again_before_any_purge(
    client: httpx.AsyncClient,
) -> None:
    alice, _, conversation = await conversation_of(client)
    first = await send(client, alice.token, conversation)
    await IdempotencyKey.all().update(created_at=utcnow() - timedelta(days=1, seconds=1))

    # even with another input: the old use of the key is forgotten
    again = await send(client, alice.token, conversation, body="Nouvelle question.")

    assert message_id(again) != message_id(first)
    assert await IdempotencyKey.all().count() == 1


# --- startConversation ------------------------------------------------------------------


async def test_a_retried_start_answers_the_first_conversation_and_message(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    doc = await make_professional()
    first = (await start(client, doc, alice)).ok()
    before = await rows()

    again = (await start(client, doc, alice)).ok()

    assert again == first
    assert await rows() == before


async def test_five_identical_starts_at_once_start_one_conversation(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    doc = await make_professional()

    results = await asyncio.gather(*(start(client, doc, alice) for _ in range(5)))

    payloads = [r.ok()["startConversation"] for r in results]
    assert len({p["conversation"]["id"] for p in payloads}) == 1
    assert len({p["message"]["id"] for p in payloads}) == 1
    assert await Conversation.all().count() == 1
    assert await Message.all().count() == 1


async def test_a_retried_start_once_blocked_answers_not_found(client: httpx.AsyncClient) -> None:
    alice = await make_patient()
    doc = await make_professional()
    (await start(client, doc, alice)).ok()
    await Block.create(patient_id=alice.patient.id, professional_id=doc.pk)
    before = await rows()

    again = await start(client, doc, alice)
    new = await start(client, doc, alice, key="a-new-key")

    assert code(again) == code(new) == ("NOT_FOUND", None)
    assert await rows() == before


async def test_a_retried_start_by_a_member_removed_since_is_forbidden(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    doc = await make_professional()
    clinic = await Establishment.create(finess="750000001", name="Clinique des Lilas")
    await EstablishmentMember.create(
        establishment_id=clinic.id, professional_id=doc.pk, since=utcnow()
    )
    variables = {
        "input": {
            "patientId": alice.id,
            "establishmentId": encode("Establishment", clinic.id),
            "subject": "Admission",
            "body": "Bonjour, voici votre dossier d'admission.",
            "idempotencyKey": KEY,
        }
    }
    first = (await gql(client, START, variables, token=doc.token)).ok()
    assert (await gql(client, START, variables, token=doc.token)).ok() == first
    await EstablishmentMember.all().delete()
    before = await rows()

    again = await gql(client, START, variables, token=doc.token)
    new_key = {"input": {**variables["input"], "idempotencyKey": "a-new-key"}}
    new = await gql(client, START, new_key, token=doc.token)

    assert code(again) == code(new) == ("FORBIDDEN", None)
    assert await rows() == before


# --- addDocument ------------------------------------------------------------------------


async def test_a_retried_upload_answers_the_first_document_and_stores_nothing(
    client: httpx.AsyncClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await make_patient()
    first = await upload(client, alice.token)
    before, files_before = await rows(), stored_files(settings)
    puts: list[int] = []
    original = BlobStore.put

    async def counted(self: BlobStore, data: bytes) -> StoredBlob:
        puts.append(len(data))
        return await original(self, data)

    monkeypatch.setattr(BlobStore, "put", counted)

    again = await upload(client, alice.token)

    assert document_id(again) == document_id(first)
    assert puts == []
    assert await rows() == before
    assert stored_files(settings) == files_before


async def test_another_file_under_the_same_key_adds_nothing(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await make_patient()
    await upload(client, alice.token)
    before, files_before = await rows(), stored_files(settings)

    other = await upload(client, alice.token, PNG)

    assert code(other) == ("CONFLICT", None)
    assert await rows() == before
    assert stored_files(settings) == files_before


async def test_uploads_at_once_with_one_key_add_one_document_and_leave_no_orphan(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await make_patient()

    results = await asyncio.gather(*(upload(client, alice.token) for _ in range(5)))

    assert len({document_id(r) for r in results}) == 1
    assert await Document.all().count() == 1
    # every object stored is the document's bytes: nothing the reaper would have to find
    blobs = await Blob.all().values_list("sha256", flat=True)
    assert set(blobs) == {(await Document.get()).sha256}
    assert len(stored_files(settings)) == len(blobs)


async def test_a_retried_upload_once_the_consent_is_gone_answers_as_a_new_upload_would(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    doc = await make_professional()
    granted = await consent(alice, doc, ConsentAccess.READ_WRITE)
    (await upload(client, doc.token, patientId=alice.id)).ok()
    await Consent.filter(id=granted.id).update(revoked_at=utcnow())
    before = await rows()

    again = await upload(client, doc.token, patientId=alice.id)
    new = await upload(client, doc.token, patientId=alice.id, key="a-new-key")

    assert code(again) == code(new) == ("NOT_FOUND", None)
    assert await rows() == before


async def test_a_retried_upload_under_a_consent_now_read_only_is_forbidden(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    doc = await make_professional()
    granted = await consent(alice, doc, ConsentAccess.READ_WRITE)
    (await upload(client, doc.token, patientId=alice.id)).ok()
    await Consent.filter(id=granted.id).update(access=ConsentAccess.READ)
    before = await rows()

    again = await upload(client, doc.token, patientId=alice.id)
    new = await upload(client, doc.token, patientId=alice.id, key="a-new-key")

    assert code(again) == code(new) == ("FORBIDDEN", None)
    assert again.data is None
    assert await rows() == before


async def test_a_retry_of_an_upload_deleted_since_answers_not_found(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    (await upload(client, alice.token)).ok()
    await Document.all().delete()
    before = await rows()

    again = await upload(client, alice.token)

    assert code(again) == ("NOT_FOUND", None)
    assert "no longer exists" in again.errors[0]["message"]
    assert await rows() == before


async def test_a_professional_and_the_patient_with_one_key_add_a_document_each(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    doc = await make_professional()
    await consent(alice, doc, ConsentAccess.READ_WRITE)

    by_alice = await upload(client, alice.token)
    by_doc = await upload(client, doc.token, patientId=alice.id)

    assert document_id(by_alice) != document_id(by_doc)
    assert await Document.all().count() == 2


async def test_a_partner_app_s_key_is_its_own_for_the_space_it_acts_for(
    service: Service,
) -> None:
    from tests.factories import make_operator

    http = service.http
    operator = await make_operator()
    app = await register_app(
        http, operator.token, scopes=["DOCUMENTS_WRITE"], documents={"add": ADD}
    )
    alice = await make_patient()
    assert alice.token is not None
    tokens = await connect(http, alice.token, app, scopes=["DOCUMENTS_WRITE"])
    token = tokens["access_token"]

    first = await upload(http, token, persisted=True)
    again = await upload(http, token, persisted=True)
    by_alice = await upload(http, alice.token)

    assert document_id(again) == document_id(first)
    assert document_id(by_alice) != document_id(first)
    assert await Document.all().count() == 2
    assert await Document.filter(author_app_id__isnull=False).count() == 1


# --- createAppointment ------------------------------------------------------------------


async def test_a_retried_booking_answers_the_first_appointment_and_books_nothing(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    first = (await book(client, alice.token)).ok()
    before = await rows()

    again = (await book(client, alice.token)).ok()

    assert again == first
    assert await rows() == before  # no second appointment, reminder or access event


async def test_a_booking_at_another_time_under_the_same_key_is_a_conflict(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    await book(client, alice.token)
    before = await rows()

    other = await book(client, alice.token, title="Autre consultation")

    assert code(other) == ("CONFLICT", None)
    assert await rows() == before


async def test_bookings_at_once_with_one_key_book_one_appointment(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    doc = await make_professional()
    await consent(alice, doc, ConsentAccess.READ)

    results = await asyncio.gather(*(book(client, doc.token, patientId=alice.id) for _ in range(5)))

    ids = {r.ok()["createAppointment"]["appointment"]["id"] for r in results}
    assert len(ids) == 1
    assert await Appointment.all().count() == 1


def _pk(global_id: str) -> Any:
    from resolvers.ids import decode_as

    return decode_as(global_id, "Conversation")
