"""The professional's dashboard (issue 18, item 5): their own appointments, the consent that
links each of their patients, a search of those patients by name, and their inboxes filtered
by unread and open. Each is theirs alone, goes through the same access rules as every other
path, and costs the same SQL for a short page as for a long one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx

from models.appointment import Appointment, AppointmentSource
from models.audit import AccessAction, AccessBasis, AccessEvent
from models.base import utcnow
from models.consent import Block, Consent, ConsentAccess
from models.patient import Patient, SpaceStatus
from resolvers.ids import encode
from tests.factories import (
    Person,
    Staff,
    make_operator,
    make_patient,
    make_professional,
)
from tests.graphql import GraphQLResult, gql
from tests.messaging_support import CLOSE, MARK_READ, send, started
from tests.sql_counter import count_statements

ON = datetime(2031, 5, 12, 8, 0, tzinfo=UTC)  # far enough ahead: no reminder is due

APPOINTMENTS = """query($id: ID!, $first: Int, $after: String, $from: DateTime, $to: DateTime) {
  node(id: $id) { ... on Professional {
    appointments(first: $first, after: $after, from: $from, to: $to) {
      totalCount pageInfo { hasNextPage endCursor }
      edges { node { id title startsAt professional { id } } } } } } }"""
PATIENTS = """query($id: ID!, $first: Int, $after: String, $search: String) {
  node(id: $id) { ... on Professional {
    patients(first: $first, after: $after, search: $search) {
      totalCount pageInfo { hasNextPage endCursor }
      edges { access expiresAt node { id lastName } } } } } }"""
CONVERSATIONS = """query($id: ID!, $first: Int, $after: String, $unread: Boolean, $open: Boolean) {
  node(id: $id) { ... on Professional {
    conversations(first: $first, after: $after, unread: $unread, open: $open) {
      totalCount pageInfo { hasNextPage endCursor }
      edges { node { id subject closed unreadCount } } } } } }"""
INBOX = """query($id: ID!, $first: Int, $after: String, $unread: Boolean, $open: Boolean) {
  node(id: $id) { ... on Establishment {
    conversations(first: $first, after: $after, unread: $unread, open: $open) {
      totalCount pageInfo { hasNextPage endCursor }
      edges { node { id subject closed unreadCount } } } } } }"""
APPOINTMENT_NODE = "query($id: ID!) { node(id: $id) { ... on Appointment { id } } }"
REGISTER = """mutation($input: RegisterEstablishmentInput!) {
  registerEstablishment(input: $input) { establishment { id } } }"""
ADD_MEMBER = """mutation($input: AddEstablishmentMemberInput!) {
  addEstablishmentMember(input: $input) { establishment { id } } }"""
START_IN = """mutation($input: StartConversationInput!) { startConversation(input: $input) {
  conversation { id } } }"""


# --- helpers ------------------------------------------------------------------------------


async def consent(
    person: Person,
    pro: Staff,
    access: ConsentAccess = ConsentAccess.READ,
    *,
    expires_at: datetime | None = None,
    granted_at: datetime | None = None,
) -> Consent:
    return await Consent.create(
        patient_id=person.patient.id,
        professional_id=pro.pk,
        access=access,
        granted_at=granted_at or utcnow(),
        expires_at=expires_at,
    )


async def appointment(person: Person, pro: Staff | None, starts: datetime, title: str) -> str:
    row = await Appointment.create(
        patient_id=person.patient.id,
        professional_id=pro.pk if pro is not None else None,
        starts_at=starts,
        ends_at=starts + timedelta(minutes=30),
        title=title,
        source=AppointmentSource.PROFESSIONAL,
    )
    return encode("Appointment", row.id)


async def many_appointments(person: Person, pro: Staff, count: int, start: datetime = ON) -> None:
    """`count` appointments of half an hour, one an hour from `start`."""
    await Appointment.bulk_create(
        [
            Appointment(
                patient_id=person.patient.id,
                professional_id=pro.pk,
                starts_at=start + timedelta(hours=n),
                ends_at=start + timedelta(hours=n, minutes=30),
                title=f"Consultation {n}",
                source=AppointmentSource.PROFESSIONAL,
            )
            for n in range(count)
        ]
    )


def page_of(result: GraphQLResult, field: str) -> dict[str, Any]:
    page: dict[str, Any] = result.ok()["node"][field]
    return page


def ids_of(page: dict[str, Any]) -> list[str]:
    return [edge["node"]["id"] for edge in page["edges"]]


def titles_of(page: dict[str, Any]) -> list[str]:
    return [edge["node"]["title"] for edge in page["edges"]]


async def as_viewer(
    client: httpx.AsyncClient, query: str, token: str | None, **variables: Any
) -> GraphQLResult:
    return await gql(client, query, variables, token=token)


async def events_of(pro: Staff) -> list[tuple[UUID, AccessAction, AccessBasis]]:
    rows = await AccessEvent.filter(actor_id=pro.pk).order_by("created_at", "id")
    return [(row.patient_id, row.action, row.basis) for row in rows]


# --- Professional.appointments ----------------------------------------------------------------


async def test_a_professional_reads_their_own_appointments_with_any_patient_in_a_range(
    client: httpx.AsyncClient,
) -> None:
    # given a doctor whom Alice consented to and who is Berthe's médecin traitant, their
    # appointments with both, one of Alice's with another doctor, and one of her own
    doctor = await make_professional("Moreau")
    other = await make_professional("Garnier")
    alice = await make_patient("Alice", "Lefebvre")
    berthe = await make_patient("Berthe", "Martin")
    await consent(alice, doctor)
    await Patient.filter(id=berthe.patient.id).update(treating_doctor_id=doctor.pk)
    await appointment(alice, doctor, ON, "Alice 1")
    await appointment(berthe, doctor, ON + timedelta(days=1), "Berthe")
    await appointment(alice, doctor, ON + timedelta(days=2), "Alice 2")
    await appointment(alice, doctor, ON + timedelta(days=9), "Alice later")
    await appointment(alice, other, ON + timedelta(days=1, hours=2), "With Garnier")
    await appointment(alice, None, ON + timedelta(days=1, hours=3), "Her own")

    # when the doctor reads them all, then those that overlap the first three days
    every = await as_viewer(client, APPOINTMENTS, doctor.token, id=doctor.id)
    ranged = await as_viewer(
        client,
        APPOINTMENTS,
        doctor.token,
        id=doctor.id,
        **{"from": (ON + timedelta(minutes=10)).isoformat(), "to": "2031-05-14T12:00:00+02:00"},
    )

    # then they are theirs only, by start time, and the range keeps those that overlap it
    everything = page_of(every, "appointments")
    assert titles_of(everything) == ["Alice 1", "Berthe", "Alice 2", "Alice later"]
    assert everything["totalCount"] == 4
    assert {edge["node"]["professional"]["id"] for edge in everything["edges"]} == {doctor.id}
    in_range = page_of(ranged, "appointments")
    assert titles_of(in_range) == ["Alice 1", "Berthe", "Alice 2"]
    assert in_range["totalCount"] == 3
    # and each space shown is read once per request, on the basis the doctor holds
    events = await events_of(doctor)
    assert len(events) == 4
    assert set(events) == {
        (alice.patient.id, AccessAction.READ, AccessBasis.CONSENT),
        (berthe.patient.id, AccessAction.READ, AccessBasis.TREATING_DOCTOR),
    }


async def test_appointments_are_paged_forward_with_the_range_and_a_bad_bound_is_refused(
    client: httpx.AsyncClient,
) -> None:
    # given a doctor with six appointments under Alice's consent
    doctor = await make_professional("Moreau")
    alice = await make_patient()
    await consent(alice, doctor)
    await many_appointments(alice, doctor, 6)

    # when the doctor reads those from the second hour on, two at a time
    bounds = {"from": (ON + timedelta(hours=1)).isoformat()}
    titles, after, pages = [], None, 0
    while True:
        result = await as_viewer(
            client, APPOINTMENTS, doctor.token, id=doctor.id, first=2, after=after, **bounds
        )
        page = page_of(result, "appointments")
        titles += titles_of(page)
        pages += 1
        assert page["totalCount"] == 5
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    naive = await as_viewer(
        client, APPOINTMENTS, doctor.token, id=doctor.id, **{"from": "2031-05-12T09:00:00"}
    )

    # then every one in range comes once, in order, over three pages; a bound without an
    # offset is the client's error, named
    assert titles == [f"Consultation {n}" for n in range(1, 6)]
    assert pages == 3
    assert naive.data == {"node": {"appointments": None}}
    assert naive.errors[0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "from"}


async def test_appointments_of_spaces_the_professional_no_longer_reads_are_left_out(
    client: httpx.AsyncClient,
) -> None:
    # given a doctor's appointments with six patients: one under a live consent, and five
    # whose dossier the doctor no longer reads: a revoked consent, an expired one, a block
    # over a consent, a closed space, and a conversation alone (identity only)
    doctor = await make_professional("Moreau")
    live = await make_patient("Alice", "Live")
    revoked = await make_patient("Bea", "Revoked")
    expired = await make_patient("Cleo", "Expired")
    blocking = await make_patient("Dora", "Blocking")
    closed = await make_patient("Emma", "Closed")
    talking = await make_patient("Fanny", "Talking")
    await consent(live, doctor)
    gone = await consent(revoked, doctor)
    await Consent.filter(id=gone.id).update(revoked_at=utcnow())
    await consent(expired, doctor, granted_at=utcnow() - timedelta(days=10))
    await Consent.filter(patient_id=expired.patient.id).update(
        expires_at=utcnow() - timedelta(days=1)
    )
    await consent(blocking, doctor)
    await Block.create(patient_id=blocking.patient.id, professional_id=doctor.pk)
    await consent(closed, doctor)
    await Patient.filter(id=closed.patient.id).update(status=SpaceStatus.CLOSED)
    await started(client, doctor, talking)
    ids = {
        person.patient.last_name: await appointment(person, doctor, ON, person.patient.last_name)
        for person in (live, revoked, expired, blocking, closed, talking)
    }

    # when the doctor reads their appointments, and asks for each by id
    page = page_of(
        await as_viewer(client, APPOINTMENTS, doctor.token, id=doctor.id), "appointments"
    )
    by_node = {
        name: await as_viewer(client, APPOINTMENT_NODE, doctor.token, id=pk)
        for name, pk in ids.items()
    }

    # then the list holds what `node` answers, no more: the live consent's only
    assert titles_of(page) == ["Live"]
    assert page["totalCount"] == 1
    assert by_node["Live"].ok() == {"node": {"id": ids["Live"]}}
    for name in ("Revoked", "Expired", "Blocking", "Closed", "Talking"):
        assert by_node[name].codes == ["NOT_FOUND"], name


async def test_only_the_professional_reads_their_own_dashboard(
    client: httpx.AsyncClient,
) -> None:
    # given a doctor with an appointment, a patient and a conversation, and other viewers:
    # another doctor, that very patient, an operator, and nobody
    doctor = await make_professional("Moreau")
    alice = await make_patient()
    await consent(alice, doctor)
    await appointment(alice, doctor, ON, "Consultation")
    await started(client, doctor, alice)
    colleague = await make_professional("Garnier")
    operator = await make_operator()
    dashboard = """query($id: ID!) { node(id: $id) { ... on Professional {
      appointments { totalCount } patients { totalCount }
      conversations(unread: false) { totalCount } } } }"""
    own = await as_viewer(client, dashboard, doctor.token, id=doctor.id)
    before = await AccessEvent.all().count()

    # when each of the others asks for the doctor's dashboard
    answers = {
        who: await as_viewer(client, dashboard, token, id=doctor.id)
        for who, token in (
            ("colleague", colleague.token),
            ("patient", alice.token),
            ("operator", operator.token),
        )
    }
    anonymous = await as_viewer(client, dashboard, None, id=doctor.id)

    # then the doctor reads it all; every other signed-in viewer gets each list null with
    # FORBIDDEN on its path, as the neighbouring fields answer, and nobody gets nothing
    assert own.ok() == {
        "node": {
            "appointments": {"totalCount": 1},
            "patients": {"totalCount": 1},
            "conversations": {"totalCount": 1},
        }
    }
    for who, answer in answers.items():
        assert answer.data == {
            "node": {"appointments": None, "patients": None, "conversations": None}
        }, who
        assert sorted(answer.codes) == ["FORBIDDEN"] * 3, who
        assert sorted(tuple(e["path"]) for e in answer.errors) == [
            ("node", "appointments"),
            ("node", "conversations"),
            ("node", "patients"),
        ], who
    assert anonymous.data == {"node": None}
    assert anonymous.codes == ["NOT_FOUND"]
    # and none of the refused reads was logged as an access to the space
    assert await AccessEvent.all().count() == before


async def test_a_professional_lists_5_or_50_appointments_in_the_same_statements(
    client: httpx.AsyncClient,
) -> None:
    # given a doctor with 5 appointments with Alice and 50 with Berthe, under consent
    doctor = await make_professional("Moreau")
    alice = await make_patient("Alice", "Lefebvre")
    berthe = await make_patient("Berthe", "Martin")
    await consent(alice, doctor)
    await consent(berthe, doctor)
    await many_appointments(berthe, doctor, 50)
    later = ON + timedelta(days=7)
    await many_appointments(alice, doctor, 5, later)
    query = """query($id: ID!, $from: DateTime!, $first: Int!) { node(id: $id) {
      ... on Professional { appointments(first: $first, from: $from) {
        totalCount edges { node { id title professional { lastName } } } } } } }"""
    await as_viewer(client, query, doctor.token, id=doctor.id, first=5, **{"from": ON.isoformat()})

    # when the doctor reads Alice's 5, then Berthe's 50 (a page of one space each)
    with count_statements() as five:
        small = await as_viewer(
            client, query, doctor.token, id=doctor.id, first=5, **{"from": later.isoformat()}
        )
    with count_statements() as fifty:
        large = await as_viewer(
            client, query, doctor.token, id=doctor.id, first=50, **{"from": ON.isoformat()}
        )

    # then both cost the same statements
    assert len(page_of(small, "appointments")["edges"]) == 5
    assert len(page_of(large, "appointments")["edges"]) == 50
    assert len(five) == len(fifty), "\n".join(["5:", *five, "50:", *fifty])


# --- Professional.patients: the consent on each edge, and the search --------------------------


async def test_each_patient_edge_carries_the_consent_that_links_them(
    client: httpx.AsyncClient,
) -> None:
    # given a doctor whom Alice granted READ until a date, Berthe READ_WRITE then READ
    # (the later grant replacing the first, as grantConsent does), and Cleo nothing live
    doctor = await make_professional("Moreau")
    other = await make_professional("Garnier")
    alice = await make_patient("Alice", "Arnaud")
    berthe = await make_patient("Berthe", "Bonnet")
    cleo = await make_patient("Cleo", "Carre")
    until = datetime(2031, 1, 1, 12, 0, tzinfo=UTC)
    await consent(alice, doctor, expires_at=until)
    await consent(alice, other, ConsentAccess.READ_WRITE)  # to someone else
    first = await consent(berthe, doctor, granted_at=utcnow() - timedelta(days=3))
    await Consent.filter(id=first.id).update(revoked_at=utcnow() - timedelta(days=1))
    await consent(berthe, doctor, ConsentAccess.READ_WRITE)
    lapsed = await consent(cleo, doctor, ConsentAccess.READ_WRITE)
    await Consent.filter(id=lapsed.id).update(revoked_at=utcnow())

    # when the doctor reads their patients
    page = page_of(await as_viewer(client, PATIENTS, doctor.token, id=doctor.id), "patients")

    # then each edge names the live consent of that patient to that doctor
    assert [
        (edge["node"]["lastName"], edge["access"], edge["expiresAt"]) for edge in page["edges"]
    ] == [
        ("Arnaud", "READ", "2031-01-01T12:00:00+00:00"),
        ("Bonnet", "READ_WRITE", None),
    ]
    assert page["totalCount"] == 2


async def test_the_patients_are_searched_by_name_as_the_directory_searches_never_by_nir(
    client: httpx.AsyncClient,
) -> None:
    # given a doctor with four consenting patients, two of the Lefebvre family
    doctor = await make_professional("Moreau")
    alice = await make_patient("Alice", "Lefebvre")
    bruno = await make_patient("Bruno", "Lefebvre")
    claire = await make_patient("Claire", "Martin")
    denis = await make_patient("Denis", "Alicot")
    for person in (alice, bruno, claire, denis):
        await consent(person, doctor)
    stranger = await make_patient("Alice", "Lefebvre-Roux")  # no consent to the doctor

    async def found(search: str) -> list[str]:
        result = await as_viewer(client, PATIENTS, doctor.token, id=doctor.id, search=search)
        page = page_of(result, "patients")
        assert page["totalCount"] == len(page["edges"])
        return [edge["node"]["id"] for edge in page["edges"]]

    # when the doctor searches by part of a name, in any case, by several terms, and by a
    # patient's NIR (with and without its spaces)
    # then names match term by term, first or last name, and only their own patients;
    # a NIR matches nothing
    assert await found("lefeb") == [alice.id, bruno.id]
    assert await found("LEFEBVRE") == [alice.id, bruno.id]
    assert await found("ali") == [denis.id, alice.id]  # Alicot, then Lefebvre
    assert await found("alice lefebvre") == [alice.id]
    assert await found("  martin  ") == [claire.id]
    assert await found("") == [denis.id, alice.id, bruno.id, claire.id]
    assert await found("dupont") == []
    assert await found(alice.nir) == []
    assert await found(f"{alice.nir[:1]} {alice.nir[1:3]} {alice.nir[3:5]}") == []
    assert await found("x" * 150) == []  # longer than any name: nothing, without a query
    assert stranger.id not in await found("roux")


async def test_a_search_too_long_is_refused_and_a_search_pages_with_its_count(
    client: httpx.AsyncClient,
) -> None:
    # given a doctor with five Lefebvre patients and two others
    doctor = await make_professional("Moreau")
    family = [await make_patient(name, "Lefebvre") for name in ("Ana", "Ben", "Cyd", "Dan", "Eve")]
    for person in [*family, await make_patient("Zoe", "Martin"), await make_patient("Yves", "Roy")]:
        await consent(person, doctor)

    # when the doctor searches two at a time, reads the last two found, and then sends a
    # search of 201 characters
    seen, after = [], None
    while True:
        result = await as_viewer(
            client, PATIENTS, doctor.token, id=doctor.id, search="lefebvre", first=2, after=after
        )
        page = page_of(result, "patients")
        assert page["totalCount"] == 5
        seen += [edge["node"]["id"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    from_the_end = await as_viewer(
        client,
        """query($id: ID!) { node(id: $id) { ... on Professional {
          patients(last: 2, search: "LEFEBVRE") { edges { access node { id } } } } } }""",
        doctor.token,
        id=doctor.id,
    )
    too_long = await as_viewer(client, PATIENTS, doctor.token, id=doctor.id, search="a" * 201)
    longest = await as_viewer(client, PATIENTS, doctor.token, id=doctor.id, search="a " * 100)

    # then every Lefebvre comes once, in name order, the last two with their consent;
    # 201 characters are refused, named, and 200 are served
    assert seen == [person.id for person in family]
    assert [edge["node"]["id"] for edge in page_of(from_the_end, "patients")["edges"]] == [
        family[3].id,
        family[4].id,
    ]
    assert {edge["access"] for edge in page_of(from_the_end, "patients")["edges"]} == {"READ"}
    assert too_long.data == {"node": {"patients": None}}
    assert too_long.errors[0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "search"}
    assert longest.errors == []


async def test_a_professional_lists_5_or_50_patients_with_their_consents_in_the_same_reads(
    client: httpx.AsyncClient,
) -> None:
    # given a doctor with 55 consenting patients
    doctor = await make_professional("Moreau")
    for n in range(55):
        person = await make_patient(f"P{n:02d}", "Lefebvre", login=False, email=None)
        await consent(person, doctor, expires_at=ON)
    query = """query($id: ID!, $first: Int!) { node(id: $id) { ... on Professional {
      patients(first: $first, search: "lefebvre") { totalCount
        edges { access expiresAt node { id firstName } } } } } }"""

    def reads(statements: list[str]) -> list[str]:
        """The statements but the access events' (one per space read, by the rule)."""
        return [s for s in statements if "access_event" not in s and "access_log_head" not in s]

    # when the doctor reads 5 of them, then 50
    with count_statements() as five:
        small = await as_viewer(client, query, doctor.token, id=doctor.id, first=5)
    with count_statements() as fifty:
        large = await as_viewer(client, query, doctor.token, id=doctor.id, first=50)

    # then the page and its consents cost the same reads (each space read is its access event)
    assert {edge["access"] for edge in page_of(large, "patients")["edges"]} == {"READ"}
    assert len(page_of(small, "patients")["edges"]) == 5
    assert len(page_of(large, "patients")["edges"]) == 50
    assert len(reads(five)) == len(reads(fifty)), "\n".join(["5:", *five, "50:", *fifty])
    assert len(await AccessEvent.filter(actor_id=doctor.pk).distinct().values("patient_id")) == 50


# --- Professional.conversations and Establishment.conversations: unread and open --------------


async def _four_conversations(client: httpx.AsyncClient, doctor: Staff) -> dict[str, str]:
    """A: open, the patient answered (unread); B: open, answered and read; C: closed,
    answered and unread; D: open, nothing from the patient. In that order of activity."""
    out = {}
    for name in "DCBA":
        person = await make_patient(name, "Patient")
        conversation = (await started(client, doctor, person))["conversation"]["id"]
        out[name] = conversation
        if name != "D":
            (await send(client, person.token, conversation, f"Réponse {name}")).ok()
        if name == "B":
            (await gql(client, MARK_READ, {"id": conversation}, token=doctor.token)).ok()
        if name == "C":
            (await gql(client, CLOSE, {"id": conversation}, token=doctor.token)).ok()
    return out


async def test_a_professionals_conversations_are_filtered_by_unread_and_open(
    client: httpx.AsyncClient,
) -> None:
    # given a doctor's four conversations (see _four_conversations)
    doctor = await make_professional("Moreau")
    ids = await _four_conversations(client, doctor)
    names = {value: key for key, value in ids.items()}

    async def listed(**filters: Any) -> list[str]:
        result = await as_viewer(client, CONVERSATIONS, doctor.token, id=doctor.id, **filters)
        page = page_of(result, "conversations")
        assert page["totalCount"] == len(page["edges"])
        return [names[pk] for pk in ids_of(page)]

    # when the doctor filters by each, and by both
    # then unread is exactly unreadCount above zero, open is not closed, and they combine
    assert await listed() == ["A", "B", "C", "D"]
    assert await listed(unread=True) == ["A", "C"]
    assert await listed(unread=False) == ["B", "D"]
    assert await listed(open=True) == ["A", "B", "D"]
    assert await listed(open=False) == ["C"]
    assert await listed(unread=True, open=True) == ["A"]
    assert await listed(unread=False, open=False) == []
    every = page_of(
        await as_viewer(client, CONVERSATIONS, doctor.token, id=doctor.id), "conversations"
    )
    assert {names[e["node"]["id"]] for e in every["edges"] if e["node"]["unreadCount"]} == {
        "A",
        "C",
    }


async def test_reading_a_conversation_takes_it_out_of_unread_and_a_new_message_brings_it_back(
    client: httpx.AsyncClient,
) -> None:
    # given a doctor's conversation the patient answered
    doctor = await make_professional("Moreau")
    alice = await make_patient()
    conversation = (await started(client, doctor, alice))["conversation"]["id"]
    (await send(client, alice.token, conversation, "Merci")).ok()

    async def unread() -> list[str]:
        result = await as_viewer(client, CONVERSATIONS, doctor.token, id=doctor.id, unread=True)
        return ids_of(page_of(result, "conversations"))

    # when the doctor reads it, writes, and the patient answers again
    first = await unread()
    (await gql(client, MARK_READ, {"id": conversation}, token=doctor.token)).ok()
    read = await unread()
    (await send(client, doctor.token, conversation, "Je vous en prie")).ok()
    own_message = await unread()
    (await send(client, alice.token, conversation, "Une question encore")).ok()
    again = await unread()

    # then it is unread, read, still read (one's own message is never unread), unread again
    assert (first, read, own_message, again) == ([conversation], [], [], [conversation])


async def test_the_filters_page_with_their_count(client: httpx.AsyncClient) -> None:
    # given a doctor with five unread conversations and two read ones
    doctor = await make_professional("Moreau")
    unread_ids = []
    for n in range(7):
        person = await make_patient(f"P{n}", "Patient")
        conversation = (await started(client, doctor, person))["conversation"]["id"]
        (await send(client, person.token, conversation, "Réponse")).ok()
        if n in (2, 4):
            (await gql(client, MARK_READ, {"id": conversation}, token=doctor.token)).ok()
        else:
            unread_ids.append(conversation)

    # when the doctor pages through the unread ones, two at a time
    seen, after = [], None
    while True:
        result = await as_viewer(
            client, CONVERSATIONS, doctor.token, id=doctor.id, unread=True, first=2, after=after
        )
        page = page_of(result, "conversations")
        assert page["totalCount"] == 5
        seen += ids_of(page)
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]

    # then each unread one comes once, latest activity first
    assert seen == list(reversed(unread_ids))


async def test_a_professional_lists_5_or_50_unread_conversations_in_the_same_statements(
    client: httpx.AsyncClient,
) -> None:
    # given a doctor with 55 conversations a patient answered
    doctor = await make_professional("Moreau")
    alice = await make_patient()
    for _ in range(55):
        conversation = (await started(client, doctor, alice))["conversation"]["id"]
        (await send(client, alice.token, conversation, "Réponse")).ok()
    query = """query($id: ID!, $first: Int!) { node(id: $id) { ... on Professional {
      conversations(first: $first, unread: true, open: true) { totalCount
        edges { node { id subject closed patient { firstName } } } } } } }"""

    # when the doctor reads 5 of them, then 50
    with count_statements() as five:
        small = await as_viewer(client, query, doctor.token, id=doctor.id, first=5)
    with count_statements() as fifty:
        large = await as_viewer(client, query, doctor.token, id=doctor.id, first=50)

    # then both cost the same statements
    assert page_of(small, "conversations")["totalCount"] == 55
    assert len(page_of(large, "conversations")["edges"]) == 50
    assert len(five) == len(fifty), "\n".join(["5:", *five, "50:", *fifty])


async def test_an_establishments_inbox_is_filtered_by_each_members_own_reading(
    client: httpx.AsyncClient,
) -> None:
    # given a hospital with two members, two conversations the patient answered (one then
    # closed), and one member who read the open one
    operator = await make_operator()
    hospital = (
        await gql(
            client,
            REGISTER,
            {"input": {"finess": "750109993", "name": "Hôpital des Tilleuls"}},
            token=operator.token,
        )
    ).ok()["registerEstablishment"]["establishment"]["id"]
    roux, caron = await make_professional("Roux"), await make_professional("Caron")
    for member in (roux, caron):
        variables = {"input": {"establishmentId": hospital, "professionalId": member.id}}
        (await gql(client, ADD_MEMBER, variables, token=operator.token)).ok()
    alice = await make_patient()
    conversations = []
    for subject in ("Admission", "Sortie"):
        variables = {
            "input": {
                "patientId": alice.id,
                "subject": subject,
                "body": "Merci de compléter le questionnaire.",
                "establishmentId": hospital,
            }
        }
        started_in = (await gql(client, START_IN, variables, token=roux.token)).ok()
        conversations.append(started_in["startConversation"]["conversation"]["id"])
        (await send(client, alice.token, conversations[-1], "C'est fait.")).ok()
    admission, discharge = conversations
    (await gql(client, CLOSE, {"id": discharge}, token=roux.token)).ok()
    (await gql(client, MARK_READ, {"id": admission}, token=caron.token)).ok()

    async def inbox(member: Staff, **filters: Any) -> list[str]:
        result = await as_viewer(client, INBOX, member.token, id=hospital, **filters)
        page = page_of(result, "conversations")
        assert page["totalCount"] == len(page["edges"])
        return ids_of(page)

    # when each member filters the inbox, and the doctor's own list
    # then unread is each member's own, open is not closed, and they combine
    assert await inbox(roux, unread=True) == [discharge, admission]
    assert await inbox(caron, unread=True) == [discharge]
    assert await inbox(caron, unread=False) == [admission]
    assert await inbox(roux, open=True) == [admission]
    assert await inbox(roux, open=False) == [discharge]
    assert await inbox(caron, unread=True, open=True) == []
    assert await inbox(roux, unread=True, open=True) == [admission]
    # and unread agrees with each member's unreadCount
    for member in (roux, caron):
        page = page_of(await as_viewer(client, INBOX, member.token, id=hospital), "conversations")
        counted = [edge["node"]["id"] for edge in page["edges"] if edge["node"]["unreadCount"]]
        assert counted == await inbox(member, unread=True)
    # and a non-member is refused the inbox whatever the filters
    outsider = await make_professional("Leroy")
    refused = await as_viewer(client, INBOX, outsider.token, id=hospital, unread=True)
    assert refused.data == {"node": {"conversations": None}}
    assert refused.codes == ["FORBIDDEN"]
