"""Validation and normalisation of the identifiers the API accepts (DOMAIN.md, "Identifiers").

Every function returns the canonical form to store, or raises `Invalid` naming the
input field. Messages never echo the value: a NIR must not end up in an error or a log.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from stdnum import luhn
from stdnum.exceptions import ValidationError
from stdnum.fr import nir

from models.errors import Invalid

MIN_PASSWORD_LENGTH = 12
# Shorter names ("Li", "Ng") would forbid too many ordinary passwords to be worth it.
MIN_FORBIDDEN_WORD_LENGTH = 3

_SEPARATORS = re.compile(r"[\s.\-]+")
_DIGITS_11 = re.compile(r"[0-9]{11}")
_FINESS = re.compile(r"(?:[0-9]{2}|2A|2B)[0-9]{7}")
# ASCII addresses only: dot-atom local part (RFC 5322 atext), host names of LDH labels.
_ATEXT = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_EMAIL = re.compile(rf"(?=[^@]{{1,64}}@){_ATEXT}(?:\.{_ATEXT})*@{_LABEL}(?:\.{_LABEL})+")
_WORD_SPLIT = re.compile(r"[^0-9a-z]+")


def _compact(raw: str) -> str:
    return _SEPARATORS.sub("", raw).upper()


def normalize_nir(raw: str, field: str = "nir") -> str:
    """The 15-character NIR, letters of Corsican departments (2A/2B) kept as given."""
    number = _compact(raw)
    try:
        # stdnum maps 2A/2B to 19/18 for the key only and returns the number unchanged.
        return nir.validate(number)
    except ValidationError:
        raise Invalid("Invalid NIR.", field=field) from None


def normalize_rpps(raw: str, field: str = "rpps") -> str:
    """11 digits; no checksum is published for the RPPS, so only the format is checked."""
    number = _compact(raw)
    if not _DIGITS_11.fullmatch(number):
        raise Invalid("Invalid RPPS number: 11 digits are expected.", field=field)
    return number


def normalize_finess(raw: str, field: str = "finess") -> str:
    """9 characters with a Luhn key over all nine; Corsican (2A/2B) numbers have no usable key.

    python-stdnum has no `fr.finess` module (checked with 2.2), hence `stdnum.luhn`.
    """
    number = _compact(raw)
    if not _FINESS.fullmatch(number):
        raise Invalid("Invalid FINESS number: 9 characters are expected.", field=field)
    if number[:2] not in ("2A", "2B") and not luhn.is_valid(number):
        raise Invalid("Invalid FINESS number: wrong check digit.", field=field)
    return number


def normalize_email(raw: str, field: str = "email") -> str:
    """Trimmed and lower-cased; a syntax check only (no DNS look-up)."""
    email = raw.strip().lower()
    if len(email) > 254 or not _EMAIL.fullmatch(email):
        raise Invalid("Invalid e-mail address.", field=field)
    return email


def _fold(text: str) -> str:
    """Case- and accent-insensitive form: "Hélène" and "HELENE" compare equal."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _forbidden_words(value: str) -> set[str]:
    """The value and each of its parts ("Jean-Pierre" -> jean-pierre, jean, pierre)."""
    folded = _fold(value).strip()
    words = {folded, *_WORD_SPLIT.split(folded)}
    return {w for w in words if len(w) >= MIN_FORBIDDEN_WORD_LENGTH}


def check_password(
    password: str, *, email: str, names: Sequence[str], field: str = "password"
) -> None:
    """The password policy: 12+ characters, neither the e-mail's local part nor a name.

    Compound names and local parts ("jean.dupont") are also checked piece by piece, so
    that "Dupont2024!!" is refused for jean.dupont@example.org.
    """
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Invalid(
            f"The password must be at least {MIN_PASSWORD_LENGTH} characters long.", field=field
        )
    folded = _fold(password)
    local_part = email.strip().rpartition("@")[0] or email.strip()
    if any(word in folded for word in _forbidden_words(local_part)):
        raise Invalid("The password must not contain your e-mail address.", field=field)
    if any(word in folded for name in names for word in _forbidden_words(name)):
        raise Invalid("The password must not contain your name.", field=field)
