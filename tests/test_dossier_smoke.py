from __future__ import annotations

import json

import httpx

from tests.factories import PASSWORD, Person, make_patient, make_professional
from tests.graphql import gql

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


async def upload(client: httpx.AsyncClient, token: str, variables: dict, data: bytes = PDF):
    operations = {
        "query": "mutation($input: AddDocumentInput!) { addDocument(input: $input) "
        "{ document { id title mimeType size sha256 author { __typename } } } }",
        "variables": {"input": {**variables, "file": None}},
    }
    return await client.post(
        "/graphql",
        data={
            "operations": json.dumps(operations),
            "map": json.dumps({"0": ["variables.input.file"]}),
        },
        files={"0": ("report.pdf", data, "application/pdf")},
        headers={"Authorization": f"Bearer {token}", "Apollo-Require-Preflight": "true"},
    )


async def test_patient_uploads_and_professional_reads_under_consent(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    doc = await make_professional()
    response = await upload(client, alice.token, {"title": "Bilan", "category": "LAB_RESULT"})
    body = response.json()
    assert body["data"]["addDocument"]["document"]["mimeType"] == "application/pdf", body
    grant = await gql(
        client,
        "mutation($p: ID!) { grantConsent(input: {professionalId: $p, access: READ}) "
        "{ consent { active } } }",
        {"p": doc.id},
        token=alice.token,
    )
    assert grant.ok() == {"grantConsent": {"consent": {"active": True}}}
    read = await gql(
        client,
        "query($id: ID!) { patient(id: $id) { documents(first: 5) { totalCount "
        "edges { node { title author { __typename } } } } } }",
        {"id": alice.id},
        token=doc.token,
    )
    assert read.ok() == {
        "patient": {
            "documents": {
                "totalCount": 1,
                "edges": [{"node": {"title": "Bilan", "author": {"__typename": "Patient"}}}],
            }
        }
    }
    log = await gql(
        client,
        "{ viewer { ... on Patient { accessLog { edges { node "
        "{ action basis role actor { __typename } } } } } } }",
        token=alice.token,
    )
    assert log.ok()["viewer"]["accessLog"]["edges"] == [
        {
            "node": {
                "action": "READ",
                "basis": "CONSENT",
                "role": "PROFESSIONAL",
                "actor": {"__typename": "Professional"},
            }
        }
    ]


async def test_a_closed_space_is_archived_even_for_its_holder(client: httpx.AsyncClient) -> None:
    alice = await make_patient()
    response = await upload(client, alice.token, {"title": "Bilan", "category": "LAB_RESULT"})
    document_id = response.json()["data"]["addDocument"]["document"]["id"]
    closed = await gql(
        client,
        "mutation($p: String!) { closeSpace(input: {password: $p}) { patient { status } } }",
        {"p": PASSWORD},
        token=alice.token,
    )
    assert closed.ok() == {"closeSpace": {"patient": {"status": "CLOSED"}}}
    token = await login_token(alice)
    read = await gql(
        client, "{ viewer { ... on Patient { status documents { totalCount } } } }", token=token
    )
    assert read.data == {"viewer": {"status": "CLOSED", "documents": None}}
    assert read.codes == ["FORBIDDEN"]
    download = await client.get(
        f"/documents/{document_id}/content", headers={"Authorization": f"Bearer {token}"}
    )
    assert download.status_code == 404


async def login_token(person: Person) -> str:
    from models.account import Account
    from tests.factories import _token

    return await _token(await Account.get(patient_id=person.patient.id))
