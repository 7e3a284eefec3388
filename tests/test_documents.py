"""Documents of the dossier: uploads, shared bytes, the content route, hide and delete."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.config import Settings
from models.audit import AccessAction, AccessBasis, AccessEvent, ActorRole, AuditTrail
from models.base import utcnow
from models.blobs import BlobStore
from models.consent import Block, Consent, ConsentAccess
from models.document import Document as DocumentModel
from models.message import Conversation
from models.patient import Patient, SpaceStatus
from resolvers.ids import decode_as, encode
from tests.blob_support import object_file
from tests.factories import Person, Staff, make_minor, make_patient, make_professional
from tests.graphql import GraphQLResult, gql

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 16
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 16
TIFF = b"II*\x00\x08\x00\x00\x00" + b"\x00" * 16
RTF = b"{\\rtf1\\ansi Compte rendu de consultation}"
TEXT = "Ordonnance : paracétamol 1 g, trois fois par jour.\n".encode()
CP1252_TEXT = "Lettre de liaison \u2013 cœur, 12 €\r\n".encode("cp1252")
EXECUTABLE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 48

DOCUMENT_FIELDS = """id title category date mimeType size sha256 hidden
  author { __typename ... on Professional { lastName } ... on Patient { firstName } }"""
ADD = f"""mutation($input: AddDocumentInput!) {{
  addDocument(input: $input) {{ document {{ {DOCUMENT_FIELDS} }} }} }}"""
HIDE = """mutation($id: ID!, $hidden: Boolean!) {
  setDocumentHidden(input: {documentId: $id, hidden: $hidden}) { document { id hidden } } }"""
DELETE = "mutation($id: ID!) { deleteDocument(input: {documentId: $id}) { deletedId } }"
NODE = "query($id: ID!) { node(id: $id) { id } }"
LIST = """query($id: ID!) { patient(id: $id) {
  documents(first: 50) { totalCount edges { node { id title } } } } }"""
PREFLIGHT = {"Apollo-Require-Preflight": "true"}


# --- helpers ----------------------------------------------------------------------------


async def upload(
    client: httpx.AsyncClient,
    token: str | None,
    data: bytes = PDF,
    *,
    filename: str = "report.pdf",
    content_type: str = "application/pdf",
    title: str = "Bilan sanguin",
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> GraphQLResult:
    variables = {"input": {"title": title, "category": "LAB_RESULT", **fields, "file": None}}
    sent = dict(PREFLIGHT if headers is None else headers)
    if token:
        sent["Authorization"] = f"Bearer {token}"
    response = await client.post(
        "/graphql",
        data={
            "operations": json.dumps({"query": ADD, "variables": variables}),
            "map": json.dumps({"0": ["variables.input.file"]}),
        },
        files={"0": (filename, data, content_type)},
        headers=sent,
    )
    return GraphQLResult(response)


async def add(client: httpx.AsyncClient, token: str | None, data: bytes = PDF, **kw: Any) -> str:
    """The global id of a document that must be accepted."""
    result = await upload(client, token, data, **kw)
    return str(result.ok()["addDocument"]["document"]["id"])


async def download(
    client: httpx.AsyncClient, document_id: str, token: str | None
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return await client.get(f"/documents/{document_id}/content", headers=headers)


def stored_files(settings: Settings) -> list[Path]:
    """Every file under the blob directory, temporary ones included."""
    root = settings.blob_dir
    return sorted(Path(d) / f for d, _, names in os.walk(root) for f in names)


async def blob_path(settings: Settings, data: bytes) -> Path:
    """The file holding `data`, encrypted, under a random name (tests/blob_support.py)."""
    return await object_file(settings, data)


async def grant(person: Person, staff: Staff, access: ConsentAccess = ConsentAccess.READ) -> None:
    await Consent.create(
        patient_id=person.patient.id, professional_id=staff.pk, access=access, granted_at=utcnow()
    )


async def events(person: Person, action: AccessAction | None = None) -> list[tuple[Any, ...]]:
    query = AccessEvent.filter(patient_id=person.patient.id)
    if action is not None:
        query = query.filter(action=action)
    rows = await query.order_by("at").values_list("actor_id", "actor_role", "action", "basis")
    return [tuple(row) for row in rows]


async def snapshot(person: Person) -> list[tuple[Any, ...]]:
    """Rows of the dossier and the access log, to show a denial changed nothing."""
    docs = (
        await DocumentModel.filter(patient_id=person.patient.id)
        .order_by("id")
        .values_list("id", "title", "hidden", "sha256")
    )
    return [tuple(row) for row in docs] + await events(person)


def pk(document_id: str) -> uuid.UUID:
    return decode_as(document_id, "Document")


def assert_masked(result: GraphQLResult, secret: str) -> None:
    assert result.data is None
    assert result.codes == ["INTERNAL_SERVER_ERROR"]
    error = result.errors[0]
    assert error["message"] == "Internal server error."
    assert isinstance(error["extensions"]["requestId"], str)
    assert error["extensions"]["requestId"]
    assert secret not in result.response.text


@pytest.fixture
async def small_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app with a 1 KiB upload limit."""
    app = create_app(replace(settings, max_upload_bytes=1024))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.9", 4242))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


# --- uploads ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "declared", "mime"),
    [
        (PDF, "application/octet-stream", "application/pdf"),
        (JPEG, "image/jpg", "image/jpeg"),
        (PNG, "image/png", "image/png"),
        (TIFF, "application/octet-stream", "image/tiff"),
        (RTF, "text/rtf", "application/rtf"),
        (TEXT, "text/plain; charset=utf-8", "text/plain"),
        (CP1252_TEXT, "application/octet-stream", "text/plain"),
    ],
)
async def test_each_accepted_type_is_stored_with_its_sniffed_type_size_and_digest(
    client: httpx.AsyncClient, settings: Settings, data: bytes, declared: str, mime: str
) -> None:
    alice = await make_patient()

    result = await upload(client, alice.token, data, filename="scan.bin", content_type=declared)

    document = result.ok()["addDocument"]["document"]
    digest = hashlib.sha256(data).hexdigest()
    assert document["mimeType"] == mime
    assert document["size"] == len(data)
    assert document["sha256"] == digest
    assert document["author"] == {"__typename": "Patient", "firstName": "Alice"}
    row = await DocumentModel.get(id=pk(document["id"]))
    assert (row.mime_type, row.size, row.sha256) == (mime, len(data), digest)
    assert row.author_patient_id == alice.patient.id
    assert stored_files(settings) == [await blob_path(settings, data)]
    assert data not in (await blob_path(settings, data)).read_bytes()  # encrypted at rest


@pytest.mark.parametrize(
    ("data", "filename", "declared", "message"),
    [
        (
            EXECUTABLE,
            "report.pdf",
            "application/pdf",
            "Unsupported file type: PDF, JPEG, PNG, TIFF, RTF or plain text is accepted.",
        ),
        (PNG, "report.pdf", "application/pdf", "The declared type does not match the content."),
        (b"", "report.pdf", "application/pdf", "The file is empty."),
        (
            b"<html><script>alert(1)</script></html>",
            "notes.txt",
            "text/plain",
            "Unsupported file type: PDF, JPEG, PNG, TIFF, RTF or plain text is accepted.",
        ),
    ],
    ids=["renamed-executable", "lying-type", "empty", "html-as-text"],
)
async def test_a_refused_upload_names_the_file_and_leaves_nothing(
    client: httpx.AsyncClient,
    settings: Settings,
    data: bytes,
    filename: str,
    declared: str,
    message: str,
) -> None:
    alice = await make_patient()

    result = await upload(client, alice.token, data, filename=filename, content_type=declared)

    assert result.data is None
    assert result.errors[0]["message"] == message
    assert result.errors[0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "file"}
    assert await DocumentModel.all().count() == 0
    assert stored_files(settings) == []


async def test_a_file_over_the_limit_is_refused_and_one_at_the_limit_accepted(
    small_client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await make_patient()
    at_limit = PDF + b" " * (1024 - len(PDF))

    over = await upload(small_client, alice.token, at_limit + b" ")

    assert over.data is None
    assert over.errors[0]["extensions"] == {"code": "PAYLOAD_TOO_LARGE", "field": "file"}
    assert over.errors[0]["message"] == "The file is larger than the 0.000977 MB limit."
    assert await DocumentModel.all().count() == 0
    assert stored_files(settings) == []

    accepted = await upload(small_client, alice.token, at_limit)

    assert accepted.ok()["addDocument"]["document"]["size"] == 1024
    assert stored_files(settings) == [await blob_path(settings, at_limit)]


async def test_an_upload_variable_that_is_not_a_file_is_bad_input(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await make_patient()
    variables = {"input": {"title": "Bilan", "category": "LAB_RESULT", "file": "JVBERi0xLjQK"}}

    result = await gql(client, ADD, variables, token=alice.token)

    assert result.data is None
    assert result.errors[0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "file"}
    assert await DocumentModel.all().count() == 0
    assert stored_files(settings) == []


async def test_a_failed_blob_write_is_masked_and_leaves_nothing(
    client: httpx.AsyncClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await make_patient()

    async def disk_full(self: BlobStore, data: bytes) -> Any:
        raise OSError(28, "No space left on device", "/srv/secret-volume/blobs")

    monkeypatch.setattr(BlobStore, "put", disk_full)

    result = await upload(client, alice.token)

    assert_masked(result, "secret-volume")
    assert await DocumentModel.all().count() == 0
    assert stored_files(settings) == []


async def test_a_write_failing_half_way_leaves_no_temporary_file(
    client: httpx.AsyncClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await make_patient()

    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error on secret-volume")

    monkeypatch.setattr(os, "fsync", failing_fsync)

    result = await upload(client, alice.token)

    assert_masked(result, "secret-volume")
    assert await DocumentModel.all().count() == 0
    assert stored_files(settings) == []


async def test_a_failed_row_insert_removes_the_bytes_it_wrote(
    client: httpx.AsyncClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await make_patient()

    async def insert_fails(*args: Any, **kwargs: Any) -> Any:
        assert stored_files(settings) == [await blob_path(settings, PDF)]  # the bytes came first
        raise RuntimeError("database is locked: INSERT INTO document secret-sql")

    monkeypatch.setattr(DocumentModel, "create", insert_fails)

    result = await upload(client, alice.token)

    assert_masked(result, "secret-sql")
    assert await DocumentModel.all().count() == 0
    assert stored_files(settings) == []


async def test_a_failed_row_insert_keeps_bytes_another_document_shares(
    client: httpx.AsyncClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await make_patient()
    first = await add(client, alice.token)

    async def insert_fails(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk I/O error")

    monkeypatch.setattr(DocumentModel, "create", insert_fails)

    result = await upload(client, alice.token, title="Copie")

    assert result.codes == ["INTERNAL_SERVER_ERROR"]
    assert await DocumentModel.all().values_list("id", flat=True) == [pk(first)]
    assert stored_files(settings) == [await blob_path(settings, PDF)]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Apollo-Require-Preflight": ""}, {"X-Apollo-Operation-Name": "  "}],
    ids=["none", "empty-preflight", "blank-operation-name"],
)
async def test_a_multipart_request_without_the_csrf_header_is_refused(
    client: httpx.AsyncClient, settings: Settings, headers: dict[str, str]
) -> None:
    alice = await make_patient()

    result = await upload(client, alice.token, headers=headers)

    assert result.response.status_code == 400
    assert result.response.headers["content-type"].startswith("application/json")
    assert result.codes == ["BAD_USER_INPUT"]
    assert await DocumentModel.all().count() == 0
    assert stored_files(settings) == []


async def test_a_multipart_request_naming_its_operation_is_accepted(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()

    result = await upload(client, alice.token, headers={"X-Apollo-Operation-Name": "AddDocument"})

    assert result.ok()["addDocument"]["document"]["mimeType"] == "application/pdf"


async def test_a_patient_cannot_hide_a_document_from_representatives(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await make_patient()

    result = await upload(client, alice.token, hiddenFromRepresentatives=True)

    assert result.data is None
    assert result.errors[0]["extensions"] == {
        "code": "BAD_USER_INPUT",
        "field": "hiddenFromRepresentatives",
    }
    assert await DocumentModel.all().count() == 0
    assert stored_files(settings) == []


async def test_anonymous_upload_is_unauthenticated(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    result = await upload(client, None)

    assert result.codes == ["UNAUTHENTICATED"]
    assert await DocumentModel.all().count() == 0
    assert stored_files(settings) == []


# --- shared bytes -----------------------------------------------------------------------


async def test_identical_bytes_share_one_blob_until_the_last_document_goes(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await make_patient()
    bob = await make_patient("Bob", "Martin")
    first = await add(client, alice.token, title="Ordonnance")
    second = await add(client, bob.token, title="Même ordonnance")
    assert await DocumentModel.filter(sha256=hashlib.sha256(PDF).hexdigest()).count() == 2
    assert stored_files(settings) == [await blob_path(settings, PDF)]

    deleted = await gql(client, DELETE, {"id": first}, token=alice.token)

    assert deleted.ok() == {"deleteDocument": {"deletedId": first}}
    assert stored_files(settings) == [await blob_path(settings, PDF)]
    assert (await download(client, second, bob.token)).content == PDF

    await gql(client, DELETE, {"id": second}, token=bob.token)

    assert await DocumentModel.all().count() == 0
    assert stored_files(settings) == []


# --- the content route ------------------------------------------------------------------


async def test_the_holder_downloads_the_exact_bytes_and_no_event_is_written(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    body = PDF + bytes(range(256)) * 300  # several chunks
    document_id = await add(client, alice.token, body, title="Compte rendu d'hospitalisation")

    response = await download(client, document_id, alice.token)

    assert response.status_code == 200
    assert response.content == body
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-length"] == str(len(body))
    assert response.headers["content-disposition"] == (
        'attachment; filename="Compte_rendu_d_hospitalisation.pdf"; '
        "filename*=UTF-8''Compte%20rendu%20d%27hospitalisation.pdf"
    )
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    assert await events(alice) == []


async def test_a_text_document_is_served_with_its_stored_type(client: httpx.AsyncClient) -> None:
    alice = await make_patient()
    document_id = await add(
        client, alice.token, CP1252_TEXT, content_type="text/plain", title="Lettre — cœur"
    )

    response = await download(client, document_id, alice.token)

    assert response.content == CP1252_TEXT
    # No charset is claimed: the bytes may be Windows-1252, not UTF-8.
    assert response.headers["content-type"] == "text/plain"
    assert response.headers["content-disposition"] == (
        'attachment; filename="Lettre_c_ur.txt"; '
        "filename*=UTF-8''Lettre%20%E2%80%94%20c%C5%93ur.txt"
    )


async def test_a_consented_professional_downloads_with_exactly_one_event(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    doc = await make_professional()
    await grant(alice, doc)
    document_id = await add(client, alice.token, JPEG, content_type="image/jpeg")

    response = await download(client, document_id, doc.token)

    assert response.status_code == 200
    assert response.content == JPEG
    assert response.headers["content-type"] == "image/jpeg"
    assert await events(alice) == [
        (doc.pk, ActorRole.PROFESSIONAL, AccessAction.DOWNLOAD, AccessBasis.CONSENT)
    ]
    row = await AccessEvent.get(patient_id=alice.patient.id)
    assert row.document_id == pk(document_id)


async def test_a_professional_without_consent_gets_not_found_and_no_event(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    stranger = await make_professional("Inconnu")
    document_id = await add(client, alice.token)

    response = await download(client, document_id, stranger.token)

    assert response.status_code == 404
    assert response.json() == {
        "errors": [{"message": "Not found.", "extensions": {"code": "NOT_FOUND"}}]
    }
    assert await events(alice) == []


@pytest.mark.parametrize("token", [None, "not-a-real-token"], ids=["anonymous", "bad-token"])
async def test_an_unauthenticated_download_is_refused(
    client: httpx.AsyncClient, token: str | None
) -> None:
    alice = await make_patient()
    document_id = await add(client, alice.token)

    response = await download(client, document_id, token)

    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["errors"][0]["extensions"] == {"code": "UNAUTHENTICATED"}
    assert await events(alice) == []


async def test_an_unknown_or_malformed_document_id_is_not_found(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()

    for document_id in (encode("Document", uuid.uuid4()), "garbage", alice.id):
        response = await download(client, document_id, alice.token)

        assert response.status_code == 404
        assert response.json()["errors"][0]["extensions"] == {"code": "NOT_FOUND"}


async def test_a_hidden_document_downloads_only_for_the_treating_doctor_and_its_author(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    consented = await make_professional("Consenti")
    treating = await make_professional("Traitant")
    author = await make_professional("Auteur")
    await grant(alice, consented)
    await grant(alice, author, ConsentAccess.READ_WRITE)
    await Patient.filter(id=alice.patient.id).update(treating_doctor_id=treating.pk)
    document_id = await add(client, author.token, patientId=alice.id)
    hidden = await gql(client, HIDE, {"id": document_id, "hidden": True}, token=alice.token)
    assert hidden.ok() == {"setDocumentHidden": {"document": {"id": document_id, "hidden": True}}}
    before = await events(alice, AccessAction.DOWNLOAD)

    refused = await download(client, document_id, consented.token)
    by_treating = await download(client, document_id, treating.token)
    by_author = await download(client, document_id, author.token)

    assert refused.status_code == 404
    assert refused.json()["errors"][0]["extensions"] == {"code": "NOT_FOUND"}
    assert by_treating.status_code == 200
    assert by_treating.content == PDF
    assert by_author.status_code == 200
    assert await events(alice, AccessAction.DOWNLOAD) == [
        *before,
        (treating.pk, ActorRole.PROFESSIONAL, AccessAction.DOWNLOAD, AccessBasis.TREATING_DOCTOR),
        (author.pk, ActorRole.PROFESSIONAL, AccessAction.DOWNLOAD, AccessBasis.CONSENT),
    ]


async def test_an_author_without_consent_still_downloads_their_document(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    author = await make_professional("Auteur")
    await grant(alice, author, ConsentAccess.READ_WRITE)
    document_id = await add(client, author.token, patientId=alice.id)
    await Consent.filter(patient_id=alice.patient.id).update(revoked_at=utcnow())

    response = await download(client, document_id, author.token)

    assert response.status_code == 200
    assert await events(alice, AccessAction.DOWNLOAD) == [
        (author.pk, ActorRole.PROFESSIONAL, AccessAction.DOWNLOAD, AccessBasis.AUTHOR)
    ]


async def test_an_author_in_a_conversation_reads_their_document_as_its_author(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    author = await make_professional("Auteur")
    await grant(alice, author, ConsentAccess.READ_WRITE)
    document_id = await add(client, author.token, patientId=alice.id)
    await Consent.filter(patient_id=alice.patient.id).update(revoked_at=utcnow())
    await Conversation.create(
        patient_id=alice.patient.id,
        professional_id=author.pk,
        subject="Résultats",
        last_message_at=utcnow(),
    )

    node = await gql(client, NODE, {"id": document_id}, token=author.token)
    response = await download(client, document_id, author.token)

    assert node.ok() == {"node": {"id": document_id}}
    assert response.status_code == 200
    assert [e[2:] for e in await events(alice) if e[2] is not AccessAction.WRITE] == [
        (AccessAction.READ, AccessBasis.AUTHOR),
        (AccessAction.DOWNLOAD, AccessBasis.AUTHOR),
    ]


async def test_the_download_route_and_graphql_agree_on_who_sees_a_document(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    mallory = await make_patient("Mallory", "Durand")
    consented = await make_professional("Consenti")
    treating = await make_professional("Traitant")
    stranger = await make_professional("Inconnu")
    blocked = await make_professional("Bloqué")
    await grant(alice, consented)
    await grant(alice, blocked)
    await Block.create(patient_id=alice.patient.id, professional_id=blocked.pk)
    await Patient.filter(id=alice.patient.id).update(treating_doctor_id=treating.pk)
    visible = await add(client, alice.token, title="Visible")
    hidden = await add(client, alice.token, PNG, content_type="image/png", title="Caché")
    await gql(client, HIDE, {"id": hidden, "hidden": True}, token=alice.token)
    viewers = {
        "holder": alice.token,
        "other patient": mallory.token,
        "consented": consented.token,
        "treating": treating.token,
        "stranger": stranger.token,
        "blocked": blocked.token,
    }

    seen: dict[str, list[bool]] = {}
    for name, token in viewers.items():
        for document_id in (visible, hidden):
            node = (await gql(client, NODE, {"id": document_id}, token=token)).data["node"]
            status = (await download(client, document_id, token)).status_code
            assert (node is not None, status) in {(True, 200), (False, 404)}, (name, document_id)
            seen.setdefault(name, []).append(status == 200)

    assert seen == {
        "holder": [True, True],
        "other patient": [False, False],
        "consented": [True, False],
        "treating": [True, True],
        "stranger": [False, False],
        "blocked": [False, False],
    }


async def test_a_missing_blob_answers_a_masked_json_error_and_no_event(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await make_patient()
    doc = await make_professional()
    await grant(alice, doc)
    document_id = await add(client, alice.token)
    (await blob_path(settings, PDF)).unlink()

    response = await download(client, document_id, doc.token)

    assert response.status_code == 500
    error = response.json()["errors"][0]
    assert error["message"] == "Internal server error."
    assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert error["extensions"]["requestId"]
    assert await events(alice) == []


# --- hide and delete --------------------------------------------------------------------


async def test_the_holder_hides_a_document_from_professionals_and_shows_it_again(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    doc = await make_professional()
    await grant(alice, doc)
    document_id = await add(client, alice.token)

    hidden = await gql(client, HIDE, {"id": document_id, "hidden": True}, token=alice.token)

    assert hidden.ok() == {"setDocumentHidden": {"document": {"id": document_id, "hidden": True}}}
    listed = await gql(client, LIST, {"id": alice.id}, token=doc.token)
    assert listed.ok()["patient"]["documents"] == {"totalCount": 0, "edges": []}

    shown = await gql(client, HIDE, {"id": document_id, "hidden": False}, token=alice.token)

    assert shown.ok() == {"setDocumentHidden": {"document": {"id": document_id, "hidden": False}}}
    listed = await gql(client, LIST, {"id": alice.id}, token=doc.token)
    assert listed.ok()["patient"]["documents"]["totalCount"] == 1
    assert await events(alice, AccessAction.WRITE) == []


async def test_a_representative_hides_and_deletes_a_minors_document(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    mother = await make_patient("Claire", "Petit")
    child = await make_minor(mother)
    document_id = await add(client, mother.token, patientId=child.id, title="Carnet")

    hidden = await gql(client, HIDE, {"id": document_id, "hidden": True}, token=mother.token)
    deleted = await gql(client, DELETE, {"id": document_id}, token=mother.token)

    assert hidden.ok()["setDocumentHidden"]["document"]["hidden"] is True
    assert deleted.ok() == {"deleteDocument": {"deletedId": document_id}}
    assert await DocumentModel.all().count() == 0
    assert stored_files(settings) == []
    write = (mother.patient.id, ActorRole.PATIENT, AccessAction.WRITE, AccessBasis.REPRESENTATIVE)
    assert await events(child, AccessAction.WRITE) == [write, write, write]


async def test_a_document_hidden_from_representatives_is_out_of_their_reach(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    mother = await make_patient("Claire", "Petit")
    child = await make_minor(mother)
    doc = await make_professional()
    await grant(child, doc, ConsentAccess.READ_WRITE)
    document_id = await add(client, doc.token, patientId=child.id, hiddenFromRepresentatives=True)
    before = await snapshot(child)

    listed = await gql(client, LIST, {"id": child.id}, token=mother.token)
    hide = await gql(client, HIDE, {"id": document_id, "hidden": True}, token=mother.token)
    delete = await gql(client, DELETE, {"id": document_id}, token=mother.token)
    response = await download(client, document_id, mother.token)

    assert listed.ok()["patient"]["documents"] == {"totalCount": 0, "edges": []}
    assert hide.codes == ["NOT_FOUND"]
    assert delete.codes == ["NOT_FOUND"]
    assert response.status_code == 404
    reads = [e for e in await events(child) if e[2] is AccessAction.READ]
    assert [e for e in await snapshot(child) if e not in reads] == before
    assert stored_files(settings) == [await blob_path(settings, PDF)]


async def test_a_professional_cannot_manage_a_document_they_can_see(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await make_patient()
    doc = await make_professional()
    await grant(alice, doc, ConsentAccess.READ_WRITE)
    by_alice = await add(client, alice.token, title="De la patiente")
    by_doc = await add(client, doc.token, PNG, content_type="image/png", patientId=alice.id)
    before = await snapshot(alice)

    for document_id in (by_alice, by_doc):
        hide = await gql(client, HIDE, {"id": document_id, "hidden": True}, token=doc.token)
        delete = await gql(client, DELETE, {"id": document_id}, token=doc.token)

        assert hide.data is None
        assert hide.codes == ["FORBIDDEN"]
        assert delete.data is None
        assert delete.codes == ["FORBIDDEN"]

    assert await snapshot(alice) == before
    assert stored_files(settings) == sorted(
        [await blob_path(settings, PDF), await blob_path(settings, PNG)]
    )


async def test_a_document_the_viewer_cannot_see_is_not_found_to_manage(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await make_patient()
    mallory = await make_patient("Mallory", "Durand")
    consented = await make_professional("Consenti")
    stranger = await make_professional("Inconnu")
    await grant(alice, consented, ConsentAccess.READ_WRITE)
    document_id = await add(client, alice.token)
    await gql(client, HIDE, {"id": document_id, "hidden": True}, token=alice.token)
    before = await snapshot(alice)

    for token in (consented.token, stranger.token, mallory.token):
        hide = await gql(client, HIDE, {"id": document_id, "hidden": False}, token=token)
        delete = await gql(client, DELETE, {"id": document_id}, token=token)

        assert hide.codes == ["NOT_FOUND"]
        assert delete.codes == ["NOT_FOUND"]

    anonymous = await gql(client, DELETE, {"id": document_id})
    assert anonymous.codes == ["UNAUTHENTICATED"]
    assert await snapshot(alice) == before
    assert stored_files(settings) == [await blob_path(settings, PDF)]


async def test_the_holder_of_a_closed_space_cannot_change_its_documents(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await make_patient()
    document_id = await add(client, alice.token)
    await Patient.filter(id=alice.patient.id).update(status=SpaceStatus.CLOSED)
    before = await snapshot(alice)

    hide = await gql(client, HIDE, {"id": document_id, "hidden": True}, token=alice.token)
    delete = await gql(client, DELETE, {"id": document_id}, token=alice.token)

    # Archived with the closed space: the documents are out of reach, as if absent.
    assert hide.codes == ["NOT_FOUND"]
    assert delete.codes == ["NOT_FOUND"]
    assert await snapshot(alice) == before
    assert stored_files(settings) == [await blob_path(settings, PDF)]


# --- professionals adding ---------------------------------------------------------------


async def test_a_professional_with_read_consent_cannot_add(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await make_patient()
    doc = await make_professional()
    await grant(alice, doc, ConsentAccess.READ)

    result = await upload(client, doc.token, patientId=alice.id)

    assert result.data is None
    assert result.codes == ["FORBIDDEN"]
    assert await DocumentModel.all().count() == 0
    assert await events(alice) == []
    assert stored_files(settings) == []


async def test_a_professional_without_a_basis_or_a_patient_id_cannot_add(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await make_patient()
    stranger = await make_professional("Inconnu")

    unknown = await upload(client, stranger.token, patientId=alice.id)
    unnamed = await upload(client, stranger.token)

    assert unknown.codes == ["NOT_FOUND"]
    assert unnamed.errors[0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "patientId"}
    assert await DocumentModel.all().count() == 0
    assert stored_files(settings) == []


async def test_a_professional_with_read_write_consent_adds_as_the_author(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await make_patient()
    doc = await make_professional("Moreau")
    await grant(alice, doc, ConsentAccess.READ_WRITE)

    result = await upload(
        client, doc.token, RTF, content_type="application/rtf", patientId=alice.id
    )

    document = result.ok()["addDocument"]["document"]
    assert document["author"] == {"__typename": "Professional", "lastName": "Moreau"}
    assert document["mimeType"] == "application/rtf"
    row = await DocumentModel.get(id=pk(document["id"]))
    assert (row.patient_id, row.author_professional_id, row.author_patient_id) == (
        alice.patient.id,
        doc.pk,
        None,
    )
    assert await events(alice) == [
        (doc.pk, ActorRole.PROFESSIONAL, AccessAction.WRITE, AccessBasis.CONSENT)
    ]
    event = await AccessEvent.get(patient_id=alice.patient.id)
    assert event.document_id == row.id
    assert stored_files(settings) == [await blob_path(settings, RTF)]


# --- a write and its access event: both or neither -------------------------------------------


async def _audit_fails(*args: Any, **kwargs: Any) -> None:
    raise RuntimeError("the access_event table is unavailable")


async def test_a_document_whose_access_event_fails_is_not_added_and_leaves_no_bytes(
    client: httpx.AsyncClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await make_patient()
    doc = await make_professional("Moreau")
    await grant(alice, doc, ConsentAccess.READ_WRITE)
    monkeypatch.setattr(AuditTrail, "record", _audit_fails)

    result = await upload(
        client, doc.token, RTF, content_type="application/rtf", patientId=alice.id
    )

    assert result.codes == ["INTERNAL_SERVER_ERROR"]
    assert await DocumentModel.all().count() == 0
    assert stored_files(settings) == []


async def test_a_change_or_deletion_whose_access_event_fails_is_not_made(
    client: httpx.AsyncClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    mother = await make_patient("Claire")
    child = await make_minor(mother)
    document = await add(client, mother.token, patientId=child.id)
    monkeypatch.setattr(AuditTrail, "record", _audit_fails)

    hidden = await gql(
        client,
        "mutation($id: ID!) { setDocumentHidden(input: {documentId: $id, hidden: true}) "
        "{ document { id } } }",
        {"id": document},
        token=mother.token,
    )
    deleted = await gql(client, DELETE, {"id": document}, token=mother.token)

    assert hidden.codes == deleted.codes == ["INTERNAL_SERVER_ERROR"]
    row = await DocumentModel.get(id=pk(document))
    assert row.hidden is False
    assert stored_files(settings) == [await blob_path(settings, PDF)]  # the bytes stay with the row
