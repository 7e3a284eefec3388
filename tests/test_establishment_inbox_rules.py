"""Issue 17, what tests/test_establishments.py left unproven: the shared inbox filtered by
each purpose (and holding only its establishment's conversations), every path by which a
member reads a patient's message logging an access event naming the member and the
establishment (`lastMessage` in the inbox and in the member's own list, an attachment by
id), and a removed member's subscription to one conversation of the inbox, open before the
removal, receiving nothing more on both websocket protocols.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from api.config import Settings
from models.account import Account
from models.audit import AccessAction, AccessBasis
from resolvers.ids import decode_as
from subscriptions.channels import publish_message
from tests.factories import make_patient
from tests.graphql import gql
from tests.messaging_support import TEXT, multipart, send, subscription_error
from tests.test_establishments import (
    ATTACHMENT_NODE,
    CONVERSATION,
    MEMBER_OF,
    MEMBERS,
    RECEIVED,
    cursor_of_first,
    detach,
    events,
    hospital,
    inbox_as,
    next_body,
    ok,
    start_in,
)
from tests.test_ws_reauth import PROTOCOLS, socket_of

PURPOSES = ("ADMISSION", "DISCHARGE", "ADMINISTRATIVE", "CARE")
PATIENT_LIST = """{ viewer { ... on Patient { conversations(first: 20) { totalCount
  edges { node { id purpose establishment { name } professional { lastName } } } } } } }"""
INBOX_LAST = """query($id: ID!) { node(id: $id) { ... on Establishment {
  conversations(first: 10) { edges { node { id lastMessage { body } } } } } } }"""
OWN_LAST = """{ viewer { ... on Professional { conversations(first: 10) {
  totalCount edges { node { id lastMessage { body } } } } } } }"""
SEND_FILE = """mutation($input: SendMessageInput!) { sendMessage(input: $input) {
  message { id attachments { id } } } }"""


def listed(result: Any) -> list[str]:
    return [e["node"]["id"] for e in result["node"]["conversations"]["edges"]]


async def test_the_inbox_filters_by_each_purpose_and_holds_only_its_establishments(
    http: httpx.AsyncClient,
) -> None:
    # given one conversation of each purpose in the hospital's inbox (started by either
    # member), one without a purpose (CARE by default), Roux's own admission conversation
    # outside the inbox, and the clinic's admission conversation
    world = await hospital(http)

    async def started(pro: Any, establishment: str | None, purpose: str | None) -> str:
        payload = (await start_in(http, pro, world.alice, establishment, purpose=purpose)).ok()
        conversation = payload["startConversation"]["conversation"]
        assert conversation["establishment"] == (
            None if establishment is None else {"id": establishment}
        )
        assert conversation["purpose"] == (purpose or "CARE")
        cid: str = conversation["id"]
        return cid

    starters = (world.roux, world.caron, world.roux, world.caron)
    by_purpose = {
        purpose: await started(pro, world.id, purpose)
        for purpose, pro in zip(PURPOSES, starters, strict=True)
    }
    default = await started(world.caron, world.id, None)
    own = await started(world.roux, None, "ADMISSION")
    clinic = await started(world.leroy, world.clinic, "ADMISSION")

    # then each member's inbox holds the hospital's five, newest first, and each purpose
    # exactly its own
    for member in (world.roux, world.caron):
        everything = (await inbox_as(http, member.token, world.id)).ok()
        assert listed(everything) == [default, *reversed(by_purpose.values())]
        assert everything["node"]["conversations"]["totalCount"] == 5
        for purpose, cid in by_purpose.items():
            only = (await inbox_as(http, member.token, world.id, purpose)).ok()
            expected = [default, cid] if purpose == "CARE" else [cid]
            assert listed(only) == expected, purpose
            nodes = [e["node"] for e in only["node"]["conversations"]["edges"]]
            assert {n["purpose"] for n in nodes} == {purpose}
    # and the clinic's inbox only the clinic's; the hospital's and its members are not the
    # clinic's member's to read
    clinic_inbox = (await inbox_as(http, world.leroy.token, world.clinic, "ADMISSION")).ok()
    assert listed(clinic_inbox) == [clinic]
    # (nor the operator's, nor the patient's: the inbox is its members' only)
    for token in (world.leroy.token, world.operator.token, world.alice.token):
        for purpose in (None, *PURPOSES):
            denied = await inbox_as(http, token, world.id, purpose)
            assert (denied.data, denied.codes) == (
                {"node": {"conversations": None}},
                ["FORBIDDEN"],
            )
    members = await gql(http, MEMBERS, {"id": world.id}, token=world.leroy.token)
    assert (members.data, members.codes) == (
        {"node": {"name": "Hôpital des Tilleuls", "members": None}},
        ["FORBIDDEN"],
    )

    # and Alice sees each establishment as the other party, and none in Roux's own
    seen = (await ok(http, PATIENT_LIST, {}, world.alice.token))["viewer"]["conversations"]
    assert seen["totalCount"] == 7
    parties = {
        e["node"]["id"]: (e["node"]["purpose"], (e["node"]["establishment"] or {}).get("name"))
        for e in seen["edges"]
    }
    assert parties == {
        **{cid: (purpose, "Hôpital des Tilleuls") for purpose, cid in by_purpose.items()},
        default: ("CARE", "Hôpital des Tilleuls"),
        own: ("ADMISSION", None),
        clinic: ("ADMISSION", "Clinique du Golo"),
    }


async def test_last_message_and_attachment_reads_by_a_member_name_the_member_and_hospital(
    http: httpx.AsyncClient,
) -> None:
    # given an admission conversation Roux started
    world = await hospital(http)
    started = (await start_in(http, world.roux, world.alice, world.id)).ok()
    cid = started["startConversation"]["conversation"]["id"]
    hospital_pk = decode_as(world.id, "Establishment")

    # a member's own message as the newest: reading it reads nothing of Alice's
    inbox = (await ok(http, INBOX_LAST, {"id": world.id}, world.caron.token))["node"]
    assert inbox["conversations"]["edges"][0]["node"]["lastMessage"] is not None
    assert await events() == []

    # when Alice answers with a file, and each member reads her message another way
    replied = await multipart(
        http,
        SEND_FILE,
        {"input": {"conversationId": cid, "body": "Mon attestation."}},
        [("attestation.txt", TEXT, "text/plain")],
        token=world.alice.token,
    )
    attachment = replied.ok()["sendMessage"]["message"]["attachments"][0]["id"]
    by_inbox = (await ok(http, INBOX_LAST, {"id": world.id}, world.caron.token))["node"]
    by_own_list = (await ok(http, OWN_LAST, {}, world.roux.token))["viewer"]["conversations"]
    by_id = await ok(http, ATTACHMENT_NODE, {"id": attachment}, world.caron.token)
    # (nor the holder's own reads, nor another establishment's member, who sees nothing)
    await ok(http, CONVERSATION, {"id": cid}, world.alice.token)
    await ok(http, OWN_LAST, {}, world.leroy.token)

    # then each was a read of Alice's message by that member, through the hospital
    assert [e["node"]["lastMessage"] for e in by_inbox["conversations"]["edges"]] == [
        {"body": "Mon attestation."}
    ]
    assert [e["node"]["lastMessage"] for e in by_own_list["edges"]] == [
        {"body": "Mon attestation."}
    ]
    assert by_id == {"node": {"filename": "attestation.txt"}}
    read, conversation = AccessAction.READ, AccessBasis.CONVERSATION
    assert await events() == [
        (world.caron.pk, read, conversation, hospital_pk, None),
        (world.roux.pk, read, conversation, hospital_pk, None),
        (world.caron.pk, read, conversation, hospital_pk, None),
    ]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_removed_members_subscription_to_one_conversation_gets_nothing_more(
    app: Starlette, http: httpx.AsyncClient, settings: Settings, protocol: str
) -> None:
    # given Caron's own conversation with Bruno, and an admission conversation Caron started
    # in the hospital's inbox, answered once by Alice; Caron subscribed to that conversation
    # alone and Roux to all of his, both live (each received the reply replayed)
    world = await hospital(http)
    bruno = await make_patient("Bruno")
    (await start_in(http, world.caron, bruno, None, purpose=None)).ok()
    started = (await start_in(http, world.caron, world.alice, world.id)).ok()
    cid = started["startConversation"]["conversation"]["id"]
    cursor = await cursor_of_first(http, world.caron.token, cid)
    (await send(http, world.alice.token, cid, "m1")).ok()
    async with (
        socket_of(app, protocol, world.caron.token) as caron,
        socket_of(app, protocol, world.roux.token) as roux,
    ):
        caron_op = await caron.start(RECEIVED, {"after": cursor, "conversationId": cid})
        roux_op = await roux.start(RECEIVED, {"after": cursor})
        assert await next_body(caron, caron_op) == "m1"
        assert await next_body(roux, roux_op) == "m1"

        # when an operator removes Caron, Alice writes twice, and an event about the second
        # reaches Caron's channel anyway (as one computed before the removal would)
        await detach(http, world.operator, world.id, world.caron)
        (await send(http, world.alice.token, cid, "m2")).ok()
        sent = (await send(http, world.alice.token, cid, "m3")).ok()
        await publish_message(
            app.state.services.bus,
            accounts=[(await Account.get(professional_id=world.caron.pk)).id],
            message_id=decode_as(sent["sendMessage"]["message"]["id"], "Message"),
            conversation_id=decode_as(cid, "Conversation"),
            position=None,
        )

        # then Roux receives both, Caron's subscription nothing
        assert await next_body(roux, roux_op) == "m2"
        assert await next_body(roux, roux_op) == "m3"
        assert await caron.silent_for(0.5) == []
        # and a subscription to it started again on the same socket is refused
        again = await caron.start(RECEIVED, {"conversationId": cid})
        assert await subscription_error(caron, again) == ["NOT_FOUND"]

    # and over HTTP Caron's own list holds only the conversation with Bruno, and neither
    # the hospital's members nor its inbox are Caron's to read any more
    token = world.caron.token
    own_list = (await ok(http, OWN_LAST, {}, token))["viewer"]["conversations"]
    assert own_list["totalCount"] == 1
    assert [e["node"]["id"] for e in own_list["edges"]] != [cid]
    assert (await ok(http, MEMBER_OF, {}, token))["viewer"] == {"memberOf": []}
    members = await gql(http, MEMBERS, {"id": world.id}, token=token)
    assert (members.data, members.codes) == (
        {"node": {"name": "Hôpital des Tilleuls", "members": None}},
        ["FORBIDDEN"],
    )
    inbox = await inbox_as(http, token, world.id)
    assert (inbox.data, inbox.codes) == ({"node": {"conversations": None}}, ["FORBIDDEN"])
