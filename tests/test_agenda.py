"""The agenda through GraphQL: who may book, change and cancel an appointment, what is
refused (with the database left as it was), how reminders follow the appointment, and the
Patient.appointments / Patient.reminders lists."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest

from api.config import Settings
from api.jobs import run_jobs
from models.appointment import Appointment, AppointmentStatus, Slot, update_appointment
from models.audit import AccessAction, AccessEvent, AuditTrail
from models.base import PARIS, utcnow
from models.consent import ConsentAccess, grant_consent, open_emergency_access, revoke_consent
from models.errors import Conflict
from models.reminder import Reminder
from resolvers.ids import decode_as, encode
from tests.factories import (
    PASSWORD,
    Person,
    Staff,
    make_minor,
    make_operator,
    make_patient,
    make_professional,
)
from tests.graphql import GraphQLResult, gql
from tests.lifecycle_support import login

APPOINTMENT = """
id startsAt endsAt title location status source cancelledReason professional { id }
"""
CREATE = (
    "mutation($input: CreateAppointmentInput!) { createAppointment(input: $input) { "
    f"appointment {{ {APPOINTMENT} }} }} }}"
)
UPDATE = (
    "mutation($input: UpdateAppointmentInput!) { updateAppointment(input: $input) { "
    f"appointment {{ {APPOINTMENT} }} }} }}"
)
CANCEL = (
    "mutation($input: CancelAppointmentInput!) { cancelAppointment(input: $input) { "
    f"appointment {{ {APPOINTMENT} }} }} }}"
)
DISMISS = """
mutation($input: DismissReminderInput!) {
  dismissReminder(input: $input) { reminder { id status rule } }
}"""
APPOINTMENTS = """
query($id: ID!, $from: DateTime, $to: DateTime) {
  patient(id: $id) {
    appointments(first: 50, from: $from, to: $to) {
      totalCount edges { node { id title status startsAt } }
    }
  }
}"""
REMINDERS = """
query($id: ID!, $status: ReminderStatus) {
  patient(id: $id) {
    reminders(first: 50, status: $status) {
      totalCount edges { node { id rule kind status dueAt appointment { id } } }
    }
  }
}"""


def pk(staff: Staff) -> UUID:
    assert isinstance(staff.pk, UUID)
    return staff.pk


def iso(moment: datetime) -> str:
    return moment.isoformat()


def the_error(result: GraphQLResult) -> dict[str, Any]:
    assert len(result.errors) == 1, result.errors
    return result.errors[0]


def assert_denied(result: GraphQLResult, code: str, field: str | None = None) -> None:
    error = the_error(result)
    assert error["extensions"]["code"] == code, error
    assert error["extensions"].get("field") == field, error


async def snapshot() -> list[list[dict[str, Any]]]:
    """Every appointment and reminder, to show that a denial changed nothing."""
    return [
        await Appointment.all().order_by("id").values(),
        await Reminder.all().order_by("id").values(),
    ]


async def consent(person: Person, pro: Staff, access: ConsentAccess = ConsentAccess.READ) -> Any:
    return await grant_consent(
        person.patient.id,
        pk(pro),
        access,
        expires_at=None,
        now=utcnow(),
    )


def slot(start: datetime, minutes: int = 30, **extra: Any) -> dict[str, Any]:
    return {
        "startsAt": iso(start),
        "endsAt": iso(start + timedelta(minutes=minutes)),
        "title": "Consultation de cardiologie",
        "location": "Centre de santé, 12 rue des Lilas, Lyon",
        **extra,
    }


async def book(
    client: httpx.AsyncClient, token: str | None, start: datetime, **extra: Any
) -> dict[str, Any]:
    result = await gql(client, CREATE, {"input": slot(start, **extra)}, token=token)
    appointment: dict[str, Any] = result.ok()["createAppointment"]["appointment"]
    return appointment


def in_days(days: float) -> datetime:
    """A moment ahead, to the second, in Paris time (the server answers in UTC)."""
    return (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0).astimezone(PARIS)


async def reminder_rows(appointment_id: str) -> dict[str, Reminder]:
    pk = decode_as(appointment_id, "Appointment")
    rows = await Reminder.filter(appointment_id=pk)
    return {f"{r.rule}:{r.status.value}": r for r in rows}


# --- createAppointment ---------------------------------------------------------------------


async def test_the_holder_books_an_appointment_with_its_two_reminders(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    start = in_days(3)

    appointment = await book(client, alice.token, start)

    assert appointment == {
        "id": appointment["id"],
        "startsAt": start.astimezone(UTC).isoformat(),
        "endsAt": (start + timedelta(minutes=30)).astimezone(UTC).isoformat(),
        "title": "Consultation de cardiologie",
        "location": "Centre de santé, 12 rue des Lilas, Lyon",
        "status": "SCHEDULED",
        "source": "PATIENT",
        "cancelledReason": None,
        "professional": None,
    }
    rows = await reminder_rows(appointment["id"])
    assert sorted(rows) == ["APPOINTMENT_2H:PENDING", "APPOINTMENT_48H:PENDING"]
    assert rows["APPOINTMENT_48H:PENDING"].due_at == start - timedelta(hours=48)
    assert rows["APPOINTMENT_2H:PENDING"].due_at == start - timedelta(hours=2)
    assert {r.patient_id for r in rows.values()} == {alice.patient.id}


async def test_an_appointment_booked_tomorrow_gets_only_its_2h_reminder(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    appointment = await book(client, alice.token, in_days(1))
    assert sorted(await reminder_rows(appointment["id"])) == ["APPOINTMENT_2H:PENDING"]


async def test_a_representative_books_for_the_minor(client: httpx.AsyncClient) -> None:
    mother = await make_patient("Claire")
    child = await make_minor(mother)

    appointment = await book(client, mother.token, in_days(5), patientId=child.id)

    row = await Appointment.get(id=decode_as(appointment["id"], "Appointment"))
    assert row.patient_id == child.patient.id
    assert appointment["source"] == "PATIENT"
    rows = await reminder_rows(appointment["id"])
    assert {r.patient_id for r in rows.values()} == {child.patient.id}
    listed = await gql(client, APPOINTMENTS, {"id": child.id}, token=mother.token)
    edges = listed.ok()["patient"]["appointments"]["edges"]
    assert [e["node"]["id"] for e in edges] == [appointment["id"]]


async def test_a_professional_under_consent_books_changes_and_cancels(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    doctor = await make_professional("Moreau")
    await consent(alice, doctor)
    start = in_days(4)

    created = await book(client, doctor.token, start, patientId=alice.id)
    assert created["source"] == "PROFESSIONAL"
    assert created["professional"] == {"id": doctor.id}
    row = await Appointment.get(id=decode_as(created["id"], "Appointment"))
    assert row.patient_id == alice.patient.id

    moved = await gql(
        client,
        UPDATE,
        {
            "input": {
                "appointmentId": created["id"],
                "startsAt": iso(start + timedelta(hours=1)),
                "endsAt": iso(start + timedelta(hours=2)),
            }
        },
        token=doctor.token,
    )
    assert (
        moved.ok()["updateAppointment"]["appointment"]["startsAt"]
        == (start + timedelta(hours=1)).astimezone(UTC).isoformat()
    )

    cancelled = await gql(
        client,
        CANCEL,
        {"input": {"appointmentId": created["id"], "reason": "Médecin absent"}},
        token=doctor.token,
    )
    answer = cancelled.ok()["cancelAppointment"]["appointment"]
    assert (answer["status"], answer["cancelledReason"]) == ("CANCELLED", "Médecin absent")
    # the holder sees it, as booked by the professional
    listed = await gql(client, APPOINTMENTS, {"id": alice.id}, token=alice.token)
    node = listed.ok()["patient"]["appointments"]["edges"][0]["node"]
    assert (node["id"], node["status"]) == (created["id"], "CANCELLED")


async def test_a_professional_must_name_the_patient(client: httpx.AsyncClient) -> None:
    doctor = await make_professional()
    before = await snapshot()
    result = await gql(client, CREATE, {"input": slot(in_days(2))}, token=doctor.token)
    assert_denied(result, "BAD_USER_INPUT", "patientId")
    assert await snapshot() == before


@pytest.mark.parametrize(
    ("who", "code"),
    [
        ("professional without consent", "NOT_FOUND"),
        ("professional after revocation", "NOT_FOUND"),
        ("professional by emergency access only", "FORBIDDEN"),
        ("another patient", "NOT_FOUND"),
        ("anonymous", "UNAUTHENTICATED"),
        ("operator", "FORBIDDEN"),
    ],
)
async def test_booking_for_someone_else_is_refused(
    client: httpx.AsyncClient, who: str, code: str
) -> None:
    alice = await make_patient()
    await book(client, alice.token, in_days(6))  # something that must stay as it is
    token: str | None
    if who.startswith("professional"):
        pro = await make_professional()
        token = pro.token
        if who == "professional after revocation":
            await revoke_consent(await consent(alice, pro), now=utcnow())
        elif who == "professional by emergency access only":
            await open_emergency_access(
                alice.patient.id,
                pk(pro),
                reason="Inconsciente",
                now=utcnow(),
            )
    elif who == "another patient":
        token = (await make_patient("Bob", sex=alice.patient.sex)).token
    elif who == "operator":
        token = (await make_operator()).token
    else:
        token = None
    before = await snapshot()

    result = await gql(client, CREATE, {"input": slot(in_days(2), patientId=alice.id)}, token=token)

    assert_denied(result, code)
    assert result.data is None
    assert await snapshot() == before


@pytest.mark.parametrize(
    ("who", "code"),
    [
        ("professional without consent", "NOT_FOUND"),
        ("professional by emergency access only", "FORBIDDEN"),
        ("another patient", "NOT_FOUND"),
        ("anonymous", "UNAUTHENTICATED"),
        ("operator", "FORBIDDEN"),
    ],
)
@pytest.mark.parametrize("mutation", ["update", "cancel"])
async def test_changing_someone_elses_appointment_is_refused(
    client: httpx.AsyncClient, who: str, code: str, mutation: str
) -> None:
    alice = await make_patient()
    appointment = await book(client, alice.token, in_days(6))
    token: str | None
    if who.startswith("professional"):
        pro = await make_professional()
        token = pro.token
        if who == "professional by emergency access only":
            await open_emergency_access(
                alice.patient.id,
                pk(pro),
                reason="Inconsciente",
                now=utcnow(),
            )
    elif who == "another patient":
        token = (await make_patient("Bob")).token
    elif who == "operator":
        token = (await make_operator()).token
    else:
        token = None
    before = await snapshot()

    if mutation == "update":
        variables = {"input": {"appointmentId": appointment["id"], "title": "Autre chose"}}
        result = await gql(client, UPDATE, variables, token=token)
    else:
        result = await gql(
            client, CANCEL, {"input": {"appointmentId": appointment["id"]}}, token=token
        )

    assert_denied(result, code)
    assert result.data is None
    assert await snapshot() == before


async def test_an_unknown_appointment_is_not_found(client: httpx.AsyncClient) -> None:
    alice = await make_patient()
    ghost = encode("Appointment", decode_as(alice.id, "Patient"))
    result = await gql(client, CANCEL, {"input": {"appointmentId": ghost}}, token=alice.token)
    assert_denied(result, "NOT_FOUND")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"minutes": -30}, "endsAt"),
        ({"minutes": 0}, "endsAt"),
        ({"minutes": 25 * 60}, "endsAt"),
        ({"title": "   "}, "title"),
        ({"location": "x" * 301}, "location"),
    ],
)
async def test_a_bad_slot_is_refused_with_its_field(
    client: httpx.AsyncClient, change: dict[str, Any], field: str
) -> None:
    alice = await make_patient()
    existing = await book(client, alice.token, in_days(3))
    before = await snapshot()
    start = in_days(2)
    minutes = change.pop("minutes", 30)

    created = await gql(
        client, CREATE, {"input": slot(start, minutes, **change)}, token=alice.token
    )
    update = {
        "appointmentId": existing["id"],
        "startsAt": iso(start),
        "endsAt": iso(start + timedelta(minutes=minutes)),
        **change,
    }
    updated = await gql(client, UPDATE, {"input": update}, token=alice.token)

    assert_denied(created, "BAD_USER_INPUT", field)
    assert_denied(updated, "BAD_USER_INPUT", field)
    assert await snapshot() == before


async def test_a_time_without_offset_is_refused(client: httpx.AsyncClient) -> None:
    alice = await make_patient()
    before = await snapshot()
    naive = in_days(2).replace(tzinfo=None)
    variables = {"input": {**slot(in_days(2)), "startsAt": naive.isoformat()}}
    result = await gql(client, CREATE, variables, token=alice.token)
    assert the_error(result)["extensions"]["code"] in {
        "BAD_USER_INPUT",
        "GRAPHQL_VALIDATION_FAILED",
    }
    assert await snapshot() == before


# --- updateAppointment / cancelAppointment -----------------------------------------------


async def test_moving_an_appointment_moves_its_reminders(client: httpx.AsyncClient) -> None:
    alice = await make_patient()
    start = in_days(3)
    appointment = await book(client, alice.token, start)
    later = start + timedelta(days=1, hours=3)

    result = await gql(
        client,
        UPDATE,
        {
            "input": {
                "appointmentId": appointment["id"],
                "startsAt": iso(later),
                "endsAt": iso(later + timedelta(minutes=45)),
            }
        },
        token=alice.token,
    )

    moved = result.ok()["updateAppointment"]["appointment"]
    assert moved["startsAt"] == later.astimezone(UTC).isoformat()
    assert moved["title"] == "Consultation de cardiologie"  # unchanged fields stay
    rows = await reminder_rows(appointment["id"])
    assert sorted(rows) == [
        "APPOINTMENT_2H:DISMISSED",
        "APPOINTMENT_2H:PENDING",
        "APPOINTMENT_48H:DISMISSED",
        "APPOINTMENT_48H:PENDING",
    ]
    assert rows["APPOINTMENT_48H:PENDING"].due_at == later - timedelta(hours=48)
    assert rows["APPOINTMENT_2H:PENDING"].due_at == later - timedelta(hours=2)


async def test_renaming_an_appointment_keeps_its_reminders(client: httpx.AsyncClient) -> None:
    alice = await make_patient()
    appointment = await book(client, alice.token, in_days(3))
    before = await reminder_rows(appointment["id"])

    result = await gql(
        client,
        UPDATE,
        {"input": {"appointmentId": appointment["id"], "title": "Bilan", "location": None}},
        token=alice.token,
    )

    answer = result.ok()["updateAppointment"]["appointment"]
    assert (answer["title"], answer["location"]) == ("Bilan", None)
    after = await reminder_rows(appointment["id"])
    assert {k: v.id for k, v in after.items()} == {k: v.id for k, v in before.items()}


async def test_cancelling_dismisses_pending_reminders_and_twice_is_a_conflict(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await make_patient(birth_date=date(2004, 1, 1))  # no screening or vaccine rule yet
    start = in_days(3)
    appointment = await book(client, alice.token, start)
    await run_jobs(settings, now=start - timedelta(hours=47))  # the 48 h one is sent

    first = await gql(
        client, CANCEL, {"input": {"appointmentId": appointment["id"]}}, token=alice.token
    )
    assert first.ok()["cancelAppointment"]["appointment"]["status"] == "CANCELLED"
    assert sorted(await reminder_rows(appointment["id"])) == [
        "APPOINTMENT_2H:DISMISSED",
        "APPOINTMENT_48H:SENT",
    ]
    before = await snapshot()

    second = await gql(
        client, CANCEL, {"input": {"appointmentId": appointment["id"]}}, token=alice.token
    )
    changed = await gql(
        client,
        UPDATE,
        {"input": {"appointmentId": appointment["id"], "title": "Autre"}},
        token=alice.token,
    )

    assert_denied(second, "CONFLICT")
    assert_denied(changed, "CONFLICT")
    assert await snapshot() == before
    # nothing is raised for a cancelled appointment
    report = await run_jobs(settings, now=start - timedelta(hours=1))
    assert sorted(await reminder_rows(appointment["id"])) == [
        "APPOINTMENT_2H:DISMISSED",
        "APPOINTMENT_48H:SENT",
    ]
    assert report["reminders_raised"] == 0


# --- Patient.appointments ------------------------------------------------------------------


async def test_appointments_filter_by_range_and_keep_their_history(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await make_patient()
    base = in_days(10).replace(hour=9, minute=0, second=0)  # 09:00 Paris time
    ids = [
        (await book(client, alice.token, base + timedelta(days=n), title=f"RDV {n}"))["id"]
        for n in range(4)
    ]
    await gql(client, CANCEL, {"input": {"appointmentId": ids[3]}}, token=alice.token)

    async def listed(**bounds: str) -> list[tuple[str, str]]:
        result = await gql(client, APPOINTMENTS, {"id": alice.id, **bounds}, token=alice.token)
        connection = result.ok()["patient"]["appointments"]
        nodes = [e["node"] for e in connection["edges"]]
        assert connection["totalCount"] == len(nodes)
        return [(n["title"], n["status"]) for n in nodes]

    everything = await listed()
    assert everything == [
        ("RDV 0", "SCHEDULED"),
        ("RDV 1", "SCHEDULED"),
        ("RDV 2", "SCHEDULED"),
        ("RDV 3", "CANCELLED"),
    ]
    # the range is given in Paris time; an appointment overlapping a bound is kept
    day_1 = base + timedelta(days=1)
    assert await listed(**{"from": iso(day_1 - timedelta(minutes=5))}) == everything[1:]
    assert await listed(**{"from": iso(day_1 + timedelta(minutes=10))}) == everything[1:]
    assert await listed(**{"from": iso(day_1 + timedelta(minutes=31))}) == everything[2:]
    assert await listed(to=iso(day_1)) == everything[:1]
    assert await listed(to=iso(day_1 + timedelta(seconds=1))) == everything[:2]
    assert (
        await listed(
            **{"from": iso(day_1 - timedelta(hours=1)), "to": iso(day_1 + timedelta(hours=1))}
        )
        == everything[1:2]
    )
    # the same range given in UTC answers the same
    assert (
        await listed(
            **{
                "from": iso((day_1 - timedelta(hours=1)).astimezone(UTC)),
                "to": iso((day_1 + timedelta(hours=1)).astimezone(UTC)),
            }
        )
        == everything[1:2]
    )

    # when the jobs run after the second one ended, the past ones are history
    await run_jobs(settings, now=day_1 + timedelta(hours=1))
    # (11 days ahead, they purged the factory's one-hour session: Alice logs in again)
    assert alice.email is not None
    alice.token = (await login(client, alice.email, PASSWORD)).ok()["login"]["token"]
    assert await listed() == [
        ("RDV 0", "DONE"),
        ("RDV 1", "DONE"),
        ("RDV 2", "SCHEDULED"),
        ("RDV 3", "CANCELLED"),
    ]


async def test_a_consented_professional_reads_appointments_but_not_reminders(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    doctor = await make_professional()
    await consent(alice, doctor)
    appointment = await book(client, alice.token, in_days(3))

    listed = await gql(client, APPOINTMENTS, {"id": alice.id}, token=doctor.token)
    reminders = await gql(client, REMINDERS, {"id": alice.id}, token=doctor.token)

    edges = listed.ok()["patient"]["appointments"]["edges"]
    assert [e["node"]["id"] for e in edges] == [appointment["id"]]
    assert reminders.data == {"patient": {"reminders": None}}
    assert reminders.codes == ["FORBIDDEN"]


# --- reminders and dismissReminder ---------------------------------------------------------


async def test_reminders_filter_by_status(client: httpx.AsyncClient, settings: Settings) -> None:
    alice = await make_patient(birth_date=date(2004, 1, 1))  # no screening or vaccine rule yet
    start = in_days(3)
    appointment = await book(client, alice.token, start)
    await run_jobs(settings, now=start - timedelta(hours=47))

    async def rules(status: str | None) -> list[tuple[str, str]]:
        result = await gql(client, REMINDERS, {"id": alice.id, "status": status}, token=alice.token)
        connection = result.ok()["patient"]["reminders"]
        nodes = [e["node"] for e in connection["edges"]]
        assert connection["totalCount"] == len(nodes)
        assert {n["appointment"]["id"] for n in nodes} <= {appointment["id"]}
        return [(n["rule"], n["status"]) for n in nodes]

    assert await rules(None) == [("APPOINTMENT_2H", "PENDING"), ("APPOINTMENT_48H", "SENT")]
    assert await rules("SENT") == [("APPOINTMENT_48H", "SENT")]
    assert await rules("PENDING") == [("APPOINTMENT_2H", "PENDING")]
    assert await rules("DISMISSED") == []


async def test_the_holder_and_a_representative_dismiss_reminders(
    client: httpx.AsyncClient,
) -> None:
    mother = await make_patient("Claire")
    child = await make_minor(mother)
    own = await book(client, mother.token, in_days(3))
    childs = await book(client, mother.token, in_days(3), patientId=child.id)

    for appointment in (own, childs):
        row = (await reminder_rows(appointment["id"]))["APPOINTMENT_48H:PENDING"]
        reminder_id = encode("Reminder", row.id)
        result = await gql(
            client, DISMISS, {"input": {"reminderId": reminder_id}}, token=mother.token
        )
        assert result.ok()["dismissReminder"]["reminder"] == {
            "id": reminder_id,
            "status": "DISMISSED",
            "rule": "APPOINTMENT_48H",
        }
        again = await gql(
            client, DISMISS, {"input": {"reminderId": reminder_id}}, token=mother.token
        )
        assert again.ok()["dismissReminder"]["reminder"]["status"] == "DISMISSED"
        assert sorted(await reminder_rows(appointment["id"])) == [
            "APPOINTMENT_2H:PENDING",
            "APPOINTMENT_48H:DISMISSED",
        ]


@pytest.mark.parametrize(
    ("who", "code"),
    [
        ("consented professional", "NOT_FOUND"),
        ("another patient", "NOT_FOUND"),
        ("operator", "NOT_FOUND"),
        ("anonymous", "UNAUTHENTICATED"),
    ],
)
async def test_nobody_else_dismisses_a_reminder(
    client: httpx.AsyncClient, who: str, code: str
) -> None:
    alice = await make_patient()
    appointment = await book(client, alice.token, in_days(3))
    row = (await reminder_rows(appointment["id"]))["APPOINTMENT_48H:PENDING"]
    token: str | None = None
    if who == "consented professional":
        pro = await make_professional()
        await consent(alice, pro, ConsentAccess.READ_WRITE)
        token = pro.token
    elif who == "another patient":
        token = (await make_patient("Bob")).token
    elif who == "operator":
        token = (await make_operator()).token
    before = await snapshot()

    result = await gql(
        client, DISMISS, {"input": {"reminderId": encode("Reminder", row.id)}}, token=token
    )

    assert_denied(result, code)
    assert await snapshot() == before


async def test_a_change_racing_a_cancel_never_brings_the_appointment_back(
    client: httpx.AsyncClient,
) -> None:
    # given an appointment read by one request, then cancelled by another
    alice = await make_patient()
    appointment = await book(client, alice.token, in_days(3))
    stale = await Appointment.get(id=decode_as(appointment["id"], "Appointment"))
    await gql(client, CANCEL, {"input": {"appointmentId": appointment["id"]}}, token=alice.token)
    before = await snapshot()

    # when the first request saves its change
    start = in_days(4)
    with pytest.raises(Conflict):
        await update_appointment(
            stale,
            Slot(start, start + timedelta(hours=1), "Autre", None),
            professional_id=None,
            hours=(48, 2),
            now=utcnow(),
        )

    # then it is refused, and the appointment stays cancelled
    assert await snapshot() == before
    row = await Appointment.get(id=stale.id)
    assert row.status is AppointmentStatus.CANCELLED


# --- the access log ------------------------------------------------------------------------


async def events(person: Person, action: AccessAction) -> list[tuple[str, str]]:
    """(basis, actor role) of the space's access events of one action, sorted."""
    rows = await AccessEvent.filter(patient_id=person.patient.id, action=action)
    return sorted((e.basis.value, e.actor_role.value) for e in rows)


async def writes(person: Person) -> list[tuple[str, str]]:
    return await events(person, AccessAction.WRITE)


async def test_agenda_changes_by_others_than_the_holder_are_access_events(
    client: httpx.AsyncClient,
) -> None:
    mother = await make_patient("Claire")
    child = await make_minor(mother)
    doc = await make_professional()
    await consent(child, doc)
    await consent(mother, doc)

    own = await book(client, mother.token, in_days(3))  # the holder: not an event
    await gql(client, CANCEL, {"input": {"appointmentId": own["id"]}}, token=mother.token)
    by_doc = await book(client, doc.token, in_days(3), patientId=child.id)
    moved = await gql(
        client,
        UPDATE,
        {"input": {"appointmentId": by_doc["id"], "title": "Vaccins"}},
        token=mother.token,
    )
    cancelled = await gql(
        client, CANCEL, {"input": {"appointmentId": by_doc["id"]}}, token=doc.token
    )

    assert not moved.errors and not cancelled.errors
    assert await writes(mother) == []
    assert await writes(child) == [
        ("CONSENT", "PROFESSIONAL"),
        ("CONSENT", "PROFESSIONAL"),
        ("REPRESENTATIVE", "PATIENT"),
    ]


async def test_a_booking_whose_access_event_cannot_be_written_is_not_made(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await make_patient()
    doc = await make_professional()
    await consent(alice, doc)
    before = await snapshot()

    async def failing(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the audit table is unavailable")

    monkeypatch.setattr(AuditTrail, "record", failing)
    result = await gql(
        client, CREATE, {"input": slot(in_days(3), patientId=alice.id)}, token=doc.token
    )

    assert result.codes == ["INTERNAL_SERVER_ERROR"]
    assert await snapshot() == before


NODES = "query($ids: [ID!]!) { nodes(ids: $ids) { id } }"


async def reads(person: Person) -> list[tuple[str, str]]:
    return await events(person, AccessAction.READ)


async def test_reading_appointments_and_reminders_by_id_is_an_access_event(
    client: httpx.AsyncClient,
) -> None:
    mother = await make_patient("Claire")
    child = await make_minor(mother)
    doc = await make_professional()
    await consent(child, doc)
    first = await book(client, mother.token, in_days(3), patientId=child.id)
    second = await book(client, mother.token, in_days(4), patientId=child.id)
    reminder = encode("Reminder", next(iter((await reminder_rows(first["id"])).values())).id)
    own = await book(client, mother.token, in_days(3))
    assert await reads(child) == []

    by_doc = await gql(client, NODES, {"ids": [first["id"], second["id"]]}, token=doc.token)
    by_mother = await gql(client, NODES, {"ids": [reminder]}, token=mother.token)
    by_holder = await gql(client, NODES, {"ids": [own["id"]]}, token=mother.token)

    assert by_doc.ok() == {"nodes": [{"id": first["id"]}, {"id": second["id"]}]}
    assert by_mother.ok() == {"nodes": [{"id": reminder}]}
    assert by_holder.ok() == {"nodes": [{"id": own["id"]}]}
    # one event per request, actor and patient; none for the holder's own reads
    assert await reads(child) == [("CONSENT", "PROFESSIONAL"), ("REPRESENTATIVE", "PATIENT")]
    assert await reads(mother) == []
