"""The access log and documents hidden from legal representatives: a representative reads
nothing of such a document in the log (its events are neither listed, nor counted, nor found
by id), and what they do read answers alike for a document they may not read and for one that
no longer exists. The holder reads the whole log."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
from dateutil.relativedelta import relativedelta

from models.account import Account, Role
from models.audit import AccessEvent
from models.base import utcnow
from models.consent import ConsentAccess
from models.patient import Patient
from models.session import open_session
from resolvers.ids import encode
from tests.factories import make_minor, make_patient, make_professional
from tests.graphql import GraphQLResult, gql
from tests.test_documents import DELETE, JPEG, PDF, TEXT, add, download, grant, pk

LOG = """query($id: ID!) { patient(id: $id) { accessLog(first: 100) { totalCount
  edges { node { id action role basis actor { __typename } document { id title } } } } } }"""
NODE = """query($id: ID!) { node(id: $id) { id ... on AccessEvent {
  action document { id } } } }"""


def event_id(row_id: UUID) -> str:
    return encode("AccessEvent", row_id)


async def event_ids(patient_pk: UUID, document_pk: UUID | None = None) -> set[str]:
    query = AccessEvent.filter(patient_id=patient_pk)
    if document_pk is not None:
        query = query.filter(document_id=document_pk)
    return {event_id(UUID(str(row))) for row in await query.values_list("id", flat=True)}


def nodes(result: GraphQLResult) -> list[dict[str, Any]]:
    log = result.ok()["patient"]["accessLog"]
    assert log["totalCount"] == len(log["edges"])
    return [edge["node"] for edge in log["edges"]]


async def test_a_representative_reads_nothing_of_a_hidden_document_in_the_log(
    client: httpx.AsyncClient,
) -> None:
    # given a minor's dossier where a professional deposited two documents, one hidden from
    # representatives, the other since deleted by the representative, and downloaded them
    # with a third the representative added
    mother = await make_patient("Claire", "Petit")
    child = await make_minor(mother)
    doctor = await make_professional("Zylberstein")
    await grant(child, doctor, ConsentAccess.READ_WRITE)
    hidden = await add(
        client,
        doctor.token,
        TEXT,
        content_type="text/plain",
        patientId=child.id,
        hiddenFromRepresentatives=True,
    )
    deleted = await add(client, doctor.token, PDF, patientId=child.id)
    kept = await add(client, mother.token, JPEG, content_type="image/jpeg", patientId=child.id)
    for document_id in (hidden, deleted, kept):
        assert (await download(client, document_id, doctor.token)).status_code == 200
    (await gql(client, DELETE, {"id": deleted}, token=mother.token)).ok()
    about_hidden = await event_ids(child.patient.id, pk(hidden))
    about_deleted = await event_ids(child.patient.id, pk(deleted))
    assert len(about_hidden) == 2 and len(about_deleted) == 3  # deposit, download (, delete)

    # when the representative reads the log
    listed = nodes(await gql(client, LOG, {"id": child.id}, token=mother.token))

    # then every event is there but those about the hidden document, without an error
    everything = await event_ids(child.patient.id)
    assert {node["id"] for node in listed} == everything - about_hidden
    # and the events about the deleted document name no document, as any it cannot read
    assert {node["id"] for node in listed if node["document"] is None} >= about_deleted
    assert {node["document"]["id"] for node in listed if node["document"]} == {kept}

    # when they ask for an event about the hidden document by id, and for an unknown event
    asked = await gql(client, NODE, {"id": sorted(about_hidden)[0]}, token=mother.token)
    unknown = await gql(client, NODE, {"id": event_id(uuid4())}, token=mother.token)

    # then both answer alike: not found
    assert asked.data == unknown.data == {"node": None}
    assert asked.errors == unknown.errors
    assert asked.codes == ["NOT_FOUND"]
    # and reading the log wrote no event about the hidden document
    assert await event_ids(child.patient.id, pk(hidden)) == about_hidden

    # when the child comes of age, and reads their own log
    await Patient.filter(id=child.patient.id).update(
        birth_date=child.patient.birth_date - relativedelta(years=11)
    )
    account = await Account.create(
        email="theo@example.org", password_hash="x", role=Role.PATIENT, patient_id=child.patient.id
    )
    session = await open_session(account, ttl=timedelta(hours=1), now=utcnow())
    own = nodes(await gql(client, LOG, {"id": child.id}, token=session.token))

    # then the holder reads every event, the hidden document's with the document
    assert {node["id"] for node in own} == await event_ids(child.patient.id)
    named = {node["id"]: node["document"] for node in own if node["id"] in about_hidden}
    assert named == {i: {"id": hidden, "title": "Bilan sanguin"} for i in about_hidden}
