"""GraphQL over HTTP as the specification's current text has it (graphql/graphql-over-http,
spec/GraphQLOverHTTP.md), the security headers of every response, CORS, and the schema
hidden in production (no introspection, no "Did you mean …?"). The `graphql-http` audit
runs against a live server in tests/e2e/test_http_audit.py."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api.app import create_app
from api.config import Settings
from api.security_headers import API_CSP, SecureStarlette, security_headers
from tests.factories import make_patient

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"
ORIGIN = "https://app.espace-sante.example"
VIEWER = "{ viewer { __typename } }"
COMMON_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


@asynccontextmanager
async def api(settings: Settings, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(replace(settings, **overrides))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.9", 4242))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


@pytest.fixture
async def http(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api(settings, allowed_origins=(ORIGIN,)) as client:
        yield client


def accepting(accept: str | None, **headers: str) -> dict[str, str]:
    return headers if accept is None else {**headers, "Accept": accept}


def codes(response: httpx.Response) -> list[str]:
    return [error["extensions"]["code"] for error in response.json()["errors"]]


# --- media types ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "media_type"),
    [
        (None, JSON),
        ("*/*", JSON),
        ("application/*", JSON),
        (JSON, JSON),
        (GRAPHQL_RESPONSE, GRAPHQL_RESPONSE),
        (f"{GRAPHQL_RESPONSE}, {JSON};q=0.9", GRAPHQL_RESPONSE),
        (f"{JSON}, {GRAPHQL_RESPONSE};q=0.5", JSON),
        (f"text/html, {GRAPHQL_RESPONSE}", GRAPHQL_RESPONSE),
    ],
)
async def test_the_answer_has_the_media_type_the_client_prefers_in_utf_8(
    http: httpx.AsyncClient, accept: str | None, media_type: str
) -> None:
    response = await http.post("/graphql", json={"query": VIEWER}, headers=accepting(accept))

    assert response.status_code == 200
    assert response.headers["content-type"] == f"{media_type}; charset=utf-8"
    assert response.json() == {"data": {"viewer": None}}


@pytest.mark.parametrize("accept", ["application/xml", "text/html", f"{JSON};q=0, text/plain"])
async def test_an_accept_header_allowing_no_json_answers_406(
    http: httpx.AsyncClient, accept: str
) -> None:
    posted = await http.post("/graphql", json={"query": VIEWER}, headers={"Accept": accept})
    got = await http.get("/graphql", params={"query": VIEWER}, headers={"Accept": accept})

    for response in (posted, got):
        assert response.status_code == 406
        assert response.json() == {
            "errors": [
                {
                    "message": f"This endpoint answers {GRAPHQL_RESPONSE} or {JSON}: accept"
                    " one of them.",
                    "extensions": {"code": "BAD_USER_INPUT"},
                }
            ]
        }


# --- status codes -------------------------------------------------------------------------

NOT_TOO_COMPLEX = (
    "{ viewer { ... on Patient { documents(first: 10000) { edges { node { id } } } } } }"
)

Call = Callable[[httpx.AsyncClient, dict[str, str]], Any]


def post(body: object) -> Call:
    return lambda http, headers: http.post("/graphql", json=body, headers=headers)


def raw(content: bytes, content_type: str | None) -> Call:
    def call(http: httpx.AsyncClient, headers: dict[str, str]) -> Any:
        sent = {**headers, **({"Content-Type": content_type} if content_type else {})}
        return http.post("/graphql", content=content, headers=sent)

    return call


def get(**params: str) -> Call:
    return lambda http, headers: http.get("/graphql", params=params, headers=headers)


REQUEST_ERRORS = [
    # (case, call, status, code)
    ("body not JSON", raw(b'{"query": "{', JSON), 400, "BAD_USER_INPUT"),
    ("body missing", raw(b"", JSON), 400, "BAD_USER_INPUT"),
    ("document does not parse", post({"query": "{ viewer"}), 400, "GRAPHQL_PARSE_FAILED"),
    (
        "document over the token limit",
        post({"query": "{" + " __typename" * 1000 + " }"}),
        400,
        "QUERY_TOO_COMPLEX",
    ),
    ("no query", post({"variables": {}}), 422, "BAD_USER_INPUT"),
    ("query not a string", post({"query": 42}), 422, "BAD_USER_INPUT"),
    ("variables not a map", post({"query": VIEWER, "variables": [7]}), 422, "BAD_USER_INPUT"),
    (
        "operationName not a string",
        post({"query": VIEWER, "operationName": 1}),
        422,
        "BAD_USER_INPUT",
    ),
    ("extensions not a map", post({"query": VIEWER, "extensions": "x"}), 422, "BAD_USER_INPUT"),
    ("a JSON array (a batch)", post([{"query": VIEWER}]), 422, "BAD_USER_INPUT"),
    ("a JSON number", raw(b"42", JSON), 422, "BAD_USER_INPUT"),
    ("document not valid", post({"query": "{ nope }"}), 422, "GRAPHQL_VALIDATION_FAILED"),
    (
        "document too deep",
        post(
            {
                # 11 levels of fields, one over MAX_QUERY_DEPTH
                "query": "{ viewer { ... on Patient { treatingDoctor { conversations { edges {"
                " node { patient { treatingDoctor { conversations { edges { node { patient {"
                " id } } } } } } } } } } } } }"
            }
        ),
        422,
        "QUERY_TOO_COMPLEX",
    ),
    ("document too costly", post({"query": NOT_TOO_COMPLEX}), 422, "QUERY_TOO_COMPLEX"),
    (
        "operation cannot be determined",
        post({"query": "query A { viewer { __typename } }", "operationName": "B"}),
        422,
        "GRAPHQL_VALIDATION_FAILED",
    ),
    (
        "variables cannot be coerced",
        post(
            {
                "query": 'query($f: Int) { professionals(search: "x", first: $f) { id } }',
                "variables": {"f": "three"},
            }
        ),
        422,
        "BAD_USER_INPUT",
    ),
    ("no Content-Type", raw(json.dumps({"query": VIEWER}).encode(), None), 415, "BAD_USER_INPUT"),
    ("a form", raw(b"query=%7B%7D", "application/x-www-form-urlencoded"), 415, "BAD_USER_INPUT"),
    ("a mutation over GET", get(query="mutation { logout }"), 405, "BAD_USER_INPUT"),
    (
        "an unknown persisted document",
        post({"documentId": "sha256:" + "0" * 64}),
        400,
        "PERSISTED_QUERY_NOT_IN_LIST",
    ),
]


@pytest.mark.parametrize(
    ("call", "status", "code"),
    [case[1:] for case in REQUEST_ERRORS],
    ids=[case[0] for case in REQUEST_ERRORS],
)
async def test_a_request_that_never_executes_answers_its_4xx_whatever_the_media_type(
    http: httpx.AsyncClient, call: Call, status: int, code: str
) -> None:
    for accept, media_type in ((GRAPHQL_RESPONSE, GRAPHQL_RESPONSE), (JSON, JSON), (None, JSON)):
        response = await call(http, accepting(accept))

        assert response.status_code == status, response.text
        assert codes(response) == [code]
        assert "data" not in response.json()
        assert response.headers["content-type"] == f"{media_type}; charset=utf-8"
        assert response.headers["cache-control"] == "no-store"


async def test_a_mutation_over_get_is_405_allowing_post_and_runs_nothing(
    http: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    bearer = {"Authorization": f"Bearer {alice.token}"}

    refused = await http.get("/graphql", params={"query": "mutation { logout }"}, headers=bearer)
    still_in = await http.post("/graphql", json={"query": VIEWER}, headers=bearer)

    assert refused.status_code == 405
    assert refused.headers["allow"] == "POST"
    assert still_in.json() == {"data": {"viewer": {"__typename": "Patient"}}}  # not logged out


async def test_an_unsupported_method_is_405_allowing_get_and_post(
    http: httpx.AsyncClient,
) -> None:
    response = await http.put("/graphql", json={"query": VIEWER})

    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    assert codes(response) == ["BAD_USER_INPUT"]


async def test_a_refused_token_is_401_with_a_bearer_challenge(http: httpx.AsyncClient) -> None:
    for accept in (GRAPHQL_RESPONSE, JSON):
        response = await http.post(
            "/graphql",
            json={"query": VIEWER},
            headers={"Authorization": "Bearer not-a-session", "Accept": accept},
        )

        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json() == {
            "errors": [
                {
                    "message": "The session is invalid or has expired.",
                    "extensions": {"code": "UNAUTHENTICATED"},
                }
            ]
        }


PARTIAL = "query($id: ID!) { viewer { __typename } patient(id: $id) { id } }"


@pytest.mark.parametrize(("accept", "status"), [(GRAPHQL_RESPONSE, 294), (JSON, 200), (None, 200)])
async def test_a_result_with_data_and_errors_is_294_under_graphql_response_json_only(
    http: httpx.AsyncClient, accept: str | None, status: int
) -> None:
    alice = await make_patient()
    bob = await make_patient("Bob")

    response = await http.post(
        "/graphql",
        json={"query": PARTIAL, "variables": {"id": bob.id}},
        headers=accepting(accept, Authorization=f"Bearer {alice.token}"),
    )

    assert response.status_code == status
    assert response.json()["data"] == {"viewer": {"__typename": "Patient"}, "patient": None}
    assert codes(response) == ["NOT_FOUND"]


@pytest.mark.parametrize("accept", [GRAPHQL_RESPONSE, JSON])
async def test_a_result_without_errors_is_200_over_post_and_get(
    http: httpx.AsyncClient, accept: str
) -> None:
    posted = await http.post("/graphql", json={"query": VIEWER}, headers={"Accept": accept})
    got = await http.get("/graphql", params={"query": VIEWER}, headers={"Accept": accept})

    for response in (posted, got):
        assert response.status_code == 200
        assert response.json() == {"data": {"viewer": None}}


# --- security headers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/graphql", {"query": VIEWER}, 200),
        ("POST", "/graphql", {"query": "{ nope }"}, 422),
        ("GET", "/healthz", None, 200),
        ("GET", "/readyz", None, 200),
        ("GET", "/nowhere", None, 404),
        ("GET", "/documents/not-an-id/content", None, 401),
    ],
)
async def test_every_response_carries_the_security_headers(
    http: httpx.AsyncClient, method: str, path: str, body: object, status: int
) -> None:
    response = await http.request(method, path, json=body)

    assert response.status_code == status, response.text
    for name, value in COMMON_HEADERS.items():
        assert response.headers[name] == value
    assert response.headers["content-security-policy"] == API_CSP
    assert "strict-transport-security" not in response.headers  # PUBLIC_URL is http here


async def test_a_cors_preflight_carries_the_security_headers(http: httpx.AsyncClient) -> None:
    response = await http.options(
        "/graphql",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
    )

    assert response.status_code == 200
    for name, value in COMMON_HEADERS.items():
        assert response.headers[name] == value


def crashing_app() -> SecureStarlette:
    async def crash(request: Request) -> Response:
        raise RuntimeError("boom")

    async def sandboxed(request: Request) -> Response:
        return Response(b"%PDF", headers={"Content-Security-Policy": "sandbox; default-src 'none'"})

    async def server_error(request: Request, exc: Exception) -> Response:
        return JSONResponse({"errors": [{"message": "Internal server error."}]}, status_code=500)

    return SecureStarlette(
        security_headers=security_headers(
            Settings(environment="test", public_url="https://sante.example")
        ),
        routes=[Route("/crash", crash), Route("/sandboxed", sandboxed)],
        exception_handlers={Exception: server_error},
    )


async def test_the_500_of_an_unhandled_error_carries_them_and_a_route_keeps_its_own_csp() -> None:
    transport = httpx.ASGITransport(app=crashing_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        crashed = await client.get("/crash")
        sandboxed = await client.get("/sandboxed")

    assert crashed.status_code == 500
    for response in (crashed, sandboxed):
        for name, value in COMMON_HEADERS.items():
            assert response.headers[name] == value
        assert (
            response.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
        )
    assert crashed.headers["content-security-policy"] == API_CSP
    assert sandboxed.headers["content-security-policy"] == "sandbox; default-src 'none'"


async def test_graphiql_runs_under_a_policy_that_names_its_inline_script_by_hash(
    settings: Settings,
) -> None:
    async with api(settings, environment="development") as client:
        page = await client.get("/graphql", headers={"Accept": "text/html"})

    [inline] = re.findall(r"<script>(.*?)</script>", page.text, re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
    policy = dict(
        directive.split(" ", 1) for directive in page.headers["content-security-policy"].split("; ")
    )
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert policy == {
        "default-src": "'none'",
        "script-src": f"https://unpkg.com 'sha256-{digest}'",
        "style-src": "https://unpkg.com https://fonts.googleapis.com 'unsafe-inline'",
        "font-src": "https://unpkg.com https://fonts.gstatic.com data:",
        "img-src": "'self' data:",
        "connect-src": "'self' ws://testserver wss://testserver",
        "frame-ancestors": "'none'",
        "base-uri": "'none'",
        "form-action": "'none'",
    }
    # Every script it loads from unpkg.com is pinned by its integrity hash.
    sources = re.findall(r'<script[^>]*src="([^"]+)"[^>]*integrity="sha384-', page.text, re.S)
    assert sources and all(src.startswith("https://unpkg.com/") for src in sources)
    assert len(sources) == page.text.count("<script") - 1


# --- CORS ----------------------------------------------------------------------------------


async def test_cors_lets_an_allowed_origin_call_with_the_clients_headers(
    http: httpx.AsyncClient,
) -> None:
    preflight = await http.options(
        "/graphql",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, "
            "apollographql-client-name, apollo-require-preflight",
        },
    )
    response = await http.post("/graphql", json={"query": VIEWER}, headers={"Origin": ORIGIN})

    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert preflight.headers["access-control-allow-methods"] == "GET, POST"
    allowed = {
        h.strip().lower() for h in preflight.headers["access-control-allow-headers"].split(",")
    }
    assert {
        "authorization",
        "content-type",
        "apollographql-client-name",
        "apollo-require-preflight",
    } <= allowed
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert response.headers["access-control-expose-headers"] == "Retry-After"
    assert "access-control-allow-credentials" not in response.headers  # tokens, no cookies


async def test_cors_refuses_an_origin_that_is_not_allowed(http: httpx.AsyncClient) -> None:
    other = "https://evil.example"
    preflight = await http.options(
        "/graphql", headers={"Origin": other, "Access-Control-Request-Method": "POST"}
    )
    response = await http.post("/graphql", json={"query": VIEWER}, headers={"Origin": other})

    assert preflight.status_code == 400
    assert "access-control-allow-origin" not in preflight.headers
    assert "access-control-allow-origin" not in response.headers


# --- the schema hidden in production ----------------------------------------------------

INTROSPECTION = [
    "{ __schema { queryType { name } } }",
    '{ __type(name: "Patient") { fields { name } } }',
    "{ viewer { ... on Patient { documents { __typename } } } __schema { types { name } } }",
]


@pytest.mark.parametrize("query", INTROSPECTION)
async def test_introspection_is_refused_in_production(settings: Settings, query: str) -> None:
    async with api(settings, environment="production") as client:
        response = await client.post("/graphql", json={"query": query})

    assert response.status_code == 422
    assert set(codes(response)) == {"GRAPHQL_VALIDATION_FAILED"}
    for error in response.json()["errors"]:
        assert error["message"].startswith("GraphQL introspection has been disabled")


@pytest.mark.parametrize("environment", ["development", "test"])
async def test_introspection_is_served_outside_production(
    settings: Settings, environment: str
) -> None:
    async with api(settings, environment=environment) as client:
        response = await client.post("/graphql", json={"query": INTROSPECTION[0]})

    assert response.json() == {"data": {"__schema": {"queryType": {"name": "Query"}}}}


async def test_typename_is_served_in_production(settings: Settings) -> None:
    async with api(settings, environment="production") as client:
        response = await client.post("/graphql", json={"query": "{ __typename }"})

    assert response.json() == {"data": {"__typename": "Query"}}


SUGGESTIONS = [
    # (query, variables, message without the suggestion, the name suggested)
    ("{ viewr { __typename } }", None, "Cannot query field 'viewr' on type 'Query'.", "viewer"),
    (
        '{ professionals(search: "x", frist: 3) { id } }',
        None,
        "Unknown argument 'frist' on field 'Query.professionals'.",
        "first",
    ),
    (
        "{ viewer { firstName } }",
        None,
        "Cannot query field 'firstName' on type 'Viewer'.",
        "Patient",
    ),
    (
        "{ viewer { ... on Patient { documents(category: PRESCRIPTON) { totalCount } } } }",
        None,
        "The value does not exist in 'DocumentCategory' enum.",
        "PRESCRIPTION",
    ),
    (
        "query($c: DocumentCategory) { viewer { ... on Patient {"
        " documents(category: $c) { totalCount } } } }",
        {"c": "PRESCRIPTON"},
        "Variable '$c' has invalid value: The value does not exist in 'DocumentCategory' enum.",
        "PRESCRIPTION",
    ),
]


@pytest.mark.parametrize(
    ("query", "variables", "message", "suggestion"),
    SUGGESTIONS,
    ids=["field", "argument", "field of a union", "enum value", "enum value of a variable"],
)
async def test_no_error_suggests_a_name_in_production(
    settings: Settings, query: str, variables: Any, message: str, suggestion: str
) -> None:
    body = {"query": query, "variables": variables}
    async with api(settings, environment="production") as production:
        hidden = await production.post("/graphql", json=body)
    async with api(settings, environment="development") as development:
        shown = await development.post("/graphql", json=body)

    assert hidden.status_code == shown.status_code == 422
    assert [e["message"] for e in hidden.json()["errors"]] == [message]
    [shown_message] = [e["message"] for e in shown.json()["errors"]]
    assert shown_message.startswith(message + " Did you mean")
    assert f"'{suggestion}'" in shown_message
