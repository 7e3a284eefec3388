"""History from the end: `last`/`before` on every connection (Relay's backward pagination),
`nodes`, `Conversation.lastMessage`, and what they cost."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from graphql import parse

from api.extensions.cost import estimate
from api.schema import schema
from models.appointment import Appointment, AppointmentSource
from models.audit import AccessAction, AccessBasis, AccessEvent
from models.base import utcnow
from models.consent import Block, Consent, ConsentAccess
from models.document import Document, DocumentCategory
from models.message import Conversation as ConversationModel
from models.reminder import Reminder, ReminderKind
from resolvers.ids import encode
from resolvers.pagination import DEFAULT_PAGE, MAX_PAGE
from tests.factories import Person, Staff, make_operator, make_patient, make_professional
from tests.graphql import GraphQLResult, gql
from tests.sql_counter import count_statements

PAGE_ARGS = "first: $first, after: $after, last: $last, before: $before"
PAGE_VARS = "$first: Int, $after: String, $last: Int, $before: String"
PAGE_FIELDS = """pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  edges { cursor node { id } } nodes { id }"""

Fetch = Callable[[dict[str, Any]], Awaitable[GraphQLResult]]


def connection_at(result: GraphQLResult, *path: str) -> dict[str, Any]:
    data = result.ok()
    for key in path:
        data = data[key]
    assert isinstance(data, dict)
    return data


def fetcher(
    client: httpx.AsyncClient, query: str, token: str | None, *path: str, **fixed: Any
) -> Callable[..., Awaitable[dict[str, Any]]]:
    async def fetch(**page: Any) -> dict[str, Any]:
        result = await gql(client, query, {**fixed, **page}, token=token)
        return connection_at(result, *path)

    return fetch


def ids_of(connection: dict[str, Any]) -> list[str]:
    ids = [edge["node"]["id"] for edge in connection["edges"]]
    assert [node["id"] for node in connection["nodes"]] == ids  # `nodes`: the same, in order
    return ids


async def assert_symmetric(fetch: Callable[..., Awaitable[dict[str, Any]]], size: int) -> list[str]:
    """Walking the list forward by `size` and backward by `size` from its end give the same
    items in the same order; each backward page is a slice of the list in its own order;
    pageInfo tells where each page stands. Returns the whole list's ids."""
    whole = await fetch(first=MAX_PAGE)
    expected = ids_of(whole)
    assert len(expected) > 2 * size  # several pages each way, the last one partial
    assert whole["pageInfo"]["hasNextPage"] is False

    forward: list[str] = []
    after = None
    while True:
        page = await fetch(first=size, after=after)
        ids = ids_of(page)
        assert page["pageInfo"]["hasPreviousPage"] is (after is not None)
        forward += ids
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert forward == expected

    backward: list[str] = []
    before = None
    pages = 0
    while True:
        page = await fetch(last=size, before=before)
        ids = ids_of(page)
        pages += 1
        # In the list's order: the slice just before what was already read.
        assert (
            ids
            == expected[len(expected) - len(backward) - len(ids) : len(expected) - len(backward)]
        )
        assert page["pageInfo"]["hasNextPage"] is (before is not None)
        assert page["pageInfo"]["startCursor"] == page["edges"][0]["cursor"]
        assert page["pageInfo"]["endCursor"] == page["edges"][-1]["cursor"]
        backward = ids + backward
        if not page["pageInfo"]["hasPreviousPage"]:
            break
        assert len(ids) == size
        before = page["pageInfo"]["startCursor"]
    assert backward == expected
    assert pages == -(-len(expected) // size)

    # A cursor of a backward page reads forward from there, and the other way round.
    middle = await fetch(last=size, before=whole["edges"][-1]["cursor"])
    assert ids_of(middle) == expected[-size - 1 : -1]
    onward = await fetch(first=size, after=middle["pageInfo"]["endCursor"])
    assert ids_of(onward) == expected[-1:]
    back = await fetch(last=1, before=onward["pageInfo"]["startCursor"])
    assert ids_of(back) == expected[-2:-1]
    return expected


async def assert_boundaries(fetch: Callable[..., Awaitable[dict[str, Any]]]) -> None:
    """`last` without `before` reads from the end; 0 and more than the list hold."""
    expected = ids_of(await fetch(first=MAX_PAGE))
    tail = await fetch(last=2)
    assert ids_of(tail) == expected[-2:]
    assert tail["pageInfo"] == {
        "hasNextPage": False,
        "hasPreviousPage": True,
        "startCursor": tail["edges"][0]["cursor"],
        "endCursor": tail["edges"][1]["cursor"],
    }
    everything = await fetch(last=len(expected) + 5)
    assert ids_of(everything) == expected
    assert everything["pageInfo"]["hasPreviousPage"] is False
    none = await fetch(last=0)
    assert none["edges"] == [] and none["nodes"] == []
    assert none["pageInfo"]["startCursor"] is None and none["pageInfo"]["endCursor"] is None
    # `before` the first item: nothing before it, and the list follows.
    first_cursor = (await fetch(first=1))["edges"][0]["cursor"]
    nothing = await fetch(last=3, before=first_cursor)
    assert nothing["edges"] == []
    assert nothing["pageInfo"]["hasPreviousPage"] is False
    assert nothing["pageInfo"]["hasNextPage"] is True
    # `before` alone: a backward page of the default size.
    last_cursor = (await fetch(last=1))["edges"][0]["cursor"]
    default = await fetch(before=last_cursor)
    assert ids_of(default) == expected[:-1][-DEFAULT_PAGE:]


# --- the lists --------------------------------------------------------------------------


async def make_documents(holder: Person, count: int, author: Staff | None = None) -> None:
    """`count` documents, three to a date (ties broken by when they were added, then id)."""
    rows = []
    for n in range(count):
        data = f"{holder.patient.id} {n}".encode()
        rows.append(
            Document(
                patient_id=holder.patient.id,
                title=f"Document {n}",
                category=DocumentCategory.REPORT if n % 2 else DocumentCategory.PRESCRIPTION,
                date=date(2024, 1, 1) + timedelta(days=n // 3),
                mime_type="text/plain",
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                author_patient_id=None if author else holder.patient.id,
                author_professional_id=author.pk if author else None,
            )
        )
    await Document.bulk_create(rows)


def grant(person: Person, staff: Staff) -> Any:
    return Consent.create(
        patient_id=person.patient.id,
        professional_id=staff.pk,
        access=ConsentAccess.READ,
        granted_at=utcnow(),
    )


HOLDER_DOCUMENTS = f"""query({PAGE_VARS}, $category: DocumentCategory) {{ viewer {{
  ... on Patient {{ documents({PAGE_ARGS}, category: $category) {{ {PAGE_FIELDS}
  edges {{ node {{ author {{ __typename }} }} }} }} }} }} }}"""
PRO_DOCUMENTS = f"""query($id: ID!, {PAGE_VARS}) {{ patient(id: $id) {{
  documents({PAGE_ARGS}) {{ {PAGE_FIELDS} nodes {{ author {{ __typename }} }} }} }} }}"""


async def test_documents_read_backward_as_forward(client: httpx.AsyncClient) -> None:
    holder = await make_patient()
    doc = await make_professional("Moreau")
    await make_documents(holder, 17, author=doc)
    await grant(holder, doc)

    fetch = fetcher(client, HOLDER_DOCUMENTS, holder.token, "viewer", "documents")
    as_holder = await assert_symmetric(fetch, 5)
    await assert_boundaries(fetch)
    by_pro = fetcher(client, PRO_DOCUMENTS, doc.token, "patient", "documents", id=holder.id)
    assert await assert_symmetric(by_pro, 4) == as_holder
    # Newest first by date, then by when they were added: the newest date ends the list.
    rows = await Document.filter(patient_id=holder.patient.id).order_by(
        "-date", "-created_at", "-id"
    )
    assert as_holder == [encode("Document", row.id) for row in rows]
    # A category keeps to its documents both ways.
    reports = fetcher(
        client, HOLDER_DOCUMENTS, holder.token, "viewer", "documents", category="REPORT"
    )
    assert ids_of(await reports(last=3)) == ids_of(await reports(first=MAX_PAGE))[-3:]
    # `nodes` answers what `edges` does, authors included.
    tail = await by_pro(last=2)
    assert [node["author"] for node in tail["nodes"]] == [{"__typename": "Professional"}] * 2


PREVIEW = f"""query($pro: ID!, {PAGE_VARS}) {{ previewAs(professionalId: $pro) {{
  documents({PAGE_ARGS}) {{ {PAGE_FIELDS} }} }} }}"""


async def test_a_preview_reads_backward_as_forward(client: httpx.AsyncClient) -> None:
    holder = await make_patient()
    doc = await make_professional("Moreau")
    await make_documents(holder, 11, author=doc)
    await grant(holder, doc)
    preview = fetcher(client, PREVIEW, holder.token, "previewAs", "documents", pro=doc.id)
    listed = await assert_symmetric(preview, 3)
    await assert_boundaries(preview)
    own = fetcher(client, HOLDER_DOCUMENTS, holder.token, "viewer", "documents")
    assert listed == ids_of(await own(first=MAX_PAGE))


async def test_last_is_capped_and_defaulted_as_first(client: httpx.AsyncClient) -> None:
    holder = await make_patient()
    await make_documents(holder, MAX_PAGE + 5)
    fetch = fetcher(client, HOLDER_DOCUMENTS, holder.token, "viewer", "documents")
    whole = ids_of(await fetch(first=MAX_PAGE)) + ids_of(
        await fetch(first=MAX_PAGE, after=(await fetch(first=MAX_PAGE))["pageInfo"]["endCursor"])
    )
    assert len(whole) == MAX_PAGE + 5

    capped = await fetch(last=MAX_PAGE * 10)
    assert ids_of(capped) == whole[-MAX_PAGE:]
    assert capped["pageInfo"]["hasPreviousPage"] is True
    assert len(ids_of(await fetch(first=MAX_PAGE * 10))) == MAX_PAGE
    assert ids_of(await fetch()) == whole[:DEFAULT_PAGE]


START = """mutation($input: StartConversationInput!) { startConversation(input: $input) {
  conversation { id } } }"""
SEND = """mutation($input: SendMessageInput!) { sendMessage(input: $input) { message { id } } }"""


async def send(client: httpx.AsyncClient, token: str | None, cid: str, body: str) -> GraphQLResult:
    variables = {"input": {"conversationId": cid, "body": body}}
    return await gql(client, SEND, variables, token=token)


async def conversations_with(
    client: httpx.AsyncClient, pro: Staff, holder: Person, n: int
) -> list[str]:
    """`n` conversations, each with a reply from the holder after the first message."""
    ids = []
    for i in range(n):
        variables = {"input": {"patientId": holder.id, "subject": f"Sujet {i}", "body": "Bonjour."}}
        started = (await gql(client, START, variables, token=pro.token)).ok()
        ids.append(started["startConversation"]["conversation"]["id"])
        (await send(client, holder.token, ids[-1], f"Réponse {i}")).ok()
    return ids


PATIENT_CONVERSATIONS = f"""query($id: ID!, {PAGE_VARS}) {{ patient(id: $id) {{
  conversations({PAGE_ARGS}) {{ {PAGE_FIELDS} }} }} }}"""
DASHBOARD = f"""query({PAGE_VARS}) {{ viewer {{ ... on Professional {{
  conversations({PAGE_ARGS}) {{ {PAGE_FIELDS} }} }} }} }}"""
MESSAGES = f"""query($id: ID!, {PAGE_VARS}) {{ node(id: $id) {{ ... on Conversation {{
  messages({PAGE_ARGS}) {{ {PAGE_FIELDS} nodes {{ body }} }} }} }} }}"""


async def test_conversations_and_messages_read_backward_as_forward(
    client: httpx.AsyncClient,
) -> None:
    holder = await make_patient()
    pro = await make_professional("Garnier")
    conversations = await conversations_with(client, pro, holder, 7)

    by_holder = fetcher(
        client, PATIENT_CONVERSATIONS, holder.token, "patient", "conversations", id=holder.id
    )
    listed = await assert_symmetric(by_holder, 3)
    assert listed == conversations[::-1]  # latest activity first
    await assert_boundaries(by_holder)
    dashboard = fetcher(client, DASHBOARD, pro.token, "viewer", "conversations")
    assert await assert_symmetric(dashboard, 2) == listed

    thread = conversations[0]
    for n in range(9):
        author = holder if n % 2 else pro
        (await send(client, author.token, thread, f"Message {n}")).ok()
    messages = fetcher(client, MESSAGES, pro.token, "node", "messages", id=thread)
    await assert_symmetric(messages, 4)
    await assert_boundaries(messages)
    # Oldest first: the newest is the last of a `last: 1` page.
    newest = await messages(last=1)
    assert newest["nodes"][0]["body"] == "Message 8"


async def test_a_members_backward_read_of_the_inbox_is_logged_as_a_forward_one(
    client: httpx.AsyncClient,
) -> None:
    operator = await make_operator()
    world = await establishment_world(client, operator)
    cid = (await start_in(client, world.roux, world.alice, world.hospital))["id"]
    (await send(client, world.alice.token, cid, "Mon questionnaire.")).ok()

    page = await fetcher(client, MESSAGES, world.caron.token, "node", "messages", id=cid)(last=1)
    assert page["nodes"] == [{"id": page["edges"][0]["node"]["id"], "body": "Mon questionnaire."}]
    assert await member_events() == [(world.caron.pk, AccessAction.READ, AccessBasis.CONVERSATION)]


ACCESS_LOG = f"""query({PAGE_VARS}) {{ viewer {{ ... on Patient {{
  accessLog({PAGE_ARGS}) {{ {PAGE_FIELDS} }} }} }} }}"""
APPOINTMENTS = f"""query($id: ID!, {PAGE_VARS}) {{ patient(id: $id) {{
  appointments({PAGE_ARGS}) {{ {PAGE_FIELDS} nodes {{ startsAt }} }} }} }}"""
REMINDERS = f"""query({PAGE_VARS}) {{ viewer {{ ... on Patient {{
  reminders({PAGE_ARGS}) {{ {PAGE_FIELDS} }} }} }} }}"""
PRO_PATIENTS = f"""query({PAGE_VARS}) {{ viewer {{ ... on Professional {{
  patients({PAGE_ARGS}) {{ {PAGE_FIELDS} nodes {{ lastName }} }} }} }} }}"""
IDENTITY = "query($id: ID!) { patient(id: $id) { firstName } }"


async def test_the_access_log_appointments_reminders_and_patients_read_backward(
    client: httpx.AsyncClient,
) -> None:
    holder = await make_patient()
    doc = await make_professional("Roux")
    await grant(holder, doc)
    for _ in range(8):  # one access event per request
        (await gql(client, IDENTITY, {"id": holder.id}, token=doc.token)).ok()
    log = fetcher(client, ACCESS_LOG, holder.token, "viewer", "accessLog")
    assert len(await assert_symmetric(log, 3)) == 8
    await assert_boundaries(log)

    start = datetime(2030, 5, 1, 9, tzinfo=UTC)
    for n in range(9):  # two at each time but the last: ties broken by id
        moment = start + timedelta(days=n // 2)
        await Appointment.create(
            patient_id=holder.patient.id,
            starts_at=moment,
            ends_at=moment + timedelta(minutes=30),
            title=f"Rendez-vous {n}",
            source=AppointmentSource.PATIENT,
        )
        await Reminder.create(
            patient_id=holder.patient.id,
            kind=ReminderKind.SCREENING,
            key=f"screening-{n}",
            rule="test",
            title=f"Dépistage {n}",
            reason="",
            due_at=moment,
        )
    appointments = fetcher(
        client, APPOINTMENTS, holder.token, "patient", "appointments", id=holder.id
    )
    await assert_symmetric(appointments, 4)
    await assert_boundaries(appointments)
    starts = [node["startsAt"] for node in (await appointments(last=9))["nodes"]]
    assert starts == sorted(starts)  # earliest first, a backward page too
    reminders = fetcher(client, REMINDERS, holder.token, "viewer", "reminders")
    await assert_symmetric(reminders, 4)
    await assert_boundaries(reminders)

    for name in ("Bernard", "Bernard", "Petit", "Aubert", "Zola", "Martin", "Durand"):
        await grant(await make_patient("Jean", name, login=False), doc)
    patients = fetcher(client, PRO_PATIENTS, doc.token, "viewer", "patients")
    await assert_symmetric(patients, 3)
    await assert_boundaries(patients)
    # Alphabetical by last name: the holder (Lefebvre) among them.
    names = [node["lastName"] for node in (await patients(last=4))["nodes"]]
    assert names == ["Lefebvre", "Martin", "Petit", "Zola"]


# --- what a page may ask --------------------------------------------------------------


@pytest.mark.parametrize(
    ("page", "field", "message"),
    [
        ({"first": 2, "last": 2}, "last", "Give `first` or `last`, not both"),
        ({"after": "CURSOR", "before": "CURSOR"}, "before", "Give `after` or `before`, not both"),
        ({"first": 2, "before": "CURSOR"}, "before", "`before` reads backward"),
        ({"last": 2, "after": "CURSOR"}, "after", "`after` reads forward"),
        ({"last": -1}, "last", "`last` cannot be negative."),
        ({"first": -1}, "first", "`first` cannot be negative."),
        ({"last": 2, "before": "bm90IGEgY3Vyc29y"}, "before", "Invalid cursor."),
        ({"before": "x"}, "before", "Invalid cursor."),
    ],
    ids=[
        "first and last",
        "after and before",
        "first and before",
        "last and after",
        "negative last",
        "negative first",
        "a made-up before",
        "a malformed before",
    ],
)
async def test_a_page_that_mixes_directions_or_is_negative_is_bad_input(
    client: httpx.AsyncClient, page: dict[str, Any], field: str, message: str
) -> None:
    holder = await make_patient()
    pro = await make_professional("Garnier")
    cid = (await conversations_with(client, pro, holder, 2))[0]
    cursor = (await fetcher(client, DASHBOARD, pro.token, "viewer", "conversations")(first=1))[
        "pageInfo"
    ]["endCursor"]
    page = {key: cursor if value == "CURSOR" else value for key, value in page.items()}

    lists = [
        (DASHBOARD, {}, pro.token),
        (PATIENT_CONVERSATIONS, {"id": holder.id}, holder.token),
        (HOLDER_DOCUMENTS, {}, holder.token),
        (MESSAGES, {"id": cid}, pro.token),
    ]
    for query, fixed, token in lists:
        result = await gql(client, query, {**fixed, **page}, token=token)
        assert result.codes == ["BAD_USER_INPUT"], (query, result.errors)
        error = result.errors[0]
        assert error["message"].startswith(message)
        assert error["extensions"]["field"] == field


async def test_empty_cursors_and_nulls_count_as_absent(client: httpx.AsyncClient) -> None:
    holder = await make_patient()
    pro = await make_professional("Garnier")
    listed = (await conversations_with(client, pro, holder, 3))[::-1]
    fetch = fetcher(client, DASHBOARD, pro.token, "viewer", "conversations")
    # What Relay's runtime sends for a bidirectional connection: the unused pair null.
    assert ids_of(await fetch(first=None, after=None, last=2, before=None)) == listed[-2:]
    assert ids_of(await fetch(first=2, after="", last=None, before="")) == listed[:2]


# --- lastMessage ------------------------------------------------------------------------

LAST_MESSAGES = """query($first: Int) { viewer { ... on Professional {
  conversations(first: $first) { nodes { id lastMessage { id body
    sender { ... on Patient { firstName } ... on Professional { lastName } } } } } } } }"""
HOLDER_LAST_MESSAGES = """{ viewer { ... on Patient { conversations(first: 50) {
  nodes { id lastMessage { id body } } } } } }"""
NEWEST = """query($id: ID!) { node(id: $id) { ... on Conversation {
  lastMessage { id body } messages(last: 1) { nodes { id body } } } } }"""


def assert_not_found(result: GraphQLResult) -> None:
    assert result.data == {"node": None}
    assert result.codes == ["NOT_FOUND"]


async def test_last_message_is_the_newest_of_each_conversation(client: httpx.AsyncClient) -> None:
    holder = await make_patient("Alice")
    pro = await make_professional("Garnier")
    a, b, c = await conversations_with(client, pro, holder, 3)
    (await send(client, pro.token, a, "Dernier mot du médecin")).ok()

    listed = (await gql(client, LAST_MESSAGES, {"first": 10}, token=pro.token)).ok()
    nodes = listed["viewer"]["conversations"]["nodes"]
    assert [(node["id"], node["lastMessage"]["body"]) for node in nodes] == [
        (a, "Dernier mot du médecin"),
        (c, "Réponse 2"),
        (b, "Réponse 1"),
    ]
    assert nodes[0]["lastMessage"]["sender"] == {"lastName": "Garnier"}
    assert nodes[1]["lastMessage"]["sender"] == {"firstName": "Alice"}
    for cid in (a, b, c):
        for token in (pro.token, holder.token):
            node = (await gql(client, NEWEST, {"id": cid}, token=token)).ok()["node"]
            assert node["lastMessage"] == node["messages"]["nodes"][0]
    as_holder = (await gql(client, HOLDER_LAST_MESSAGES, token=holder.token)).ok()
    assert [n["lastMessage"]["body"] for n in as_holder["viewer"]["conversations"]["nodes"]] == [
        "Dernier mot du médecin",
        "Réponse 2",
        "Réponse 1",
    ]


async def test_a_conversation_without_messages_has_no_last_message(
    client: httpx.AsyncClient,
) -> None:
    holder = await make_patient()
    pro = await make_professional("Garnier")
    empty = await ConversationModel.create(
        patient_id=holder.patient.id,
        professional_id=pro.pk,
        subject="Sans message",
        last_message_at=utcnow(),
    )
    node = (
        await gql(client, NEWEST, {"id": encode("Conversation", empty.id)}, token=pro.token)
    ).ok()["node"]
    assert node == {"lastMessage": None, "messages": {"nodes": []}}


async def test_who_cannot_see_a_conversation_gets_no_last_message(
    client: httpx.AsyncClient,
) -> None:
    holder = await make_patient()
    pro = await make_professional("Garnier")
    stranger = await make_professional("Inconnu")
    cid = (await conversations_with(client, pro, holder, 1))[0]
    other = await make_patient("Berthe")
    await grant(other, stranger)  # a basis on another space only

    assert_not_found(await gql(client, NEWEST, {"id": cid}, token=stranger.token))
    listed = await gql(
        client,
        "query($id: ID!) { patient(id: $id) { conversations { nodes { lastMessage { body } } } } }",
        {"id": holder.id},
        token=stranger.token,
    )
    assert listed.data == {"patient": None}
    assert listed.codes == ["NOT_FOUND"]
    # A block cuts the professional off the conversation, and so off its last message.
    await Block.create(patient_id=holder.patient.id, professional_id=pro.pk)
    assert_not_found(await gql(client, NEWEST, {"id": cid}, token=pro.token))
    dashboard = (await gql(client, LAST_MESSAGES, {"first": 10}, token=pro.token)).ok()
    assert dashboard["viewer"]["conversations"]["nodes"] == []


# --- establishments ---------------------------------------------------------------------

REGISTER = """mutation($input: RegisterEstablishmentInput!) {
  registerEstablishment(input: $input) { establishment { id } } }"""
ADD = """mutation($input: AddEstablishmentMemberInput!) {
  addEstablishmentMember(input: $input) { establishment { id } } }"""
REMOVE = """mutation($input: RemoveEstablishmentMemberInput!) {
  removeEstablishmentMember(input: $input) { establishment { id } } }"""
START_IN = """mutation($input: StartConversationInput!) { startConversation(input: $input) {
  conversation { id } } }"""
INBOX = f"""query($id: ID!, {PAGE_VARS}) {{ node(id: $id) {{ ... on Establishment {{
  conversations({PAGE_ARGS}) {{ {PAGE_FIELDS} nodes {{ lastMessage {{ body }} }} }} }} }} }}"""


class EstablishmentWorld:
    def __init__(self, hospital: str, roux: Staff, caron: Staff, alice: Person) -> None:
        self.hospital, self.roux, self.caron, self.alice = hospital, roux, caron, alice


async def membership(
    client: httpx.AsyncClient, operator: Staff, mutation: str, where: str, pro: Staff
) -> None:
    variables = {"input": {"establishmentId": where, "professionalId": pro.id}}
    (await gql(client, mutation, variables, token=operator.token)).ok()


async def establishment_world(client: httpx.AsyncClient, operator: Staff) -> EstablishmentWorld:
    registered = await gql(
        client,
        REGISTER,
        {"input": {"finess": "750109993", "name": "Hôpital des Tilleuls"}},
        token=operator.token,
    )
    hospital = registered.ok()["registerEstablishment"]["establishment"]["id"]
    roux, caron = await make_professional("Roux"), await make_professional("Caron")
    for member in (roux, caron):
        await membership(client, operator, ADD, hospital, member)
    return EstablishmentWorld(hospital, roux, caron, await make_patient("Alice"))


async def start_in(
    client: httpx.AsyncClient, pro: Staff, patient: Person, where: str
) -> dict[str, Any]:
    variables = {
        "input": {
            "patientId": patient.id,
            "subject": "Votre admission",
            "body": "Merci de nous renvoyer le questionnaire.",
            "establishmentId": where,
            "purpose": "ADMISSION",
        }
    }
    result = await gql(client, START_IN, variables, token=pro.token)
    return dict(result.ok()["startConversation"]["conversation"])


async def member_events() -> list[tuple[Any, ...]]:
    rows = await AccessEvent.filter(establishment_id__not_isnull=True).order_by("created_at", "id")
    return [(row.actor_id, row.action, row.basis) for row in rows]


async def test_the_inbox_reads_backward_and_its_last_messages_are_logged_reads(
    client: httpx.AsyncClient,
) -> None:
    operator = await make_operator()
    world = await establishment_world(client, operator)
    ids = [
        (await start_in(client, world.roux, world.alice, world.hospital))["id"] for _ in range(5)
    ]
    inbox = fetcher(client, INBOX, world.caron.token, "node", "conversations", id=world.hospital)
    assert await assert_symmetric(inbox, 2) == ids[::-1]

    # Only members wrote: reading their last messages reads nothing of the patient's.
    page = await inbox(last=5)
    assert [n["lastMessage"]["body"] for n in page["nodes"]] == [
        "Merci de nous renvoyer le questionnaire."
    ] * 5
    assert await member_events() == []
    (await send(client, world.alice.token, ids[0], "Voici le questionnaire.")).ok()
    oldest = await inbox(last=1)  # the reply moved ids[0] first: ids[1] is the oldest now
    assert ids_of(oldest) == [ids[1]]
    assert await member_events() == []
    newest = await inbox(first=1)
    assert [node["lastMessage"] for node in newest["nodes"]] == [
        {"body": "Voici le questionnaire."}
    ]
    assert await member_events() == [(world.caron.pk, AccessAction.READ, AccessBasis.CONVERSATION)]


async def test_a_removed_member_no_longer_gets_the_last_message(
    client: httpx.AsyncClient,
) -> None:
    operator = await make_operator()
    world = await establishment_world(client, operator)
    cid = (await start_in(client, world.roux, world.alice, world.hospital))["id"]
    (await send(client, world.alice.token, cid, "Voici le questionnaire.")).ok()
    seen = (await gql(client, NEWEST, {"id": cid}, token=world.roux.token)).ok()
    assert seen["node"]["lastMessage"]["body"] == "Voici le questionnaire."

    await membership(client, operator, REMOVE, world.hospital, world.roux)

    assert_not_found(await gql(client, NEWEST, {"id": cid}, token=world.roux.token))
    dashboard = (await gql(client, LAST_MESSAGES, {"first": 10}, token=world.roux.token)).ok()
    assert dashboard["viewer"]["conversations"]["nodes"] == []
    inbox = await gql(client, INBOX, {"id": world.hospital, "last": 1}, token=world.roux.token)
    assert inbox.codes == ["FORBIDDEN"]
    assert "Voici" not in str(inbox.data)
    # The member who stays reads it.
    kept = (await gql(client, NEWEST, {"id": cid}, token=world.caron.token)).ok()
    assert kept["node"]["lastMessage"]["body"] == "Voici le questionnaire."


# --- SQL and cost -----------------------------------------------------------------------


async def dashboard_statements(client: httpx.AsyncClient, pro: Staff, size: int) -> list[str]:
    with count_statements() as statements:
        listed = (await gql(client, LAST_MESSAGES, {"first": size}, token=pro.token)).ok()
    nodes = listed["viewer"]["conversations"]["nodes"]
    assert len(nodes) == size
    assert all(node["lastMessage"]["sender"] == {"firstName": "Alice"} for node in nodes)
    return statements


async def test_listing_conversations_with_their_last_message_costs_constant_sql(
    client: httpx.AsyncClient,
) -> None:
    holder = await make_patient("Alice")
    few, many = await make_professional("Peu"), await make_professional("Beaucoup")
    await conversations_with(client, few, holder, 5)
    await conversations_with(client, many, holder, 20)
    await dashboard_statements(client, few, 5)  # warm-up

    five = await dashboard_statements(client, few, 5)
    twenty = await dashboard_statements(client, many, 20)

    assert len(twenty) == len(five), "\n".join(["5:", *five, "20:", *twenty])
    # The session, the viewer's row, the page, the last messages (one statement for all),
    # their senders.
    assert len(five) == 5, "\n".join(five)


def cost_of(query: str, **variables: Any) -> int:
    return estimate(schema._schema, parse(query), None, variables)


def test_last_and_nodes_are_sized_like_first_and_edges() -> None:
    edges = "query($n: Int) { viewer { ... on Patient { conversations(%s: $n) {"
    edges += " edges { node { id } } } } } }"
    nodes = "query($n: Int) { viewer { ... on Patient { conversations(%s: $n) {"
    nodes += " nodes { lastMessage { id } } } } } }"
    # viewer 1, conversations 1, edges (or nodes) 1, and an object for each item.
    assert cost_of(edges % "first", n=30) == cost_of(edges % "last", n=30) == 3 + 30
    assert cost_of(nodes % "first", n=30) == cost_of(nodes % "last", n=30) == 3 + 30
    assert cost_of(nodes % "last") == cost_of(edges % "last") == 3 + DEFAULT_PAGE
    assert cost_of(nodes % "last", n=5000) == 3 + 5000  # the number asked, even past the cap


def test_every_connection_documents_its_order_and_every_page_size_its_default_and_cap() -> None:
    from graphql import GraphQLObjectType

    connections = 0
    for type_ in schema._schema.type_map.values():
        if not isinstance(type_, GraphQLObjectType) or type_.name.startswith("__"):
            continue
        for name, field in type_.fields.items():
            coordinate = f"{type_.name}.{name}"
            if "first" in field.args or "last" in field.args:
                for argument in ("first", "last"):
                    if argument not in field.args:
                        continue
                    description = field.args[argument].description or ""
                    assert "at most" in description and "when" in description, coordinate
            named = field.type
            while hasattr(named, "of_type"):
                named = named.of_type
            if getattr(named, "name", "").endswith("Connection"):
                connections += 1
                assert {"first", "after", "last", "before"} <= set(field.args), coordinate
                assert f"{MAX_PAGE}" in (field.args["last"].description or ""), coordinate
                assert f"{DEFAULT_PAGE}" in (field.args["first"].description or ""), coordinate
                description = field.description or ""
                assert any(word in description for word in ("first", "alphabetical")), coordinate
    assert connections >= 10
