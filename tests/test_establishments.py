"""Establishments in the messagerie: registered and staffed by operators, a shared inbox that
every member reads, answers, marks read (each for themselves) and closes, that the patient
sees as the establishment, delivered live to every member, and that a removed member loses
at once on every path (HTTP, open sockets of both protocols, downloads). Every read of a
patient's message by a member is an access event naming the member and the establishment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from api.config import Settings
from models.account import Account
from models.audit import AccessAction, AccessBasis, AccessEvent
from models.establishment import EstablishmentMember
from models.message import MemberReadMark
from models.professional import Establishment as EstablishmentModel
from resolvers.ids import decode_as
from subscriptions.channels import publish_message
from tests.factories import Person, Staff, make_operator, make_patient, make_professional
from tests.graphql import GraphQLResult, gql
from tests.messaging_support import (
    CLOSE,
    MARK_READ,
    PDF,
    TEXT,
    download,
    error,
    multipart,
    send,
    snapshot,
    subscription_error,
)
from tests.test_ws_reauth import PROTOCOLS, Socket, socket_of

HOSPITAL_FINESS = "750109993"  # Luhn key over the nine characters
CLINIC_FINESS = "2A0000001"  # Corsica: no usable key

REGISTER = """mutation($input: RegisterEstablishmentInput!) {
  registerEstablishment(input: $input) { establishment { id finess name } } }"""
ADD = """mutation($input: AddEstablishmentMemberInput!) {
  addEstablishmentMember(input: $input) { establishment { id } } }"""
REMOVE = """mutation($input: RemoveEstablishmentMemberInput!) {
  removeEstablishmentMember(input: $input) { establishment { id } } }"""
MEMBERS = """query($id: ID!) { node(id: $id) { ... on Establishment {
  name members { since professional { id lastName } } } } }"""
INBOX = """query($id: ID!, $purpose: ConversationPurpose) { node(id: $id) {
  ... on Establishment { conversations(first: 20, purpose: $purpose) {
    totalCount edges { node { id subject purpose closed unreadCount } } } } } }"""
MEMBER_OF = "{ viewer { ... on Professional { memberOf { id name } } } }"
START = """mutation($input: StartConversationInput!) { startConversation(input: $input) {
  conversation { id purpose establishment { id } professional { id } }
  message { id attachments { id } } } }"""
SEND = """mutation($id: ID!, $body: String!) { sendMessage(input: {conversationId: $id,
  body: $body}) { message { id body sender { ... on Professional { id } } } } }"""
CONVERSATION = """query($id: ID!) { node(id: $id) { ... on Conversation {
  id subject purpose closed unreadCount
  establishment { id finess name }
  professional { lastName }
  messages(first: 50) { edges { cursor node { id body readAt
    sender { __typename ... on Professional { lastName } ... on Patient { firstName } }
    attachments { id } } } } } } }"""
PATIENT_SEES_MEMBERS = """query($id: ID!) { node(id: $id) { ... on Conversation {
  establishment { name members { professional { id } } } } } }"""
MESSAGE_NODE = "query($id: ID!) { node(id: $id) { ... on Message { body } } }"
ATTACHMENT_NODE = "query($id: ID!) { node(id: $id) { ... on Attachment { filename } } }"
IDENTITY = "query($id: ID!) { patient(id: $id) { firstName } }"
ACCESS_LOG = """{ viewer { ... on Patient { accessLog(first: 20) { edges { node {
  action basis actor { ... on Professional { lastName } } establishment { name } } } } } } }"""
RECEIVED = """subscription($after: String, $conversationId: ID) {
  messageReceived(after: $after, conversationId: $conversationId) {
    body conversation { id } } }"""


# --- harness ------------------------------------------------------------------------------


async def ok(
    http: httpx.AsyncClient, query: str, variables: dict[str, Any], token: str | None
) -> Any:
    return (await gql(http, query, variables, token=token)).ok()


async def register(http: httpx.AsyncClient, operator: Staff, finess: str, name: str) -> str:
    data = await ok(http, REGISTER, {"input": {"finess": finess, "name": name}}, operator.token)
    establishment_id: str = data["registerEstablishment"]["establishment"]["id"]
    return establishment_id


async def attach(http: httpx.AsyncClient, operator: Staff, establishment: str, pro: Staff) -> None:
    variables = {"input": {"establishmentId": establishment, "professionalId": pro.id}}
    assert await ok(http, ADD, variables, operator.token) == {
        "addEstablishmentMember": {"establishment": {"id": establishment}}
    }


async def detach(http: httpx.AsyncClient, operator: Staff, establishment: str, pro: Staff) -> None:
    variables = {"input": {"establishmentId": establishment, "professionalId": pro.id}}
    assert await ok(http, REMOVE, variables, operator.token) == {
        "removeEstablishmentMember": {"establishment": {"id": establishment}}
    }


@dataclass
class Hospital:
    """Two members of one hospital (Roux, Caron), one of a clinic (Leroy), a patient."""

    operator: Staff
    id: str
    clinic: str
    roux: Staff
    caron: Staff
    leroy: Staff
    alice: Person


async def hospital(http: httpx.AsyncClient) -> Hospital:
    operator = await make_operator()
    hospital_id = await register(http, operator, HOSPITAL_FINESS, "Hôpital des Tilleuls")
    clinic_id = await register(http, operator, CLINIC_FINESS, "Clinique du Golo")
    roux, caron, leroy = [await make_professional(name) for name in ("Roux", "Caron", "Leroy")]
    world = Hospital(operator, hospital_id, clinic_id, roux, caron, leroy, await make_patient())
    await attach(http, operator, hospital_id, world.roux)
    await attach(http, operator, hospital_id, world.caron)
    await attach(http, operator, clinic_id, world.leroy)
    return world


async def start_in(
    http: httpx.AsyncClient,
    pro: Staff,
    patient: Person,
    establishment: str | None,
    *,
    purpose: str | None = "ADMISSION",
    body: str = "Merci de nous renvoyer le questionnaire d'admission.",
    files: list[tuple[str, bytes, str]] | None = None,
) -> GraphQLResult:
    data: dict[str, Any] = {"patientId": patient.id, "subject": "Votre admission", "body": body}
    if establishment is not None:
        data["establishmentId"] = establishment
    if purpose is not None:
        data["purpose"] = purpose
    if files:
        return await multipart(http, START, {"input": data}, files, token=pro.token)
    return await gql(http, START, {"input": data}, token=pro.token)


async def conversation_as(http: httpx.AsyncClient, token: str | None, cid: str) -> Any:
    return (await ok(http, CONVERSATION, {"id": cid}, token))["node"]


async def inbox_as(
    http: httpx.AsyncClient, token: str | None, establishment: str, purpose: str | None = None
) -> GraphQLResult:
    return await gql(http, INBOX, {"id": establishment, "purpose": purpose}, token=token)


async def inbox_snapshot(settings: Settings) -> dict[str, Any]:
    """Every messaging row, the access log, the files, and the establishments' own rows."""
    return {
        **await snapshot(settings),
        "member_read_marks": await MemberReadMark.all().order_by("id").values(),
        "members": await EstablishmentMember.all().order_by("id").values(),
        "establishments": await EstablishmentModel.all().order_by("id").values(),
    }


async def events() -> list[tuple[Any, ...]]:
    rows = await AccessEvent.all().order_by("created_at", "id")
    return [(r.actor_id, r.action, r.basis, r.establishment_id, r.document_id) for r in rows]


# --- registering and staffing ---------------------------------------------------------------


async def test_an_operator_registers_an_establishment_and_attaches_its_members(
    http: httpx.AsyncClient,
) -> None:
    operator = await make_operator()
    roux, caron = await make_professional("Roux"), await make_professional("Caron")

    registered = await ok(
        http,
        REGISTER,
        {"input": {"finess": "750 109 993", "name": "  Hôpital   des Tilleuls "}},
        operator.token,
    )
    establishment = registered["registerEstablishment"]["establishment"]
    await attach(http, operator, establishment["id"], roux)
    await attach(http, operator, establishment["id"], caron)

    assert establishment == {
        "id": establishment["id"],
        "finess": HOSPITAL_FINESS,
        "name": "Hôpital des Tilleuls",
    }
    listed = (await ok(http, MEMBERS, {"id": establishment["id"]}, operator.token))["node"]
    assert [m["professional"] for m in listed["members"]] == [
        {"id": roux.id, "lastName": "Roux"},
        {"id": caron.id, "lastName": "Caron"},
    ]
    assert all(isinstance(m["since"], str) for m in listed["members"])
    as_member = (await ok(http, MEMBERS, {"id": establishment["id"]}, caron.token))["node"]
    assert as_member == listed
    expected = {"memberOf": [{"id": establishment["id"], "name": "Hôpital des Tilleuls"}]}
    assert (await ok(http, MEMBER_OF, {}, roux.token))["viewer"] == expected


@pytest.mark.parametrize(
    ("finess", "name", "field"),
    [
        ("750109994", "Hôpital", "finess"),  # wrong key
        ("75010999", "Hôpital", "finess"),  # 8 characters
        ("2C0000001", "Hôpital", "finess"),  # no such department
        (HOSPITAL_FINESS, "   ", "name"),
        (HOSPITAL_FINESS, "x" * 201, "name"),
    ],
)
async def test_registering_refuses_a_bad_finess_or_name_and_writes_nothing(
    http: httpx.AsyncClient, finess: str, name: str, field: str
) -> None:
    operator = await make_operator()

    result = await gql(
        http, REGISTER, {"input": {"finess": finess, "name": name}}, token=operator.token
    )

    assert error(result) == ("BAD_USER_INPUT", field)
    assert await EstablishmentModel.all().count() == 0


async def test_a_corsican_finess_has_no_key_and_a_registered_one_is_a_conflict(
    http: httpx.AsyncClient,
) -> None:
    operator = await make_operator()
    clinic = await register(http, operator, CLINIC_FINESS, "Clinique du Golo")

    again = await gql(
        http, REGISTER, {"input": {"finess": "2a 000 0001", "name": "Autre"}}, token=operator.token
    )

    assert error(again) == ("CONFLICT", None)
    rows = await EstablishmentModel.all().values("id", "finess", "name")
    assert rows == [
        {
            "id": decode_as(clinic, "Establishment"),
            "finess": CLINIC_FINESS,
            "name": "Clinique du Golo",
        }
    ]


REGISTER_PROFESSIONAL = """mutation($input: RegisterProfessionalInput!) {
  registerProfessional(input: $input) { professional { id establishment { id finess name } } } }"""


async def test_registering_names_the_establishment_a_professional_declared_without_membership(
    http: httpx.AsyncClient,
) -> None:
    # given a professional registered with their hospital's FINESS, before the hospital was
    operator = await make_operator()
    declared = await ok(
        http,
        REGISTER_PROFESSIONAL,
        {
            "input": {
                "rpps": "10101010101",
                "firstName": "Inès",
                "lastName": "Garnier",
                "profession": "INFIRMIER",
                "sector": "HEALTH",
                "email": "ines.garnier@example.org",
                "password": "un mot de passe assez long",
                "finess": HOSPITAL_FINESS,
            }
        },
        operator.token,
    )
    placeholder = declared["registerProfessional"]["professional"]["establishment"]
    assert placeholder == {"id": placeholder["id"], "finess": HOSPITAL_FINESS, "name": ""}

    # when an operator registers the hospital
    registered = await register(http, operator, HOSPITAL_FINESS, "Hôpital des Tilleuls")

    # then it is the same establishment, named; declaring it made no member of its inbox
    assert registered == placeholder["id"]
    members = (await ok(http, MEMBERS, {"id": registered}, operator.token))["node"]
    assert members == {"name": "Hôpital des Tilleuls", "members": []}
    assert await EstablishmentMember.all().count() == 0


PROFESSIONAL_MEMBER_OF = """query($id: ID!) { node(id: $id) { ... on Professional {
  memberOf { name } } } }"""
BY_FINESS = "query($finess: String!) { establishmentByFiness(finess: $finess) { id name } }"


async def test_a_professionals_memberships_are_theirs_and_the_operators_to_read(
    http: httpx.AsyncClient,
) -> None:
    world = await hospital(http)

    readers = {
        name: await gql(http, PROFESSIONAL_MEMBER_OF, {"id": world.roux.id}, token=token)
        for name, token in (
            ("himself", world.roux.token),
            ("operator", world.operator.token),
            ("colleague", world.caron.token),
            ("patient", world.alice.token),
        )
    }

    hospital_only = {"node": {"memberOf": [{"name": "Hôpital des Tilleuls"}]}}
    assert readers["himself"].ok() == hospital_only
    assert readers["operator"].ok() == hospital_only
    for name in ("colleague", "patient"):
        assert (readers[name].data, readers[name].codes) == (
            {"node": {"memberOf": None}},
            ["FORBIDDEN"],
        )


async def test_an_establishment_is_found_by_its_finess(http: httpx.AsyncClient) -> None:
    world = await hospital(http)

    found = await gql(http, BY_FINESS, {"finess": "750 109 993"}, token=world.leroy.token)
    unknown = await gql(http, BY_FINESS, {"finess": "750108888"}, token=world.leroy.token)
    invalid = await gql(http, BY_FINESS, {"finess": "750109994"}, token=world.leroy.token)
    anonymous = await gql(http, BY_FINESS, {"finess": HOSPITAL_FINESS})

    assert found.ok() == {"establishmentByFiness": {"id": world.id, "name": "Hôpital des Tilleuls"}}
    assert error(unknown) == ("NOT_FOUND", None)
    assert error(invalid) == ("BAD_USER_INPUT", "finess")
    assert error(anonymous) == ("UNAUTHENTICATED", None)


@pytest.mark.parametrize("caller", ["anonymous", "patient", "professional"])
@pytest.mark.parametrize("operation", ["register", "add", "remove"])
async def test_only_operators_manage_establishments(
    http: httpx.AsyncClient, caller: str, operation: str
) -> None:
    world = await hospital(http)
    token = {
        "anonymous": None,
        "patient": world.alice.token,
        "professional": world.roux.token,
    }[caller]
    member = {"establishmentId": world.id, "professionalId": world.leroy.id}
    query, variables = {
        "register": (REGISTER, {"finess": "750108888", "name": "Autre"}),
        "add": (ADD, member),
        "remove": (REMOVE, {**member, "professionalId": world.roux.id}),
    }[operation]
    before = (
        await EstablishmentModel.all().order_by("id").values(),
        await EstablishmentMember.all().order_by("id").values(),
    )

    result = await gql(http, query, {"input": variables}, token=token)

    assert error(result) == ("UNAUTHENTICATED" if token is None else "FORBIDDEN", None)
    after = (
        await EstablishmentModel.all().order_by("id").values(),
        await EstablishmentMember.all().order_by("id").values(),
    )
    assert after == before


async def test_membership_changes_that_change_nothing_or_name_nothing_are_refused(
    http: httpx.AsyncClient,
) -> None:
    world = await hospital(http)
    missing_establishment = "RXN0YWJsaXNobWVudDowMDAwMDAwMC0wMDAwLTQwMDAtODAwMC0wMDAwMDAwMDAwMDA"
    before = await EstablishmentMember.all().order_by("id").values()

    def member(establishment: str, pro: str) -> dict[str, Any]:
        return {"input": {"establishmentId": establishment, "professionalId": pro}}

    results = [
        await gql(http, ADD, member(world.id, world.roux.id), token=world.operator.token),
        await gql(http, REMOVE, member(world.id, world.leroy.id), token=world.operator.token),
        await gql(
            http, ADD, member(missing_establishment, world.leroy.id), token=world.operator.token
        ),
        await gql(http, ADD, member(world.id, world.alice.id), token=world.operator.token),
    ]

    assert [error(r) for r in results] == [
        ("CONFLICT", None),
        ("CONFLICT", None),
        ("NOT_FOUND", None),
        ("NOT_FOUND", None),
    ]
    assert await EstablishmentMember.all().order_by("id").values() == before


# --- the shared inbox -----------------------------------------------------------------------


async def test_only_a_member_starts_an_establishments_conversation(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    world = await hospital(http)
    missing = "RXN0YWJsaXNobWVudDowMDAwMDAwMC0wMDAwLTQwMDAtODAwMC0wMDAwMDAwMDAwMDA"
    before = await inbox_snapshot(settings)

    by_other = await start_in(http, world.leroy, world.alice, world.id)
    unknown = await start_in(http, world.roux, world.alice, missing)

    assert error(by_other) == ("FORBIDDEN", None)
    assert error(unknown) == ("NOT_FOUND", None)
    assert await inbox_snapshot(settings) == before
    # Without an establishment, a professional's own conversation, for care by default.
    own = (await start_in(http, world.leroy, world.alice, None, purpose=None)).ok()
    assert own["startConversation"]["conversation"] == {
        "id": own["startConversation"]["conversation"]["id"],
        "purpose": "CARE",
        "establishment": None,
        "professional": {"id": world.leroy.id},
    }


async def test_members_share_the_inbox_and_each_has_their_own_read_state(
    http: httpx.AsyncClient,
) -> None:
    # given an admission conversation Roux started in the hospital's inbox, answered by Alice
    world = await hospital(http)
    started = (await start_in(http, world.roux, world.alice, world.id)).ok()["startConversation"]
    cid = started["conversation"]["id"]
    (await send(http, world.alice.token, cid, "Le voici, rempli.")).ok()

    # then both members list it in the inbox (by purpose too), and the other hospital's cannot
    for member in (world.roux, world.caron):
        inbox = (await inbox_as(http, member.token, world.id)).ok()["node"]["conversations"]
        assert inbox["totalCount"] == 1
        assert [e["node"]["id"] for e in inbox["edges"]] == [cid]
        admissions = (await inbox_as(http, member.token, world.id, "ADMISSION")).ok()
        assert admissions["node"]["conversations"]["totalCount"] == 1
        discharges = (await inbox_as(http, member.token, world.id, "DISCHARGE")).ok()
        assert discharges["node"]["conversations"] == {"totalCount": 0, "edges": []}
    denied = await inbox_as(http, world.leroy.token, world.id)
    assert denied.data == {"node": {"conversations": None}}
    assert denied.codes == ["FORBIDDEN"]
    # each member has Alice's message unread, for themselves
    assert (await conversation_as(http, world.roux.token, cid))["unreadCount"] == 1
    assert (await conversation_as(http, world.caron.token, cid))["unreadCount"] == 1

    # when Caron, who did not start it, answers, and Roux marks it read
    answered = await gql(http, SEND, {"id": cid, "body": "Bien reçu."}, token=world.caron.token)
    marked = await gql(http, MARK_READ, {"id": cid}, token=world.roux.token)

    # then the answer is Caron's, Roux read it all, Caron still has Alice's message unread
    assert answered.ok()["sendMessage"]["message"]["sender"] == {"id": world.caron.id}
    assert marked.ok() == {"markConversationRead": {"conversation": {"id": cid, "unreadCount": 0}}}
    assert (await conversation_as(http, world.caron.token, cid))["unreadCount"] == 1
    # and Alice sees her message read by the hospital (a member read it), and the two
    # members' messages unread by her
    as_alice = await conversation_as(http, world.alice.token, cid)
    read = [e["node"]["readAt"] is not None for e in as_alice["messages"]["edges"]]
    assert read == [False, True, False]
    assert as_alice["unreadCount"] == 2

    # when Caron marks it read and closes it, no one posts anymore
    (await gql(http, MARK_READ, {"id": cid}, token=world.caron.token)).ok()
    assert (await conversation_as(http, world.caron.token, cid))["unreadCount"] == 0
    closed = await gql(http, CLOSE, {"id": cid}, token=world.caron.token)
    assert closed.ok() == {"closeConversation": {"conversation": {"id": cid, "closed": True}}}
    assert error(await send(http, world.alice.token, cid, "Encore ?")) == ("CONFLICT", None)
    assert error(await send(http, world.roux.token, cid, "Encore ?")) == ("CONFLICT", None)


async def test_the_patient_sees_the_establishment_and_who_wrote_never_the_members(
    http: httpx.AsyncClient,
) -> None:
    world = await hospital(http)
    started = (await start_in(http, world.roux, world.alice, world.id)).ok()["startConversation"]
    cid = started["conversation"]["id"]
    (await send(http, world.alice.token, cid, "Voici le questionnaire.")).ok()
    (await gql(http, SEND, {"id": cid, "body": "Merci !"}, token=world.caron.token)).ok()

    seen = await conversation_as(http, world.alice.token, cid)
    members = await gql(http, PATIENT_SEES_MEMBERS, {"id": cid}, token=world.alice.token)

    assert {k: v for k, v in seen.items() if k != "messages"} == {
        "id": cid,
        "subject": "Votre admission",
        "purpose": "ADMISSION",
        "closed": False,
        "unreadCount": 2,
        "establishment": {
            "id": world.id,
            "finess": HOSPITAL_FINESS,
            "name": "Hôpital des Tilleuls",
        },
        "professional": {"lastName": "Roux"},
    }
    assert [(e["node"]["body"], e["node"]["sender"]) for e in seen["messages"]["edges"]] == [
        (
            "Merci de nous renvoyer le questionnaire d'admission.",
            {"__typename": "Professional", "lastName": "Roux"},
        ),
        ("Voici le questionnaire.", {"__typename": "Patient", "firstName": "Alice"}),
        ("Merci !", {"__typename": "Professional", "lastName": "Caron"}),
    ]
    assert members.data == {
        "node": {"establishment": {"name": "Hôpital des Tilleuls", "members": None}}
    }
    assert members.codes == ["FORBIDDEN"]


async def test_a_member_of_another_establishment_reaches_nothing_of_the_inbox(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    world = await hospital(http)
    started = await start_in(
        http, world.roux, world.alice, world.id, files=[("convocation.pdf", PDF, "application/pdf")]
    )
    payload = started.ok()["startConversation"]
    cid, message = payload["conversation"]["id"], payload["message"]
    before = await inbox_snapshot(settings)

    token = world.leroy.token
    results = [
        await gql(http, CONVERSATION, {"id": cid}, token=token),
        await gql(http, MESSAGE_NODE, {"id": message["id"]}, token=token),
        await gql(http, ATTACHMENT_NODE, {"id": message["attachments"][0]["id"]}, token=token),
        await gql(http, SEND, {"id": cid, "body": "Intrus"}, token=token),
        await gql(http, MARK_READ, {"id": cid}, token=token),
        await gql(http, CLOSE, {"id": cid}, token=token),
        await gql(http, IDENTITY, {"id": world.alice.id}, token=token),
    ]
    fetched = await download(http, message["attachments"][0]["id"], token)

    assert [error(r) for r in results] == [("NOT_FOUND", None)] * len(results)
    assert fetched.status_code == 404
    assert fetched.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert await inbox_snapshot(settings) == before


async def test_every_read_of_a_patients_message_by_a_member_names_the_member_and_the_hospital(
    http: httpx.AsyncClient,
) -> None:
    world = await hospital(http)
    cid = (await start_in(http, world.roux, world.alice, world.id)).ok()["startConversation"][
        "conversation"
    ]["id"]
    hospital_pk = decode_as(world.id, "Establishment")
    caron_pk, roux_pk = world.caron.pk, world.roux.pk

    # Reading what only members wrote reads nothing of the patient's: no event.
    await conversation_as(http, world.caron.token, cid)
    assert await events() == []

    replied = await multipart(
        http,
        """mutation($input: SendMessageInput!) { sendMessage(input: $input) {
          message { id attachments { id } } } }""",
        {"input": {"conversationId": cid, "body": "Voici mon attestation."}},
        [("attestation.txt", TEXT, "text/plain")],
        token=world.alice.token,
    )
    reply = replied.ok()["sendMessage"]["message"]

    await conversation_as(http, world.caron.token, cid)  # the page holds Alice's message
    await gql(http, MESSAGE_NODE, {"id": reply["id"]}, token=world.roux.token)
    fetched = await download(http, reply["attachments"][0]["id"], world.roux.token)
    await conversation_as(http, world.alice.token, cid)  # the holder's own reads: no event

    assert fetched.content == TEXT
    read, download_ = AccessAction.READ, AccessAction.DOWNLOAD
    conversation = AccessBasis.CONVERSATION
    assert await events() == [
        (caron_pk, read, conversation, hospital_pk, None),
        (roux_pk, read, conversation, hospital_pk, None),
        (roux_pk, download_, conversation, hospital_pk, None),
    ]
    log = (await ok(http, ACCESS_LOG, {}, world.alice.token))["viewer"]["accessLog"]["edges"]
    assert [e["node"] for e in log] == [
        {
            "action": action,
            "basis": "CONVERSATION",
            "actor": {"lastName": name},
            "establishment": {"name": "Hôpital des Tilleuls"},
        }
        for action, name in (("DOWNLOAD", "Roux"), ("READ", "Roux"), ("READ", "Caron"))
    ]


SAVE = """mutation($input: SaveAttachmentInput!) { saveAttachment(input: $input) {
  document { title category author { __typename } } } }"""
DOSSIER = "{ viewer { ... on Patient { documents(first: 10) { totalCount } } } }"


async def test_the_patient_saves_a_discharge_letter_into_the_dossier_only_if_she_chooses(
    http: httpx.AsyncClient,
) -> None:
    world = await hospital(http)
    started = await start_in(
        http,
        world.caron,
        world.alice,
        world.id,
        purpose="DISCHARGE",
        body="Voici votre lettre de liaison pour votre médecin traitant.",
        files=[("lettre-de-liaison.pdf", PDF, "application/pdf")],
    )
    attachment = started.ok()["startConversation"]["message"]["attachments"][0]["id"]
    assert (await ok(http, DOSSIER, {}, world.alice.token))["viewer"]["documents"] == {
        "totalCount": 0
    }

    saved = await gql(
        http,
        SAVE,
        {"input": {"attachmentId": attachment, "title": "Lettre de liaison", "category": "REPORT"}},
        token=world.alice.token,
    )
    by_member = await gql(
        http,
        SAVE,
        {"input": {"attachmentId": attachment, "title": "Lettre", "category": "REPORT"}},
        token=world.caron.token,
    )

    assert saved.ok() == {
        "saveAttachment": {
            "document": {
                "title": "Lettre de liaison",
                "category": "REPORT",
                "author": {"__typename": "Patient"},
            }
        }
    }
    assert error(by_member) == ("FORBIDDEN", None)
    assert (await ok(http, DOSSIER, {}, world.alice.token))["viewer"]["documents"] == {
        "totalCount": 1
    }


# --- live -------------------------------------------------------------------------------


async def cursor_of_first(http: httpx.AsyncClient, token: str | None, cid: str) -> str:
    edges = (await conversation_as(http, token, cid))["messages"]["edges"]
    cursor: str = edges[0]["cursor"]
    return cursor


async def next_body(socket: Socket, op_id: str) -> str:
    message = await socket.receive()
    assert message["id"] == op_id, message
    assert message["type"] in ("next", "data"), message
    assert "errors" not in message["payload"], message
    body: str = message["payload"]["data"]["messageReceived"]["body"]
    return body


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_every_member_receives_live_and_another_establishment_nothing(
    app: Starlette, http: httpx.AsyncClient, protocol: str
) -> None:
    # given both members and the clinic's member subscribed, each proven live by a replay
    world = await hospital(http)
    own = (await start_in(http, world.leroy, world.alice, None, purpose=None)).ok()
    own_cid = own["startConversation"]["conversation"]["id"]
    cid = (await start_in(http, world.roux, world.alice, world.id)).ok()["startConversation"][
        "conversation"
    ]["id"]
    cursor = await cursor_of_first(http, world.roux.token, cid)
    (await send(http, world.alice.token, cid, "m1")).ok()
    (await send(http, world.alice.token, own_cid, "m1 for Leroy")).ok()
    async with (
        socket_of(app, protocol, world.roux.token) as roux,
        socket_of(app, protocol, world.caron.token) as caron,
        socket_of(app, protocol, world.leroy.token) as leroy,
    ):
        subscriptions = [
            (socket, await socket.start(RECEIVED, {"after": cursor}))
            for socket in (roux, caron, leroy)
        ]
        replayed = [await next_body(socket, op_id) for socket, op_id in subscriptions]
        assert replayed == ["m1", "m1", "m1 for Leroy"]
        before = len(await events())

        # when Alice writes to the hospital, then to Leroy
        (await send(http, world.alice.token, cid, "live")).ok()
        (await send(http, world.alice.token, own_cid, "sentinel")).ok()

        # then both members receive it, and Leroy only his own conversation's message
        (roux_op, caron_op, leroy_op) = (op for _, op in subscriptions)
        assert await next_body(roux, roux_op) == "live"
        assert await next_body(caron, caron_op) == "live"
        assert await next_body(leroy, leroy_op) == "sentinel"
        for socket in (roux, caron, leroy):
            assert await socket.silent_for(0.2) == []
        # each delivery to a member was a read of Alice's message: one event each
        delivered = (await events())[before:]
        hospital_pk = decode_as(world.id, "Establishment")
        assert sorted(delivered, key=str) == sorted(
            [
                (pk, AccessAction.READ, AccessBasis.CONVERSATION, hospital_pk, None)
                for pk in (world.roux.pk, world.caron.pk)
            ],
            key=str,
        )


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_removed_member_loses_the_inbox_at_once_on_every_path(
    app: Starlette, http: httpx.AsyncClient, settings: Settings, protocol: str
) -> None:
    # given Caron's own conversation with Bruno, then Caron's admission conversation (with a
    # file) answered by Alice, and both members subscribed and live
    world = await hospital(http)
    bruno = await make_patient("Bruno")
    own = (await start_in(http, world.caron, bruno, None, purpose=None)).ok()
    own_cid = own["startConversation"]["conversation"]["id"]
    started = await start_in(
        http,
        world.caron,
        world.alice,
        world.id,
        files=[("convocation.pdf", PDF, "application/pdf")],
    )
    payload = started.ok()["startConversation"]
    cid, attachment = payload["conversation"]["id"], payload["message"]["attachments"][0]["id"]
    cursor = await cursor_of_first(http, world.caron.token, cid)
    (await send(http, world.alice.token, cid, "m1")).ok()
    async with (
        socket_of(app, protocol, world.caron.token) as caron,
        socket_of(app, protocol, world.roux.token) as roux,
    ):
        caron_op = await caron.start(RECEIVED, {"after": cursor})
        roux_op = await roux.start(RECEIVED, {"after": cursor})
        assert await next_body(caron, caron_op) == "m1"
        assert await next_body(roux, roux_op) == "m1"

        # when an operator removes Caron, who started it, and Alice writes again
        await detach(http, world.operator, world.id, world.caron)
        sent = (await send(http, world.alice.token, cid, "after the removal")).ok()
        # (an event about it reaching Caron's channel anyway, as one computed before the
        # removal committed would: each delivery is re-authorised)
        await publish_message(
            app.state.services.bus,
            accounts=[(await Account.get(professional_id=world.caron.pk)).id],
            message_id=decode_as(sent["sendMessage"]["message"]["id"], "Message"),
            conversation_id=decode_as(cid, "Conversation"),
            position=None,  # unknown: the subscriber looks
        )

        # then the remaining member receives it, Caron's socket nothing of the hospital's
        assert await next_body(roux, roux_op) == "after the removal"
        (await send(http, bruno.token, own_cid, "sentinel")).ok()
        assert await next_body(caron, caron_op) == "sentinel"
        assert await caron.silent_for(0.2) == []
        # nor can a new subscription on the open socket reach the conversation
        refused = await caron.start(RECEIVED, {"after": cursor, "conversationId": cid})
        assert await subscription_error(caron, refused) == ["NOT_FOUND"]

        # and over HTTP nothing is readable nor writable any more, and nothing is written
        before = await inbox_snapshot(settings)
        token = world.caron.token
        results = [
            await gql(http, CONVERSATION, {"id": cid}, token=token),
            await gql(http, SEND, {"id": cid, "body": "Encore moi"}, token=token),
            await gql(http, MARK_READ, {"id": cid}, token=token),
            await gql(http, CLOSE, {"id": cid}, token=token),
            await gql(http, ATTACHMENT_NODE, {"id": attachment}, token=token),
        ]
        inbox = await inbox_as(http, token, world.id)
        fetched = await download(http, attachment, token)
        assert [error(r) for r in results] == [("NOT_FOUND", None)] * len(results)
        assert (inbox.data, inbox.codes) == ({"node": {"conversations": None}}, ["FORBIDDEN"])
        assert fetched.status_code == 404
        assert await inbox_snapshot(settings) == before
        assert (await ok(http, MEMBER_OF, {}, token))["viewer"] == {"memberOf": []}
        # while the conversation stays the hospital's: Roux still answers it
        (
            await gql(
                http, SEND, {"id": cid, "body": "Je prends le relais."}, token=world.roux.token
            )
        ).ok()
