"""The private iCalendar feed, read with an independent parser (vobject) as a calendar app
would: times and places only, changes carried by STATUS and SEQUENCE, and a URL that the
holder can replace."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest
import vobject

from api.config import Settings
from api.jobs import run_jobs
from models.base import PARIS, utcnow
from models.consent import ConsentAccess, grant_consent
from tests.factories import Person, Staff, make_minor, make_patient, make_professional
from tests.graphql import gql

FEED_URL = "query($id: ID!) { patient(id: $id) { calendarFeedUrl } }"
ROTATE = """
mutation($input: RotateCalendarFeedInput!) { rotateCalendarFeed(input: $input) { calendarFeedUrl } }
"""
CREATE = """
mutation($input: CreateAppointmentInput!) {
  createAppointment(input: $input) { appointment { id } }
}"""
UPDATE = """
mutation($input: UpdateAppointmentInput!) {
  updateAppointment(input: $input) { appointment { id } }
}"""
CANCEL = """
mutation($input: CancelAppointmentInput!) {
  cancelAppointment(input: $input) { appointment { id } }
}"""
TITLE = "Consultation d'oncologie"
PLACE = "Institut Curie, 26 rue d'Ulm, Paris"


def pk(staff: Staff) -> UUID:
    assert isinstance(staff.pk, UUID)
    return staff.pk


def ahead(days: int, hour: int = 9) -> datetime:
    day = (datetime.now(UTC) + timedelta(days=days)).astimezone(PARIS).date()
    return datetime(day.year, day.month, day.day, hour, 0, tzinfo=PARIS)


async def feed_url(client: httpx.AsyncClient, person: Person, viewer: Person) -> str:
    result = await gql(client, FEED_URL, {"id": person.id}, token=viewer.token)
    url: str = result.ok()["patient"]["calendarFeedUrl"]
    assert url.startswith("http://testserver/calendar/") and url.endswith(".ics")
    return url


async def fetch(client: httpx.AsyncClient, url: str) -> httpx.Response:
    return await client.get(url.removeprefix("http://testserver"))


async def events(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    """The feed's events by UID, parsed by vobject."""
    response = await fetch(client, url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/calendar")
    assert "no-store" in response.headers["cache-control"]
    calendar = vobject.readOne(response.text)
    assert calendar.name == "VCALENDAR"
    assert calendar.version.value == "2.0"
    return {event.uid.value: event for event in calendar.contents.get("vevent", [])}


async def book(client: httpx.AsyncClient, token: str | None, start: datetime, **extra: Any) -> str:
    variables = {
        "input": {
            "startsAt": start.isoformat(),
            "endsAt": (start + timedelta(minutes=45)).isoformat(),
            "title": TITLE,
            "location": PLACE,
            **extra,
        }
    }
    result = await gql(client, CREATE, variables, token=token)
    appointment_id: str = result.ok()["createAppointment"]["appointment"]["id"]
    return appointment_id


def the_event(found: dict[str, Any]) -> Any:
    assert len(found) == 1, found
    return next(iter(found.values()))


async def test_the_feed_has_times_and_places_but_never_titles_nor_professionals(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    doctor = await make_professional("Zylberstein")
    await grant_consent(
        alice.patient.id,
        pk(doctor),
        ConsentAccess.READ,
        expires_at=None,
        now=utcnow(),
    )
    start = ahead(5)
    await book(client, doctor.token, start, patientId=alice.id)
    url = await feed_url(client, alice, alice)

    event = the_event(await events(client, url))

    assert event.dtstart.value == start
    assert event.dtend.value == start + timedelta(minutes=45)
    assert event.location.value == PLACE
    assert event.status.value == "CONFIRMED"
    assert event.summary.value == "Rendez-vous (Mon espace santé)"
    assert "description" not in event.contents
    assert "organizer" not in event.contents and "attendee" not in event.contents
    raw = (await fetch(client, url)).text.lower()
    for secret in ("oncologie", "zylberstein", alice.patient.last_name.lower()):
        assert secret not in raw


async def test_a_cancelled_appointment_stays_in_the_feed_as_cancelled_with_a_new_sequence(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    appointment = await book(client, alice.token, ahead(3))
    url = await feed_url(client, alice, alice)
    before = the_event(await events(client, url))

    await gql(client, CANCEL, {"input": {"appointmentId": appointment}}, token=alice.token)
    after = the_event(await events(client, url))

    assert after.uid.value == before.uid.value
    assert (before.status.value, after.status.value) == ("CONFIRMED", "CANCELLED")
    assert int(after.sequence.value) > int(before.sequence.value)


async def test_a_moved_appointment_changes_in_the_feed_with_a_new_sequence(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    appointment = await book(client, alice.token, ahead(3))
    url = await feed_url(client, alice, alice)
    before = the_event(await events(client, url))
    later = ahead(4, hour=15)

    await gql(
        client,
        UPDATE,
        {
            "input": {
                "appointmentId": appointment,
                "startsAt": later.isoformat(),
                "endsAt": (later + timedelta(hours=1)).isoformat(),
                "location": "Hôpital Lariboisière",
            }
        },
        token=alice.token,
    )
    after = the_event(await events(client, url))

    assert after.uid.value == before.uid.value
    assert after.dtstart.value == later and after.dtend.value == later + timedelta(hours=1)
    assert after.location.value == "Hôpital Lariboisière"
    assert int(after.sequence.value) > int(before.sequence.value)


async def test_a_past_appointment_stays_in_the_feed(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    # a calendar app deletes an event that leaves the feed: history must not vanish
    alice = await make_patient()
    start = ahead(2)
    await book(client, alice.token, start)
    url = await feed_url(client, alice, alice)

    await run_jobs(settings, now=start + timedelta(hours=2))  # the appointment is DONE

    event = the_event(await events(client, url))
    assert event.dtstart.value == start
    assert event.status.value == "CONFIRMED"


async def test_the_feed_holds_only_the_spaces_own_appointments(client: httpx.AsyncClient) -> None:
    mother = await make_patient("Claire")
    child = await make_minor(mother)
    bob = await make_patient("Bob")
    await book(client, mother.token, ahead(3, hour=9))
    await book(client, mother.token, ahead(3, hour=11), patientId=child.id)
    await book(client, bob.token, ahead(3, hour=14))

    own = await events(client, await feed_url(client, mother, mother))
    childs = await events(client, await feed_url(client, child, mother))

    assert [e.dtstart.value for e in own.values()] == [ahead(3, hour=9)]
    assert [e.dtstart.value for e in childs.values()] == [ahead(3, hour=11)]


async def test_the_url_is_stable_until_rotated_and_the_old_one_then_answers_404_json(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    await book(client, alice.token, ahead(3))
    old = await feed_url(client, alice, alice)
    assert await feed_url(client, alice, alice) == old

    result = await gql(client, ROTATE, {"input": {}}, token=alice.token)
    new: str = result.ok()["rotateCalendarFeed"]["calendarFeedUrl"]

    assert new != old
    assert await feed_url(client, alice, alice) == new
    assert len(await events(client, new)) == 1
    gone = await fetch(client, old)
    assert gone.status_code == 404
    assert gone.headers["content-type"].startswith("application/json")
    assert [e["extensions"]["code"] for e in gone.json()["errors"]] == ["NOT_FOUND"]


async def test_a_representative_rotates_the_minors_feed(client: httpx.AsyncClient) -> None:
    mother = await make_patient("Claire")
    child = await make_minor(mother)
    old = await feed_url(client, child, mother)

    result = await gql(client, ROTATE, {"input": {"patientId": child.id}}, token=mother.token)

    new = result.ok()["rotateCalendarFeed"]["calendarFeedUrl"]
    assert new != old and (await fetch(client, old)).status_code == 404
    assert await feed_url(client, mother, mother) not in (old, new)


@pytest.mark.parametrize("token", ["nothing-like-a-token", "x" * 300])
async def test_an_unknown_token_answers_404_json(client: httpx.AsyncClient, token: str) -> None:
    response = await client.get(f"/calendar/{token}.ics")
    assert response.status_code == 404
    assert response.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_the_feed_url_is_forbidden_to_a_consented_professional(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient(birth_date=date(1980, 3, 14))
    doctor = await make_professional()
    await grant_consent(
        alice.patient.id,
        pk(doctor),
        ConsentAccess.READ_WRITE,
        expires_at=None,
        now=utcnow(),
    )

    result = await gql(client, FEED_URL, {"id": alice.id}, token=doctor.token)
    rotated = await gql(client, ROTATE, {"input": {"patientId": alice.id}}, token=doctor.token)

    assert result.data == {"patient": {"calendarFeedUrl": None}}
    assert [(e["extensions"]["code"], e["path"]) for e in result.errors] == [
        ("FORBIDDEN", ["patient", "calendarFeedUrl"])
    ]
    assert rotated.data is None and rotated.codes == ["FORBIDDEN"]
