"""Persisted documents (api/extensions/persisted.py, models/persisted.py), against the real
app and database, and the real `espace-sante documents` command in its own process:

- Apollo's APQ over POST, GET and both websocket protocols: an unknown hash answers
  PERSISTED_QUERY_NOT_FOUND with HTTP 200, the hash with its text registers it, then the
  hash alone is served; a hash that is not the text's is refused and registers nothing;
  registrations are bounded (a text's size, new documents per caller and hour);
- `documentId` (`sha256:<hex>`, the hex alone, a manifest's own id) in bodies and parameters;
- `documents load` for the three manifest formats, refusing a tampered one whole, and
  `documents list`;
- TRUSTED_DOCUMENTS: `enforce` refuses free text (PERSISTED_QUERY_ID_REQUIRED) and whatever
  is not on the caller's lists (PERSISTED_QUERY_NOT_IN_LIST); `log` serves and logs each
  untrusted document once, with its hash and client; APQ=false answers
  PERSISTED_QUERY_NOT_SUPPORTED.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import logging
import os
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from api.app import create_app
from api.cli import main
from api.config import VARIABLES, Settings
from models.account import Account
from models.persisted import DocumentAlias, DocumentRegistration, PersistedDocument
from tests.asgi_websocket import asgi_websocket
from tests.conftest import SECRET
from tests.e2e.live_support import command
from tests.factories import Person, make_patient, make_professional
from tests.graphql import gql
from tests.sql_counter import count_statements

GRAPHQL_RESPONSE = "application/graphql-response+json"
VIEWER = "query Viewer { viewer { ... on Patient { firstName lastName } } }"
VIEWER_FIRST_NAME = "query FirstName { viewer { ... on Patient { firstName } } }"
ALICE = {"viewer": {"firstName": "Alice", "lastName": "Lefebvre"}}
MESSAGE_RECEIVED = "subscription($after: String) { messageReceived(after: $after) { body } }"
START = """mutation($patientId: ID!) { startConversation(input: {
  patientId: $patientId, subject: "Bilan", body: "m0"}) { conversation { id } } }"""
SEND = """mutation($id: ID!, $body: String!) {
  sendMessage(input: {conversationId: $id, body: $body}) { message { id } } }"""
CURSORS = """query($id: ID!) { node(id: $id) { ... on Conversation {
  messages(first: 50) { edges { cursor node { body } } } } } }"""


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def apq(text: str) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": sha256(text)}}


def refusal(code: str, message: str) -> dict[str, Any]:
    return {"errors": [{"message": message, "extensions": {"code": code}}]}


NOT_FOUND = refusal("PERSISTED_QUERY_NOT_FOUND", "PersistedQueryNotFound")
NOT_SUPPORTED = refusal("PERSISTED_QUERY_NOT_SUPPORTED", "PersistedQueryNotSupported")
NOT_IN_LIST = refusal(
    "PERSISTED_QUERY_NOT_IN_LIST", "No document of this documentId is registered for this client."
)
HASH_NOT_IN_LIST = refusal(
    "PERSISTED_QUERY_NOT_IN_LIST", "No document of this hash is registered for this client."
)
ID_REQUIRED = refusal(
    "PERSISTED_QUERY_ID_REQUIRED",
    "Only registered documents are served here: send the documentId of one.",
)
MISMATCH = refusal(
    "BAD_USER_INPUT",
    "provided sha does not match query: persistedQuery.sha256Hash is not the SHA-256 of the "
    "query text.",
)


@asynccontextmanager
async def serving(settings: Settings, **overrides: Any) -> AsyncIterator[Starlette]:
    app = create_app(replace(settings, **overrides))
    async with app.router.lifespan_context(app):
        yield app


@asynccontextmanager
async def client_of(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("127.0.0.9", 4242))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Starlette]:
    async with serving(settings) as application:
        yield application


@pytest.fixture
async def http(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(app) as client:
        yield client


async def post(
    http: httpx.AsyncClient,
    body: dict[str, Any],
    *,
    token: str | None = None,
    client: str | None = None,
    accept: str | None = None,
) -> httpx.Response:
    headers = {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if client:
        headers["apollographql-client-name"] = client
    if accept:
        headers["Accept"] = accept
    return await http.post("/graphql", json=body, headers=headers)


def answered(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


async def registry() -> list[dict[str, Any]]:
    return list(
        await DocumentRegistration.all()
        .order_by("document_id", "client")
        .values("document_id", "client", "source", "name")
    )


async def stored_rows() -> tuple[int, int, int]:
    return (
        await PersistedDocument.all().count(),
        await DocumentRegistration.all().count(),
        await DocumentAlias.all().count(),
    )


async def holder() -> tuple[Person, str]:
    alice = await make_patient()
    assert alice.token is not None
    return alice, alice.token


# --- APQ over HTTP ------------------------------------------------------------------------


@pytest.mark.parametrize("accept", [GRAPHQL_RESPONSE, "application/json"])
async def test_apq_round_trip_over_post(http: httpx.AsyncClient, accept: str) -> None:
    alice, token = await holder()
    account = await Account.get(patient_id=alice.patient.id)

    unknown = await post(http, {"extensions": apq(VIEWER)}, token=token, accept=accept)
    assert answered(unknown) == NOT_FOUND  # HTTP 200 whatever the media type
    assert await registry() == []

    registered = await post(
        http, {"query": VIEWER, "extensions": apq(VIEWER)}, token=token, accept=accept
    )
    assert answered(registered) == {"data": ALICE}
    rows = await DocumentRegistration.all().values("document_id", "source", "registered_by")
    assert rows == [
        {"document_id": sha256(VIEWER), "source": "apq", "registered_by": f"account:{account.id}"}
    ]

    by_hash = await post(http, {"extensions": apq(VIEWER)}, token=token, accept=accept)
    assert answered(by_hash) == {"data": ALICE}


async def test_apq_round_trip_over_get(http: httpx.AsyncClient) -> None:
    _, token = await holder()
    auth = {"Authorization": f"Bearer {token}"}  # httpx sends `Accept: */*`
    hashed = {"extensions": json.dumps(apq(VIEWER))}

    unknown = await http.get("/graphql", params=hashed, headers=auth)
    registered = await http.get("/graphql", params={"query": VIEWER, **hashed}, headers=auth)
    by_hash = await http.get("/graphql", params=hashed, headers=auth)
    by_id = await http.get(
        "/graphql", params={"documentId": f"sha256:{sha256(VIEWER)}"}, headers=auth
    )

    assert answered(unknown) == NOT_FOUND
    assert answered(registered) == {"data": ALICE}
    assert answered(by_hash) == {"data": ALICE}
    assert answered(by_id) == {"data": ALICE}
    assert await registry() == [
        {"document_id": sha256(VIEWER), "client": "", "source": "apq", "name": None}
    ]


async def test_a_registered_mutation_named_over_get_answers_405(http: httpx.AsyncClient) -> None:
    mutation = "mutation Out { logout }"
    await post(http, {"query": mutation, "extensions": apq(mutation)})  # registers it
    assert [row["document_id"] for row in await registry()] == [sha256(mutation)]

    by_hash = await http.get("/graphql", params={"extensions": json.dumps(apq(mutation))})
    by_id = await http.get("/graphql", params={"documentId": sha256(mutation)})

    for response in (by_hash, by_id):
        assert response.status_code == 405
        assert response.headers["allow"] == "POST"
        assert [e["extensions"]["code"] for e in response.json()["errors"]] == ["BAD_USER_INPUT"]


@pytest.mark.parametrize("accept", [GRAPHQL_RESPONSE, "application/json"])
async def test_a_mismatched_hash_is_refused_and_registers_nothing(
    http: httpx.AsyncClient, accept: str
) -> None:
    _, token = await holder()

    mismatched = await post(
        http, {"query": VIEWER, "extensions": apq(VIEWER_FIRST_NAME)}, token=token, accept=accept
    )

    assert answered(mismatched, 400) == MISMATCH
    assert await stored_rows() == (0, 0, 0)
    for text in (VIEWER, VIEWER_FIRST_NAME):
        assert answered(await post(http, {"extensions": apq(text)}, token=token)) == NOT_FOUND


async def test_a_document_id_is_served_by_post_as_sha256_or_bare_hex(
    http: httpx.AsyncClient,
) -> None:
    _, token = await holder()
    await post(http, {"query": VIEWER, "extensions": apq(VIEWER)}, token=token)

    prefixed = await post(http, {"documentId": f"sha256:{sha256(VIEWER)}"}, token=token)
    bare = await post(http, {"documentId": sha256(VIEWER)}, token=token)
    unknown = await post(http, {"documentId": f"sha256:{'0' * 64}"}, token=token)
    both = await post(http, {"documentId": sha256(VIEWER), "query": VIEWER}, token=token)
    malformed = await post(http, {"documentId": "sha256:xyz"}, token=token)

    assert answered(prefixed) == {"data": ALICE}
    assert answered(bare) == {"data": ALICE}
    assert answered(unknown, 400) == NOT_IN_LIST  # whatever the media type (api/view.py)
    assert answered(both, 400) == refusal(
        "BAD_USER_INPUT", "Send a documentId alone: without query or extensions.persistedQuery."
    )
    assert answered(malformed, 400)["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT"}


async def test_a_known_hash_runs_no_sql_of_its_own(http: httpx.AsyncClient) -> None:
    """The registry's cache: once a document was looked up, naming it by its hash costs the
    same statements as sending its text."""
    _, token = await holder()
    await post(http, {"query": VIEWER, "extensions": apq(VIEWER)}, token=token)
    await post(http, {"extensions": apq(VIEWER)}, token=token)

    with count_statements() as by_text:
        assert answered(await post(http, {"query": VIEWER}, token=token)) == {"data": ALICE}
    with count_statements() as by_hash:
        assert answered(await post(http, {"extensions": apq(VIEWER)}, token=token)) == {
            "data": ALICE
        }
    with count_statements() as by_id:
        assert answered(await post(http, {"documentId": sha256(VIEWER)}, token=token)) == {
            "data": ALICE
        }

    assert len(by_hash) == len(by_text) == len(by_id)


async def test_apq_registrations_are_bounded_in_size_and_per_caller_and_hour(
    settings: Settings,
) -> None:
    texts = [f"query Q{n} {{ viewer {{ __typename }} }}" for n in range(3)]
    large = "query Large { viewer { __typename } }" + " " * 200
    limits = {"apq_max_bytes": 100, "apq_registrations_per_hour": 2}
    async with serving(settings, **limits) as app, client_of(app) as http:
        _, token = await holder()
        bob = await make_patient("Bob")
        served = [
            answered(await post(http, {"query": t, "extensions": apq(t)}, token=token))
            for t in [*texts, large]
        ]
        later = [
            answered(await post(http, {"extensions": apq(t)}, token=token)) for t in [*texts, large]
        ]
        other_caller = await post(
            http, {"query": texts[2], "extensions": apq(texts[2])}, token=bob.token
        )
        after_other = await post(http, {"extensions": apq(texts[2])}, token=token)
        registered = [row["document_id"] for row in await registry()]

    typename = {"data": {"viewer": {"__typename": "Patient"}}}
    assert served == [typename] * 4  # each served, registered or not
    assert later == [typename, typename, NOT_FOUND, NOT_FOUND]
    assert answered(other_caller) == typename
    assert answered(after_other) == typename  # Bob had registrations left
    assert registered == sorted(sha256(t) for t in texts)


async def test_apq_false_answers_not_supported_and_registers_nothing(settings: Settings) -> None:
    async with serving(settings, apq=False) as app, client_of(app) as http:
        _, token = await holder()
        alone = await post(http, {"extensions": apq(VIEWER)}, token=token)
        with_text = await post(http, {"query": VIEWER, "extensions": apq(VIEWER)}, token=token)
        free_text = await post(http, {"query": VIEWER}, token=token)
        rows = await stored_rows()

    assert answered(alone, 400) == NOT_SUPPORTED
    assert answered(with_text, 400) == NOT_SUPPORTED
    assert answered(free_text) == {"data": ALICE}
    assert rows == (0, 0, 0)


# --- APQ over the websocket ------------------------------------------------------------------


async def conversation_cursor(http: httpx.AsyncClient, alice: Person) -> str:
    """A conversation with Alice (m0, then m1): m0's cursor, after which m1 replays."""
    doc = await make_professional()
    started = await gql(http, START, {"patientId": alice.id}, token=doc.token)
    conversation = started.ok()["startConversation"]["conversation"]["id"]
    (await gql(http, SEND, {"id": conversation, "body": "m1"}, token=doc.token)).ok()
    listed = await gql(http, CURSORS, {"id": conversation}, token=doc.token)
    edges = listed.ok()["node"]["messages"]["edges"]
    return str(next(e["cursor"] for e in edges if e["node"]["body"] == "m0"))


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
async def test_apq_round_trip_over_the_websocket(
    app: Starlette, http: httpx.AsyncClient, protocol: str
) -> None:
    alice, token = await holder()
    cursor = await conversation_cursor(http, alice)
    start = "subscribe" if protocol == "graphql-transport-ws" else "start"
    data = "next" if protocol == "graphql-transport-ws" else "data"

    async with asgi_websocket(app, protocol) as (socket, _):
        init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
        await socket.send_json(init)
        assert (await socket.receive_json())["type"] == "connection_ack"

        async def operation(op_id: str, payload: dict[str, Any]) -> dict[str, Any]:
            payload = {"variables": {"after": cursor}, "extensions": apq(MESSAGE_RECEIVED)} | (
                payload
            )
            await socket.send_json({"id": op_id, "type": start, "payload": payload})
            message: dict[str, Any] = await socket.receive_json()
            return message

        unknown = await operation("1", {})
        registered = await operation("2", {"query": MESSAGE_RECEIVED})
        by_hash = await operation("3", {})

    error = NOT_FOUND["errors"] if protocol == "graphql-transport-ws" else NOT_FOUND["errors"][0]
    assert unknown == {"id": "1", "type": "error", "payload": error}
    m1 = {"data": {"messageReceived": {"body": "m1"}}}
    assert registered == {"id": "2", "type": data, "payload": m1}
    assert by_hash == {"id": "3", "type": data, "payload": m1}
    assert [row["document_id"] for row in await registry()] == [sha256(MESSAGE_RECEIVED)]


# --- manifests: `espace-sante documents` ---------------------------------------------------


async def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """The real command, in a process of its own, on the test's database."""
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    env.update(
        DATABASE_URL=settings.database_url,
        DATA_DIR=str(settings.data_dir),
        ENVIRONMENT="test",
        SECRET_KEY=SECRET,
    )
    return await asyncio.to_thread(
        subprocess.run,
        command(*args),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def manifest_of(kind: str, texts: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """A manifest in the format `kind` of `texts` (by operation name), and each text's id."""
    if kind == "apollo":
        ids = {name: sha256(text) for name, text in texts.items()}
        operations = [
            {"id": ids[name], "name": name, "type": "query", "body": text}
            for name, text in texts.items()
        ]
        return {
            "format": "apollo-persisted-query-manifest",
            "version": 1,
            "operations": operations,
        }, ids
    algorithm = {"codegen": "sha1", "relay": "md5"}[kind]
    ids = {name: hashlib.new(algorithm, text.encode()).hexdigest() for name, text in texts.items()}
    return {ids[name]: text for name, text in texts.items()}, ids


@pytest.mark.parametrize("kind", ["apollo", "codegen", "relay"])
async def test_documents_load_registers_each_manifest_format(
    http: httpx.AsyncClient, settings: Settings, tmp_path: Path, kind: str
) -> None:
    _, token = await holder()
    manifest, ids = manifest_of(kind, {"Viewer": VIEWER, "FirstName": VIEWER_FIRST_NAME})
    path = tmp_path / f"{kind}.json"
    path.write_text(json.dumps(manifest))

    loaded = await cli(settings, "documents", "load", str(path))

    assert loaded.returncode == 0, loaded.stderr
    lines = loaded.stdout.splitlines()
    assert lines[0] == f"{path}: " + (
        "Apollo persisted-query manifest, 2 documents"
        if kind == "apollo"
        else "document map (GraphQL Code Generator or Relay), 2 documents"
    )
    assert lines[1] == "added to the shared first-party list: 2"
    assert lines[-1] == "already on it: 0"
    assert f"sha256:{sha256(VIEWER)}" in loaded.stdout
    names = {"Viewer", "FirstName"} if kind == "apollo" else {None}
    assert {row["name"] for row in await registry()} == names
    assert {row["source"] for row in await registry()} == {"manifest"}
    for document_id in (ids["Viewer"], f"sha256:{sha256(VIEWER)}"):
        served = await post(http, {"documentId": document_id}, token=token)
        assert answered(served) == {"data": ALICE}
    by_apq_hash = await post(http, {"extensions": apq(VIEWER_FIRST_NAME)}, token=token)
    assert answered(by_apq_hash) == {"data": {"viewer": {"firstName": "Alice"}}}


def load_in_process(monkeypatch: pytest.MonkeyPatch, data_dir: Path, *args: str) -> tuple[int, str]:
    """`espace-sante documents load …` in this process (for refusals, which are decided
    before the database is opened): its exit code and what it wrote to stderr."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATA_DIR", str(data_dir))
    monkeypatch.setenv("ENVIRONMENT", "test")
    monkeypatch.setenv("SECRET_KEY", SECRET)
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = main(["documents", "load", *args])
    return code, stderr.getvalue()


@pytest.mark.parametrize("kind", ["apollo", "codegen", "relay"])
def test_a_tampered_manifest_is_refused_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    manifest, ids = manifest_of(kind, {"Viewer": VIEWER, "FirstName": VIEWER_FIRST_NAME})
    tampered = VIEWER_FIRST_NAME.replace("firstName", "firstName lastName")
    if kind == "apollo":
        manifest["operations"][1]["body"] = tampered
    else:
        manifest[ids["FirstName"]] = tampered
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps(manifest))

    code, stderr = load_in_process(monkeypatch, tmp_path / "data", str(path))

    assert code == 1
    algorithm = {"apollo": "SHA-256", "codegen": "SHA-1", "relay": "MD5"}[kind]
    label = f"FirstName ({ids['FirstName']})" if kind == "apollo" else ids["FirstName"]
    assert stderr.splitlines() == [
        f"error: {path}: Document {label}: its id is not the {algorithm} of its text. "
        "The manifest was altered or is corrupt; nothing was loaded."
    ]
    assert not (tmp_path / "data").exists()  # refused before any database was opened


def test_documents_load_refuses_what_is_not_a_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    not_graphql = tmp_path / "not-graphql.json"
    not_graphql.write_text(json.dumps({sha256("{ viewer "): "{ viewer "}))
    not_manifest = tmp_path / "list.json"
    not_manifest.write_text(json.dumps([VIEWER]))
    shared, _ = manifest_of("apollo", {"Viewer": VIEWER})
    good = tmp_path / "good.json"
    good.write_text(json.dumps(shared))
    data_dir = tmp_path / "data"

    syntax = load_in_process(monkeypatch, data_dir, str(not_graphql))
    shape = load_in_process(monkeypatch, data_dir, str(not_manifest))
    bad_client = load_in_process(monkeypatch, data_dir, str(good), "--client", "web app")
    missing = load_in_process(monkeypatch, data_dir, str(tmp_path / "missing.json"))

    assert syntax == (
        1,
        f"error: {not_graphql}: sha256:{sha256('{ viewer ')}: not a GraphQL document: "
        "Syntax Error: Expected Name, found <EOF>.\nerror: nothing was loaded\n",
    )
    assert shape[0] == 1
    assert shape[1].startswith(f"error: {not_manifest}: Not a manifest: expected Apollo's")
    assert bad_client == (
        1,
        f"error: {good}: A client name is 1 to 100 letters, digits and . _ @ / + - "
        "(starting with a letter or a digit).\n",
    )
    assert missing == (
        1,
        f"error: cannot read {tmp_path / 'missing.json'}: No such file or directory\n",
    )
    assert not data_dir.exists()  # refused before any database was opened


async def test_documents_load_is_idempotent_and_list_prints_each_list(
    http: httpx.AsyncClient, settings: Settings, tmp_path: Path
) -> None:
    _, token = await holder()
    shared, _ = manifest_of("apollo", {"Viewer": VIEWER})
    web, web_ids = manifest_of("relay", {"FirstName": VIEWER_FIRST_NAME})
    (tmp_path / "shared.json").write_text(json.dumps(shared))
    (tmp_path / "web.json").write_text(json.dumps(web))
    apq_text = "query Typename { viewer { __typename } }"
    await post(http, {"query": apq_text, "extensions": apq(apq_text)}, token=token)

    first = await cli(settings, "documents", "load", str(tmp_path / "shared.json"))
    again = await cli(settings, "documents", "load", str(tmp_path / "shared.json"))
    client = await cli(settings, "documents", "load", str(tmp_path / "web.json"), "--client", "web")
    listed = await cli(settings, "documents", "list")

    assert [p.returncode for p in (first, again, client, listed)] == [0, 0, 0, 0]
    assert again.stdout.splitlines()[1:] == [
        "added to the shared first-party list: 0",
        "already on it: 1",
    ]
    assert client.stdout.splitlines()[1:] == [
        "added to the list of client web: 1",
        f"  sha256:{sha256(VIEWER_FIRST_NAME)}  (id {web_ids['FirstName']})",
        "already on it: 0",
    ]
    heads = [line for line in listed.stdout.splitlines() if not line.startswith("  ")]
    assert heads == [
        "shared first-party list: 1 document",
        "client web: 1 document",
        "automatic persisted queries (APQ, never trusted): 1 document",
    ]
    body = listed.stdout
    assert f"sha256:{sha256(VIEWER)}  Viewer  " in body
    assert f"ids {web_ids['FirstName']}" in body
    assert f"sha256:{sha256(apq_text)}  -  " in body
    assert await stored_rows() == (3, 3, 1)


# --- TRUSTED_DOCUMENTS ------------------------------------------------------------------------


async def test_enforce_serves_only_the_callers_trusted_documents(
    settings: Settings, tmp_path: Path
) -> None:
    shared, _ = manifest_of("apollo", {"Viewer": VIEWER})
    web, web_ids = manifest_of("relay", {"FirstName": VIEWER_FIRST_NAME})
    (tmp_path / "shared.json").write_text(json.dumps(shared))
    (tmp_path / "web.json").write_text(json.dumps(web))
    for args in (["shared.json"], ["web.json", "--client", "web"]):
        loaded = await cli(settings, "documents", "load", str(tmp_path / args[0]), *args[1:])
        assert loaded.returncode == 0, loaded.stderr
    untrusted = "query Typename { viewer { __typename } }"

    async with serving(settings, trusted_documents="enforce") as app, client_of(app) as http:
        _, token = await holder()
        before = await stored_rows()

        def call(body: dict[str, Any], **kwargs: Any) -> Any:
            return post(http, body, token=token, **kwargs)

        free_text = await call({"query": VIEWER})
        free_text_gql = await call({"query": VIEWER}, accept=GRAPHQL_RESPONSE)
        trusted = await call({"documentId": f"sha256:{sha256(VIEWER)}"})
        trusted_hash = await call({"extensions": apq(VIEWER)})
        unknown = await call({"documentId": f"sha256:{sha256(untrusted)}"})
        apq_registration = await call({"query": untrusted, "extensions": apq(untrusted)})
        web_doc = {"documentId": web_ids["FirstName"]}
        as_web = await call(web_doc, client="web")
        as_web_by_hash = await call({"extensions": apq(VIEWER_FIRST_NAME)}, client="web")
        as_nobody = await call(web_doc)
        as_ios = await call({"documentId": sha256(VIEWER_FIRST_NAME)}, client="ios")
        shared_as_web = await call({"extensions": apq(VIEWER)}, client="web")
        after = await stored_rows()

    assert answered(free_text, 400) == ID_REQUIRED  # whatever the media type (api/view.py)
    assert answered(free_text_gql, 400) == ID_REQUIRED
    assert answered(trusted) == {"data": ALICE}
    assert answered(trusted_hash) == {"data": ALICE}
    assert answered(unknown, 400) == NOT_IN_LIST
    assert answered(apq_registration, 400) == HASH_NOT_IN_LIST
    assert after == before  # APQ registers nothing under enforce
    first_name = {"data": {"viewer": {"firstName": "Alice"}}}
    assert answered(as_web) == first_name
    assert answered(as_web_by_hash) == first_name
    assert answered(as_nobody, 400) == NOT_IN_LIST  # its id is an alias of web's list only
    assert answered(as_ios, 400) == NOT_IN_LIST
    assert answered(shared_as_web) == {"data": ALICE}


async def test_enforce_refuses_an_apq_hash_registered_before(settings: Settings) -> None:
    async with serving(settings) as app, client_of(app) as http:
        _, token = await holder()
        await post(http, {"query": VIEWER, "extensions": apq(VIEWER)}, token=token)
        assert answered(await post(http, {"extensions": apq(VIEWER)}, token=token)) == {
            "data": ALICE
        }

    async with serving(settings, trusted_documents="enforce") as app, client_of(app) as http:
        by_hash = await post(http, {"extensions": apq(VIEWER)}, token=token)
        by_id = await post(http, {"documentId": sha256(VIEWER)}, token=token)

    assert answered(by_hash, 400) == HASH_NOT_IN_LIST
    assert answered(by_id, 400) == NOT_IN_LIST


async def test_log_serves_everything_and_logs_each_untrusted_document_once(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shared, _ = manifest_of("apollo", {"Viewer": VIEWER})
    (tmp_path / "shared.json").write_text(json.dumps(shared))
    assert (await cli(settings, "documents", "load", str(tmp_path / "shared.json"))).returncode == 0
    caplog.set_level(logging.WARNING, logger="api.extensions.persisted")

    async with serving(settings, trusted_documents="log") as app, client_of(app) as http:
        _, token = await holder()
        calls: list[tuple[dict[str, Any], str | None]] = [
            ({"query": VIEWER_FIRST_NAME}, "web"),
            ({"query": VIEWER_FIRST_NAME}, "web"),
            ({"query": VIEWER}, "web"),
            ({"documentId": sha256(VIEWER)}, None),
            ({"query": VIEWER_FIRST_NAME, "extensions": apq(VIEWER_FIRST_NAME)}, "web"),
            ({"extensions": apq(VIEWER_FIRST_NAME)}, None),
            ({"extensions": apq(VIEWER_FIRST_NAME)}, None),
        ]
        answers = [await post(http, body, token=token, client=client) for body, client in calls]

    first_name = {"data": {"viewer": {"firstName": "Alice"}}}
    assert [answered(a) for a in answers] == [
        first_name,
        first_name,
        {"data": ALICE},
        {"data": ALICE},
        first_name,
        first_name,
        first_name,
    ]
    logged = [r.getMessage() for r in caplog.records if r.name == "api.extensions.persisted"]
    untrusted = sha256(VIEWER_FIRST_NAME)
    assert logged == [
        f"TRUSTED_DOCUMENTS=log: untrusted document sha256:{untrusted} from client web "
        "(enforce would refuse it)",
        f"TRUSTED_DOCUMENTS=log: untrusted document sha256:{untrusted} from client (none) "
        "(enforce would refuse it)",
    ]
