"""Rows made directly in the database, for tests that are not about making them."""

from __future__ import annotations

import itertools
import random
import uuid
from dataclasses import dataclass
from datetime import date, timedelta

from stdnum.fr import nir as stdnum_nir

from models.account import Account, Operator, Role
from models.base import utcnow
from models.crypto import Vault
from models.passwords import hash_password
from models.patient import Patient, Representation, Sex, SpaceStatus, seal_nir
from models.professional import Profession, Professional, Sector
from models.session import open_session
from tests.conftest import SECRET

PASSWORD = "correct horse battery staple"
vault = Vault(SECRET)
_serial = itertools.count(1)


def make_nir(sex: Sex = Sex.FEMALE, birth: date = date(1980, 1, 1)) -> str:
    n = next(_serial)
    commune = random.randint(100, 999)
    body = f"{1 if sex is Sex.MALE else 2}{birth:%y}{birth:%m}75{commune}{n % 1000:03d}"
    return body + stdnum_nir.calc_check_digits(body)


@dataclass
class Person:
    patient: Patient
    nir: str
    email: str | None
    token: str | None

    @property
    def id(self) -> str:
        from resolvers.ids import encode

        return encode("Patient", self.patient.id)


async def make_patient(
    first_name: str = "Alice",
    last_name: str = "Lefebvre",
    *,
    birth_date: date = date(1980, 3, 14),
    sex: Sex = Sex.FEMALE,
    status: SpaceStatus = SpaceStatus.ACTIVE,
    email: str | None = "",
    login: bool = True,
) -> Person:
    number = make_nir(sex, birth_date)
    patient_id = uuid.uuid4()
    patient = await Patient.create(
        id=patient_id,
        nir_encrypted=seal_nir(vault, patient_id, number),
        nir_hash=vault.keyed_hash(number, purpose="nir"),
        first_name=first_name,
        last_name=last_name,
        birth_date=birth_date,
        sex=sex,
        status=status,
    )
    if email == "":
        email = f"{first_name.lower()}.{patient.id.hex[:8]}@example.org"
    token = None
    if email:
        account = await Account.create(
            email=email,
            password_hash=await hash_password(PASSWORD),
            role=Role.PATIENT,
            patient_id=patient.id,
        )
        if login:
            token = await _token(account)
    return Person(patient=patient, nir=number, email=email, token=token)


async def make_minor(representative: Person, first_name: str = "Théo", age: int = 8) -> Person:
    today = date.today()
    child = await make_patient(
        first_name,
        representative.patient.last_name,
        birth_date=today.replace(year=today.year - age) - timedelta(days=30),
        sex=Sex.MALE,
        email=None,
    )
    await Representation.create(
        representative_id=representative.patient.id, dependent_id=child.patient.id
    )
    return child


async def _token(account: Account) -> str:
    result = await open_session(account, ttl=timedelta(hours=1), now=utcnow())
    assert result.token is not None
    return result.token


@dataclass
class Staff:
    id: str
    email: str
    token: str
    pk: object


async def make_professional(
    last_name: str = "Bernard", *, profession: Profession = Profession.MEDECIN
) -> Staff:
    n = next(_serial)
    professional = await Professional.create(
        rpps=f"{10000000000 + n}",
        first_name="Paul",
        last_name=last_name,
        profession=profession,
        sector=Sector.HEALTH,
    )
    email = f"pro{n}@example.org"
    account = await Account.create(
        email=email,
        password_hash=await hash_password(PASSWORD),
        role=Role.PROFESSIONAL,
        professional_id=professional.id,
    )
    from resolvers.ids import encode

    return Staff(
        id=encode("Professional", professional.id),
        email=email,
        token=await _token(account),
        pk=professional.id,
    )


async def make_operator() -> Staff:
    n = next(_serial)
    email = f"operator{n}@example.org"
    operator = await Operator.create(email=email)
    account = await Account.create(
        email=email,
        password_hash=await hash_password(PASSWORD),
        role=Role.OPERATOR,
        operator_id=operator.id,
    )
    from resolvers.ids import encode

    return Staff(
        id=encode("Operator", operator.id), email=email, token=await _token(account), pk=operator.id
    )
