"""Demo data for the local embedded run; prints the logins it made."""

from __future__ import annotations

from datetime import date, datetime
from uuid import uuid4

from tortoise.transactions import in_transaction

from models.account import Account, Role
from models.base import paris_today, utcnow
from models.blobs import BlobStore
from models.crypto import Vault
from models.operators import create_operator
from models.passwords import hash_password
from models.patient import Patient, Representation, Sex, SpaceStatus, age_on, seal_nir
from models.professional import Profession, Registration, Sector, register_professional

DEMO_PASSWORD = "demo-password-2026"
LEO_BORN = date(2016, 9, 3)  # Camille's son: the minor of the demo
JEAN_BORN = date(1958, 2, 20)  # her father


def _nir(sex: Sex, birth: date, serial: str) -> str:
    from stdnum.fr import nir

    body = f"{1 if sex is Sex.MALE else 2}{birth:%y}{birth:%m}75056{serial}"
    return body + nir.calc_check_digits(body)


async def _patient(
    vault: Vault, first: str, last: str, birth: date, sex: Sex, serial: str, email: str | None
) -> Patient:
    number = _nir(sex, birth, serial)
    patient_id = uuid4()
    patient = await Patient.create(
        id=patient_id,
        nir_encrypted=seal_nir(vault, patient_id, number),
        nir_hash=vault.keyed_hash(number, purpose="nir"),
        first_name=first,
        last_name=last,
        birth_date=birth,
        sex=sex,
        status=SpaceStatus.ACTIVE,
        contact_email=email,
    )
    if email:
        await Account.create(
            email=email,
            password_hash=await hash_password(DEMO_PASSWORD),
            role=Role.PATIENT,
            patient_id=patient.id,
        )
    return patient


async def seed_demo(
    vault: Vault,
    blobs: BlobStore,
    *,
    now: datetime | None = None,
    reminder_hours: tuple[int, ...] = (48, 2),
) -> list[str]:
    """The demo people, then the year of care they went through (models/demo_world.py);
    each part is loaded once. All of it in one transaction: a seed interrupted (Ctrl-C during
    the first `./scripts/demo`) leaves nothing behind, and the next one loads it all."""
    async with in_transaction():
        return await _seed(vault, blobs, now=now, reminder_hours=reminder_hours)


async def _seed(
    vault: Vault,
    blobs: BlobStore,
    *,
    now: datetime | None,
    reminder_hours: tuple[int, ...],
) -> list[str]:
    from models.demo_world import load_world

    async def world() -> bool:
        return await load_world(
            vault=vault, blobs=blobs, now=now or utcnow(), reminder_hours=reminder_hours
        )

    if await Account.exists(email="operateur@demo.espace-sante.localhost"):
        loaded = await world()  # a database seeded before the world existed gets it now
        return ["demo data loaded" if loaded else "demo data already loaded", *_logins()]
    await create_operator("operateur@demo.espace-sante.localhost", DEMO_PASSWORD)
    await register_professional(
        Registration(
            rpps="10003456789",
            first_name="Claire",
            last_name="Martin",
            profession=Profession.MEDECIN,
            sector=Sector.HEALTH,
            email="dr.martin@demo.espace-sante.localhost",
            password=DEMO_PASSWORD,
        )
    )
    parent = await _patient(
        vault,
        "Camille",
        "Durand",
        date(1984, 5, 12),
        Sex.FEMALE,
        "123",
        "camille@demo.espace-sante.localhost",
    )
    child = await _patient(vault, "Léo", "Durand", LEO_BORN, Sex.MALE, "456", None)
    await Representation.create(representative_id=parent.id, dependent_id=child.id)
    await _patient(
        vault,
        "Jean",
        "Petit",
        JEAN_BORN,
        Sex.MALE,
        "789",
        "jean@demo.espace-sante.localhost",
    )
    await world()
    return ["demo data loaded", *_logins()]


def _logins() -> list[str]:
    today = paris_today(utcnow())
    leo, jean = age_on(LEO_BORN, today), age_on(JEAN_BORN, today)
    return [
        f"demo logins (password for all: {DEMO_PASSWORD}):",
        "  operator      operateur@demo.espace-sante.localhost",
        "  professional  dr.martin@demo.espace-sante.localhost   (Dr Claire Martin, GP)",
        "  professional  dr.benali@demo.espace-sante.localhost   (Dr Karim Benali, emergency room)",
        "  professional  e.garnier@demo.espace-sante.localhost   (hospital admissions nurse)",
        "  professional  s.lambert@demo.espace-sante.localhost   (physio, consent expired)",
        "  professional  dr.moreau@demo.espace-sante.localhost   (blocked by Camille)",
        f"  patient       camille@demo.espace-sante.localhost     (represents her son Léo, {leo})",
        "  patient       thomas@demo.espace-sante.localhost      (her husband, represents Léo too)",
        f"  patient       jean@demo.espace-sante.localhost        (her father, {jean})",
    ]
