"""The light subscription stream (api/extensions/subscriptions.py): the same results as
strawberry's stream, with nothing of graphql-core's executor, nor of the last event, kept
while a subscription waits for its next event (bench/FANOUT.md: ~9 KB an idle socket)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncGenerator
from typing import Any

import httpx
import pytest
import strawberry
from graphql import GraphQLError
from graphql.execution import Executor
from starlette.applications import Starlette
from strawberry.extensions import ValidationCache
from strawberry.extensions.context import ExecutingContextManager, OperationContextManager

from api.extensions.errors import MaskInternalErrors
from api.extensions.limits import MAX_DEPTH, limit_extensions
from api.extensions.subscriptions import _answered, subscription_extensions
from api.schema import Schema
from tests.factories import make_patient, make_professional
from tests.graphql import gql
from tests.test_messaging_perf_subscriptions import Context
from tests.test_messaging_perf_subscriptions import Subscription as Streams
from tests.test_ws_reauth import MESSAGE_RECEIVED, SEND, TRANSPORT_WS, conversation_with, socket_of

EVENTS: asyncio.Queue[int] = asyncio.Queue()


@strawberry.type
class Query:
    hello: str = "hi"


@strawberry.type
class Subscription(Streams):
    @strawberry.subscription
    async def waiting(self, times: int = 2) -> AsyncGenerator[int, None]:
        """Yields what EVENTS gets, `times` times: idle in between."""
        for _ in range(times):
            yield await EVENTS.get()


class StandardStream(Schema):
    """The same schema and extensions, streamed by strawberry's own `_stream` (what
    subscriptions ran on before), its escaping hook errors answered as before."""

    def _stream(self, *args: Any, **kwargs: Any) -> Any:
        return _answered(strawberry.Schema._stream(self, *args, **kwargs))


EXTENSIONS = [MaskInternalErrors, *limit_extensions()]
light = Schema(query=Query, subscription=Subscription, extensions=EXTENSIONS)
standard = StandardStream(query=Query, subscription=Subscription, extensions=EXTENSIONS)


async def streamed(schema: Schema, query: str, variables: dict[str, Any] | None) -> list[Any]:
    """Every result of the stream as a client gets it, or the error it raised."""
    source: Any = await schema.stream(query, variable_values=variables, context_value=Context())
    out: list[Any] = []
    try:
        async for result in source:
            errors = [error.formatted for error in result.errors or []]
            out.append((type(result).__name__, result.data, errors, result.extensions))
    except GraphQLError as error:
        out.append(error.formatted)
    return out


DEEP = "child { " * (MAX_DEPTH + 1) + "name" + " }" * (MAX_DEPTH + 1)
DOCUMENTS: list[tuple[str, dict[str, Any] | None]] = [
    ("subscription { items(n: 3) { name child { name } } }", None),
    ("subscription($n: Int!) { items(n: $n) { name } }", {"n": 2}),
    ("subscription($n: Int!) { items(n: $n) { name } }", {"n": "x"}),
    ("subscription($n: Int!) { items(n: $n) { name } }", None),
    ("subscription { items { name secret } }", None),
    ("subscription { crash }", None),
    ("subscription { refuse }", None),
    ("subscription { signedOut }", None),
    ("subscription { items { nope } }", None),
    ("subscription { items { name } crash }", None),
    ("subscription { items { name }", None),
    ("subscription { items { " + DEEP + " } }", None),
    ("subscription { items { " + "name " * 1000 + "} }", None),
    ("subscription { items { " + " ".join(f"a{i}: name" for i in range(16)) + " } }", None),
    ("subscription S { items { name } } subscription T { crash }", None),
    ("query { hello }", None),
]


@pytest.mark.parametrize(("query", "variables"), DOCUMENTS)
async def test_the_light_stream_answers_as_strawberrys(
    query: str, variables: dict[str, Any] | None
) -> None:
    assert await streamed(light, query, variables) == await streamed(standard, query, variables)


async def test_the_light_extensions_enter_no_operation_or_execution_phase() -> None:
    """The light stream does not enter these phases: no hook may need them."""
    extensions = subscription_extensions()
    assert [type(e) for e in extensions][1:] == [ValidationCache]
    assert OperationContextManager(extensions).hooks == []
    assert ExecutingContextManager(extensions).hooks == []


def executors() -> list[Executor[Any]]:
    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, Executor)]


async def test_an_idle_stream_keeps_no_executor_nor_its_last_result() -> None:
    assert executors() == []
    source: Any = await light.stream("subscription { waiting }", context_value=Context())
    try:
        EVENTS.put_nowait(1)
        first = await anext(source)
        assert first.data == {"waiting": 1} and not first.errors
        assert executors() == []
        following = asyncio.ensure_future(anext(source))
        await asyncio.sleep(0.01)
        # Waiting for the next event: the subscription's executor, the event's and the
        # result sent are gone.
        assert not following.done() and executors() == []
        assert source.ag_frame.f_locals["context"].result is None
        EVENTS.put_nowait(2)
        second = await following
        assert second.data == {"waiting": 2} and not second.errors
        with pytest.raises(StopAsyncIteration):
            await anext(source)
    finally:
        await source.aclose()


async def test_an_idle_message_subscription_keeps_no_executor(
    app: Starlette, http: httpx.AsyncClient
) -> None:
    pro, holder = await make_professional(), await make_patient()
    conversation, first = await conversation_with(http, pro, holder, "m1")
    async with socket_of(app, TRANSPORT_WS, holder.token) as socket:
        op_id = await socket.start(MESSAGE_RECEIVED, {"after": first})
        replayed = await socket.receive()
        assert replayed["payload"]["data"]["messageReceived"]["body"] == "m1"
        # The subscription idles: the resolver's `info` no longer leads to its executor.
        assert executors() == []
        sent = await gql(http, SEND, {"id": conversation, "body": "m2"}, token=pro.token)
        message = sent.ok()["sendMessage"]["message"]
        delivered = await socket.receive()
        assert delivered == {
            "id": op_id,
            "type": "next",
            "payload": {"data": {"messageReceived": message}},
        }
