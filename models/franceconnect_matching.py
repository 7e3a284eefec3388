"""Who a FranceConnect identity is (DOMAIN.md, "FranceConnect"): the claims the provider
vouches for, compared with the enrolled people, and why a login ends without anyone.

Exactly one person must match: same birth date and sex (filtered in SQL), same family name
and first given name (compared folded), and a NIR whose characters 6 to 10 agree with the
birth place (decrypted for the name matches only)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from stdnum.fr import nir as stdnum_nir

from models.crypto import Vault
from models.lifecycle import nir_key
from models.patient import Patient, Sex, SpaceStatus, reveal_nir

FRANCE = "99100"  # the INSEE code FranceConnect gives as `birthcountry` for France


class Refusal(StrEnum):
    """Why a FranceConnect login logged nobody in (API.md: the `?error=` of the redirect)."""

    IDENTITY_NOT_FOUND = "IDENTITY_NOT_FOUND"
    IDENTITY_AMBIGUOUS = "IDENTITY_AMBIGUOUS"
    SPACE_UNAVAILABLE = "SPACE_UNAVAILABLE"
    PROVIDER_ERROR = "PROVIDER_ERROR"


class LoginRefused(Exception):
    """A login that ends here; `detail` is for the log (never personal data)."""

    def __init__(self, reason: Refusal, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else str(reason))
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ProvenIdentity:
    """The claims FranceConnect vouches for (its "identité pivot"), and the e-mail it gives."""

    given_name: str
    family_name: str
    birthdate: str
    gender: str
    birthplace: str
    birthcountry: str
    email: str | None = None

    @classmethod
    def from_claims(cls, claims: Mapping[str, object]) -> ProvenIdentity:
        values: dict[str, str] = {}
        for name in ("given_name", "family_name", "birthdate", "gender", "birthcountry"):
            value = claims.get(name)
            if not isinstance(value, str) or not value.strip():
                raise LoginRefused(Refusal.PROVIDER_ERROR, f"claim {name} missing")
            values[name] = value.strip()
        birthplace = claims.get("birthplace") or ""  # empty for people born abroad
        email = claims.get("email")
        if not isinstance(birthplace, str):
            raise LoginRefused(Refusal.PROVIDER_ERROR, "claim birthplace malformed")
        return cls(
            **values,
            birthplace=birthplace.strip(),
            email=email if isinstance(email, str) else None,
        )


_LIGATURES = str.maketrans({"œ": "oe", "Œ": "OE", "æ": "ae", "Æ": "AE"})
# Hyphens (ASCII and typographic), apostrophes and spaces: "Le Gall", "LE-GALL", "Legall".
_SEPARATORS = re.compile(r"[\s\-\u2010\u2011\u2012\u2013\u2014'\u2019]+")
_COMMUNE = re.compile(r"[0-9][0-9AB][0-9]{3}")  # Corsica: 2A004 (Ajaccio), 2B033 (Bastia)
_COUNTRY = re.compile(r"99[0-9]{3}")
_SEXES = {"female": Sex.FEMALE, "male": Sex.MALE}


def fold_name(name: str) -> str:
    """A name as matching compares it: without accents, case, hyphens, apostrophes or spaces."""
    decomposed = unicodedata.normalize("NFKD", name.translate(_LIGATURES))
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return _SEPARATORS.sub("", plain)


def first_given_name(given_name: str) -> str:
    """FranceConnect separates the given names with spaces; a compound one keeps its hyphen."""
    names = given_name.split()
    return names[0] if names else ""


def birth_place_code(birthplace: str, birthcountry: str) -> str | None:
    """What characters 6 to 10 of the person's NIR should read: the INSEE code of the birth
    commune for people born in France, `99` + the country's code for people born abroad."""
    if birthcountry == FRANCE:
        code = birthplace.upper()
        return code if _COMMUNE.fullmatch(code) else None
    return birthcountry if _COUNTRY.fullmatch(birthcountry) else None


def place_agrees(nir: str, code: str) -> bool:
    in_nir = nir[5:10].upper()
    if in_nir == code:
        return True
    # Born in Corsica before 1976: the NIR reads department 20, the commune now 2A or 2B.
    return in_nir[:2] == "20" and code[:2] in ("2A", "2B") and in_nir[2:] == code[2:]


def _birth_date(value: str) -> date | None:
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


async def find_person(identity: ProvenIdentity, *, vault: Vault) -> Patient:
    """The one enrolled person this identity is: same birth date and sex (in SQL), same family
    name and first given name (folded), and a NIR whose characters 6 to 10 agree with the birth
    place (decrypted for those candidates only). None or several: refused, saying which."""
    born = _birth_date(identity.birthdate)
    sex = _SEXES.get(identity.gender)
    place = birth_place_code(identity.birthplace, identity.birthcountry)
    family, first = (
        fold_name(identity.family_name),
        fold_name(first_given_name(identity.given_name)),
    )
    if born is None or sex is None or place is None or not family or not first:
        raise LoginRefused(Refusal.IDENTITY_NOT_FOUND, "identity not comparable")
    candidates = await Patient.filter(birth_date=born, sex=sex).only(
        "id", "first_name", "last_name", "birth_date", "status", "nir_encrypted", "contact_email"
    )
    matches = [
        patient
        for patient in candidates
        if fold_name(patient.last_name) == family
        and fold_name(patient.first_name) == first
        and patient.nir_encrypted is not None  # an opposed space keeps no identity
        and place_agrees(reveal_nir(vault, patient.id, patient.nir_encrypted), place)
    ]
    if not matches:
        if await _opposed(sex, born, place, vault=vault):
            raise LoginRefused(Refusal.SPACE_UNAVAILABLE, "space opposed")
        raise LoginRefused(Refusal.IDENTITY_NOT_FOUND)
    if len(matches) > 1:
        raise LoginRefused(Refusal.IDENTITY_AMBIGUOUS, f"{len(matches)} people match")
    return matches[0]


def possible_nirs(sex: Sex, born: date, place: str) -> list[str]:
    """Every NIR of that sex, birth month and birth place: only the order number (001 to 999)
    is unknown, the key follows."""
    places = [place]
    if place[:2] in ("2A", "2B"):
        places.append("20" + place[2:])  # born in Corsica before 1976
    numbers = []
    for where in places:
        prefix = f"{'1' if sex is Sex.MALE else '2'}{born:%y%m}{where}"
        for order in range(1, 1000):
            body = f"{prefix}{order:03d}"
            numbers.append(body + stdnum_nir.calc_check_digits(body))
    return numbers


async def _opposed(sex: Sex, born: date, place: str, *, vault: Vault) -> bool:
    """Whether an opposed space answers to this identity. Opposing erased the names and the
    NIR; what is kept, the keyed hash of the NIR (the proof of opposition), is found among
    the hashes of the NIRs the identity allows (DOMAIN.md: OPPOSED is SPACE_UNAVAILABLE)."""
    hashes = [nir_key(vault, nir) for nir in possible_nirs(sex, born, place)]
    return await Patient.filter(
        nir_hash__in=hashes, status=SpaceStatus.OPPOSED, birth_date=born, sex=sex
    ).exists()
