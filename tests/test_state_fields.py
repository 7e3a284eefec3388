"""The state a client shows without asking twice: the professionals a space blocks, and the
unread totals of a patient's and of a professional's conversations, which are the sum of the
conversations' own `unreadCount` (one definition of "unread"), each member of an
establishment's inbox reading for themselves, in a statement or two whatever the number of
conversations."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from models.appointment import Appointment, AppointmentSource
from models.base import utcnow
from models.document import Document, DocumentCategory
from models.establishment import add_member, register_establishment
from resolvers.ids import encode
from tests.factories import (
    Person,
    Staff,
    make_minor,
    make_operator,
    make_patient,
    make_professional,
)
from tests.graphql import GraphQLResult, gql
from tests.messaging_support import MARK_READ, send, start
from tests.sql_counter import count_statements

pytestmark = pytest.mark.asyncio

BLOCKED = "query($id: ID!) { patient(id: $id) { blockedProfessionals { id lastName } } }"
BLOCK = """mutation($p: ID!, $patient: ID) {
  blockProfessional(input: {professionalId: $p, patientId: $patient}) { patient { id } } }"""
UNBLOCK = """mutation($p: ID!, $patient: ID) {
  unblockProfessional(input: {professionalId: $p, patientId: $patient}) { patient { id } } }"""
PATIENT_UNREAD = """query($id: ID!) { patient(id: $id) { unreadMessageCount
  conversations(first: 50) { edges { node { id unreadCount } } } } }"""
PRO_UNREAD = """query($id: ID!) { node(id: $id) { ... on Professional { unreadMessageCount } } }"""
VIEWER_UNREAD = "{ viewer { ... on Professional { unreadMessageCount } } }"
VIEWER_ID = "{ viewer { ... on Professional { id } } }"
START_IN = """mutation($input: StartConversationInput!) { startConversation(input: $input) {
  conversation { id } } }"""


async def ok(http: httpx.AsyncClient, query: str, variables: dict[str, Any], token: str) -> Any:
    return (await gql(http, query, variables, token=token)).ok()


def refused(result: GraphQLResult, field: str) -> tuple[Any, list[str]]:
    """What a guarded field of the patient answered: its value and the error codes."""
    data = result.data or {}
    node = data.get("patient") or data.get("node") or {}
    return node.get(field), result.codes


async def conversation(http: httpx.AsyncClient, pro: Staff, patient: Person) -> str:
    started = (await start(http, pro.token, patient.id)).ok()["startConversation"]
    return str(started["conversation"]["id"])


async def patient_unread(http: httpx.AsyncClient, token: str, patient: Person) -> tuple[int, int]:
    """The patient's total, and the sum of its conversations' `unreadCount`."""
    data = (await ok(http, PATIENT_UNREAD, {"id": patient.id}, token))["patient"]
    counts = [e["node"]["unreadCount"] for e in data["conversations"]["edges"]]
    return data["unreadMessageCount"], sum(counts)


async def pro_unread(http: httpx.AsyncClient, pro: Staff) -> int:
    return int((await ok(http, VIEWER_UNREAD, {}, pro.token))["viewer"]["unreadMessageCount"])


# --- blocked professionals -------------------------------------------------------------------


async def test_the_blocked_professionals_are_listed_to_the_holder_and_representatives_only(
    client: httpx.AsyncClient,
) -> None:
    # given Alice, her son Théo, and three professionals
    alice = await make_patient("Alice", "Lefebvre")
    theo = await make_minor(alice)
    assert alice.token is not None
    martin = await make_professional("Martin")
    bernard = await make_professional("Bernard")
    durand = await make_professional("Durand")

    # when Alice blocks Martin and Durand for herself, and Bernard for Théo
    for pro, patient in ((martin, None), (durand, None), (bernard, theo.id)):
        await ok(client, BLOCK, {"p": pro.id, "patient": patient}, alice.token)

    # then each space lists its own, by last name
    own = await ok(client, BLOCKED, {"id": alice.id}, alice.token)
    assert own["patient"]["blockedProfessionals"] == [
        {"id": durand.id, "lastName": "Durand"},
        {"id": martin.id, "lastName": "Martin"},
    ]
    represented = await ok(client, BLOCKED, {"id": theo.id}, alice.token)
    assert represented["patient"]["blockedProfessionals"] == [
        {"id": bernard.id, "lastName": "Bernard"}
    ]

    # and once Martin is unblocked, he is no longer listed
    await ok(client, UNBLOCK, {"p": martin.id, "patient": None}, alice.token)
    own = await ok(client, BLOCKED, {"id": alice.id}, alice.token)
    assert own["patient"]["blockedProfessionals"] == [{"id": durand.id, "lastName": "Durand"}]


async def test_no_one_else_learns_who_a_space_blocks(client: httpx.AsyncClient) -> None:
    # given Alice blocking Martin, a professional she consents to, another patient, an operator
    alice = await make_patient("Alice", "Lefebvre")
    bruno = await make_patient("Bruno", "Moreau")
    martin = await make_professional("Martin")
    treating = await make_professional("Durand")
    operator = await make_operator()
    assert alice.token is not None and bruno.token is not None
    await ok(client, BLOCK, {"p": martin.id, "patient": None}, alice.token)
    await ok(
        client,
        "mutation($p: ID!) { setTreatingDoctor(input: {professionalId: $p}) { patient { id } } }",
        {"p": treating.id},
        alice.token,
    )

    # when each asks for Alice's blocked professionals
    as_treating = await gql(client, BLOCKED, {"id": alice.id}, token=treating.token)
    as_operator = await gql(client, BLOCKED, {"id": alice.id}, token=operator.token)
    as_bruno = await gql(client, BLOCKED, {"id": alice.id}, token=bruno.token)
    as_blocked = await gql(client, BLOCKED, {"id": alice.id}, token=martin.token)

    # then the médecin traitant and the operator are refused the field, the others the space
    assert refused(as_treating, "blockedProfessionals") == (None, ["FORBIDDEN"])
    assert refused(as_operator, "blockedProfessionals") == (None, ["FORBIDDEN"])
    assert as_bruno.data == {"patient": None} and as_bruno.codes == ["NOT_FOUND"]
    assert as_blocked.data == {"patient": None} and as_blocked.codes == ["NOT_FOUND"]


# --- unread totals ---------------------------------------------------------------------------


async def test_the_patients_total_is_the_sum_of_its_conversations_unread_counts(
    client: httpx.AsyncClient,
) -> None:
    # given two doctors writing to Alice (three messages), one to her son Théo
    alice = await make_patient("Alice", "Lefebvre")
    theo = await make_minor(alice)
    assert alice.token is not None
    martin = await make_professional("Martin")
    bernard = await make_professional("Bernard")
    with_martin = await conversation(client, martin, alice)
    (await send(client, martin.token, with_martin, "Et n'oubliez pas le bilan.")).ok()
    with_bernard = await conversation(client, bernard, alice)
    await conversation(client, bernard, theo)

    # then each space counts its own, as its conversations do
    assert await patient_unread(client, alice.token, alice) == (3, 3)
    assert await patient_unread(client, alice.token, theo) == (1, 1)

    # when Alice reads Martin's conversation and answers Bernard
    (await gql(client, MARK_READ, {"id": with_martin}, token=alice.token)).ok()
    (await send(client, alice.token, with_bernard, "Merci.")).ok()

    # then her total drops by Martin's two, her answer is not hers to read, and Bernard has it
    assert await patient_unread(client, alice.token, alice) == (1, 1)
    assert await patient_unread(client, alice.token, theo) == (1, 1)
    assert await pro_unread(client, bernard) == 1
    assert await pro_unread(client, martin) == 0


async def test_each_member_of_an_inbox_has_their_own_total(client: httpx.AsyncClient) -> None:
    # given a hospital's inbox (Roux and Caron), its conversation with Alice, and Roux's own
    alice = await make_patient("Alice", "Lefebvre")
    assert alice.token is not None
    roux = await make_professional("Roux")
    caron = await make_professional("Caron")
    hospital = await register_establishment("750109993", "Hôpital Saint-Louis")
    for member in (roux, caron):
        await add_member(hospital.id, member.pk, now=utcnow())  # type: ignore[arg-type]
    variables = {
        "input": {
            "patientId": alice.id,
            "subject": "Votre admission",
            "body": "Le questionnaire, s'il vous plaît.",
            "establishmentId": encode("Establishment", hospital.id),
            "purpose": "ADMISSION",
        }
    }
    inbox = (await ok(client, START_IN, variables, roux.token))["startConversation"]
    own = await conversation(client, roux, alice)

    # when Alice answers in both
    (await send(client, alice.token, inbox["conversation"]["id"], "Le voici.")).ok()
    (await send(client, alice.token, own, "Merci docteur.")).ok()

    # then Roux has both unread, Caron the inbox's only
    assert await pro_unread(client, roux) == 2
    assert await pro_unread(client, caron) == 1

    # when Roux reads the inbox's, Caron still has it unread (each member reads for themselves)
    (await gql(client, MARK_READ, {"id": inbox["conversation"]["id"]}, token=roux.token)).ok()
    assert await pro_unread(client, roux) == 1
    assert await pro_unread(client, caron) == 1

    # and another professional's total is theirs only: refused to anyone else
    as_caron = await gql(client, PRO_UNREAD, {"id": roux.id}, token=caron.token)
    assert refused(as_caron, "unreadMessageCount") == (None, ["FORBIDDEN"])
    as_alice = await gql(client, PRO_UNREAD, {"id": roux.id}, token=alice.token)
    assert refused(as_alice, "unreadMessageCount") == (None, ["FORBIDDEN"])
    # nor does a professional read the patient's
    as_roux = await gql(client, PATIENT_UNREAD, {"id": alice.id}, token=roux.token)
    assert as_roux.data["patient"]["unreadMessageCount"] is None
    assert "FORBIDDEN" in as_roux.codes


async def test_the_totals_cost_the_same_statements_whatever_the_conversations(
    client: httpx.AsyncClient,
) -> None:
    # given Alice with one conversation with Martin
    alice = await make_patient("Alice", "Lefebvre")
    assert alice.token is not None
    martin = await make_professional("Martin")
    await conversation(client, martin, alice)
    patient_query = "query($id: ID!) { patient(id: $id) { unreadMessageCount } }"
    patient_base = "query($id: ID!) { patient(id: $id) { id } }"
    listed = """query($id: ID!) { patient(id: $id) { conversations(first: 50) {
      edges { node { unreadCount } } } } }"""

    async def statements(query: str, variables: dict[str, Any], token: str) -> int:
        with count_statements() as log:
            (await gql(client, query, variables, token=token)).ok()
        return len(log)

    async def costs() -> tuple[int, int, int]:
        assert alice.token is not None
        vars_ = {"id": alice.id}
        own = await statements(patient_query, vars_, alice.token) - await statements(
            patient_base, vars_, alice.token
        )
        pro = await statements(VIEWER_UNREAD, {}, martin.token) - await statements(
            VIEWER_ID, {}, martin.token
        )
        page = await statements(listed, vars_, alice.token)
        return own, pro, page

    one = await costs()

    # when there are five more conversations, with unread messages on both sides
    for _ in range(5):
        cid = await conversation(client, martin, alice)
        (await send(client, alice.token, cid)).ok()

    # then the totals and a page of unread counts cost what they cost with one
    assert await costs() == one
    own, pro, _ = one
    assert own <= 2  # the spaces the patient manages, then the count
    assert pro == 1


async def test_the_capabilities_of_a_page_cost_the_same_statements_whatever_its_length(
    client: httpx.AsyncClient,
) -> None:
    # given Alice with one document, one conversation and one appointment
    alice = await make_patient("Alice", "Lefebvre")
    assert alice.token is not None
    martin = await make_professional("Martin")
    query = """query($id: ID!) { patient(id: $id) {
      viewerCanReadDossier viewerCanWriteDossier viewerCanBookAppointment
      viewerCanStartConversation
      documents(first: 50) { edges { node { viewerCanDelete viewerCanHide } } }
      conversations(first: 50) { edges { node { viewerCanReply viewerCanClose } } }
      appointments(first: 50) { edges { node { viewerCanUpdate viewerCanCancel } } } } }"""

    async def add(n: int) -> None:
        now = utcnow()
        for i in range(n):
            await Document.create(
                patient_id=alice.patient.id,
                title=f"Compte rendu {i}",
                category=DocumentCategory.REPORT,
                date=now.date(),
                mime_type="application/pdf",
                size=1,
                sha256="0" * 64,
            )
            await Appointment.create(
                patient_id=alice.patient.id,
                starts_at=now + timedelta(days=1 + i),
                ends_at=now + timedelta(days=1 + i, hours=1),
                title="Consultation",
                source=AppointmentSource.PATIENT,
            )
            await conversation(client, martin, alice)

    async def page() -> tuple[int, dict[str, Any]]:
        assert alice.token is not None
        with count_statements() as log:
            data = await ok(client, query, {"id": alice.id}, alice.token)
        return len(log), data["patient"]

    await add(1)
    one, seen = await page()

    # when there are five more of each
    await add(5)
    six, seen = await page()

    # then the page costs what it cost with one, and every capability answered
    assert six == one
    assert len(seen["documents"]["edges"]) == 6
    flags = [
        value
        for name in ("documents", "conversations", "appointments")
        for edge in seen[name]["edges"]
        for value in edge["node"].values()
    ]
    # the holder manages her documents, replies, changes her appointments; closes nothing
    assert flags.count(True) == 6 * 2 + 6 + 6 * 2
    assert flags.count(False) == 6
    assert seen["viewerCanWriteDossier"] and not seen["viewerCanStartConversation"]
