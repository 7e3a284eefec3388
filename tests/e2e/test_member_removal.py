"""Issue 17 end to end: a member removed through one `espace-sante serve` process loses the
establishment's inbox at once on the other, whose sockets they hold open (both protocols):
nothing more arrives on a subscription to all their conversations nor on one to the
inbox's conversation alone, a new subscription to it is refused, and over HTTP nothing of
it is readable, writable or downloadable, on either process. Two processes sharing the
database and Redis (the fixture of tests/e2e/test_establishment_inbox.py).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.e2e.live_support import LEGACY_WS, TRANSPORT_WS, LiveSocket, ServerProcess, gql
from tests.e2e.test_establishment_inbox import (  # noqa: F401 (the module's servers)
    ADD,
    MARK_READ,
    OPERATOR_EMAIL,
    OPERATOR_PASSWORD,
    RECEIVED,
    Inbox,
    body,
    inbox,
    login,
    professional,
    read,
    send,
    sockets,
    start,
    subscriber,
)
from tests.messaging_support import PDF, subscription_error

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

REMOVE = """mutation($establishment: ID!, $professional: ID!) {
  removeEstablishmentMember(input: {establishmentId: $establishment,
    professionalId: $professional}) { establishment { id } } }"""
START_WITH_FILE = """mutation($input: StartConversationInput!) { startConversation(input: $input) {
  conversation { id } message { attachments { id } } } }"""
RECEIVED_ONE = """subscription($after: String, $id: ID) {
  messageReceived(after: $after, conversationId: $id) { body conversation { id } } }"""
CONVERSATION = """query($id: ID!) { node(id: $id) { ... on Conversation { id subject } } }"""
SEND = """mutation($id: ID!, $body: String!) {
  sendMessage(input: {conversationId: $id, body: $body}) { message { id } } }"""
CLOSE = """mutation($id: ID!) { closeConversation(input: {conversationId: $id}) {
  conversation { closed } } }"""
INBOX = """query($id: ID!) { node(id: $id) { ... on Establishment {
  conversations(first: 10) { totalCount } } } }"""


async def start_with_file(server: ServerProcess, token: str, variables: dict[str, Any]) -> Any:
    """startConversation as a GraphQL multipart request carrying one PDF."""
    operations = {
        "query": START_WITH_FILE,
        "variables": {"input": {**variables, "attachments": [None]}},
    }
    async with httpx.AsyncClient(timeout=10.0) as http:
        response = await http.post(
            f"{server.url}/graphql",
            data={
                "operations": json.dumps(operations),
                "map": json.dumps({"0": ["variables.input.attachments.0"]}),
            },
            files=[("0", ("convocation.pdf", PDF, "application/pdf"))],
            headers={"Authorization": f"Bearer {token}", "Apollo-Require-Preflight": "true"},
        )
    assert response.status_code == 200, response.text
    payload = response.json()
    assert "errors" not in payload, payload
    return payload["data"]["startConversation"]


async def download(server: ServerProcess, attachment: str, token: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10.0) as http:
        return await http.get(
            f"{server.url}/attachments/{attachment}/content",
            headers={"Authorization": f"Bearer {token}"},
        )


def codes(answer: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in answer.get("errors", [])]


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_a_member_removed_through_one_process_loses_the_inbox_on_the_other(
    inbox: Inbox,  # noqa: F811
    sockets: list[LiveSocket],  # noqa: F811
    protocol: str,
) -> None:
    one, two = inbox.one, inbox.two
    bernard, alice = inbox.bernard, inbox.alice
    # given Martin, made a member of the hospital for this run, his own conversation with
    # Alice, and an admission conversation he starts in the inbox (with a file), answered
    operator = await login(one.url, OPERATOR_EMAIL, OPERATOR_PASSWORD)
    rpps = "3000000000" + ("1" if protocol == TRANSPORT_WS else "2")
    martin = await professional(two.url, operator, rpps, "Martin")
    membership = {"establishment": inbox.hospital, "professional": martin.id}
    assert "errors" not in await gql(one.url, ADD, membership, operator)
    own = await start(two.url, martin, alice)
    started = await start_with_file(
        one,
        martin.token,
        {
            "patientId": alice.id,
            "subject": "Votre admission",
            "body": "m0",
            "establishmentId": inbox.hospital,
            "purpose": "ADMISSION",
        },
    )
    admission = started["conversation"]["id"]
    attachment = started["message"]["attachments"][0]["id"]
    cursor = (await read(one.url, martin, admission))["messages"]["edges"][0]["cursor"]
    await send(two.url, alice, admission, "m1")
    # (each process has its own DATA_DIR here: the file is on process one's disk)
    assert (await download(one, attachment, martin.token)).content == PDF

    # and Martin subscribed on process two (to all his conversations, and to that one
    # alone), Bernard on process one, each proven live by the replay of m1
    to_martin, all_op = await subscriber(sockets, two, martin, cursor, protocol)
    to_martin_one = await LiveSocket.open(two.ws_url, protocol)
    sockets.append(to_martin_one)
    assert (await to_martin_one.init(martin.token))["type"] == "connection_ack"
    one_op = await to_martin_one.subscribe(RECEIVED_ONE, {"after": cursor, "id": admission})
    to_bernard, bernard_op = await subscriber(sockets, one, bernard, cursor, protocol)
    assert await body(to_martin, all_op) == "m1"
    assert await body(to_martin_one, one_op) == "m1"
    assert await body(to_bernard, bernard_op) == "m1"

    # when an operator removes Martin through process one, and Alice writes there
    assert "errors" not in await gql(one.url, REMOVE, membership, operator)
    await send(one.url, alice, admission, "after the removal")
    await send(one.url, bernard, admission, "Bernard answers")
    await send(one.url, alice, own, "sentinel for Martin")

    # then Bernard receives both; Martin's sockets on process two nothing of the hospital's:
    # his next message is his own conversation's, and the inbox's subscription stays silent
    assert await body(to_bernard, bernard_op) == "after the removal"
    assert await body(to_bernard, bernard_op) == "Bernard answers"
    assert await body(to_martin, all_op) == "sentinel for Martin"
    assert await to_martin.silent_for(0.3) == []
    assert await to_martin_one.silent_for(0.3) == []
    # nor can he subscribe to it again on his open socket
    again = await to_martin.subscribe(RECEIVED_ONE, {"id": admission})
    assert await subscription_error(to_martin, again) == ["NOT_FOUND"]

    # and over HTTP, on either process, nothing of it is readable, writable or downloadable
    for server in (one, two):
        answers = [
            await gql(server.url, CONVERSATION, {"id": admission}, martin.token),
            await gql(server.url, SEND, {"id": admission, "body": "Encore"}, martin.token),
            await gql(server.url, MARK_READ, {"id": admission}, martin.token),
            await gql(server.url, CLOSE, {"id": admission}, martin.token),
        ]
        assert [codes(a) for a in answers] == [["NOT_FOUND"]] * len(answers), answers
        listed = await gql(server.url, INBOX, {"id": inbox.hospital}, martin.token)
        assert (listed["data"], codes(listed)) == ({"node": {"conversations": None}}, ["FORBIDDEN"])
        fetched = await download(server, attachment, martin.token)
        assert fetched.status_code == 404
        assert fetched.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    # while the conversation stays open in the hospital's inbox, as Bernard sees it
    seen = await read(two.url, bernard, admission)
    assert [e["node"]["body"] for e in seen["messages"]["edges"]] == [
        "m0",
        "m1",
        "after the removal",
        "Bernard answers",
    ]
