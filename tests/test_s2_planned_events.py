"""A subscription's events are executed by their document's plan (api/extensions/
subscriptions.py `_planned`) when COMPILED_PLANS is on, by graphql-core's executor when it is
off, and a subscriber gets the same frames either way: each message as `node(id:)` answers
it over HTTP with the same selection."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import httpx
import pytest
from graphql.execution import Executor
from starlette.applications import Starlette

import api.extensions.subscriptions as subscriptions
from api.config import Settings
from tests.factories import make_patient, make_professional
from tests.graphql import gql
from tests.test_ws_reauth import SEND, TRANSPORT_WS, conversation_with, socket_of

SELECTION = """__typename id body sentAt cursor readAt
  sender { __typename ... on Professional { id } ... on Patient { id } }
  onBehalfOf { id } attachments { id }
  conversation { __typename id subject closed patient { id } professional { id } }"""
SUBSCRIPTION = (
    f"subscription($after: String) {{ messageReceived(after: $after) {{ {SELECTION} }} }}"
)
NODE = f"query($id: ID!) {{ node(id: $id) {{ ... on Message {{ {SELECTION} }} }} }}"


@pytest.fixture(params=[True, False], ids=["planned", "unplanned"])
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    return replace(settings, compiled_plans=request.param)


async def test_events_answer_as_node_does_with_or_without_plans(
    app: Starlette,
    http: httpx.AsyncClient,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    planned: list[bool] = []
    execute = subscriptions.execute_subscription_event

    def spied(executor: Executor[Any]) -> Any:
        planned.append(getattr(executor, "_plan", None) is not None)
        return execute(executor)

    monkeypatch.setattr(subscriptions, "execute_subscription_event", spied)
    pro, holder = await make_professional(), await make_patient()
    conversation, first = await conversation_with(http, pro, holder, "m1")
    async with socket_of(app, TRANSPORT_WS, holder.token) as socket:
        op_id = await socket.start(SUBSCRIPTION, {"after": first})
        replayed = await socket.receive()
        sent = await gql(http, SEND, {"id": conversation, "body": "m2"}, token=pro.token)
        live = await socket.receive()
    bodies = []
    for frame in (replayed, live):
        assert frame["id"] == op_id and frame["type"] == "next"
        message = frame["payload"]["data"]["messageReceived"]
        node = await gql(http, NODE, {"id": message["id"]}, token=holder.token)
        assert frame["payload"] == {"data": {"messageReceived": node.ok()["node"]}}
        assert message["sender"] == {"__typename": "Professional", "id": pro.id}
        assert message["conversation"]["id"] == conversation
        bodies.append(message["body"])
    assert bodies == ["m1", "m2"]
    assert sent.ok()["sendMessage"]["message"]["id"] == message["id"]
    assert planned == [settings.compiled_plans] * 2
