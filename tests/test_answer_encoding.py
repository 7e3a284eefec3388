"""api/encoding.py `encode_answer`: HTTP answers (and, by `GraphQLView.encode_json`, a websocket's
frames and a stream's events) encoded by orjson mean what `json.dumps` said.

orjson writes non-ASCII text as UTF-8 where `json.dumps` escaped it; what orjson refuses
(an integer past 64 bits, a key that is not a string) `json.dumps` encodes as before, and
what `json.dumps` refuses (a date, a dataclass) is still refused.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest
import strawberry

from api.encoding import encode_answer
from api.view import GraphQLView
from tests.asgi_websocket import asgi_websocket

ANSWERS: list[Any] = [
    {"data": {"patient": {"name": "Zoé Lefèvre", "documents": [{"id": "RG9j", "n": 3}]}}},
    {"data": None, "errors": [{"message": "x", "locations": [{"line": 1, "column": 2}]}]},
    {"data": {"a": 1.5, "b": -0.0, "c": 1e16, "d": True, "e": None, "f": ["\u2028", "\x00"]}},
    {"data": {"big": 2**70}},  # past orjson's 64 bits
    {"data": {1: "a key not a string"}},
    {"extensions": {"cost": 12}, "data": {"t": ("a", "b")}},
]


@pytest.mark.parametrize("answer", ANSWERS)
def test_an_answer_decodes_to_what_json_dumps_encoded(answer: Any) -> None:
    encoded = encode_answer(answer)

    assert json.loads(encoded) == json.loads(json.dumps(answer))


def test_the_answer_is_compact_and_utf8() -> None:
    assert encode_answer({"a": ["é", 1]}) == '{"a":["é",1]}'.encode()


@pytest.mark.parametrize("value", [date(2024, 1, 2), object()])
def test_what_json_dumps_refuses_is_still_refused(value: Any) -> None:
    @dataclass
    class Row:
        value: Any

    for refused in (value, Row(value)):
        with pytest.raises(TypeError):
            encode_answer({"data": refused})


@pytest.mark.parametrize("answer", ANSWERS)
def test_frames_and_events_are_the_answer_as_text(answer: Any) -> None:
    """`GraphQLView.encode_json` (a websocket's text frames, a stream's events): the same
    encoding, as text, on one line."""
    view: GraphQLView[Any, Any] = GraphQLView(strawberry.Schema(_Query), max_body_bytes=4096)

    encoded = view.encode_json(answer)

    assert isinstance(encoded, str)
    assert encoded == encode_answer(answer).decode()
    assert "\n" not in encoded
    assert json.loads(encoded) == json.loads(json.dumps(answer))


async def test_a_websocket_frame_is_compact_utf8_text() -> None:
    view: GraphQLView[Any, Any] = GraphQLView(
        strawberry.Schema(_Query, subscription=_Tick), max_body_bytes=4096
    )
    async with asgi_websocket(view) as (socket, _accepted):
        await socket.send_json({"type": "connection_init"})
        await socket.receive()
        await socket.send_json(
            {"type": "subscribe", "id": "1", "payload": {"query": "subscription { tick }"}}
        )
        frame = await socket.receive()

    assert frame["type"] == "websocket.send"
    assert frame["text"] == '{"id":"1","type":"next","payload":{"data":{"tick":"Zoé"}}}'
    assert "bytes" not in frame or frame["bytes"] is None


@strawberry.type
class _Query:
    ok: bool = True


@strawberry.type
class _Tick:
    @strawberry.subscription
    async def tick(self) -> AsyncGenerator[str, None]:
        yield "Zoé"
