from __future__ import annotations

import pytest
from stdnum import luhn
from stdnum.fr import nir

from models.errors import Invalid as BadUserInput
from models.identifiers import (
    check_password,
    normalize_email,
    normalize_finess,
    normalize_nir,
    normalize_rpps,
)


def with_nir_key(first13: str) -> str:
    return first13 + nir.calc_check_digits(first13)


def error_of(exc_info: pytest.ExceptionInfo[BadUserInput]) -> tuple[str, object]:
    return exc_info.value.message, exc_info.value.field


# NIR


def test_nir_with_valid_key_is_returned_compact() -> None:
    valid = with_nir_key("1850575123456")

    assert normalize_nir(valid) == valid
    spaced = f"{valid[0]} {valid[1:3]}.{valid[3:5]}-{valid[5:7]} {valid[7:10]} {valid[10:13]} "
    assert normalize_nir(spaced + valid[13:]) == valid


def test_nir_key_is_97_minus_the_number_mod_97() -> None:
    first13 = "2951099126111"

    assert normalize_nir(first13 + f"{97 - int(first13) % 97:02d}") == "295109912611193"


@pytest.mark.parametrize("department", ["2A", "2B"])
def test_corsican_nir_keeps_its_letters(department: str) -> None:
    valid = with_nir_key(f"15307{department}073004")

    assert normalize_nir(valid.lower()) == valid
    assert valid[5:7] == department


def test_corsican_key_counts_2a_as_19_and_2b_as_18() -> None:
    assert normalize_nir("253072A07300443") == "253072A07300443"
    assert normalize_nir("253072B07300470") == "253072B07300470"
    with pytest.raises(BadUserInput):
        normalize_nir("253072B07300443")


@pytest.mark.parametrize(
    "raw",
    [
        "295109912611199",  # wrong key
        "29510991261119",  # too short
        "2951099126111930",  # too long
        "295102C12611193",  # only 2A/2B may be letters
        "29510991261119X",
        "",
    ],
)
def test_invalid_nir_is_refused_without_echoing_it(raw: str) -> None:
    with pytest.raises(BadUserInput) as exc_info:
        normalize_nir(raw, field="patient.nir")

    assert error_of(exc_info) == ("Invalid NIR.", "patient.nir")
    assert exc_info.value.__cause__ is None
    assert exc_info.value.__suppress_context__


def test_nir_error_defaults_to_field_nir() -> None:
    with pytest.raises(BadUserInput) as exc_info:
        normalize_nir("123")

    assert error_of(exc_info) == ("Invalid NIR.", "nir")


# RPPS


def test_rpps_is_eleven_digits() -> None:
    assert normalize_rpps(" 10003456789 ") == "10003456789"
    assert normalize_rpps("100 034 567 89") == "10003456789"


@pytest.mark.parametrize("raw", ["1000345678", "100034567890", "1000345678A", "", "١٠٠٠٣٤٥٦٧٨٩"])
def test_rpps_not_eleven_ascii_digits_is_refused(raw: str) -> None:
    with pytest.raises(BadUserInput) as exc_info:
        normalize_rpps(raw)

    assert error_of(exc_info) == ("Invalid RPPS number: 11 digits are expected.", "rpps")


# FINESS


def test_finess_with_valid_luhn_key() -> None:
    valid = "75000001" + luhn.calc_check_digit("75000001")

    assert normalize_finess(valid) == valid
    assert normalize_finess(f" {valid[:3]} {valid[3:]} ") == valid


def test_finess_with_wrong_key_is_refused() -> None:
    valid = "75000001" + luhn.calc_check_digit("75000001")
    wrong = valid[:8] + str((int(valid[8]) + 1) % 10)

    with pytest.raises(BadUserInput) as exc_info:
        normalize_finess(wrong, field="establishment.finess")

    assert error_of(exc_info) == (
        "Invalid FINESS number: wrong check digit.",
        "establishment.finess",
    )


@pytest.mark.parametrize("department", ["2A", "2B"])
def test_corsican_finess_skips_the_key(department: str) -> None:
    for key in "0123456789":
        assert normalize_finess(f"{department.lower()}000001{key}") == f"{department}000001{key}"


@pytest.mark.parametrize("raw", ["75000001", "7500000100", "2C0000010", "75A000010", ""])
def test_finess_with_bad_format_is_refused(raw: str) -> None:
    with pytest.raises(BadUserInput) as exc_info:
        normalize_finess(raw)

    assert error_of(exc_info) == ("Invalid FINESS number: 9 characters are expected.", "finess")


# E-mail


def test_email_is_trimmed_and_lower_cased() -> None:
    assert normalize_email("  Jean.Dupont+sante@Example.FR \n") == "jean.dupont+sante@example.fr"


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "jean",
        "jean@",
        "@example.fr",
        "jean@example",
        "jean@@example.fr",
        "je an@example.fr",
        "jean@exa mple.fr",
        ".jean@example.fr",
        "jean..dupont@example.fr",
        "jean@-example.fr",
        "jean@example..fr",
        "a" * 65 + "@example.fr",
        "jean@" + "a" * 250 + ".fr",
    ],
)
def test_malformed_email_is_refused(raw: str) -> None:
    with pytest.raises(BadUserInput) as exc_info:
        normalize_email(raw, field="input.email")

    assert error_of(exc_info) == ("Invalid e-mail address.", "input.email")


def test_email_of_254_characters_is_accepted() -> None:
    email = "a" * 64 + "@" + ".".join(["b" * 61, "b" * 61, "b" * 62]) + ".fr"

    assert len(email) == 254
    assert normalize_email(email) == email


# Password


def test_password_following_the_policy_is_accepted() -> None:
    check_password("correct horse battery", email="jean.dupont@example.fr", names=["Jean"])


def test_password_of_eleven_characters_is_refused() -> None:
    with pytest.raises(BadUserInput) as exc_info:
        check_password("abcdefghijk", email="x@example.fr", names=[])

    assert error_of(exc_info) == ("The password must be at least 12 characters long.", "password")


def test_password_of_twelve_characters_is_accepted() -> None:
    check_password("abcdefghijkl", email="x@example.fr", names=[])


def test_password_containing_the_email_local_part_is_refused() -> None:
    with pytest.raises(BadUserInput) as exc_info:
        check_password("My-JDUPONT75-secret", email="jdupont75@example.fr", names=[])

    assert error_of(exc_info) == ("The password must not contain your e-mail address.", "password")


def test_password_containing_a_piece_of_the_email_local_part_is_refused() -> None:
    with pytest.raises(BadUserInput) as exc_info:
        check_password("dupont-secret-2024", email="jean.dupont@example.fr", names=[])

    assert error_of(exc_info) == ("The password must not contain your e-mail address.", "password")


@pytest.mark.parametrize(
    "password", ["helene-secret-24", "HÉLÈNE-secret-24", "\uff28elene-secret-24"]
)
def test_password_containing_a_name_is_refused_ignoring_case_and_accents(password: str) -> None:
    with pytest.raises(BadUserInput) as exc_info:
        check_password(password, email="h.m@example.fr", names=["Hélène", "Martin"], field="pw")

    assert error_of(exc_info) == ("The password must not contain your name.", "pw")


def test_password_containing_part_of_a_compound_name_is_refused() -> None:
    with pytest.raises(BadUserInput):
        check_password("pierre-secret-2024", email="x@example.fr", names=["Jean-Pierre"])


def test_names_shorter_than_three_characters_are_ignored() -> None:
    check_password("lime-green-koala", email="li@example.fr", names=["Li", "Ng"])


def test_password_errors_never_echo_the_password() -> None:
    with pytest.raises(BadUserInput) as exc_info:
        check_password("martin-is-me-42", email="x@example.fr", names=["Martin"])

    assert "martin-is-me-42" not in exc_info.value.message
