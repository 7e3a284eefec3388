"""Subscriptions run with one light extension (api/extensions/subscriptions.py): the same
limits and the same error masking as every other operation, with no hook held open while a
subscription idles (about 4 KB a socket, bench/FANOUT.md)."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import ValidationCache

from api.errors import Unauthenticated
from api.extensions.errors import MaskInternalErrors
from api.extensions.limits import MAX_DEPTH, limit_extensions
from api.extensions.subscriptions import SubscriptionGuard, is_subscription
from api.schema import Schema
from api.schema import schema as api_schema
from api.view import GraphQLView
from tests.asgi_websocket import asgi_websocket

SECRET = "postgres://app:hunter2@db/health unreachable"


@strawberry.type
class Item:
    @strawberry.field
    def name(self) -> str:
        return "x"

    @strawberry.field
    def secret(self) -> str:
        raise RuntimeError(SECRET)

    @strawberry.field
    def child(self) -> Item:
        return Item()


@strawberry.type
class Query:
    hello: str = "hi"


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def items(self, n: int = 1) -> AsyncGenerator[Item, None]:
        for _ in range(n):
            yield Item()

    @strawberry.subscription
    async def crash(self) -> AsyncGenerator[int, None]:
        yield 1
        raise RuntimeError(SECRET)

    @strawberry.subscription
    async def refuse(self) -> AsyncGenerator[int, None]:
        if SECRET:
            raise RuntimeError(SECRET)
        yield 1

    @strawberry.subscription
    async def signed_out(self) -> AsyncGenerator[int, None]:
        if SECRET:
            raise Unauthenticated()
        yield 1


schema = Schema(
    query=Query,
    subscription=Subscription,
    extensions=[MaskInternalErrors, *limit_extensions()],
)


@dataclass
class Context:
    request_id: str = "req-7"


async def results(query: str, variables: dict[str, Any] | None = None) -> list[Any]:
    """Every result of the stream, or the error it raised."""
    source = await schema.stream(query, variable_values=variables, context_value=Context())
    out: list[Any] = []
    try:
        async for result in source:
            out.append(result)
    except GraphQLError as error:
        out.append(error)
    return out


def codes(result: Any) -> list[str | None]:
    errors = [result] if isinstance(result, GraphQLError) else result.errors or []
    return [(error.extensions or {}).get("code") for error in errors]


def assert_masked(result: Any) -> None:
    [error] = result.errors
    assert error.message == "Internal server error."
    assert error.extensions == {"code": "INTERNAL_SERVER_ERROR", "requestId": "req-7"}
    assert "hunter2" not in repr(result.errors)


def runner_of(source: Any) -> Any:
    """The extensions runner of a stream: the light subscription stream's own, or that of
    strawberry's stream, inside the generator that answers the errors escaping it."""
    frame = source.ag_frame.f_locals
    if "runner" in frame:
        return frame["runner"]
    return frame["source"].ag_frame.f_locals["extensions_runner"]


async def extensions_of(query: str) -> list[type]:
    source = await schema.stream(query, context_value=Context())
    try:
        return [type(extension) for extension in runner_of(source).extensions]
    finally:
        await source.aclose()


async def test_a_subscription_runs_with_the_light_guard_and_the_rest_with_everything() -> None:
    assert await extensions_of("subscription { items { name } }") == [
        SubscriptionGuard,
        ValidationCache,
    ]
    full = await extensions_of("query { hello }")
    assert MaskInternalErrors in full
    assert len(full) == 1 + len(limit_extensions())
    # Not parsable, or not a subscription: the full set reports it.
    assert len(await extensions_of("subscription { items {")) == len(full)
    assert not is_subscription("query Q { hello } subscription S { items { name } }", "Q")
    assert is_subscription("query Q { hello } subscription S { items { name } }", "S")


async def test_the_guard_holds_no_operation_or_execution_hook() -> None:
    guard = SubscriptionGuard()
    from strawberry.extensions.context import ExecutingContextManager, OperationContextManager

    assert OperationContextManager([guard]).hooks == []
    assert ExecutingContextManager([guard]).hooks == []


async def test_the_real_schema_streams_its_subscriptions_light() -> None:
    source = await api_schema.stream(
        "subscription { messageReceived { id } }", context_value=Context()
    )
    try:
        runner = runner_of(source)
        assert [type(e) for e in runner.extensions] == [SubscriptionGuard, ValidationCache]
    finally:
        await source.aclose()


async def test_results_stream_normally() -> None:
    out = await results("subscription { items(n: 2) { name child { name } } }")
    assert [r.data for r in out] == [{"items": {"name": "x", "child": {"name": "x"}}}] * 2
    assert all(not r.errors for r in out)


async def test_a_crash_mid_stream_is_masked() -> None:
    first, second = await results("subscription { crash }")
    assert first.data == {"crash": 1}
    assert_masked(second)


async def test_a_crash_before_the_first_result_is_masked() -> None:
    [result] = await results("subscription { refuse }")
    assert_masked(result)


async def test_a_field_error_in_a_result_is_masked_with_its_path() -> None:
    [result] = await results("subscription { items { name secret } }")
    assert_masked(result)
    assert result.errors[0].path == ["items", "secret"]


async def test_an_api_error_keeps_its_code() -> None:
    [result] = await results("subscription { signedOut }")
    assert codes(result) == ["UNAUTHENTICATED"]


async def test_an_invalid_subscription_is_a_validation_error() -> None:
    [result] = await results("subscription { items { nope } }")
    assert codes(result) == ["GRAPHQL_VALIDATION_FAILED"]
    [result] = await results("subscription { items { name } crash }")
    assert codes(result) == ["GRAPHQL_VALIDATION_FAILED"]


async def test_a_bad_variable_is_bad_input_naming_it() -> None:
    [result] = await results("subscription($n: Int!) { items(n: $n) { name } }", {"n": "x"})
    assert codes(result) == ["BAD_USER_INPUT"]
    assert result.errors[0].extensions["field"] == "n"


async def test_a_syntax_error_is_a_parse_failure() -> None:
    [result] = await results("subscription { items { name }")
    assert codes(result) == ["GRAPHQL_PARSE_FAILED"]


async def test_the_depth_alias_and_token_limits_hold_for_subscriptions() -> None:
    depth = MAX_DEPTH + 1
    deep = "subscription { items { " + "child { " * depth + "name" + " }" * depth + " } }"
    [result] = await results(deep)
    assert codes(result) == ["QUERY_TOO_COMPLEX"]
    assert "exceeds maximum operation depth" in result.errors[0].message

    aliased = "subscription { items { " + " ".join(f"a{i}: name" for i in range(16)) + " } }"
    [result] = await results(aliased)
    assert codes(result) == ["QUERY_TOO_COMPLEX"]
    assert result.errors[0].message == "16 aliases found. Allowed: 15"

    tokens = "subscription { items { " + "name " * 1000 + "} }"
    [result] = await results(tokens)
    assert codes(result) == ["QUERY_TOO_COMPLEX"]

    within = "subscription { items { " + " ".join(f"a{i}: name" for i in range(15)) + " } }"
    [result] = await results(within)
    assert not result.errors


async def test_subscription_errors_are_masked_over_websocket() -> None:
    view: GraphQLView[Any, Any] = GraphQLView(schema, max_body_bytes=1024 * 1024)
    async with asgi_websocket(view) as (socket, _):
        await socket.send_json({"type": "connection_init"})
        assert await socket.receive_json() == {"type": "connection_ack"}
        payload = {"query": "subscription { crash }"}
        await socket.send_json({"type": "subscribe", "id": "1", "payload": payload})
        first, second = await socket.receive_json(), await socket.receive_json()

    assert first == {"id": "1", "type": "next", "payload": {"data": {"crash": 1}}}
    [error] = second["payload"]["errors"]
    assert error["message"] == "Internal server error."
    assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert "hunter2" not in json.dumps(second)
