"""The calendar URL lives no longer than the right to the agenda: it answers as an unknown
token once the space is closed, and once a former representative's minor comes of age."""

from __future__ import annotations

from datetime import timedelta

import httpx
from dateutil.relativedelta import relativedelta

from api.config import Settings
from api.jobs import run_jobs
from models.account import Account, Role
from models.base import paris_today, utcnow
from models.calendar_feed import CalendarFeed
from models.patient import Patient, Representation, SpaceStatus
from models.session import open_session
from tests.factories import PASSWORD, make_minor, make_patient
from tests.graphql import gql
from tests.lifecycle_support import CLOSE
from tests.test_calendar_feed import FEED_URL, ahead, book, events, fetch

UNKNOWN = "/calendar/nothing-like-a-token.ics"


async def assert_unknown(client: httpx.AsyncClient, url: str) -> None:
    """The answer of a token that never existed, byte for byte."""
    gone, unknown = await fetch(client, url), await client.get(UNKNOWN)
    assert gone.status_code == unknown.status_code == 404
    assert gone.headers["content-type"] == unknown.headers["content-type"]
    assert gone.content == unknown.content
    assert [e["extensions"]["code"] for e in gone.json()["errors"]] == ["NOT_FOUND"]


async def test_after_close_space_the_feed_answers_as_an_unknown_token(
    client: httpx.AsyncClient,
) -> None:
    # given a holder's feed that serves their appointment
    alice = await make_patient()
    await book(client, alice.token, ahead(3))
    url = (await gql(client, FEED_URL, {"id": alice.id}, token=alice.token)).ok()["patient"][
        "calendarFeedUrl"
    ]
    assert len(await events(client, url)) == 1

    # when the holder closes the space
    closed = await gql(client, CLOSE, {"input": {"password": PASSWORD}}, token=alice.token)

    # then the URL answers exactly as a token that never existed
    assert closed.ok()["closeSpace"]["patient"]["status"] == "CLOSED"
    await assert_unknown(client, url)


async def test_after_a_representative_closes_a_minors_space_its_feed_is_gone(
    client: httpx.AsyncClient,
) -> None:
    # given a minor's feed, held by their representative
    mother = await make_patient("Claire")
    child = await make_minor(mother)
    await book(client, mother.token, ahead(2), patientId=child.id)
    url = (await gql(client, FEED_URL, {"id": child.id}, token=mother.token)).ok()["patient"][
        "calendarFeedUrl"
    ]
    assert len(await events(client, url)) == 1

    # when the representative closes the minor's space
    closed = await gql(
        client,
        CLOSE,
        {"input": {"password": PASSWORD, "patientId": child.id}},
        token=mother.token,
    )

    # then the URL answers as an unknown token
    assert closed.ok()["closeSpace"]["patient"]["status"] == "CLOSED"
    await assert_unknown(client, url)


async def test_a_former_representative_loses_the_feed_at_the_minors_majority(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    # given a representative holding the feed of a minor of 17 and a half
    mother = await make_patient("Claire")
    child = await make_minor(mother, age=17)
    await Patient.filter(id=child.patient.id).update(
        birth_date=paris_today() - relativedelta(years=17, months=6)
    )
    await book(client, mother.token, ahead(2), patientId=child.id)
    url = (await gql(client, FEED_URL, {"id": child.id}, token=mother.token)).ok()["patient"][
        "calendarFeedUrl"
    ]
    assert len(await events(client, url)) == 1

    # when a year passes (the same history, a year earlier): the child is now 18 and a half
    year = relativedelta(years=1)
    row = await Patient.get(id=child.patient.id)
    await Patient.filter(id=row.id).update(birth_date=row.birth_date - year)
    feed = await CalendarFeed.get(patient_id=row.id)
    await CalendarFeed.filter(id=feed.id).update(created_at=feed.created_at - year)

    # then the former representative's URL is dead, even before the jobs end the link
    assert await Representation.exists(dependent_id=row.id)
    await assert_unknown(client, url)
    report = await run_jobs(settings)
    assert report["representations_ended"] == 1
    await assert_unknown(client, url)
    asked = await gql(client, FEED_URL, {"id": child.id}, token=mother.token)
    assert asked.codes == ["NOT_FOUND"]

    # and the new adult, once they have an account, gets a URL of their own that serves
    account = await Account.create(
        email="theo@example.org", password_hash="x", role=Role.PATIENT, patient_id=row.id
    )
    session = await open_session(account, ttl=timedelta(hours=1), now=utcnow())
    assert (await Patient.get(id=row.id)).status is SpaceStatus.ACTIVE
    own = (await gql(client, FEED_URL, {"id": child.id}, token=session.token)).ok()["patient"][
        "calendarFeedUrl"
    ]
    assert own != url
    assert len(await events(client, own)) == 1
    await assert_unknown(client, url)
