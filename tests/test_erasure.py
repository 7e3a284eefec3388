"""Erasing a space, rows and bytes: an opposition keeps only its proof, and the purge of a
closed space removes the stored bytes of its documents and attachments. Bytes go only once
the rows are gone for good: a failed erasure leaves both."""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest
from dateutil.relativedelta import relativedelta
from tortoise import connections
from tortoise.fields.relational import ForeignKeyFieldInstance, OneToOneFieldInstance
from tortoise.models import Model

from api.config import Settings
from api.db import MODEL_MODULES
from api.jobs import run_jobs
from models.audit import AccessEvent
from models.base import paris_today, utcnow
from models.blobs import PDF as PDF_TYPE
from models.blobs import Blob
from models.idempotency import IdempotencyKey
from models.message import Attachment, Conversation, Message, ReadMark, SenderRole
from models.outbox import OutboxMessage
from models.patient import Patient, Sex, SpaceStatus
from resolvers.ids import decode_as
from tests.conftest import CaughtMail
from tests.factories import PASSWORD, Person, Staff, make_operator, make_patient, make_professional
from tests.graphql import GraphQLResult, gql
from tests.lifecycle_support import (
    CLOSE,
    OPPOSE,
    REISSUE,
    activation_code_from,
    cheap_dummy_hash,  # noqa: F401  (autouse)
    enroll,
    enrolment,
)
from tests.messaging_support import File, save, send, started

PREFLIGHT = {"Apollo-Require-Preflight": "true"}
ADD = """mutation($input: AddDocumentInput!) {
  addDocument(input: $input) { document { id sha256 } } }"""

# Distinct bytes, so that each blob's fate can be told apart on disk.
SHARED = b"%PDF-1.4\n% shared with the parent's own document\n%%EOF\n"
CHILD_ONLY = b"%PDF-1.4\n% compte rendu de Theo\n%%EOF\n"
DOCTOR_ONLY = "Résultat confidentiel, caché aux représentants.\n".encode()
ATTACHMENT = b"%PDF-1.4\n% piece jointe du medecin\n%%EOF\n"
REPLY = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x01" * 16


# --- helpers ----------------------------------------------------------------------------


async def stored_files(settings: Settings) -> list[str]:
    """The SHA-256 of the bytes in every file under the blob directory (objects have random
    names: each is found through its `blob` row; a file without one stands as "orphan")."""
    names = {row.id.hex: row.sha256 for row in await Blob.all()}
    files = (name for _, _, found in os.walk(settings.blob_dir) for name in found)
    return sorted(names.get(name, "orphan") for name in files)


def outbox_files(settings: Settings) -> list[str]:
    return sorted(name for _, _, names in os.walk(settings.outbox_dir) for name in names)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def upload(
    client: httpx.AsyncClient, token: str | None, data: bytes, filename: str, **fields: Any
) -> GraphQLResult:
    variables = {"input": {"title": "Compte rendu", "category": "REPORT", **fields, "file": None}}
    response = await client.post(
        "/graphql",
        data={
            "operations": json.dumps({"query": ADD, "variables": variables}),
            "map": json.dumps({"0": ["variables.input.file"]}),
        },
        files={"0": (filename, data, "application/octet-stream")},
        headers={**PREFLIGHT, "Authorization": f"Bearer {token}"},
    )
    return GraphQLResult(response)


async def ok(client: httpx.AsyncClient, query: str, variables: dict[str, Any], token: Any) -> Any:
    return (await gql(client, query, variables, token=token)).ok()


def every_model() -> list[type[Model]]:
    found: dict[str, type[Model]] = {}
    for module_name in MODEL_MODULES:
        module = importlib.import_module(module_name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(value, Model)
                and not value._meta.abstract
                and value.__module__ == (module_name)
            ):
                found[value._meta.db_table] = value
    return [found[name] for name in sorted(found)]


async def table_counts() -> dict[str, int]:
    return {model._meta.db_table: await model.all().count() for model in every_model()}


async def rows_about(patient_pk: UUID) -> dict[str, int]:
    """For every table, the rows that point to this patient: every foreign key to a patient,
    and the bare ids (the outbox's patient, an access event's actor). Zero counts left out."""
    counts: dict[str, int] = {}
    for model in every_model():
        for field in model._meta.fields_map.values():
            if (
                isinstance(field, ForeignKeyFieldInstance | OneToOneFieldInstance)
                and field.related_model is Patient
            ):
                column = field.source_field
                assert column is not None
                n = await model.filter(**{column: patient_pk}).count()
                if n:
                    counts[f"{model._meta.db_table}.{column}"] = n
    for model, column in ((OutboxMessage, "patient_id"), (AccessEvent, "actor_id")):
        n = await model.filter(**{column: patient_pk}).count()
        if n:
            counts[f"{model._meta.db_table}.{column}"] = n
    return counts


@asynccontextmanager
async def deletes_refused(table: str) -> AsyncIterator[None]:
    """A real database failure inside the erasing transaction: a trigger refuses every
    DELETE on `table` (SQLite or PostgreSQL), dropped afterwards."""
    db = connections.get("default")
    if db.capabilities.dialect == "postgres":
        await db.execute_script(
            "CREATE FUNCTION refuse_delete() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'deletes refused'; END $$ LANGUAGE plpgsql;"
            f"CREATE TRIGGER refuse_delete BEFORE DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION refuse_delete();"
        )
    else:
        await db.execute_script(
            f"CREATE TRIGGER refuse_delete BEFORE DELETE ON {table} "
            "BEGIN SELECT RAISE(ABORT, 'deletes refused'); END;"
        )
    try:
        yield
    finally:
        if db.capabilities.dialect == "postgres":
            await db.execute_script(
                f"DROP TRIGGER refuse_delete ON {table}; DROP FUNCTION refuse_delete();"
            )
        else:
            await db.execute_script("DROP TRIGGER refuse_delete;")


# --- opposition -------------------------------------------------------------------------


async def _pending_minor(
    client: httpx.AsyncClient, mailbox: CaughtMail, parent: Person, operator: Staff
) -> tuple[dict[str, Any], str, str]:
    """A minor enrolled with `parent` as representative: (enrolment input, id, code)."""
    data = enrolment(
        first_name="Théo",
        last_name="Moreau",
        birth_date=paris_today() - relativedelta(years=8, days=30),
        sex=Sex.MALE,
        email=None,
        representativeId=parent.id,
    )
    child = await enroll(client, operator.token, data)
    assert child["status"] == "PENDING"
    assert parent.email
    return data, child["id"], activation_code_from(mailbox, parent.email)


async def _fill(
    client: httpx.AsyncClient,
    settings: Settings,
    parent: Person,
    doctor: Staff,
    other: Staff,
    child: str,
) -> None:
    """The representative and professionals write everything a space can hold."""
    scoped = {"patientId": child}
    token = parent.token
    pid = {"professionalId": doctor.id, **scoped}
    await ok(
        client,
        "mutation($i: GrantConsentInput!) { grantConsent(input: $i) { consent { id } } }",
        {"i": {**pid, "access": "READ_WRITE"}},
        token,
    )
    await ok(
        client,
        "mutation($i: EmergencyAccessInput!) { emergencyAccess(input: $i) { patient { id } } }",
        {"i": {"patientId": child, "reason": "Malaise à l'école, parents injoignables."}},
        other.token,
    )
    for mutation, variables in (
        ("setTreatingDoctor(input: $i) { patient { id } }", pid),
        ("blockProfessional(input: $i) { patient { id } }", {**pid, "professionalId": other.id}),
        ("setEmergencyAccessOpposition(input: $i) { patient { id } }", {**scoped, "opposed": True}),
        (
            "updateHealthProfile(input: $i) { healthProfile { allergies } }",
            {**scoped, "allergies": ["arachide"], "treatments": ["Ventoline"]},
        ),
        (
            "recordVaccination(input: $i) { vaccination { id } }",
            {**scoped, "vaccine": "DTP", "date": str(paris_today() - timedelta(days=40))},
        ),
        (
            "recordScreening(input: $i) { screening { id } }",
            {**scoped, "kind": "COLORECTAL", "date": str(paris_today() - timedelta(days=9))},
        ),
        (
            "createAppointment(input: $i) { appointment { id } }",
            {
                **scoped,
                "idempotencyKey": "appointment-of-the-child",  # kept a day: erased too
                "startsAt": (utcnow() + timedelta(days=3)).isoformat(),
                "endsAt": (utcnow() + timedelta(days=3, hours=1)).isoformat(),
                "title": "Pédiatre",
                "location": "Cabinet du Dr Zylberstein",
            },
        ),
    ):
        name = mutation.split("(")[0]
        input_type = name[0].upper() + name[1:] + "Input"
        await ok(client, f"mutation($i: {input_type}!) {{ {mutation} }}", {"i": variables}, token)
    feed = await ok(
        client, "query($id: ID!) { patient(id: $id) { calendarFeedUrl } }", {"id": child}, token
    )
    assert feed["patient"]["calendarFeedUrl"]
    for data, name, who, extra in (
        (SHARED, "a.pdf", token, {"idempotencyKey": "document-of-the-child"}),
        (CHILD_ONLY, "b.pdf", token, {}),
        (
            DOCTOR_ONLY,
            "c.txt",
            doctor.token,
            {"hiddenFromRepresentatives": True, "idempotencyKey": "doctor-s-document"},
        ),
    ):
        (await upload(client, who, data, name, **scoped, **extra)).ok()
    # A conversation needs an active space: made directly, to show that one goes too.
    now = utcnow()
    conversation = await Conversation.create(
        patient_id=decode_as(child, "Patient"),
        professional_id=doctor.pk,
        subject="Vaccins",
        last_message_at=now,
    )
    for role, body, (filename, data, mime) in (
        (SenderRole.PROFESSIONAL, "Voici la lettre.", ("lettre.pdf", ATTACHMENT, PDF_TYPE)),
        (SenderRole.PATIENT, "Merci.", ("photo.png", REPLY, "image/png")),
    ):
        message = await Message.create(
            conversation_id=conversation.id,
            sender_role=role,
            sender_professional_id=doctor.pk if role is SenderRole.PROFESSIONAL else None,
            sender_patient_id=parent.patient.id if role is SenderRole.PATIENT else None,
            on_behalf_of_id=decode_as(child, "Patient") if role is SenderRole.PATIENT else None,
            body=body,
            sent_at=now,
        )
        stored = await settings.blob_store().put(data)
        await Attachment.create(
            message_id=message.id,
            filename=filename,
            mime_type=mime,
            size=stored.size,
            sha256=stored.sha256,
        )
    await ReadMark.create(conversation_id=conversation.id, side=SenderRole.PATIENT, read_at=now)


async def test_opposing_a_minors_space_erases_all_written_to_it_but_the_proof(
    client: httpx.AsyncClient, settings: Settings, mailbox: CaughtMail
) -> None:
    # given a parent whose own document has the same bytes as one of their child's
    parent = await make_patient("Nadia", "Moreau")
    doctor = await make_professional("Zylberstein")
    other = await make_professional("Urgentiste")
    operator = await make_operator()
    (await upload(client, parent.token, SHARED, "own.pdf", idempotencyKey="own-document")).ok()
    baseline = await table_counts()
    assert baseline["idempotency_key"] == 1  # the parent's own: kept
    parents_rows = await rows_about(parent.patient.id)
    # and the child's pending space, to which the representative and professionals wrote
    data, child, code = await _pending_minor(client, mailbox, parent, operator)
    await _fill(client, settings, parent, doctor, other, child)
    child_pk = decode_as(child, "Patient")
    written = await rows_about(child_pk)
    assert await IdempotencyKey.all().count() == 4  # the parent's own, and three of the child's
    assert set(written) >= {
        "access_event.patient_id",
        "activation_code.patient_id",
        "appointment.patient_id",
        "block.patient_id",
        "calendar_feed.patient_id",
        "consent.patient_id",
        "conversation.patient_id",
        "document.patient_id",
        "emergency_access.patient_id",
        "health_profile.patient_id",
        "message.on_behalf_of_id",
        "outbox_message.patient_id",
        "reminder.patient_id",
        "representation.dependent_id",
        "screening.patient_id",
        "vaccination.patient_id",
    }
    assert await stored_files(settings) == sorted(
        sha(b) for b in (SHARED, CHILD_ONLY, DOCTOR_ONLY, ATTACHMENT, REPLY)
    )

    # when the representative opposes
    proof = {"code": code, "nir": data["nir"], "birthDate": data["birthDate"]}
    result = await gql(client, OPPOSE, {"input": proof}, token=parent.token)

    # then only the proof is left: every table is back to what it held before the child
    # (lock rows of attempt counters aside: a keyed hash each, dropped by the counters job;
    # and the clocks of positions, models/clock.py: counters about no one, which the first
    # message of a database creates)
    assert result.ok() == {"opposeSpace": {"opposed": True}}
    assert await rows_about(child_pk) == {}
    after = await table_counts()
    for counters in ("attempt_key", "clock"):
        del after[counters], baseline[counters]
    assert after == {**baseline, "patient": baseline["patient"] + 1}
    proof_row = await Patient.get(id=child_pk)
    assert (proof_row.status, proof_row.opposed_at is not None) == (SpaceStatus.OPPOSED, True)
    assert (proof_row.first_name, proof_row.last_name, proof_row.nir_encrypted) == ("", "", None)
    assert (proof_row.contact_email, proof_row.postal_address) == (None, None)
    assert (proof_row.treating_doctor_id, proof_row.emergency_access_opposed) == (None, False)
    assert proof_row.rules_checked_on is None
    # and the bytes are gone from disk, but for those the parent's own document shares
    assert await stored_files(settings) == [sha(SHARED)]
    assert await rows_about(parent.patient.id) == parents_rows


async def test_a_failed_opposition_erases_neither_rows_nor_bytes(
    client: httpx.AsyncClient,
    settings: Settings,
    mailbox: CaughtMail,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # given a minor's pending space with documents and attachments
    parent = await make_patient("Nadia", "Moreau")
    doctor = await make_professional("Zylberstein")
    other = await make_professional("Urgentiste")
    data, child, code = await _pending_minor(client, mailbox, parent, await make_operator())
    await _fill(client, settings, parent, doctor, other, child)
    child_pk = decode_as(child, "Patient")
    rows, files = await rows_about(child_pk), await stored_files(settings)

    # when the erasure fails inside its transaction (the database refuses a delete)
    proof = {"code": code, "nir": data["nir"], "birthDate": data["birthDate"]}
    async with deletes_refused("document"):
        result = await gql(client, OPPOSE, {"input": proof}, token=parent.token)

    # then nothing is erased: neither a row, nor a file, and the space is still pending
    assert result.codes == ["INTERNAL_SERVER_ERROR"]
    assert "deletes refused" in caplog.text
    assert await rows_about(child_pk) == rows
    assert await stored_files(settings) == files
    assert (await Patient.get(id=child_pk)).status is SpaceStatus.PENDING


# --- purge ------------------------------------------------------------------------------


async def _closed_space_with_bytes(client: httpx.AsyncClient, alice: Person, doctor: Staff) -> None:
    """Alice's space with a document, a saved attachment, a reply's attachment; then closed."""
    await ok(
        client,
        "mutation($i: GrantConsentInput!) { grantConsent(input: $i) { consent { id } } }",
        {"i": {"professionalId": doctor.id, "access": "READ"}},
        alice.token,
    )
    (await upload(client, alice.token, CHILD_ONLY, "b.pdf")).ok()
    (await upload(client, alice.token, SHARED, "a.pdf")).ok()
    files: list[File] = [("lettre.pdf", ATTACHMENT, "application/pdf")]
    conversation = await started(client, doctor, alice, files=files)
    reply: list[File] = [("photo.png", REPLY, "image/png")]
    (await send(client, alice.token, conversation["conversation"]["id"], files=reply)).ok()
    (await save(client, alice.token, conversation["message"]["attachments"][0]["id"])).ok()
    closed = await gql(client, CLOSE, {"input": {"password": PASSWORD}}, token=alice.token)
    assert closed.ok()["closeSpace"]["patient"]["status"] == "CLOSED"


async def test_the_purge_removes_the_bytes_of_documents_and_attachments(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    # given a closed space whose documents and attachments have bytes on disk, one of them
    # shared with another person's document
    alice = await make_patient("Alice")
    bob = await make_patient("Bob")
    doctor = await make_professional("Zylberstein")
    (await upload(client, bob.token, SHARED, "own.pdf")).ok()
    await _closed_space_with_bytes(client, alice, doctor)
    assert await stored_files(settings) == sorted(
        sha(b) for b in (SHARED, CHILD_ONLY, ATTACHMENT, REPLY)
    )
    # and a code to reopen it, sent by post: a letter waiting to be printed
    operator = await make_operator()
    address = {"line1": "3 rue des Lilas", "postalCode": "75011", "city": "Paris"}
    reissue = {"patientId": alice.id, "channel": "POST", "postalAddress": address}
    (await gql(client, REISSUE, {"input": reissue}, token=operator.token)).ok()
    assert len(outbox_files(settings)) == 1

    # when the jobs run after the 10 years of archive
    report = await run_jobs(settings, now=utcnow() + relativedelta(years=10, days=1))

    # then the space and its bytes are gone, but for those Bob's document shares; and the
    # letter too
    assert report["spaces_purged"] == 1
    assert await Patient.exists(id=alice.patient.id) is False
    assert await rows_about(alice.patient.id) == {}
    assert await stored_files(settings) == [sha(SHARED)]
    assert outbox_files(settings) == []


async def test_a_purge_that_fails_keeps_the_rows_and_their_bytes(
    client: httpx.AsyncClient, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    # given a closed space past its archive, with bytes on disk
    alice = await make_patient("Alice")
    doctor = await make_professional("Zylberstein")
    await _closed_space_with_bytes(client, alice, doctor)
    files = await stored_files(settings)
    later = utcnow() + relativedelta(years=10, days=1)

    # when the purge's transaction fails (the database refuses to delete an attachment)
    async with deletes_refused("attachment"):
        failed = await run_jobs(settings, now=later)

    # then the rows and every byte stay; the next run purges them
    assert failed["spaces_purged"] == -1
    assert "deletes refused" in caplog.text
    assert await Patient.exists(id=alice.patient.id) is True
    assert await stored_files(settings) == files
    assert (await run_jobs(settings, now=later))["spaces_purged"] == 1
    assert await stored_files(settings) == []
