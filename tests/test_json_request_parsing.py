"""api/view.py parses a JSON POST itself (`_parse_json_request`), as strawberry's
`parse_http_body` does, without reading the Content-Type a second time: same requests, same
refusals with the same words."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cross_web import HTTPException
from strawberry.http.async_base_view import AsyncBaseHTTPView

from api.schema import schema
from api.view import GraphQLView, TransportError

VIEW: GraphQLView[Any, Any] = GraphQLView(schema, max_body_bytes=1 << 20)


class JSONPost:
    method = "POST"
    content_type = "application/json"
    query_params: dict[str, str] = {}

    def __init__(self, body: bytes, accept: str = "application/json") -> None:
        self.body = body
        self.headers = {"content-type": self.content_type, "accept": accept}

    async def get_body(self) -> bytes:
        return self.body


BODIES: list[Any] = [
    {"query": "{ __typename }"},
    {"query": "query Q($a: Int) { __typename }", "variables": {"a": 1}, "operationName": "Q"},
    {"query": None, "extensions": {"persistedQuery": {"version": 1, "sha256Hash": "ab"}}},
    {"query": 42},
    {"query": "{ __typename }", "variables": [7]},
    {"query": "{ __typename }", "variables": "{}"},
    {"query": "{ __typename }", "extensions": 1},
    {"query": "{ __typename }", "operationName": 3},
    {},
    [{"query": "{ __typename }"}],
    "not an object",
]


def _refusal(refused: HTTPException | TransportError) -> tuple[object, ...]:
    if isinstance(refused, TransportError):
        return ("TransportError", refused.status, refused.message)
    return ("HTTPException", refused.status_code, refused.reason)


@pytest.mark.parametrize("accept", ["application/json", "text/event-stream"])
@pytest.mark.parametrize("body", BODIES)
async def test_a_json_post_is_parsed_as_strawberry_parses_it(body: Any, accept: str) -> None:
    raw = json.dumps(body).encode()
    request = JSONPost(raw, accept)

    strawberrys: object
    ours: object
    try:
        strawberrys = await AsyncBaseHTTPView.parse_http_body(VIEW, request)  # type: ignore[arg-type]
    except (HTTPException, TransportError) as refused:
        strawberrys = _refusal(refused)
    try:
        ours = VIEW._parse_json_request(request.headers, raw)
    except (HTTPException, TransportError) as refused:
        ours = _refusal(refused)

    assert ours == strawberrys
