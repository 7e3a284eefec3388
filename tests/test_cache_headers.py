"""Every answer of /graphql carries `Cache-Control: no-store`: success or error, GET or POST,
JSON or multipart, whichever layer answered (issue 9, finding 12)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

import httpx
import pytest

from api.app import create_app
from api.config import Settings
from tests.factories import make_patient
from tests.test_documents import ADD, PDF, PREFLIGHT

KIB = 1024
VIEWER = "{ viewer { __typename ... on Patient { id firstName lastName } } }"
PROFILE = "query($id: ID!) { patient(id: $id) { id firstName } }"
GRAPHQL_RESPONSE = "application/graphql-response+json"

Call = Callable[[httpx.AsyncClient, str, str], Awaitable[httpx.Response]]


@pytest.fixture
async def small_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """Bodies of 256 KiB at most, files of 64 KiB: the size refusals are cheap to reach."""
    app = create_app(
        replace(
            settings,
            max_request_bytes=256 * KIB,
            max_upload_bytes=64 * KIB,
            max_attachment_bytes=16 * KIB,
        )
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.9", 4242))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def post(body: object, **headers: str) -> Call:
    async def call(client: httpx.AsyncClient, token: str, patient_id: str) -> httpx.Response:
        payload = json.loads(json.dumps(body).replace("PATIENT_ID", patient_id))
        return await client.post("/graphql", json=payload, headers={**bearer(token), **headers})

    return call


def get(query: str, **params: str) -> Call:
    async def call(client: httpx.AsyncClient, token: str, patient_id: str) -> httpx.Response:
        variables = json.dumps({"id": patient_id})
        return await client.get(
            "/graphql",
            params={"query": query, "variables": variables, **params},
            headers=bearer(token),
        )

    return call


def raw(content: bytes, content_type: str) -> Call:
    async def call(client: httpx.AsyncClient, token: str, patient_id: str) -> httpx.Response:
        headers = {**bearer(token), "Content-Type": content_type}
        return await client.post("/graphql", content=content, headers=headers)

    return call


def upload(data: bytes, headers: dict[str, str] = PREFLIGHT) -> Call:
    async def call(client: httpx.AsyncClient, token: str, patient_id: str) -> httpx.Response:
        variables = {"input": {"title": "Bilan", "category": "LAB_RESULT", "file": None}}
        return await client.post(
            "/graphql",
            data={
                "operations": json.dumps({"query": ADD, "variables": variables}),
                "map": json.dumps({"0": ["variables.input.file"]}),
            },
            files={"0": ("bilan.pdf", data, "application/pdf")},
            headers={**bearer(token), **headers},
        )

    return call


def anonymous(call: Call) -> Call:
    async def without_token(
        client: httpx.AsyncClient, token: str, patient_id: str
    ) -> httpx.Response:
        return await call(client, "", patient_id)

    return without_token


def bad_token(call: Call) -> Call:
    async def with_bad_token(
        client: httpx.AsyncClient, token: str, patient_id: str
    ) -> httpx.Response:
        return await call(client, "not-a-session-token", patient_id)

    return with_bad_token


@pytest.mark.parametrize(
    ("call", "status"),
    [
        (post({"query": VIEWER}), 200),
        (post({"query": PROFILE, "variables": {"id": "PATIENT_ID"}}), 200),
        (get(PROFILE), 200),
        # GraphQL-over-HTTP's status codes whatever the media type (api/view.py).
        (anonymous(post({"query": PROFILE, "variables": {"id": "PATIENT_ID"}})), 401),
        (bad_token(post({"query": VIEWER})), 401),
        (post({"query": "{ viewer { nope } }"}), 422),
        (post({"query": "{ viewer { nope } }"}, Accept=GRAPHQL_RESPONSE), 422),
        (post({"query": "{ viewer "}), 400),
        (post({"query": VIEWER, "operationName": "Missing"}), 422),
        (post({"query": PROFILE, "variables": {"id": 12}}), 200),
        (post({"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "0" * 64}}}), 200),
        (post({"variables": {}}), 422),
        (get("mutation { logout }"), 405),
        (get("{ viewer { __typename } }", variables="{not json"), 422),  # not well-formed
        (raw(b"{not json", "application/json"), 400),
        (raw(b"query=%7B%20viewer%20%7D", "application/x-www-form-urlencoded"), 415),
        (raw(json.dumps({"query": VIEWER + " " * 300 * KIB}).encode(), "application/json"), 413),
        (upload(PDF), 200),
        (upload(PDF, headers={}), 400),
        (upload(b"<html>" + b"0" * 128), 200),
        (upload(PDF + b"0" * 64 * KIB), 413),
        (upload(b"%PDF-1.4\n" + b"0" * 300 * KIB), 413),
    ],
    ids=[
        "post-query",
        "post-health-data",
        "get-health-data",
        "anonymous-refused-field",
        "invalid-token",
        "validation-error",
        "validation-error-graphql-response-json",
        "syntax-error",
        "unknown-operation-name",
        "bad-variables",
        "persisted-query",
        "no-query",
        "get-mutation",
        "get-malformed-variables",
        "malformed-json",
        "unsupported-content-type",
        "body-too-large",
        "multipart-upload",
        "multipart-without-preflight",
        "multipart-refused-file",
        "multipart-file-too-large",
        "multipart-body-too-large",
    ],
)
async def test_every_graphql_answer_is_no_store(
    small_client: httpx.AsyncClient, call: Call, status: int
) -> None:
    alice = await make_patient()
    assert alice.token is not None

    response = await call(small_client, alice.token, alice.id)

    assert response.status_code == status, response.text
    assert response.headers["cache-control"] == "no-store"
