import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import strawberry
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.routing import Route
from starlette.websockets import WebSocket
from strawberry.file_uploads import Upload

from api.errors import BadUserInput, NotFound, Unauthenticated
from api.extensions.errors import MaskInternalErrors
from api.extensions.limits import MAX_DEPTH, limit_extensions
from api.view import GRAPHQL_RESPONSE_JSON, GraphQLView, json_error_response, negotiate_media_type
from tests.asgi_websocket import asgi_websocket

MAX_BODY = 4096
BACKGROUND: list[str] = []
GQL_JSON = {"Accept": GRAPHQL_RESPONSE_JSON}


@strawberry.type
class Node:
    name: str = "n"

    @strawberry.field
    def child(self) -> "Node":
        return Node()


@strawberry.type
class Query:
    @strawberry.field
    def hello(self, name: str = "world") -> str:
        return f"Hello {name}"

    @strawberry.field
    def count(self, n: int) -> int:
        return n

    @strawberry.field
    def node(self) -> Node:
        return Node()

    @strawberry.field
    def missing(self) -> str | None:
        raise NotFound()

    @strawberry.field
    def invalid(self) -> str | None:
        raise BadUserInput("Invalid e-mail address.", field="email")

    @strawberry.field
    def boom(self) -> str | None:
        raise RuntimeError("SELECT nir FROM patient -- /srv/app/models/patient.py")


@strawberry.type
class Mutation:
    @strawberry.mutation
    def echo(self, text: str) -> str:
        return text

    @strawberry.mutation
    def created(self, info: strawberry.Info) -> str:
        response = info.context["response"]
        response.status_code = 201
        response.headers["X-Created"] = "yes"
        response.background = BackgroundTask(BACKGROUND.append, "ran")
        return "ok"

    @strawberry.mutation
    async def upload(self, file: Upload) -> str:
        content = await file.read()  # type: ignore[attr-defined]
        return f"{file.filename}:{len(content)}"  # type: ignore[attr-defined]


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def ticks(self) -> AsyncGenerator[int, None]:
        yield 1
        raise RuntimeError("postgres://app:hunter2@db/health unreachable")


schema = strawberry.Schema(
    Query, Mutation, Subscription, extensions=[MaskInternalErrors, *limit_extensions()]
)


@dataclass
class Context:
    request: Request | WebSocket
    request_id: str


class ContextView(GraphQLView[Context, None]):
    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:
        if request.headers.get("authorization") == "Bearer expired":
            raise Unauthenticated()
        if request.headers.get("authorization") == "Bearer crash":
            raise RuntimeError("redis://:hunter2@cache:6379 unreachable")
        return Context(request=request, request_id="req-42")


def client_for(view: GraphQLView[Any, Any]) -> httpx.AsyncClient:
    app = Starlette(routes=[Route("/graphql", view, methods=["GET", "POST", "PUT"])])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(GraphQLView(schema, max_body_bytes=MAX_BODY)) as c:
        yield c


@pytest.fixture
async def context_client() -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(ContextView(schema, max_body_bytes=MAX_BODY)) as c:
        yield c


def only_error(response: httpx.Response) -> dict[str, Any]:
    errors = response.json()["errors"]
    assert len(errors) == 1
    error: dict[str, Any] = errors[0]
    return error


# Content negotiation


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "application/json"),
        ("*/*", "application/json"),
        ("application/json", "application/json"),
        ("text/html", "application/json"),
        (GRAPHQL_RESPONSE_JSON, GRAPHQL_RESPONSE_JSON),
        (f"{GRAPHQL_RESPONSE_JSON}, application/json;q=0.9", GRAPHQL_RESPONSE_JSON),
        (f"application/json, {GRAPHQL_RESPONSE_JSON};q=0.5", "application/json"),
        (f"{GRAPHQL_RESPONSE_JSON};q=0", "application/json"),
        (f"{GRAPHQL_RESPONSE_JSON};q=0.8, */*;q=0.1", GRAPHQL_RESPONSE_JSON),
    ],
)
def test_negotiate_media_type(accept: str | None, expected: str) -> None:
    assert negotiate_media_type(accept) == expected


async def test_query_answers_application_json_by_default(client: httpx.AsyncClient) -> None:
    response = await client.post("/graphql", json={"query": "{ hello }"})

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.json() == {"data": {"hello": "Hello world"}}


async def test_query_answers_graphql_response_json_when_asked(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/graphql", json={"query": "{ hello }"}, headers=GQL_JSON)

    assert response.status_code == 200
    assert response.headers["content-type"] == f"{GRAPHQL_RESPONSE_JSON}; charset=utf-8"
    assert response.json() == {"data": {"hello": "Hello world"}}


async def test_a_resolver_chooses_the_status_headers_and_background_task(
    client: httpx.AsyncClient,
) -> None:
    """What a resolver sets on the sub-response (strawberry's `info.context["response"]`)
    reaches the answer; a request that sets nothing answers 200 with only its own headers."""
    BACKGROUND.clear()
    response = await client.post("/graphql", json={"query": "mutation { created }"})

    assert response.status_code == 201
    assert response.headers["x-created"] == "yes"
    assert response.json() == {"data": {"created": "ok"}}
    assert int(response.headers["content-length"]) == len(response.content)
    assert BACKGROUND == ["ran"]

    plain = await client.post("/graphql", json={"query": "{ hello }"})
    assert plain.status_code == 200
    assert "x-created" not in plain.headers
    assert int(plain.headers["content-length"]) == len(plain.content)
    assert plain.headers["content-type"] == "application/json; charset=utf-8"
    assert BACKGROUND == ["ran"]


async def test_get_query_works(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/graphql",
        params={"query": "query($n: Int!) { count(n: $n) }", "variables": '{"n": 3}'},
        headers={"Accept": "application/json"},
    )

    assert response.status_code == 200
    assert response.json() == {"data": {"count": 3}}


# Requests that never executed: the same status whatever the media type (the current
# GraphQL-over-HTTP text serves legacy clients "as if the request had specified
# `Accept: application/graphql-response+json`").


@pytest.mark.parametrize(
    ("accept", "status", "media_type"),
    [
        (GRAPHQL_RESPONSE_JSON, 400, GRAPHQL_RESPONSE_JSON),
        ("application/json", 400, "application/json"),
    ],
)
async def test_parse_error(
    client: httpx.AsyncClient, accept: str, status: int, media_type: str
) -> None:
    response = await client.post("/graphql", json={"query": "{ hello"}, headers={"Accept": accept})

    assert response.status_code == status
    assert response.headers["content-type"] == f"{media_type}; charset=utf-8"
    assert response.json() == {
        "errors": [
            {
                "message": "Syntax Error: Expected Name, found <EOF>.",
                "locations": [{"line": 1, "column": 8}],
                "extensions": {"code": "GRAPHQL_PARSE_FAILED"},
            }
        ]
    }


@pytest.mark.parametrize(
    ("accept", "status"), [(GRAPHQL_RESPONSE_JSON, 422), ("application/json", 422)]
)
async def test_validation_error(client: httpx.AsyncClient, accept: str, status: int) -> None:
    response = await client.post("/graphql", json={"query": "{ zzz }"}, headers={"Accept": accept})

    assert response.status_code == status
    assert "data" not in response.json()
    error = only_error(response)
    assert error["message"] == "Cannot query field 'zzz' on type 'Query'."
    assert error["extensions"] == {"code": "GRAPHQL_VALIDATION_FAILED"}


async def test_bad_variables_are_bad_user_input_and_never_execute(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/graphql",
        json={"query": "query($n: Int!) { count(n: $n) }", "variables": {"n": "three"}},
        headers=GQL_JSON,
    )

    assert response.status_code == 422
    error = only_error(response)
    assert error["message"].startswith("Variable '$n' has invalid value")
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "n"}


async def test_unknown_operation_never_executes(client: httpx.AsyncClient) -> None:
    body = {"query": "query A { hello }", "operationName": "B"}

    as_graphql = await client.post("/graphql", json=body, headers=GQL_JSON)
    as_json = await client.post("/graphql", json=body)

    assert as_graphql.status_code == 422
    assert as_json.status_code == 422
    for response in (as_graphql, as_json):
        assert response.json() == {
            "errors": [
                {
                    "message": 'Unknown operation named "B".',
                    "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"},
                }
            ]
        }


async def test_executed_request_with_errors_answers_294_or_200(client: httpx.AsyncClient) -> None:
    response = await client.post("/graphql", json={"query": "{ hello missing }"}, headers=GQL_JSON)
    as_json = await client.post("/graphql", json={"query": "{ hello missing }"})

    assert response.status_code == 294  # "Partial Success", under graphql-response+json only
    assert as_json.status_code == 200
    assert as_json.json() == response.json()
    assert response.json() == {
        "data": {"hello": "Hello world", "missing": None},
        "errors": [
            {
                "message": "Not found.",
                "locations": [{"line": 1, "column": 9}],
                "path": ["missing"],
                "extensions": {"code": "NOT_FOUND"},
            }
        ],
    }


# Errors raised by resolvers


async def test_api_error_keeps_code_and_extensions(client: httpx.AsyncClient) -> None:
    response = await client.post("/graphql", json={"query": "{ invalid }"})

    assert response.status_code == 200
    assert response.json()["data"] == {"invalid": None}
    error = only_error(response)
    assert error["message"] == "Invalid e-mail address."
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "email"}


async def test_internal_error_is_masked_and_logged_with_its_request_id(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="api.extensions.errors"):
        response = await client.post("/graphql", json={"query": "{ hello boom }"})

    assert response.status_code == 200
    assert response.json()["data"] == {"hello": "Hello world", "boom": None}
    error = only_error(response)
    assert error["message"] == "Internal server error."
    assert error["path"] == ["boom"]
    request_id = error["extensions"]["requestId"]
    assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR", "requestId": request_id}
    assert len(request_id) == 32
    assert "SELECT" not in response.text
    assert "/srv/app" not in response.text
    [record] = [r for r in caplog.records if r.name == "api.extensions.errors"]
    assert request_id in record.getMessage()
    assert "path=boom" in record.getMessage()
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)


async def test_internal_error_uses_the_context_request_id(
    context_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="api.extensions.errors"):
        response = await context_client.post("/graphql", json={"query": "{ boom }"})

    assert only_error(response)["extensions"] == {
        "code": "INTERNAL_SERVER_ERROR",
        "requestId": "req-42",
    }
    assert any("request_id=req-42" in r.getMessage() for r in caplog.records)


async def test_api_error_from_get_context_is_a_json_error(
    context_client: httpx.AsyncClient,
) -> None:
    response = await context_client.post(
        "/graphql",
        json={"query": "{ hello }"},
        headers={"Authorization": "Bearer expired", **GQL_JSON},
    )

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {
        "errors": [
            {"message": "Authentication required.", "extensions": {"code": "UNAUTHENTICATED"}}
        ]
    }


async def test_crash_in_the_view_is_a_masked_500(
    context_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="api.view"):
        response = await context_client.post(
            "/graphql", json={"query": "{ hello }"}, headers={"Authorization": "Bearer crash"}
        )

    assert response.status_code == 500
    error = only_error(response)
    request_id = error["extensions"]["requestId"]
    assert error == {
        "message": "Internal server error.",
        "extensions": {"code": "INTERNAL_SERVER_ERROR", "requestId": request_id},
    }
    assert "hunter2" not in response.text
    assert any(request_id in r.getMessage() for r in caplog.records)


# Malformed requests


async def test_malformed_json_is_400_json(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql", content=b'{"query": ', headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.json() == {
        "errors": [{"message": "Malformed JSON.", "extensions": {"code": "BAD_USER_INPUT"}}]
    }


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"\xff\xfe", 400),  # not JSON
        (b"[" * 100_000, 400),  # too deep to parse
        (b'"{ hello }"', 422),  # JSON, not a GraphQL-over-HTTP request
        (b"42", 422),
    ],
)
async def test_a_body_that_is_not_a_json_object_is_refused(body: bytes, status: int) -> None:
    view: GraphQLView[Any, Any] = GraphQLView(schema, max_body_bytes=1_000_000)
    async with client_for(view) as big_client:
        response = await big_client.post(
            "/graphql", content=body, headers={"Content-Type": "application/json"}
        )

    assert response.status_code == status
    assert only_error(response)["extensions"] == {"code": "BAD_USER_INPUT"}


async def test_missing_query_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/graphql", json={"variables": {}})

    assert response.status_code == 422
    assert response.json() == {
        "errors": [
            {
                "message": "The request has no GraphQL query.",
                "extensions": {"code": "BAD_USER_INPUT"},
            }
        ]
    }


async def test_unsupported_content_type_is_415(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql", content=b"query=%7B+hello+%7D", headers={"Content-Type": "text/plain"}
    )

    assert response.status_code == 415
    assert response.json() == {
        "errors": [
            {
                "message": "Content-Type must be application/json or multipart/form-data.",
                "extensions": {"code": "BAD_USER_INPUT"},
            }
        ]
    }


async def test_mutation_over_get_is_405(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/graphql", params={"query": 'mutation { echo(text: "x") }'}, headers=GQL_JSON
    )

    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json() == {
        "errors": [
            {
                "message": "mutations are not allowed when using GET",
                "extensions": {"code": "BAD_USER_INPUT"},
            }
        ]
    }


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_subscription_over_http_is_refused_as_bad_input(
    client: httpx.AsyncClient, method: str
) -> None:
    query = "subscription { ticks }"
    if method == "GET":
        response = await client.get("/graphql", params={"query": query}, headers=GQL_JSON)
    else:
        response = await client.post("/graphql", json={"query": query}, headers=GQL_JSON)

    assert response.status_code == 400
    assert response.json() == {
        "errors": [
            {
                "message": "Subscriptions are served over the websocket of /graphql only.",
                "extensions": {"code": "BAD_USER_INPUT"},
            }
        ]
    }


@pytest.mark.parametrize("accept", [GRAPHQL_RESPONSE_JSON, "application/json"])
async def test_a_persisted_query_hash_alone_answers_not_supported(
    client: httpx.AsyncClient, accept: str
) -> None:
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": "ab" * 32}}

    posted = await client.post(
        "/graphql", json={"extensions": extensions}, headers={"Accept": accept}
    )
    got = await client.get(
        "/graphql", params={"extensions": json.dumps(extensions)}, headers={"Accept": accept}
    )
    with_text = await client.post(
        "/graphql", json={"query": "{ hello }", "extensions": extensions}, headers=GQL_JSON
    )

    for response in (posted, got):
        assert response.status_code == 400
        assert response.json() == {
            "errors": [
                {
                    "message": "PersistedQueryNotSupported",
                    "extensions": {"code": "PERSISTED_QUERY_NOT_SUPPORTED"},
                }
            ]
        }
    assert with_text.status_code == 200  # the text is there: it simply runs
    assert "errors" not in with_text.json()


async def test_other_methods_are_405_json(client: httpx.AsyncClient) -> None:
    response = await client.put("/graphql", json={"query": "{ hello }"})

    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    assert only_error(response)["extensions"] == {"code": "BAD_USER_INPUT"}


async def test_graphiql_is_json_404_when_disabled() -> None:
    async with client_for(GraphQLView(schema, max_body_bytes=MAX_BODY, graphql_ide=None)) as c:
        response = await c.get("/graphql", headers={"Accept": "text/html"})

    assert response.status_code == 404
    assert only_error(response)["extensions"] == {"code": "NOT_FOUND"}


# Body size


async def test_body_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    padding = "x" * MAX_BODY
    response = await client.post("/graphql", json={"query": f"{{ hello }} # {padding}"})

    assert response.status_code == 413
    assert response.json() == {
        "errors": [
            {
                "message": f"Request body larger than {MAX_BODY} bytes.",
                "extensions": {"code": "PAYLOAD_TOO_LARGE"},
            }
        ]
    }


async def test_streamed_body_over_the_limit_is_413_without_content_length(
    client: httpx.AsyncClient,
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"query": "{ hello } #'
        for _ in range(10):
            yield b"x" * 1024
        yield b'"}'

    response = await client.post(
        "/graphql", content=chunks(), headers={"Content-Type": "application/json"}
    )

    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert only_error(response)["extensions"] == {"code": "PAYLOAD_TOO_LARGE"}


# Multipart uploads

UPLOAD = {
    "operations": json.dumps(
        {"query": "mutation($file: Upload!) { upload(file: $file) }", "variables": {"file": None}}
    ),
    "map": json.dumps({"0": ["variables.file"]}),
}


async def test_multipart_without_preflight_header_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql", data=UPLOAD, files={"0": ("note.txt", b"hello", "text/plain")}
    )

    assert response.status_code == 400
    error = only_error(response)
    assert error["extensions"] == {"code": "BAD_USER_INPUT"}
    assert "Apollo-Require-Preflight: true" in error["message"]


@pytest.mark.parametrize(
    "headers", [{"Apollo-Require-Preflight": "true"}, {"X-Apollo-Operation-Name": "Upload"}]
)
async def test_multipart_with_preflight_header_uploads(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.post(
        "/graphql",
        data=UPLOAD,
        files={"0": ("note.txt", b"hello", "text/plain")},
        headers=headers,
    )

    assert response.status_code == 200
    assert response.json() == {"data": {"upload": "note.txt:5"}}


async def test_multipart_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql",
        data=UPLOAD,
        files={"0": ("scan.pdf", b"x" * MAX_BODY, "application/pdf")},
        headers={"Apollo-Require-Preflight": "true"},
    )

    assert response.status_code == 413
    assert only_error(response)["extensions"] == {"code": "PAYLOAD_TOO_LARGE"}


async def test_multipart_with_a_missing_file_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql",
        data=UPLOAD,
        files={"1": ("note.txt", b"hello", "text/plain")},
        headers={"Apollo-Require-Preflight": "true"},
    )

    assert response.status_code == 400
    assert only_error(response)["extensions"] == {"code": "BAD_USER_INPUT"}


# Limits


async def test_depth_limit_is_query_too_complex(client: httpx.AsyncClient) -> None:
    depth = MAX_DEPTH + 1
    query = "{ node { " + "child { " * depth + "name" + " }" * depth + " } }"

    response = await client.post("/graphql", json={"query": query}, headers=GQL_JSON)

    assert response.status_code == 422  # a validation rule
    error = only_error(response)
    assert error["message"] == "'anonymous' exceeds maximum operation depth of 10"
    assert error["extensions"] == {"code": "QUERY_TOO_COMPLEX"}


async def test_depth_within_the_limit_executes(client: httpx.AsyncClient) -> None:
    depth = MAX_DEPTH - 2
    query = "{ node { " + "child { " * depth + "name" + " }" * depth + " } }"

    response = await client.post("/graphql", json={"query": query})

    assert response.status_code == 200
    assert "errors" not in response.json()


async def test_alias_limit_is_query_too_complex(client: httpx.AsyncClient) -> None:
    query = "{ " + " ".join(f"a{i}: hello" for i in range(16)) + " }"

    response = await client.post("/graphql", json={"query": query}, headers=GQL_JSON)

    assert response.status_code == 422  # a validation rule
    assert response.json() == {
        "errors": [
            {
                "message": "16 aliases found. Allowed: 15",
                "extensions": {"code": "QUERY_TOO_COMPLEX"},
            }
        ]
    }


async def test_token_limit_is_query_too_complex(client: httpx.AsyncClient) -> None:
    query = "{ " + "h " * 1000 + "}"  # 1002 tokens, under the body limit

    response = await client.post("/graphql", json={"query": query}, headers=GQL_JSON)

    assert response.status_code == 400  # the document cannot be parsed
    error = only_error(response)
    assert error["message"].endswith("Document contains more than 1000 tokens. Parsing aborted.")
    assert error["extensions"] == {"code": "QUERY_TOO_COMPLEX"}


async def test_repeated_invalid_query_still_coded_with_caches(client: httpx.AsyncClient) -> None:
    for _ in range(2):
        response = await client.post("/graphql", json={"query": "{ zzz }"})
        assert only_error(response)["extensions"] == {"code": "GRAPHQL_VALIDATION_FAILED"}
        response = await client.post("/graphql", json={"query": "{ hello"})
        assert only_error(response)["extensions"] == {"code": "GRAPHQL_PARSE_FAILED"}


# WebSocket


async def test_subscription_errors_are_masked_over_websocket() -> None:
    view: GraphQLView[Any, Any] = GraphQLView(schema, max_body_bytes=MAX_BODY)
    async with asgi_websocket(view) as (socket, accepted):
        await socket.send_json({"type": "connection_init"})
        ack = await socket.receive_json()
        await socket.send_json(
            {"type": "subscribe", "id": "1", "payload": {"query": "subscription { ticks }"}}
        )
        first, second = await socket.receive_json(), await socket.receive_json()

    assert accepted["subprotocol"] == "graphql-transport-ws"
    assert ack == {"type": "connection_ack"}
    assert first == {"id": "1", "type": "next", "payload": {"data": {"ticks": 1}}}
    [error] = second["payload"]["errors"]
    assert error == {
        "message": "Internal server error.",
        "extensions": {
            "code": "INTERNAL_SERVER_ERROR",
            "requestId": error["extensions"]["requestId"],
        },
    }
    assert "hunter2" not in json.dumps(second)


# Helper for other routes


def test_json_error_response() -> None:
    response = json_error_response(404, "NOT_FOUND", "Not found.")

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert json.loads(bytes(response.body)) == {
        "errors": [{"message": "Not found.", "extensions": {"code": "NOT_FOUND"}}]
    }
