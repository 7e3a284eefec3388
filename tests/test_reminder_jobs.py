"""The reminder jobs: the rules table of DOMAIN.md wired through `run_jobs`, raised exactly
once (twice in a row, or two runs at once), caught up after downtime, and appointment
reminders at the right absolute instants across the 2026 daylight-saving changes.

The boundaries of each rule (49/50, 74/75, just before/after an interval) are in
tests/test_rules.py; here each rule fires once from rows in the database."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest
from dateutil.relativedelta import relativedelta

from api.config import Settings
from api.jobs import run_jobs
from models.appointment import (
    Appointment,
    AppointmentSource,
    AppointmentStatus,
    Slot,
    create_appointment,
)
from models.base import PARIS
from models.patient import Patient, Sex
from models.record import Screening, ScreeningKind, Vaccination, VaccineCode
from models.reminder import (
    Reminder,
    ReminderKind,
    ReminderStatus,
    compute_rule_reminders,
    raise_due,
)
from subscriptions.broadcast import EventBus
from tests.factories import make_minor, make_patient
from tests.graphql import gql

NOW = datetime(2026, 11, 16, 9, 0, tzinfo=PARIS)  # a Monday, in the 2026 flu campaign
HOURS = (48, 2)


class RecordingBus(EventBus):
    """Records what the jobs publish instead of sending it anywhere."""

    def __init__(self) -> None:
        super().__init__("memory://")
        self.events: list[tuple[str, dict[str, Any]]] = []

    async def publish_many(self, channels: Sequence[str], event: dict[str, Any]) -> bool:
        self.events.extend((channel, event) for channel in channels)
        return True

    def reminder_ids(self) -> list[str]:
        return [event["reminder"] for _, event in self.events if event["type"] == "reminder"]


async def young_adult() -> Patient:
    """Someone no screening or vaccination rule applies to: only appointments remind them."""
    return (await make_patient(birth_date=date(2004, 1, 1))).patient


def paris_midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=PARIS)


async def vaccinate(
    patient: Patient, vaccine: VaccineCode, day: date, dose: int | None = None
) -> None:
    await Vaccination.create(patient_id=patient.id, vaccine=vaccine, date=day, dose_number=dose)


async def screen(patient: Patient, kind: ScreeningKind, day: date) -> None:
    await Screening.create(patient_id=patient.id, kind=kind, date=day)


# --- the rules table, one case each ------------------------------------------------------

V, S = VaccineCode, ScreeningKind
# Records that satisfy every rule but the one a case is about, for a person of 71 (born
# 1 March 1955): the 65 booster, colorectal screening, pneumococcus, both shingles doses, and
# this campaign's flu dose.
SENIOR_COVERED: list[tuple[Any, date, int | None]] = [
    (V.DTP, date(2019, 6, 1), None),
    (S.COLORECTAL, date(2025, 5, 1), None),
    (V.PNEUMOCOCCAL, date(2020, 1, 1), None),
    (V.ZOSTER, date(2021, 1, 1), 1),
    (V.ZOSTER, date(2021, 4, 1), 2),
    (V.INFLUENZA, date(2026, 10, 1), None),
]


def senior_without(
    *dropped: Any, extra: tuple[tuple[Any, date, int | None], ...] = ()
) -> list[tuple[Any, date, int | None]]:
    return [r for r in SENIOR_COVERED if r[0] not in dropped] + list(extra)


@dataclass(frozen=True)
class Case:
    rule: str
    kind: ReminderKind
    sex: Sex
    birth: date
    records: list[tuple[Any, date, int | None]]
    due_on: date
    reason: tuple[str, ...]  # what the reason must mention: the record, or its absence


CASES = [
    Case(
        "BREAST_SCREENING",
        ReminderKind.SCREENING,
        Sex.FEMALE,
        date(1970, 5, 10),
        [
            (S.BREAST, date(2024, 3, 1), None),
            (S.COLORECTAL, date(2025, 6, 1), None),
            (S.CERVICAL_HPV, date(2024, 1, 1), None),
            (V.DTP, date(2015, 1, 1), None),
        ],
        date(2026, 3, 1),
        ("Dernier dépistage du cancer du sein le 01/03/2024",),
    ),
    Case(
        "COLORECTAL_SCREENING",
        ReminderKind.SCREENING,
        Sex.MALE,
        date(1970, 1, 20),
        [(V.DTP, date(2016, 1, 1), None)],
        date(2020, 1, 20),
        ("Aucun dépistage du cancer colorectal enregistré",),
    ),
    Case(
        "CERVICAL_CYTOLOGY",
        ReminderKind.SCREENING,
        Sex.FEMALE,
        date(1999, 3, 1),
        [(S.CERVICAL_CYTOLOGY, date(2023, 1, 10), None), (V.DTCAP, date(2024, 2, 1), None)],
        date(2026, 1, 10),
        ("examen cytologique", "10/01/2023"),
    ),
    Case(
        "CERVICAL_HPV",
        ReminderKind.SCREENING,
        Sex.FEMALE,
        date(1990, 6, 1),
        [(S.CERVICAL_CYTOLOGY, date(2022, 4, 1), None), (V.DTCAP, date(2015, 1, 1), None)],
        date(2025, 4, 1),  # 3 years after the last cytology, she being over 30
        ("Aucun test HPV", "dernier examen cytologique le 01/04/2022"),
    ),
    Case(
        "DTP_BOOSTER",
        ReminderKind.VACCINATION,
        Sex.MALE,
        date(1981, 2, 1),
        [(V.DTP, date(2006, 1, 1), None)],
        date(2026, 2, 1),
        ("Rappel des 45 ans", "dernière dose le 01/01/2006"),
    ),
    Case(
        "PERTUSSIS_25",
        ReminderKind.VACCINATION,
        Sex.MALE,
        date(2000, 9, 1),
        [(V.DTP, date(2025, 8, 1), None)],  # the 25 booster, without the pertussis valence
        date(2025, 9, 1),
        ("aucune dose dTcaP depuis le 01/09/2020",),
    ),
    Case(
        "FLU",
        ReminderKind.VACCINATION,
        Sex.MALE,
        date(1955, 3, 1),
        senior_without(V.INFLUENZA, extra=((V.INFLUENZA, date(2025, 10, 20), None),)),
        date(2026, 10, 15),
        ("Campagne 2026-2027", "dernière dose le 20/10/2025"),
    ),
    Case(
        "PNEUMOCOCCAL",
        ReminderKind.VACCINATION,
        Sex.MALE,
        date(1955, 3, 1),
        senior_without(V.PNEUMOCOCCAL),
        date(2020, 3, 1),
        ("Aucune dose de vaccin contre le pneumocoque",),
    ),
    Case(
        "ZOSTER_DOSE_1",
        ReminderKind.VACCINATION,
        Sex.MALE,
        date(1955, 3, 1),
        senior_without(V.ZOSTER),
        date(2020, 3, 1),
        ("Aucune dose de vaccin contre le zona",),
    ),
    Case(
        "ZOSTER_DOSE_2",
        ReminderKind.VACCINATION,
        Sex.MALE,
        date(1955, 3, 1),
        senior_without(V.ZOSTER, extra=((V.ZOSTER, date(2026, 8, 1), 1),)),
        date(2026, 10, 1),  # two months after dose 1
        ("1re dose contre le zona le 01/08/2026", "au plus tard le 01/02/2027"),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.rule for c in CASES])
async def test_each_rule_is_raised_by_the_jobs_from_the_record(
    client: httpx.AsyncClient, settings: Settings, case: Case
) -> None:
    # given one person whose record leaves exactly this rule due
    person = await make_patient(birth_date=case.birth, sex=case.sex)
    for code, day, dose in case.records:
        if isinstance(code, ScreeningKind):
            await screen(person.patient, code, day)
        else:
            await vaccinate(person.patient, code, day, dose)

    # when the jobs run
    report = await run_jobs(settings, now=NOW)

    # then exactly that reminder exists, raised, due on Paris midnight of its first day
    rows = await Reminder.filter(patient_id=person.patient.id)
    assert [(r.rule, r.kind, r.status) for r in rows] == [
        (case.rule, case.kind, ReminderStatus.SENT)
    ]
    row = rows[0]
    assert row.due_at == paris_midnight(case.due_on)
    assert row.due_at.astimezone(PARIS).time() == time.min
    assert row.sent_at == NOW
    for fragment in case.reason:
        assert fragment in row.reason, row.reason
    assert report["rule_reminders_created"] == 1
    assert report["reminders_raised"] == 1


async def test_no_rule_applies_to_a_young_adult_nor_to_a_minor(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    adult = await make_patient(birth_date=date(2004, 1, 1))
    await make_minor(adult)
    report = await run_jobs(settings, now=NOW)
    assert await Reminder.all().count() == 0
    assert report["rule_reminders_created"] == 0


async def test_a_space_not_active_gets_no_rule_reminder(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    from models.patient import SpaceStatus

    await make_patient(birth_date=date(1955, 3, 1), status=SpaceStatus.CLOSED)
    await make_patient(birth_date=date(1955, 3, 1), status=SpaceStatus.PENDING, email=None)
    await run_jobs(settings, now=NOW)
    assert await Reminder.all().count() == 0


VACCINATE = """
mutation($input: RecordVaccinationInput!) {
  recordVaccination(input: $input) { vaccination { id } }
}"""
REMINDERS = """
query($status: ReminderStatus) { viewer { ... on Patient {
  reminders(first: 20, status: $status) {
    totalCount edges { node { rule kind dueAt status reason } }
  }
} } }"""


async def test_a_new_record_makes_the_next_run_reconsider_the_same_day(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    # given a man of 70 today whose record covers everything but shingles
    now = datetime.now(UTC)
    today = now.astimezone(PARIS).date()
    man = await make_patient(birth_date=today.replace(year=today.year - 70), sex=Sex.MALE)
    for code, _, dose in senior_without(V.ZOSTER, V.INFLUENZA):
        day = today - timedelta(days=30)
        if isinstance(code, ScreeningKind):
            await screen(man.patient, code, day)
        else:
            await vaccinate(man.patient, code, day, dose)
    await vaccinate(man.patient, V.INFLUENZA, today)
    first = await run_jobs(settings, now=now)
    rows = await Reminder.filter(patient_id=man.patient.id)
    assert [r.rule for r in rows] == ["ZOSTER_DOSE_1"]
    assert first["rule_reminders_created"] == 1

    # a run later the same day does not look at this space again
    again = await run_jobs(settings, now=now + timedelta(minutes=1))
    assert again["rule_reminders_created"] == 0

    # when the holder records a first shingles dose given ten weeks ago
    given = today - timedelta(weeks=10)
    result = await gql(
        client,
        VACCINATE,
        {"input": {"vaccine": "ZOSTER", "date": given.isoformat(), "doseNumber": 1}},
        token=man.token,
    )
    result.ok()
    patient = await Patient.get(id=man.patient.id)
    assert patient.rules_checked_on is None

    # then the next run, the same day, raises the second dose and nothing else
    later = await run_jobs(settings, now=now + timedelta(minutes=2))
    assert later["rule_reminders_created"] == 1
    assert later["reminders_raised"] == 1
    listed = await gql(client, REMINDERS, {"status": "SENT"}, token=man.token)
    nodes = [e["node"] for e in listed.ok()["viewer"]["reminders"]["edges"]]
    assert sorted(n["rule"] for n in nodes) == ["ZOSTER_DOSE_1", "ZOSTER_DOSE_2"]
    dose_2 = next(n for n in nodes if n["rule"] == "ZOSTER_DOSE_2")
    assert dose_2["kind"] == "VACCINATION" and dose_2["status"] == "SENT"
    assert f"{given:%d/%m/%Y}" in dose_2["reason"]
    # dueAt answers in UTC, at Paris midnight of the day it became due
    due_at = datetime.fromisoformat(dose_2["dueAt"])
    assert due_at.utcoffset() == timedelta(0)
    assert due_at == paris_midnight(given + relativedelta(months=2))


# --- exactly once ------------------------------------------------------------------------


async def _busy_day() -> tuple[list[UUID], list[UUID]]:
    """Ten people with rules due and ten appointments whose 2 h reminder is due at NOW."""
    people, appointments = [], []
    for n in range(10):
        person = await make_patient(f"P{n}", birth_date=date(1955, 3, 1), sex=Sex.MALE)
        people.append(person.patient.id)
        start = NOW + timedelta(hours=1, minutes=n)
        row = await create_appointment(
            person.patient.id,
            Slot(start, start + timedelta(minutes=30), "Consultation", None),
            professional_id=None,
            source=AppointmentSource.PATIENT,
            hours=HOURS,
            now=NOW - timedelta(days=1),
        )
        appointments.append(row.id)
    return people, appointments


async def test_running_the_jobs_twice_raises_each_reminder_once(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    people, _ = await _busy_day()
    bus = RecordingBus()

    first = await run_jobs(settings, now=NOW, bus=bus)
    second = await run_jobs(settings, now=NOW, bus=bus)

    # per man of 71 with no record: DTP 65 booster, colorectal, flu, pneumococcus, shingles
    per_person = {"DTP_BOOSTER", "COLORECTAL_SCREENING", "FLU", "PNEUMOCOCCAL", "ZOSTER_DOSE_1"}
    rows = await Reminder.all()
    assert len(rows) == 10 * (len(per_person) + 1)
    for pk in people:
        mine = [r for r in rows if r.patient_id == pk]
        assert sorted(r.rule for r in mine) == sorted([*per_person, "APPOINTMENT_2H"])
        assert {r.status for r in mine} == {ReminderStatus.SENT}
    assert first["rule_reminders_created"] == 50
    assert first["reminders_raised"] == 60
    assert second["rule_reminders_created"] == 0
    assert second["reminders_raised"] == 0
    published = bus.reminder_ids()
    assert len(published) == 60
    assert sorted(published) == sorted(str(r.id) for r in rows)


async def test_two_runs_at_once_raise_each_reminder_once(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    # (against PostgreSQL too when TEST_DATABASE_URL is set: the runs then use two connections)
    await _busy_day()
    bus = RecordingBus()

    reports = await asyncio.gather(
        run_jobs(settings, now=NOW, bus=bus), run_jobs(settings, now=NOW, bus=bus)
    )

    rows = await Reminder.all()
    assert len(rows) == 60
    assert {r.status for r in rows} == {ReminderStatus.SENT}
    assert len({(r.patient_id, r.key) for r in rows}) == 60
    assert sum(r["reminders_raised"] for r in reports) == 60
    assert all(r[name] >= 0 for r in reports for name in r), reports  # no job failed
    published = bus.reminder_ids()
    assert sorted(published) == sorted(str(r.id) for r in rows)  # each alert pushed once


# --- catch-up after downtime -------------------------------------------------------------


async def _book(patient: Patient, start: datetime, booked_at: datetime) -> Appointment:
    return await create_appointment(
        patient.id,
        Slot(start, start + timedelta(minutes=30), "Consultation", "Cabinet"),
        professional_id=None,
        source=AppointmentSource.PATIENT,
        hours=HOURS,
        now=booked_at,
    )


async def _states(appointment: Appointment) -> dict[str, ReminderStatus]:
    rows = await Reminder.filter(appointment_id=appointment.id)
    return {r.rule: r.status for r in rows}


async def test_a_reminder_missed_during_downtime_is_raised_if_the_appointment_is_ahead(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    patient = await young_adult()
    start = NOW + timedelta(days=3)
    appointment = await _book(patient, start, NOW)

    # nothing ran from the 48 h moment until 47 h before
    report = await run_jobs(settings, now=start - timedelta(hours=47))
    assert report["reminders_raised"] == 1
    assert await _states(appointment) == {
        "APPOINTMENT_48H": ReminderStatus.SENT,
        "APPOINTMENT_2H": ReminderStatus.PENDING,
    }
    sent = await Reminder.get(appointment_id=appointment.id, rule="APPOINTMENT_48H")
    assert sent.sent_at == start - timedelta(hours=47)


async def test_a_reminder_missed_until_the_appointment_started_is_dismissed(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    patient = await young_adult()
    start = NOW + timedelta(days=3)
    appointment = await _book(patient, start, NOW)
    await run_jobs(settings, now=start - timedelta(hours=47))

    # nothing ran from 2 h before until after it started (it has not ended yet)
    bus = RecordingBus()
    report = await run_jobs(settings, now=start + timedelta(minutes=10), bus=bus)

    assert report["reminders_raised"] == 0
    assert bus.events == []
    assert await _states(appointment) == {
        "APPOINTMENT_48H": ReminderStatus.SENT,
        "APPOINTMENT_2H": ReminderStatus.DISMISSED,
    }
    row = await Appointment.get(id=appointment.id)
    assert row.status is AppointmentStatus.SCHEDULED
    await run_jobs(settings, now=start + timedelta(minutes=31))
    row = await Appointment.get(id=appointment.id)
    assert row.status is AppointmentStatus.DONE


async def test_a_reminder_whose_moment_passed_at_booking_is_never_created(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    patient = await young_adult()
    start = NOW + timedelta(hours=24)
    appointment = await _book(patient, start, NOW)
    assert await _states(appointment) == {"APPOINTMENT_2H": ReminderStatus.PENDING}

    exactly_48h = await _book(patient, NOW + timedelta(hours=48), NOW)
    assert await _states(exactly_48h) == {"APPOINTMENT_2H": ReminderStatus.PENDING}

    await run_jobs(settings, now=NOW)
    await run_jobs(settings, now=start - timedelta(hours=2))
    assert await _states(appointment) == {"APPOINTMENT_2H": ReminderStatus.SENT}


# --- daylight-saving time ------------------------------------------------------------------


def paris(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=PARIS)


DST_CASES = [
    # spring forward, Sunday 29 March 2026 02:00 -> 03:00
    pytest.param(
        paris(2026, 3, 30, 10, 0),
        {"APPOINTMENT_48H": paris(2026, 3, 28, 9, 0), "APPOINTMENT_2H": paris(2026, 3, 30, 8, 0)},
        id="monday-after-spring-forward",
    ),
    pytest.param(
        paris(2026, 3, 29, 4, 0),
        {"APPOINTMENT_48H": paris(2026, 3, 27, 3, 0), "APPOINTMENT_2H": paris(2026, 3, 29, 1, 0)},
        id="early-on-spring-forward-sunday",
    ),
    # fall back, Sunday 25 October 2026 03:00 -> 02:00
    pytest.param(
        paris(2026, 10, 26, 10, 0),
        {
            "APPOINTMENT_48H": paris(2026, 10, 24, 11, 0),
            "APPOINTMENT_2H": paris(2026, 10, 26, 8, 0),
        },
        id="monday-after-fall-back",
    ),
    pytest.param(
        paris(2026, 10, 25, 4, 0),
        {
            "APPOINTMENT_48H": paris(2026, 10, 23, 5, 0),
            # 2 h before 04:00 CET is 01:00 UTC: the second 02:00, the very instant of the change
            "APPOINTMENT_2H": datetime(2026, 10, 25, 1, 0, tzinfo=UTC),
        },
        id="early-on-fall-back-sunday",
    ),
]


@pytest.mark.parametrize(("start", "expected"), DST_CASES)
async def test_appointment_reminders_fire_at_the_right_instants_across_dst(
    client: httpx.AsyncClient, settings: Settings, start: datetime, expected: dict[str, datetime]
) -> None:
    patient = await young_adult()
    booked_at = start - timedelta(days=7)
    appointment = await _book(patient, start, booked_at)
    for rule, moment in expected.items():
        hours = int(rule.removeprefix("APPOINTMENT_").removesuffix("H"))
        # (aware datetimes of one zone subtract as wall clocks: compare in UTC)
        assert start.astimezone(UTC) - moment.astimezone(UTC) == timedelta(hours=hours)

    rows = {r.rule: r for r in await Reminder.filter(appointment_id=appointment.id)}
    assert {rule: row.due_at for rule, row in rows.items()} == expected

    for rule, moment in sorted(expected.items(), key=lambda item: item[1]):
        # a second before its moment nothing is raised; at its moment, this one
        before = await run_jobs(settings, now=moment - timedelta(seconds=1))
        assert before["reminders_raised"] == 0, rule
        at = await run_jobs(settings, now=moment)
        assert at["reminders_raised"] == 1, rule
        row = await Reminder.get(id=rows[rule].id)
        assert row.status is ReminderStatus.SENT and row.sent_at == moment


# --- batches -------------------------------------------------------------------------------


async def test_a_full_batch_of_stale_reminders_does_not_hide_the_due_ones_behind_it(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    # given two appointments that started while nothing ran, then one still ahead
    patient = await young_adult()
    stale = [await _book(patient, NOW + timedelta(hours=3, minutes=n), NOW) for n in range(2)]
    ahead = await _book(patient, NOW + timedelta(hours=5), NOW)
    now = NOW + timedelta(hours=4)

    # when reminders are raised two at a time
    raised = await raise_due(now, limit=2)

    # then the stale ones are dismissed and the live one is raised in the same call
    assert [r.appointment_id for r in raised] == [ahead.id]
    for appointment in stale:
        assert await _states(appointment) == {"APPOINTMENT_2H": ReminderStatus.DISMISSED}


async def test_one_run_checks_the_rules_of_every_space_however_many(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    people = [await make_patient(birth_date=date(1955, 3, 1), sex=Sex.MALE) for _ in range(5)]

    created = await compute_rule_reminders(NOW, batch=2)

    assert created == 5 * 5
    for person in people:
        assert await Reminder.filter(patient_id=person.patient.id).count() == 5
