from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from api.config import Settings
from api.jobs import run_jobs
from models.reminder import Reminder
from tests.factories import make_patient
from tests.graphql import gql


async def test_appointment_reminders_and_feed(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await make_patient()
    start = datetime.now(UTC) + timedelta(days=3)
    created = await gql(
        client,
        "mutation($s: DateTime!, $e: DateTime!) { createAppointment(input: {startsAt: $s, "
        'endsAt: $e, title: "Cardiologie", location: "12 rue X"}) '
        "{ appointment { id status source } } }",
        {"s": start.isoformat(), "e": (start + timedelta(minutes=30)).isoformat()},
        token=alice.token,
    )
    appointment = created.ok()["createAppointment"]["appointment"]
    assert appointment["status"] == "SCHEDULED" and appointment["source"] == "PATIENT"
    assert await Reminder.filter(patient_id=alice.patient.id).count() == 2
    # asked before the jobs run 25 h ahead, which purge the factory's one-hour session
    url = (
        await gql(client, "{ viewer { ... on Patient { calendarFeedUrl } } }", token=alice.token)
    ).ok()["viewer"]["calendarFeedUrl"]
    await run_jobs(settings, now=start - timedelta(hours=47))
    sent = Reminder.filter(patient_id=alice.patient.id, kind="APPOINTMENT", status="SENT")
    assert await sent.count() == 1
    report = await run_jobs(settings, now=start - timedelta(hours=47))
    assert report["reminders_raised"] == 0
    assert await sent.count() == 1
    rules = await Reminder.filter(patient_id=alice.patient.id).exclude(kind="APPOINTMENT")
    assert {r.rule for r in rules} == {"DTP_BOOSTER", "CERVICAL_HPV"}  # a woman of 46
    feed = await client.get(url.replace("http://testserver", ""))
    assert feed.status_code == 200
    assert b"Cardiologie" not in feed.content and b"12 rue X" in feed.content
