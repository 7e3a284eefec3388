from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime

import pytest

from models.patient import is_minor, minor_cutoff
from models.rules import (
    PARIS,
    DueReminder,
    ScreeningRecord,
    Sex,
    VaccinationRecord,
    age_on,
    appointment_reminder_times,
    due_reminders,
    paris_today,
)

D = date


def find(
    rule: str,
    *,
    birth: date,
    today: date,
    sex: Sex = "FEMALE",
    vaccinations: Sequence[VaccinationRecord] = (),
    screenings: Sequence[ScreeningRecord] = (),
) -> DueReminder | None:
    found = [
        r
        for r in due_reminders(
            birth_date=birth,
            sex=sex,
            vaccinations=vaccinations,
            screenings=screenings,
            today=today,
        )
        if r.rule == rule
    ]
    assert len(found) <= 1
    return found[0] if found else None


def due_on(
    rule: str,
    *,
    birth: date,
    today: date,
    sex: Sex = "FEMALE",
    vaccinations: Sequence[VaccinationRecord] = (),
    screenings: Sequence[ScreeningRecord] = (),
) -> date | None:
    reminder = find(
        rule,
        birth=birth,
        today=today,
        sex=sex,
        vaccinations=vaccinations,
        screenings=screenings,
    )
    return reminder.due_on if reminder else None


def vax(vaccine: str, day: date, dose_number: int | None = None) -> VaccinationRecord:
    return VaccinationRecord(vaccine=vaccine, date=day, dose_number=dose_number)


def scr(kind: str, day: date) -> ScreeningRecord:
    return ScreeningRecord(kind=kind, date=day)


# --- age_on, paris_today --------------------------------------------------------------


@pytest.mark.parametrize(
    ("birth", "day", "age"),
    [
        (D(2000, 3, 10), D(2025, 3, 9), 24),
        (D(2000, 3, 10), D(2025, 3, 10), 25),
        (D(2000, 2, 29), D(2024, 2, 28), 23),
        (D(2000, 2, 29), D(2024, 2, 29), 24),
        (D(2000, 2, 29), D(2025, 2, 27), 24),
        (D(2000, 2, 29), D(2025, 2, 28), 25),
        (D(2000, 2, 29), D(2025, 3, 1), 25),
        (D(2000, 3, 10), D(2000, 3, 10), 0),
    ],
)
def test_age_on(birth: date, day: date, age: int) -> None:
    assert age_on(birth, day) == age


def test_age_on_before_birth_is_an_error() -> None:
    with pytest.raises(ValueError, match="before the birth date"):
        age_on(D(2000, 3, 10), D(2000, 3, 9))


@pytest.mark.parametrize(
    ("now", "day"),
    [
        (datetime(2026, 6, 30, 21, 59, tzinfo=UTC), D(2026, 6, 30)),
        (datetime(2026, 6, 30, 22, 0, tzinfo=UTC), D(2026, 7, 1)),
        (datetime(2026, 12, 31, 22, 59, tzinfo=UTC), D(2026, 12, 31)),
        (datetime(2026, 12, 31, 23, 0, tzinfo=UTC), D(2027, 1, 1)),
    ],
)
def test_paris_today(now: datetime, day: date) -> None:
    assert paris_today(now) == day


def test_paris_today_rejects_naive() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        paris_today(datetime(2026, 6, 30, 12, 0))


# --- overview and key stability -------------------------------------------------------


def test_woman_of_66_without_records_gets_every_65_plus_rule() -> None:
    reminders = due_reminders(
        birth_date=D(1960, 5, 20),
        sex="FEMALE",
        vaccinations=[],
        screenings=[],
        today=D(2026, 11, 2),
    )

    assert [r.key for r in reminders] == [
        "BREAST_SCREENING:2010-05-20",
        "COLORECTAL_SCREENING:2010-05-20",
        "DTP_BOOSTER:2025-05-20",
        "FLU:2026",
        "PNEUMOCOCCAL:2025-05-20",
        "ZOSTER_DOSE_1:2025-05-20",
    ]
    assert [r.kind for r in reminders] == ["SCREENING"] * 2 + ["VACCINATION"] * 4


def test_same_inputs_give_the_same_reminders_on_later_days() -> None:
    def on(today: date) -> list[DueReminder]:
        return due_reminders(
            birth_date=D(1970, 3, 10),
            sex="FEMALE",
            vaccinations=[vax("DTP", D(2010, 1, 1)), vax("ZOSTER", D(2020, 1, 1))],
            screenings=[scr("BREAST", D(2023, 1, 10)), scr("CERVICAL_HPV", D(2019, 5, 5))],
            today=today,
        )

    first = on(D(2025, 2, 1))
    later = on(D(2026, 7, 1))

    assert [r.key for r in first] == [
        "BREAST_SCREENING:2025-01-10",
        "COLORECTAL_SCREENING:2020-03-10",
        "CERVICAL_HPV:2024-05-05",
        "DTP_BOOSTER:2015-03-10",
    ]
    assert later == first


def test_a_new_record_resolves_the_reminder() -> None:
    birth, today = D(1970, 3, 10), D(2026, 7, 1)

    assert due_on("BREAST_SCREENING", birth=birth, today=today) == D(2020, 3, 10)
    assert (
        due_on(
            "BREAST_SCREENING", birth=birth, today=today, screenings=[scr("BREAST", D(2026, 6, 30))]
        )
        is None
    )


def test_records_dated_after_today_are_ignored() -> None:
    assert due_on(
        "BREAST_SCREENING",
        birth=D(1970, 3, 10),
        today=D(2026, 7, 1),
        screenings=[scr("BREAST", D(2026, 7, 2))],
    ) == D(2020, 3, 10)


# --- screenings ----------------------------------------------------------------------


def test_breast_screening_without_record() -> None:
    assert find("BREAST_SCREENING", birth=D(1976, 3, 10), today=D(2026, 3, 10)) == DueReminder(
        rule="BREAST_SCREENING",
        kind="SCREENING",
        title="Dépistage du cancer du sein",
        reason="Aucun dépistage du cancer du sein enregistré ; "
        "recommandé tous les 2 ans de 50 à 74 ans.",
        due_on=D(2026, 3, 10),
        key="BREAST_SCREENING:2026-03-10",
    )


@pytest.mark.parametrize(
    ("rule", "birth", "today", "expected"),
    [
        ("BREAST_SCREENING", D(1976, 3, 10), D(2026, 3, 9), None),
        ("BREAST_SCREENING", D(1976, 3, 10), D(2026, 3, 10), D(2026, 3, 10)),
        ("BREAST_SCREENING", D(1976, 3, 10), D(2051, 3, 9), D(2026, 3, 10)),
        ("BREAST_SCREENING", D(1976, 3, 10), D(2051, 3, 10), None),
        ("BREAST_SCREENING", D(1976, 2, 29), D(2026, 2, 27), None),
        ("BREAST_SCREENING", D(1976, 2, 29), D(2026, 2, 28), D(2026, 2, 28)),
        ("COLORECTAL_SCREENING", D(1976, 3, 10), D(2026, 3, 9), None),
        ("COLORECTAL_SCREENING", D(1976, 3, 10), D(2026, 3, 10), D(2026, 3, 10)),
        ("COLORECTAL_SCREENING", D(1976, 3, 10), D(2051, 3, 9), D(2026, 3, 10)),
        ("COLORECTAL_SCREENING", D(1976, 3, 10), D(2051, 3, 10), None),
        ("CERVICAL_CYTOLOGY", D(2001, 3, 10), D(2026, 3, 9), None),
        ("CERVICAL_CYTOLOGY", D(2001, 3, 10), D(2026, 3, 10), D(2026, 3, 10)),
        ("CERVICAL_CYTOLOGY", D(2001, 3, 10), D(2031, 3, 9), D(2026, 3, 10)),
        ("CERVICAL_CYTOLOGY", D(2001, 3, 10), D(2031, 3, 10), None),
        ("CERVICAL_HPV", D(2001, 3, 10), D(2031, 3, 9), None),
        ("CERVICAL_HPV", D(2001, 3, 10), D(2031, 3, 10), D(2031, 3, 10)),
        ("CERVICAL_HPV", D(1960, 3, 10), D(2026, 3, 9), D(1990, 3, 10)),
        ("CERVICAL_HPV", D(1960, 3, 10), D(2026, 3, 10), None),
    ],
)
def test_screening_age_bands(rule: str, birth: date, today: date, expected: date | None) -> None:
    assert due_on(rule, birth=birth, today=today) == expected


@pytest.mark.parametrize(
    ("rule", "kind", "last", "today", "expected"),
    [
        ("BREAST_SCREENING", "BREAST", D(2024, 6, 1), D(2026, 5, 31), None),
        ("BREAST_SCREENING", "BREAST", D(2024, 6, 1), D(2026, 6, 1), D(2026, 6, 1)),
        ("BREAST_SCREENING", "BREAST", D(2024, 2, 29), D(2026, 2, 27), None),
        ("BREAST_SCREENING", "BREAST", D(2024, 2, 29), D(2026, 2, 28), D(2026, 2, 28)),
        ("BREAST_SCREENING", "COLORECTAL", D(2025, 6, 1), D(2026, 6, 1), D(2020, 1, 15)),
        ("COLORECTAL_SCREENING", "COLORECTAL", D(2024, 6, 1), D(2026, 5, 31), None),
        ("COLORECTAL_SCREENING", "COLORECTAL", D(2024, 6, 1), D(2026, 6, 1), D(2026, 6, 1)),
        ("CERVICAL_HPV", "CERVICAL_HPV", D(2021, 6, 1), D(2026, 5, 31), None),
        ("CERVICAL_HPV", "CERVICAL_HPV", D(2021, 6, 1), D(2026, 6, 1), D(2026, 6, 1)),
    ],
)
def test_screening_intervals(
    rule: str, kind: str, last: date, today: date, expected: date | None
) -> None:
    assert due_on(rule, birth=D(1970, 1, 15), today=today, screenings=[scr(kind, last)]) == expected


def test_screening_reason_names_the_last_record() -> None:
    reminder = find(
        "BREAST_SCREENING",
        birth=D(1970, 1, 15),
        today=D(2026, 6, 1),
        screenings=[scr("BREAST", D(2022, 1, 3)), scr("BREAST", D(2024, 6, 1))],
    )

    assert reminder is not None
    assert reminder.reason == (
        "Dernier dépistage du cancer du sein le 01/06/2024, il y a 2 ans ou plus."
    )
    assert reminder.key == "BREAST_SCREENING:2026-06-01"


def test_breast_screening_done_before_50_delays_the_first_reminder() -> None:
    birth, screenings = D(1976, 3, 10), [scr("BREAST", D(2025, 9, 1))]

    assert (
        due_on("BREAST_SCREENING", birth=birth, screenings=screenings, today=D(2026, 3, 10)) is None
    )
    assert due_on("BREAST_SCREENING", birth=birth, screenings=screenings, today=D(2027, 9, 1)) == D(
        2027, 9, 1
    )


@pytest.mark.parametrize(
    ("birth", "female_only"),
    [
        (D(1999, 1, 1), {"CERVICAL_CYTOLOGY"}),
        (D(1990, 1, 1), {"CERVICAL_HPV"}),
        (D(1970, 1, 1), {"BREAST_SCREENING", "CERVICAL_HPV"}),
        (D(1955, 1, 1), {"BREAST_SCREENING"}),
    ],
)
def test_men_never_get_breast_or_cervical_screening(birth: date, female_only: set[str]) -> None:
    def rules(sex: Sex) -> set[str]:
        reminders = due_reminders(
            birth_date=birth, sex=sex, vaccinations=[], screenings=[], today=D(2026, 6, 1)
        )
        return {r.rule for r in reminders}

    assert rules("FEMALE") - rules("MALE") == female_only
    assert rules("MALE") <= rules("FEMALE")


@pytest.mark.parametrize(
    ("last", "today", "expected"),
    [
        (D(2026, 5, 1), D(2029, 4, 30), None),
        (D(2026, 5, 1), D(2029, 5, 1), D(2029, 5, 1)),
    ],
)
def test_cervical_cytology_every_three_years(
    last: date, today: date, expected: date | None
) -> None:
    assert (
        due_on(
            "CERVICAL_CYTOLOGY",
            birth=D(2001, 3, 10),
            today=today,
            screenings=[scr("CERVICAL_CYTOLOGY", last)],
        )
        == expected
    )


def test_an_hpv_test_before_30_does_not_satisfy_cytology() -> None:
    assert due_on(
        "CERVICAL_CYTOLOGY",
        birth=D(2001, 3, 10),
        today=D(2027, 1, 1),
        screenings=[scr("CERVICAL_HPV", D(2026, 6, 1))],
    ) == D(2026, 3, 10)


@pytest.mark.parametrize(
    ("cytology", "today", "expected"),
    [
        # Last cytology at 28: the first HPV test is due three years later, at 31.
        (D(2029, 6, 1), D(2031, 3, 10), None),
        (D(2029, 6, 1), D(2032, 5, 31), None),
        (D(2029, 6, 1), D(2032, 6, 1), D(2032, 6, 1)),
        # Cytology at 25, three years later is before 30: due at 30.
        (D(2026, 4, 1), D(2031, 3, 10), D(2031, 3, 10)),
    ],
)
def test_first_hpv_test_follows_the_last_cytology(
    cytology: date, today: date, expected: date | None
) -> None:
    assert (
        due_on(
            "CERVICAL_HPV",
            birth=D(2001, 3, 10),
            today=today,
            screenings=[scr("CERVICAL_CYTOLOGY", cytology)],
        )
        == expected
    )


def test_first_hpv_test_reason_names_the_cytology() -> None:
    reminder = find(
        "CERVICAL_HPV",
        birth=D(2001, 3, 10),
        today=D(2032, 6, 1),
        screenings=[scr("CERVICAL_CYTOLOGY", D(2029, 6, 1))],
    )

    assert reminder == DueReminder(
        rule="CERVICAL_HPV",
        kind="SCREENING",
        title="Dépistage du cancer du col de l'utérus (test HPV)",
        reason="Aucun test HPV enregistré ; dernier examen cytologique le 01/06/2029, "
        "le premier test HPV est recommandé 3 ans après.",
        due_on=D(2032, 6, 1),
        key="CERVICAL_HPV:2032-06-01",
    )


def test_once_an_hpv_test_is_on_record_a_later_cytology_does_not_move_it() -> None:
    assert due_on(
        "CERVICAL_HPV",
        birth=D(2001, 3, 10),
        today=D(2037, 1, 1),
        screenings=[scr("CERVICAL_HPV", D(2032, 1, 1)), scr("CERVICAL_CYTOLOGY", D(2034, 1, 1))],
    ) == D(2037, 1, 1)


# --- diphtheria-tetanus-polio and whooping cough ---------------------------------------


@pytest.mark.parametrize(
    ("today", "key"),
    [
        (D(1965, 6, 14), None),
        (D(1965, 6, 15), "DTP_BOOSTER:1965-06-15"),
        (D(1985, 6, 14), "DTP_BOOSTER:1965-06-15"),
        (D(1985, 6, 15), "DTP_BOOSTER:1985-06-15"),
        (D(2005, 6, 14), "DTP_BOOSTER:1985-06-15"),
        (D(2005, 6, 15), "DTP_BOOSTER:2005-06-15"),
        (D(2015, 6, 14), "DTP_BOOSTER:2005-06-15"),
        (D(2015, 6, 15), "DTP_BOOSTER:2015-06-15"),
        (D(2025, 6, 15), "DTP_BOOSTER:2025-06-15"),
        (D(2036, 1, 1), "DTP_BOOSTER:2035-06-15"),
    ],
)
def test_dtp_booster_ages(today: date, key: str | None) -> None:
    reminder = find("DTP_BOOSTER", birth=D(1940, 6, 15), today=today, sex="MALE")

    assert (reminder.key if reminder else None) == key


@pytest.mark.parametrize(
    ("dose", "expected"),
    [
        (vax("DTP", D(2025, 5, 15)), D(2026, 6, 15)),  # 13 months before
        (vax("DTP", D(2025, 6, 14)), D(2026, 6, 15)),  # a year and a day before
        (vax("DTP", D(2025, 6, 15)), None),  # exactly a year before
        (vax("DTP", D(2025, 7, 15)), None),  # 11 months before
        (vax("DTCAP", D(2025, 7, 15)), None),
        (vax("INFLUENZA", D(2025, 7, 15)), D(2026, 6, 15)),
        (vax("DTP", D(2026, 7, 1)), None),  # late, after the birthday
    ],
)
def test_dtp_booster_at_45(dose: VaccinationRecord, expected: date | None) -> None:
    assert (
        due_on("DTP_BOOSTER", birth=D(1981, 6, 15), today=D(2026, 8, 1), vaccinations=[dose])
        == expected
    )


def test_dtp_booster_reason() -> None:
    reminder = find(
        "DTP_BOOSTER",
        birth=D(1981, 6, 15),
        today=D(2026, 6, 15),
        vaccinations=[vax("DTP", D(2006, 7, 1)), vax("DTCAP", D(2025, 5, 15))],
    )

    assert reminder == DueReminder(
        rule="DTP_BOOSTER",
        kind="VACCINATION",
        title="Rappel diphtérie-tétanos-poliomyélite",
        reason="Rappel des 45 ans : aucune dose DTP ou dTcaP depuis le 15/06/2025 "
        "(dernière dose le 15/05/2025).",
        due_on=D(2026, 6, 15),
        key="DTP_BOOSTER:2026-06-15",
    )


def test_missed_45_booster_is_superseded_at_65() -> None:
    birth, doses = D(1961, 6, 15), [vax("DTP", D(1986, 6, 1))]

    assert due_on("DTP_BOOSTER", birth=birth, vaccinations=doses, today=D(2026, 6, 14)) == D(
        2006, 6, 15
    )
    assert due_on("DTP_BOOSTER", birth=birth, vaccinations=doses, today=D(2026, 6, 15)) == D(
        2026, 6, 15
    )


def test_dtp_booster_for_a_29_february_birth() -> None:
    # The 45th birthday falls in a common year: 28 February.
    assert due_on("DTP_BOOSTER", birth=D(1980, 2, 29), today=D(2025, 2, 27)) == D(2005, 2, 28)
    assert due_on("DTP_BOOSTER", birth=D(1980, 2, 29), today=D(2025, 2, 28)) == D(2025, 2, 28)


@pytest.mark.parametrize(
    ("today", "doses", "expected"),
    [
        (D(2026, 6, 14), [], None),
        (D(2026, 6, 15), [], D(2026, 6, 15)),
        (D(2046, 6, 14), [], D(2026, 6, 15)),  # still the current booster at 44
        (D(2046, 6, 15), [], None),  # superseded by the 45 booster
        (D(2026, 6, 15), [vax("DTCAP", D(2021, 6, 14))], D(2026, 6, 15)),
        (D(2026, 6, 15), [vax("DTCAP", D(2021, 6, 15))], None),  # exactly 5 years before
        (D(2026, 6, 15), [vax("DTCAP", D(2023, 1, 1))], None),
        (D(2026, 6, 15), [vax("DTP", D(2026, 1, 1))], D(2026, 6, 15)),  # no pertussis part
        (D(2031, 1, 1), [vax("DTCAP", D(2022, 1, 1))], None),  # counted back from 25
        (D(2027, 1, 1), [vax("DTCAP", D(2026, 9, 1))], None),  # late dose
    ],
)
def test_pertussis_at_25(
    today: date, doses: list[VaccinationRecord], expected: date | None
) -> None:
    assert due_on("PERTUSSIS_25", birth=D(2001, 6, 15), today=today, vaccinations=doses) == expected


def test_a_dtp_dose_in_the_year_before_25_satisfies_the_booster_but_not_pertussis() -> None:
    reminders = due_reminders(
        birth_date=D(2001, 6, 15),
        sex="MALE",
        vaccinations=[vax("DTP", D(2026, 1, 1))],
        screenings=[],
        today=D(2026, 6, 15),
    )

    assert [r.key for r in reminders] == ["PERTUSSIS_25:2026-06-15"]
    assert reminders[0].reason == (
        "Rappel des 25 ans avec coqueluche : aucune dose dTcaP depuis le 15/06/2021 "
        "(aucune dose enregistrée)."
    )


# --- flu -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("today", "doses", "key"),
    [
        (D(2026, 10, 14), [], None),
        (D(2026, 10, 15), [], "FLU:2026"),
        (D(2026, 12, 31), [], "FLU:2026"),
        (D(2027, 1, 31), [], "FLU:2026"),
        (D(2027, 2, 1), [], None),
        (D(2026, 6, 1), [], None),
        (D(2026, 1, 31), [], "FLU:2025"),
        (D(2026, 11, 1), [vax("INFLUENZA", D(2026, 8, 31))], "FLU:2026"),
        (D(2026, 11, 1), [vax("INFLUENZA", D(2026, 9, 1))], None),
        (D(2027, 1, 15), [vax("INFLUENZA", D(2026, 9, 1))], None),
        (D(2027, 1, 15), [vax("INFLUENZA", D(2026, 8, 31))], "FLU:2026"),
        (D(2026, 10, 15), [vax("INFLUENZA", D(2025, 10, 20))], "FLU:2026"),
        (D(2026, 11, 1), [vax("DTP", D(2026, 10, 1))], "FLU:2026"),
    ],
)
def test_flu_campaign(today: date, doses: list[VaccinationRecord], key: str | None) -> None:
    reminder = find("FLU", birth=D(1955, 1, 1), today=today, vaccinations=doses)

    assert (reminder.key if reminder else None) == key


def test_flu_reminder() -> None:
    reminder = find(
        "FLU",
        birth=D(1955, 1, 1),
        today=D(2027, 1, 10),
        vaccinations=[vax("INFLUENZA", D(2025, 10, 20))],
    )

    assert reminder == DueReminder(
        rule="FLU",
        kind="VACCINATION",
        title="Vaccination contre la grippe",
        reason="Campagne 2026-2027 : aucune dose de vaccin contre la grippe depuis le "
        "01/09/2026 (dernière dose le 20/10/2025).",
        due_on=D(2026, 10, 15),
        key="FLU:2026",
    )


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (D(2026, 11, 30), None),
        (D(2026, 12, 1), D(2026, 12, 1)),
        (D(2027, 1, 31), D(2026, 12, 1)),
    ],
)
def test_flu_for_someone_turning_65_during_the_campaign(today: date, expected: date | None) -> None:
    assert due_on("FLU", birth=D(1961, 12, 1), today=today) == expected


# --- pneumococcus ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("birth", "today", "doses", "expected"),
    [
        (D(1961, 6, 15), D(2026, 6, 14), [], None),
        (D(1961, 6, 15), D(2026, 6, 15), [], D(2026, 6, 15)),
        (D(1961, 6, 15), D(2051, 6, 15), [], D(2026, 6, 15)),
        (D(1961, 6, 15), D(2026, 6, 15), [vax("PNEUMOCOCCAL", D(2021, 3, 1))], None),
        (D(1961, 6, 15), D(2040, 6, 15), [vax("PNEUMOCOCCAL", D(2027, 3, 1))], None),
        (D(1980, 2, 29), D(2045, 2, 27), [], None),
        (D(1980, 2, 29), D(2045, 2, 28), [], D(2045, 2, 28)),
    ],
)
def test_pneumococcus(
    birth: date, today: date, doses: list[VaccinationRecord], expected: date | None
) -> None:
    assert due_on("PNEUMOCOCCAL", birth=birth, today=today, vaccinations=doses) == expected


# --- shingles --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (D(2020, 12, 31), None),
        (D(2021, 1, 1), D(2021, 1, 1)),
        (D(2026, 3, 1), D(2021, 1, 1)),
    ],
)
def test_zoster_dose_1_from_65(today: date, expected: date | None) -> None:
    assert due_on("ZOSTER_DOSE_1", birth=D(1956, 1, 1), today=today) == expected


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (D(2026, 3, 15), None),
        (D(2026, 5, 14), None),
        (D(2026, 5, 15), D(2026, 5, 15)),
        (D(2026, 9, 15), D(2026, 5, 15)),  # six months after dose 1: last day
        (D(2026, 9, 16), None),  # past six months: no longer raised
    ],
)
def test_zoster_dose_2_window(today: date, expected: date | None) -> None:
    birth, doses = D(1955, 1, 1), [vax("ZOSTER", D(2026, 3, 15))]

    assert due_on("ZOSTER_DOSE_2", birth=birth, vaccinations=doses, today=today) == expected
    assert due_on("ZOSTER_DOSE_1", birth=birth, vaccinations=doses, today=today) is None


def test_zoster_dose_2_reason_states_the_deadline() -> None:
    reminder = find(
        "ZOSTER_DOSE_2",
        birth=D(1955, 1, 1),
        today=D(2026, 6, 1),
        vaccinations=[vax("ZOSTER", D(2026, 3, 15))],
    )

    assert reminder == DueReminder(
        rule="ZOSTER_DOSE_2",
        kind="VACCINATION",
        title="Vaccination contre le zona (2e dose)",
        reason="1re dose contre le zona le 15/03/2026 ; la 2e dose est à faire au plus tard "
        "le 15/09/2026. Passé cette date, ce rappel n'est plus émis et un nouveau schéma "
        "(1re dose) serait nécessaire.",
        due_on=D(2026, 5, 15),
        key="ZOSTER_DOSE_2:2026-05-15",
    )


@pytest.mark.parametrize(
    ("doses", "expected"),
    [
        ([vax("ZOSTER", D(2026, 3, 15)), vax("ZOSTER", D(2026, 5, 20))], None),
        ([vax("ZOSTER", D(2026, 3, 15), dose_number=2)], None),
        ([vax("ZOSTER", D(2026, 3, 15), dose_number=1)], D(2026, 5, 15)),
        # A restarted series: the latest dose 1 opens a new window.
        (
            [vax("ZOSTER", D(2024, 1, 1), 1), vax("ZOSTER", D(2026, 3, 15), 1)],
            D(2026, 5, 15),
        ),
    ],
)
def test_zoster_series(doses: list[VaccinationRecord], expected: date | None) -> None:
    assert (
        due_on("ZOSTER_DOSE_2", birth=D(1955, 1, 1), today=D(2026, 6, 1), vaccinations=doses)
        == expected
    )


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (D(2026, 6, 14), None),  # 64
        (D(2026, 6, 15), None),  # 65, but two months after dose 1 is 1 July
        (D(2026, 7, 1), D(2026, 7, 1)),
    ],
)
def test_zoster_dose_2_after_a_dose_1_given_at_64(today: date, expected: date | None) -> None:
    assert (
        due_on(
            "ZOSTER_DOSE_2",
            birth=D(1961, 6, 15),
            today=today,
            vaccinations=[vax("ZOSTER", D(2026, 5, 1))],
        )
        == expected
    )


# --- appointment reminders ---------------------------------------------------------------


def paris(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=PARIS)


def utc(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def in_utc(times: list[tuple[int, datetime]]) -> list[tuple[int, datetime]]:
    # Aware datetimes sharing a tzinfo compare by wall clock, so compare instants in UTC.
    return [(hours, moment.astimezone(UTC)) for hours, moment in times]


@pytest.mark.parametrize(
    ("starts_at", "expected"),
    [
        # An ordinary week: 48 h before is the same wall-clock time.
        (paris(2026, 6, 10, 10, 0), [(48, utc(2026, 6, 8, 8, 0)), (2, utc(2026, 6, 10, 6, 0))]),
        # Spring forward on Sunday 29 March 2026: 48 h before Monday 10:00 CEST is 09:00 CET.
        (
            paris(2026, 3, 30, 10, 0),
            [(48, utc(2026, 3, 28, 8, 0)), (2, utc(2026, 3, 30, 6, 0))],
        ),
        (
            paris(2026, 3, 29, 3, 30),
            [(48, utc(2026, 3, 27, 1, 30)), (2, utc(2026, 3, 28, 23, 30))],
        ),
        # Fall back on Sunday 25 October 2026: 48 h before Monday 10:00 CET is 11:00 CEST.
        (
            paris(2026, 10, 26, 10, 0),
            [(48, utc(2026, 10, 24, 9, 0)), (2, utc(2026, 10, 26, 7, 0))],
        ),
        (
            paris(2026, 10, 25, 3, 30),
            [(48, utc(2026, 10, 23, 2, 30)), (2, utc(2026, 10, 25, 0, 30))],
        ),
    ],
)
def test_appointment_reminder_times(
    starts_at: datetime, expected: list[tuple[int, datetime]]
) -> None:
    times = appointment_reminder_times(starts_at, booked_at=utc(2026, 1, 1, 0, 0))

    assert in_utc(times) == expected
    assert all(moment.tzinfo is PARIS for _, moment in times)


@pytest.mark.parametrize(
    ("starts_at", "wall_clock"),
    [
        (
            paris(2026, 3, 30, 10, 0),
            [(48, "2026-03-28 09:00+01:00"), (2, "2026-03-30 08:00+02:00")],
        ),
        (
            paris(2026, 3, 29, 3, 30),
            [(48, "2026-03-27 02:30+01:00"), (2, "2026-03-29 00:30+01:00")],
        ),
        (
            paris(2026, 10, 26, 10, 0),
            [(48, "2026-10-24 11:00+02:00"), (2, "2026-10-26 08:00+01:00")],
        ),
        (
            paris(2026, 10, 25, 3, 30),
            [(48, "2026-10-23 04:30+02:00"), (2, "2026-10-25 02:30+02:00")],
        ),
    ],
)
def test_appointment_reminder_wall_clock_across_dst(
    starts_at: datetime, wall_clock: list[tuple[int, str]]
) -> None:
    times = appointment_reminder_times(starts_at, booked_at=utc(2026, 1, 1, 0, 0))

    assert [(h, m.isoformat(sep=" ", timespec="minutes")) for h, m in times] == wall_clock


@pytest.mark.parametrize(
    ("booked_at", "expected"),
    [
        (paris(2026, 6, 8, 9, 59), [48, 2]),
        (paris(2026, 6, 8, 10, 0), [2]),  # booked at the 48 h moment: already passed
        (paris(2026, 6, 9, 12, 0), [2]),
        (utc(2026, 6, 10, 5, 59), [2]),
        (paris(2026, 6, 10, 8, 0), []),
        (paris(2026, 6, 10, 9, 30), []),
    ],
)
def test_reminders_already_passed_at_booking_are_dropped(
    booked_at: datetime, expected: list[int]
) -> None:
    times = appointment_reminder_times(paris(2026, 6, 10, 10, 0), booked_at)

    assert [hours for hours, _ in times] == expected


def test_appointment_reminder_custom_offsets() -> None:
    times = appointment_reminder_times(
        paris(2026, 6, 10, 10, 0), utc(2026, 6, 1, 0, 0), hours=(24, 0)
    )

    assert in_utc(times) == [(24, utc(2026, 6, 9, 8, 0)), (0, utc(2026, 6, 10, 8, 0))]


@pytest.mark.parametrize(
    ("starts_at", "booked_at", "hours", "message"),
    [
        (datetime(2026, 6, 10, 10, 0), utc(2026, 6, 1, 0, 0), (48, 2), "starts_at"),
        (paris(2026, 6, 10, 10, 0), datetime(2026, 6, 1, 0, 0), (48, 2), "booked_at"),
        (paris(2026, 6, 10, 10, 0), utc(2026, 6, 1, 0, 0), (-1,), "negative"),
    ],
)
def test_appointment_reminder_times_rejects_bad_input(
    starts_at: datetime, booked_at: datetime, hours: tuple[int, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        appointment_reminder_times(starts_at, booked_at, hours)


@pytest.mark.parametrize(
    "today",
    [date(2026, 2, 27), date(2026, 2, 28), date(2026, 3, 1), date(2028, 2, 28), date(2028, 2, 29)],
)
def test_the_minority_filter_agrees_with_is_minor_around_29_february(today: date) -> None:
    for birth in (date(2008, 2, 28), date(2008, 2, 29), date(2008, 3, 1), date(2010, 2, 28)):
        assert (birth > minor_cutoff(today)) is is_minor(birth, today), (birth, today)
    assert not is_minor(date(2008, 2, 29), date(2026, 2, 28))  # of age with relativedelta
