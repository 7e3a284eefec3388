"""Issue 10, what its audit found untested or missing, against the real app and database:

- `documentId` (`sha256:<hex>` and the hex alone) over the websocket, and the hex alone on
  GET; TRUSTED_DOCUMENTS=enforce over the websocket, the client named in `connection_init`;
- APQ registrations bounded when one caller's attempts arrive at once;
- the registry's in-process cache bounded in documents, characters and aliases;
- the persisted-document settings read from the environment;
- a persisted document costed once (its plan kept by its text);
- GraphQL over HTTP: a GET's empty optional parameters are parameters left out, its
  `variables` and `extensions` are JSON (else 422); a result with `data: null` and errors
  from execution is 294 (200 under application/json); a GET never registers a mutation by APQ.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from graphql import parse

from api.config import ConfigError, Settings
from api.extensions.cost import cost_model
from api.extensions.persisted import DocumentCache
from api.schema import schema
from models import persisted
from models.persisted import DocumentRegistration, StoredDocument
from tests.asgi_websocket import asgi_websocket
from tests.test_persisted import (
    ALICE,
    GRAPHQL_RESPONSE,
    ID_REQUIRED,
    MESSAGE_RECEIVED,
    NOT_IN_LIST,
    VIEWER,
    answered,
    apq,
    client_of,
    conversation_cursor,
    holder,
    post,
    registry,
    serving,
    sha256,
)

M1 = {"data": {"messageReceived": {"body": "m1"}}}

# --- documentId over the websocket and GET -----------------------------------------------


async def subscribe_each(
    app: Any, token: str, payloads: list[dict[str, Any]], protocol: str, client: str | None = None
) -> list[dict[str, Any]]:
    """Each payload subscribed on one socket in turn; the first message each one gets."""
    start = "subscribe" if protocol == "graphql-transport-ws" else "start"
    init: dict[str, Any] = {"Authorization": f"Bearer {token}"}
    if client is not None:
        init["apollographql-client-name"] = client
    answers = []
    async with asgi_websocket(app, protocol) as (socket, _):
        await socket.send_json({"type": "connection_init", "payload": init})
        assert (await socket.receive_json())["type"] == "connection_ack"
        for n, payload in enumerate(payloads, 1):
            await socket.send_json({"id": str(n), "type": start, "payload": payload})
            answers.append(await socket.receive_json())
    return answers


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
async def test_a_document_id_is_served_over_the_websocket_prefixed_or_bare(
    settings: Settings, protocol: str
) -> None:
    async with serving(settings) as app, client_of(app) as http:
        alice, token = await holder()
        cursor = await conversation_cursor(http, alice)
        variables = {"after": cursor}
        answers = await subscribe_each(
            app,
            token,
            [
                {
                    "query": MESSAGE_RECEIVED,
                    "variables": variables,
                    "extensions": apq(MESSAGE_RECEIVED),
                },
                {"documentId": f"sha256:{sha256(MESSAGE_RECEIVED)}", "variables": variables},
                {"documentId": sha256(MESSAGE_RECEIVED).upper(), "variables": variables},
                {"documentId": f"sha256:{'0' * 64}", "variables": variables},
            ],
            protocol,
        )
        rows = await registry()

    data = "next" if protocol == "graphql-transport-ws" else "data"
    assert [row["document_id"] for row in rows] == [sha256(MESSAGE_RECEIVED)]
    assert answers[:3] == [{"id": str(n), "type": data, "payload": M1} for n in (1, 2, 3)]
    error = (
        NOT_IN_LIST["errors"] if protocol == "graphql-transport-ws" else NOT_IN_LIST["errors"][0]
    )
    assert answers[3] == {"id": "4", "type": "error", "payload": error}


async def test_enforce_over_the_websocket_serves_the_list_of_the_client_named_at_init(
    settings: Settings,
) -> None:
    manifest = persisted.parse_manifest(json.dumps({sha256(MESSAGE_RECEIVED): MESSAGE_RECEIVED}))
    async with serving(settings) as app, client_of(app) as http:
        await persisted.load_manifest(manifest, client="web", registered_by="test")
        alice, token = await holder()
        cursor = await conversation_cursor(http, alice)
    async with serving(settings, trusted_documents="enforce") as app:
        variables = {"after": cursor}
        by_id = {"documentId": sha256(MESSAGE_RECEIVED), "variables": variables}
        by_text = {"query": MESSAGE_RECEIVED, "variables": variables}

        as_web = await subscribe_each(app, token, [by_id, by_text], "graphql-transport-ws", "web")
        as_nobody = await subscribe_each(app, token, [by_id], "graphql-transport-ws")

    assert as_web == [
        {"id": "1", "type": "next", "payload": M1},
        {"id": "2", "type": "error", "payload": ID_REQUIRED["errors"]},
    ]
    assert as_nobody == [{"id": "1", "type": "error", "payload": NOT_IN_LIST["errors"]}]


async def test_a_bare_hex_document_id_is_served_on_get(settings: Settings) -> None:
    async with serving(settings) as app, client_of(app) as http:
        _, token = await holder()
        await post(http, {"query": VIEWER, "extensions": apq(VIEWER)}, token=token)
        auth = {"Authorization": f"Bearer {token}", "Accept": GRAPHQL_RESPONSE}
        bare = await http.get("/graphql", params={"documentId": sha256(VIEWER)}, headers=auth)
        upper = await http.get(
            "/graphql", params={"documentId": sha256(VIEWER).upper()}, headers=auth
        )
        unknown = await http.get("/graphql", params={"documentId": "f" * 64}, headers=auth)

    assert answered(bare) == {"data": ALICE}
    assert answered(upper) == {"data": ALICE}
    assert answered(unknown, 400) == NOT_IN_LIST


# --- APQ registration bounds -------------------------------------------------------------


async def test_concurrent_apq_registrations_of_one_caller_stay_within_its_hourly_limit(
    settings: Settings,
) -> None:
    texts = [f"query C{n} {{ viewer {{ __typename }} }}" for n in range(8)]
    async with (
        serving(settings, apq_registrations_per_hour=3) as app,
        client_of(app) as http,
    ):
        _, token = await holder()
        answers = await asyncio.gather(
            *(post(http, {"query": t, "extensions": apq(t)}, token=token) for t in texts)
        )
        registered = await DocumentRegistration.filter(source="apq").count()
        later = [await post(http, {"extensions": apq(t)}, token=token) for t in texts]

    typename = {"data": {"viewer": {"__typename": "Patient"}}}
    assert [answered(a) for a in answers] == [typename] * 8  # each served, registered or not
    assert registered == 3
    served_by_hash = [answered(a) == typename for a in later]
    assert served_by_hash.count(True) == 3


# --- the registry's cache ---------------------------------------------------------------


def stored(text: str) -> StoredDocument:
    return StoredDocument(sha256=sha256(text), text=text, lists=frozenset(), apq=True)


def test_the_document_cache_is_bounded_in_documents_characters_and_aliases() -> None:
    by_count = DocumentCache(max_entries=3, max_chars=1000)
    documents = [stored(f"{{ a{n} }}") for n in range(4)]
    for document in documents[:3]:
        by_count.put(document)
    assert by_count.get(documents[0].sha256) is documents[0]  # now the most recently used
    by_count.put(documents[3])

    assert len(by_count) == 3
    assert by_count.get(documents[1].sha256) is None  # the least recently used went
    assert [by_count.get(d.sha256) for d in (documents[0], documents[2], documents[3])] == [
        documents[0],
        documents[2],
        documents[3],
    ]

    by_size = DocumentCache(max_entries=100, max_chars=25)
    ten = [stored(f"{{ b{n:05} }}") for n in range(3)]  # 10 characters each
    for document in ten:
        by_size.put(document)
    too_long = stored("{ " + "c" * 30 + " }")
    by_size.put(too_long)

    assert len(by_size) == 2
    assert by_size.get(ten[0].sha256) is None
    assert by_size.get(too_long.sha256) is None  # never kept: longer than the whole cache

    for n in range(5):
        by_count.put_alias("web", f"id{n}", documents[0].sha256)
    assert by_count.alias("web", "id0") is None
    assert by_count.alias("web", "id4") == documents[0].sha256
    assert by_count.alias(None, "id4") is None  # per client


# --- settings ---------------------------------------------------------------------------

ENV = {"ENVIRONMENT": "test", "SECRET_KEY": "k" * 40}


def test_the_persisted_document_settings_come_from_the_environment() -> None:
    defaults = Settings.from_env(ENV)
    chosen = Settings.from_env(
        {
            **ENV,
            "TRUSTED_DOCUMENTS": " Enforce ",
            "APQ": "false",
            "APQ_MAX_BYTES": "2048",
            "APQ_REGISTRATIONS_PER_HOUR": "7",
        }
    )

    assert (
        defaults.trusted_documents,
        defaults.apq,
        defaults.apq_max_bytes,
        defaults.apq_registrations_per_hour,
    ) == ("off", True, 16384, 100)
    assert (
        chosen.trusted_documents,
        chosen.apq,
        chosen.apq_max_bytes,
        chosen.apq_registrations_per_hour,
    ) == ("enforce", False, 2048, 7)
    with pytest.raises(ConfigError, match="TRUSTED_DOCUMENTS must be off, log or enforce"):
        Settings.from_env({**ENV, "TRUSTED_DOCUMENTS": "strict"})
    for name in ("APQ_MAX_BYTES", "APQ_REGISTRATIONS_PER_HOUR"):
        with pytest.raises(ConfigError, match=f"{name} must be a positive integer"):
            Settings.from_env({**ENV, name: "0"})


# --- cost, once per document -------------------------------------------------------------


async def test_a_persisted_document_is_planned_once_whatever_the_requests_naming_it(
    settings: Settings,
) -> None:
    text = "query Costed { viewer { ... on Patient { documents(first: 7) { edges { node { id }"
    text += " } } } } }"
    model = cost_model(schema._schema)
    async with serving(settings) as app, client_of(app) as http:
        _, token = await holder()
        headers = {"Authorization": f"Bearer {token}", "X-Query-Cost": "true"}
        first = await http.post(
            "/graphql", json={"query": text, "extensions": apq(text)}, headers=headers
        )
        plan = model.plan(parse(text), None, text)  # the one the request kept
        again = [
            await http.post("/graphql", json=body, headers=headers)
            for body in (
                {"documentId": f"sha256:{sha256(text)}"},
                {"extensions": apq(text)},
                {"documentId": sha256(text)},
            )
        ]

    # viewer 1, documents 1, edges 1, 7 nodes.
    assert [r.json()["extensions"] for r in (first, *again)] == [{"cost": 10}] * 4
    assert model.plan(parse(text), None, text) is plan
    assert plan.cost({}) == 10


# --- GraphQL over HTTP ------------------------------------------------------------------

TYPENAME = {"data": {"__typename": "Query"}}


async def test_a_gets_empty_optional_parameters_are_parameters_left_out(
    settings: Settings,
) -> None:
    accept = {"Accept": GRAPHQL_RESPONSE}
    query = {"query": "{ __typename }"}
    async with serving(settings) as app, client_of(app) as http:
        empty = [
            await http.get("/graphql", params={**query, name: ""}, headers=accept)
            for name in ("operationName", "variables", "extensions", "documentId")
        ]
        null_variables = await http.get(
            "/graphql", params={**query, "variables": "null"}, headers=accept
        )
        named_null = await http.get(
            "/graphql",
            params={"query": "query null { __typename }", "operationName": "null"},
            headers=accept,
        )
        not_json = await http.get("/graphql", params={**query, "variables": "{"}, headers=accept)
        not_a_map = await http.get(
            "/graphql", params={**query, "extensions": "[1]"}, headers=accept
        )

    for response in (*empty, null_variables, named_null):
        assert answered(response) == TYPENAME
    assert answered(not_json, 422) == {
        "errors": [
            {
                "message": "The GraphQL operation's `variables` parameter must be JSON.",
                "extensions": {"code": "BAD_USER_INPUT"},
            }
        ]
    }
    assert answered(not_a_map, 422)["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT"}


@pytest.mark.parametrize(("accept", "status"), [(GRAPHQL_RESPONSE, 294), ("application/json", 200)])
async def test_a_result_with_null_data_and_errors_from_execution_is_294(
    settings: Settings, accept: str, status: int
) -> None:
    """ "If the GraphQL response contains both the {data} entry (even if it is {null}) and
    the {errors} entry, then the server SHOULD reply with a `294` status code.\""""
    async with serving(settings) as app, client_of(app) as http:
        response = await http.post(
            "/graphql",
            json={"query": '{ professionals(search: "x") { id } }'},  # [Professional!]!
            headers={"Accept": accept},
        )

    assert response.status_code == status
    body = response.json()
    assert body["data"] is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["UNAUTHENTICATED"]
    assert response.headers["content-type"] == f"{accept}; charset=utf-8"


async def test_a_get_never_registers_a_mutation_by_apq(settings: Settings) -> None:
    mutation = "mutation Out { logout }"
    async with serving(settings) as app, client_of(app) as http:
        response = await http.get(
            "/graphql",
            params={"query": mutation, "extensions": json.dumps(apq(mutation))},
            headers={"Accept": GRAPHQL_RESPONSE},
        )
        rows = await registry()

    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert [e["extensions"]["code"] for e in response.json()["errors"]] == ["BAD_USER_INPUT"]
    assert rows == []
