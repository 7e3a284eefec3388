"""Which screening and vaccination reminders are due, and when appointment reminders fire.

Pure functions over plain records: no database, no clock, no I/O. The caller passes
`today` (see `paris_today`) and stores each `DueReminder` under its `key`, so a unique
constraint on (patient, key) raises every occurrence exactly once.

Decisions where the rules table of DOMAIN.md is silent:

- Records dated after `today` are ignored: they have not happened yet.
- Someone born on 29 February has their birthday on 28 February in common years
  (what `relativedelta` does; `age_on` and `_birthday` agree on it).
- "No record in the last N years" is over once the last record is exactly N years old:
  the rule is due again on its anniversary (`last + interval`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta

Sex = Literal["FEMALE", "MALE"]

PARIS = ZoneInfo("Europe/Paris")

SCREENING = "SCREENING"
VACCINATION = "VACCINATION"


@dataclass(frozen=True)
class VaccinationRecord:
    vaccine: str  # DTP, DTCAP, INFLUENZA, PNEUMOCOCCAL, ZOSTER, COVID19, HPV, MMR, ...
    date: date
    dose_number: int | None = None


@dataclass(frozen=True)
class ScreeningRecord:
    kind: str  # BREAST, COLORECTAL, CERVICAL_CYTOLOGY, CERVICAL_HPV
    date: date


@dataclass(frozen=True)
class DueReminder:
    rule: str
    kind: str
    title: str
    reason: str
    due_on: date
    key: str


def age_on(birth_date: date, day: date) -> int:
    """Whole years on `day`."""
    if day < birth_date:
        raise ValueError("day is before the birth date")
    return relativedelta(day, birth_date).years


def paris_today(now: datetime) -> date:
    """The calendar day in Europe/Paris at the aware instant `now`."""
    _require_aware(now, "now")
    return now.astimezone(PARIS).date()


def appointment_reminder_times(
    starts_at: datetime, booked_at: datetime, hours: Sequence[int] = (48, 2)
) -> list[tuple[int, datetime]]:
    """(offset, moment) for each offset whose moment is still after the booking.

    Offsets are absolute durations, computed in UTC: 48 h before a Monday 10:00 after the
    spring-forward change is Saturday 09:00 Paris time. Moments come back in the zone of
    `starts_at`, in the order of `hours`.
    """
    _require_aware(starts_at, "starts_at")
    _require_aware(booked_at, "booked_at")
    if any(offset < 0 for offset in hours):
        raise ValueError("reminder offsets must not be negative")
    start_utc = starts_at.astimezone(UTC)
    times = []
    for offset in hours:
        moment = start_utc - timedelta(hours=offset)
        if moment > booked_at:
            times.append((offset, moment.astimezone(starts_at.tzinfo)))
    return times


def due_reminders(
    *,
    birth_date: date,
    sex: Sex,
    vaccinations: Sequence[VaccinationRecord],
    screenings: Sequence[ScreeningRecord],
    today: date,
) -> list[DueReminder]:
    """The reminders due on `today`, in the order of the DOMAIN.md table."""
    person = _Person(birth_date, sex, today)
    past_doses = [v for v in vaccinations if v.date <= today]
    past_screenings = [s for s in screenings if s.date <= today]

    def last_screening(kind: str) -> date | None:
        return max((s.date for s in past_screenings if s.kind == kind), default=None)

    def doses(*vaccines: str) -> list[VaccinationRecord]:
        return sorted((v for v in past_doses if v.vaccine in vaccines), key=lambda v: v.date)

    candidates = [
        _breast(person, last_screening("BREAST")),
        _colorectal(person, last_screening("COLORECTAL")),
        _cervical_cytology(person, last_screening("CERVICAL_CYTOLOGY")),
        _cervical_hpv(person, last_screening("CERVICAL_HPV"), last_screening("CERVICAL_CYTOLOGY")),
        _dtp_booster(person, doses("DTP", "DTCAP")),
        _pertussis(person, doses("DTCAP")),
        _flu(person, doses("INFLUENZA")),
        _pneumococcal(person, doses("PNEUMOCOCCAL")),
        _zoster(person, doses("ZOSTER")),
    ]
    return [c for c in candidates if c is not None]


# --- helpers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Person:
    birth_date: date
    sex: Sex
    today: date

    @property
    def age(self) -> int:
        return age_on(self.birth_date, self.today)

    def birthday(self, years: int) -> date:
        return self.birth_date + relativedelta(years=years)

    def in_band(self, low: int, high: int | None = None) -> bool:
        return low <= self.age and (high is None or self.age <= high)


def _require_aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


def _fr(day: date) -> str:
    return day.strftime("%d/%m/%Y")


def _raise(
    person: _Person, rule: str, kind: str, title: str, reason: str, due_on: date
) -> DueReminder | None:
    # The key depends only on the rule and due_on, which depend only on the records, so it
    # is the same on every day until a new record moves due_on past today.
    if person.today < due_on:
        return None
    return DueReminder(rule, kind, title, reason, due_on, f"{rule}:{due_on.isoformat()}")


def _interval_screening(
    person: _Person,
    *,
    rule: str,
    title: str,
    label: str,
    band: tuple[int, int],
    years: int,
    last: date | None,
) -> DueReminder | None:
    low, high = band
    if not person.in_band(low, high):
        return None
    due_on = person.birthday(low)
    if last is None:
        reason = (
            f"Aucun {label} enregistré ; recommandé tous les {years} ans de {low} à {high} ans."
        )
    else:
        due_on = max(due_on, last + relativedelta(years=years))
        reason = f"Dernier {label} le {_fr(last)}, il y a {years} ans ou plus."
    return _raise(person, rule, SCREENING, title, reason, due_on)


def _breast(person: _Person, last: date | None) -> DueReminder | None:
    if person.sex != "FEMALE":
        return None
    return _interval_screening(
        person,
        rule="BREAST_SCREENING",
        title="Dépistage du cancer du sein",
        label="dépistage du cancer du sein",
        band=(50, 74),
        years=2,
        last=last,
    )


def _colorectal(person: _Person, last: date | None) -> DueReminder | None:
    return _interval_screening(
        person,
        rule="COLORECTAL_SCREENING",
        title="Dépistage du cancer colorectal",
        label="dépistage du cancer colorectal",
        band=(50, 74),
        years=2,
        last=last,
    )


def _cervical_cytology(person: _Person, last: date | None) -> DueReminder | None:
    # Only a cytology satisfies this rule; an HPV test done before 30 does not.
    if person.sex != "FEMALE":
        return None
    return _interval_screening(
        person,
        rule="CERVICAL_CYTOLOGY",
        title="Dépistage du cancer du col de l'utérus (examen cytologique)",
        label="examen cytologique du col de l'utérus",
        band=(25, 29),
        years=3,
        last=last,
    )


def _cervical_hpv(
    person: _Person, last_hpv: date | None, last_cytology: date | None
) -> DueReminder | None:
    # Once an HPV test is on record, only HPV tests count (every 5 years); the last
    # cytology decides only when the first HPV test is due.
    if person.sex != "FEMALE":
        return None
    if last_hpv is not None or last_cytology is None:
        return _interval_screening(
            person,
            rule="CERVICAL_HPV",
            title="Dépistage du cancer du col de l'utérus (test HPV)",
            label="test HPV",
            band=(30, 65),
            years=5,
            last=last_hpv,
        )
    if not person.in_band(30, 65):
        return None
    due_on = max(person.birthday(30), last_cytology + relativedelta(years=3))
    reason = (
        f"Aucun test HPV enregistré ; dernier examen cytologique le {_fr(last_cytology)}, "
        "le premier test HPV est recommandé 3 ans après."
    )
    return _raise(
        person,
        "CERVICAL_HPV",
        SCREENING,
        "Dépistage du cancer du col de l'utérus (test HPV)",
        reason,
        due_on,
    )


def _dtp_booster(person: _Person, doses: list[VaccinationRecord]) -> DueReminder | None:
    # Only the latest booster age reached is raised: a missed 45 booster is superseded by
    # the 65 one. A dose from a year before that birthday onwards (late ones included)
    # satisfies it.
    reached = [a for a in _booster_ages(person.age) if a <= person.age]
    if not reached:
        return None
    booster_age = reached[-1]
    due_on = person.birthday(booster_age)
    window_start = due_on - relativedelta(years=1)
    if any(d.date >= window_start for d in doses):
        return None
    previous = f"dernière dose le {_fr(doses[-1].date)}" if doses else "aucune dose enregistrée"
    reason = (
        f"Rappel des {booster_age} ans : aucune dose DTP ou dTcaP depuis le "
        f"{_fr(window_start)} ({previous})."
    )
    return _raise(
        person,
        "DTP_BOOSTER",
        VACCINATION,
        "Rappel diphtérie-tétanos-poliomyélite",
        reason,
        due_on,
    )


def _booster_ages(age: int) -> list[int]:
    return [25, 45, *range(65, max(age, 65) + 1, 10)]


def _pertussis(person: _Person, doses: list[VaccinationRecord]) -> DueReminder | None:
    # The whooping-cough dose belongs to the 25 booster: it stays raised while that booster
    # is the current one (25 to 44), and "the last 5 years" counts back from the 25th
    # birthday, not from today.
    if not person.in_band(25, 44):
        return None
    due_on = person.birthday(25)
    window_start = due_on - relativedelta(years=5)
    if any(d.date >= window_start for d in doses):
        return None
    previous = f"dernière dose le {_fr(doses[-1].date)}" if doses else "aucune dose enregistrée"
    reason = (
        f"Rappel des 25 ans avec coqueluche : aucune dose dTcaP depuis le "
        f"{_fr(window_start)} ({previous})."
    )
    return _raise(
        person, "PERTUSSIS_25", VACCINATION, "Vaccination contre la coqueluche", reason, due_on
    )


def _flu(person: _Person, doses: list[VaccinationRecord]) -> DueReminder | None:
    # Campaign Y runs 15 October Y to 31 January Y+1; a dose from 1 September Y counts.
    # Turning 65 during a campaign makes it due from that birthday, same campaign key.
    if not person.in_band(65):
        return None
    today = person.today
    if today >= date(today.year, 10, 15):
        campaign = today.year
    elif today <= date(today.year, 1, 31):
        campaign = today.year - 1
    else:
        return None
    counted_from = date(campaign, 9, 1)
    if any(d.date >= counted_from for d in doses):
        return None
    due_on = max(date(campaign, 10, 15), person.birthday(65))
    previous = f"dernière dose le {_fr(doses[-1].date)}" if doses else "aucune dose enregistrée"
    reason = (
        f"Campagne {campaign}-{campaign + 1} : aucune dose de vaccin contre la grippe "
        f"depuis le {_fr(counted_from)} ({previous})."
    )
    return DueReminder(
        "FLU", VACCINATION, "Vaccination contre la grippe", reason, due_on, f"FLU:{campaign}"
    )


def _pneumococcal(person: _Person, doses: list[VaccinationRecord]) -> DueReminder | None:
    # "Ever": a dose given before 65 satisfies it too.
    if not person.in_band(65) or doses:
        return None
    return _raise(
        person,
        "PNEUMOCOCCAL",
        VACCINATION,
        "Vaccination contre le pneumocoque",
        "Aucune dose de vaccin contre le pneumocoque enregistrée.",
        person.birthday(65),
    )


def _zoster(person: _Person, doses: list[VaccinationRecord]) -> DueReminder | None:
    # A dose's number is its dose_number, or its rank by date when unset. The series is
    # complete once the latest dose is a second one. Dose 2 is raised from 2 months to 6
    # months (inclusive) after dose 1; past that it is no longer raised, and since there is
    # a ZOSTER on record no dose 1 is raised either: restarting is the doctor's call.
    if not person.in_band(65):
        return None
    if not doses:
        return _raise(
            person,
            "ZOSTER_DOSE_1",
            VACCINATION,
            "Vaccination contre le zona (1re dose)",
            "Aucune dose de vaccin contre le zona enregistrée.",
            person.birthday(65),
        )
    latest = doses[-1]
    if (latest.dose_number or len(doses)) != 1:
        return None
    deadline = latest.date + relativedelta(months=6)
    if person.today > deadline:
        return None
    reason = (
        f"1re dose contre le zona le {_fr(latest.date)} ; la 2e dose est à faire au plus "
        f"tard le {_fr(deadline)}. Passé cette date, ce rappel n'est plus émis et un "
        "nouveau schéma (1re dose) serait nécessaire."
    )
    due_on = max(person.birthday(65), latest.date + relativedelta(months=2))
    return _raise(
        person,
        "ZOSTER_DOSE_2",
        VACCINATION,
        "Vaccination contre le zona (2e dose)",
        reason,
        due_on,
    )
