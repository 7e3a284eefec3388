"""An HTTP request to /graphql goes straight from the budget to the view (`DirectRoutes`,
api/app.py), past Starlette's exception middleware and router; it keeps the layers outside
(security headers, the server error middleware, CORS, the budget). Other paths take the
router, as before; under a root path, /graphql is found as the router finds it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from api.app import create_app
from api.config import Settings
from api.security_headers import API_CSP
from api.view import GraphQLView

QUERY = {"query": "{ __typename }"}


@pytest.fixture
def routed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of the requests Starlette's router handed to a route."""
    seen: list[str] = []
    handle = Route.handle

    async def spied(self: Route, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            seen.append(scope["path"])
        await handle(self, scope, receive, send)

    monkeypatch.setattr(Route, "handle", spied)
    return seen


async def test_graphql_is_answered_without_the_router(
    http: httpx.AsyncClient, routed: list[str]
) -> None:
    answer = await http.post("/graphql", json=QUERY, headers={"Origin": "http://example.org"})
    probe = await http.get("/healthz")

    assert answer.status_code == 200
    assert answer.json() == {"data": {"__typename": "Query"}}
    assert answer.headers["content-security-policy"] == API_CSP  # security headers, outside
    assert answer.headers["cache-control"] == "no-store"
    assert probe.status_code == 200
    assert routed == ["/healthz"]


async def test_cors_still_answers_for_graphql(settings: Settings) -> None:
    origin = "https://app.example.org"
    app = create_app(replace(settings, allowed_origins=(origin,)))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.9", 4242))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            answer = await http.post("/graphql", json=QUERY, headers={"Origin": origin})
            other = await http.post(
                "/graphql", json=QUERY, headers={"Origin": "https://evil.example"}
            )

    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == origin
    assert "access-control-allow-origin" not in other.headers


async def test_an_error_escaping_the_view_is_a_masked_500(
    app: Starlette, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(self: GraphQLView[Any, Any], scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(GraphQLView, "__call__", broken)
    # The server error middleware answers 500, then raises again for the server to log.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        answer = await http.post("/graphql", json=QUERY)

    assert answer.status_code == 500
    assert answer.json()["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert "secret detail" not in answer.text
    assert answer.headers["content-security-policy"] == API_CSP


async def test_graphql_under_a_root_path_is_found(app: Starlette, routed: list[str]) -> None:
    transport = httpx.ASGITransport(app=app, root_path="/api", client=("127.0.0.9", 4242))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        answer = await http.post("/api/graphql", json=QUERY)
        probe = await http.get("/api/healthz")

    assert answer.json() == {"data": {"__typename": "Query"}}
    assert probe.status_code == 200
    assert routed == ["/api/healthz"]
