"""Seed the benchmark's dossier through the domain code; prints what the load needs as JSON.

Run as `python -m bench.seed` with DATA_DIR set, after `espace-sante migrate`.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import date, timedelta

from tortoise import Tortoise

from api.config import Settings
from api.db import tortoise_config
from models.access import Actor, Relation
from models.account import Account, Role
from models.base import utcnow
from models.consent import ConsentAccess, grant_consent
from models.crypto import Vault
from models.document import DocumentCategory, NewDocument, add_document, set_hidden
from models.patient import Patient, Sex, SpaceStatus, seal_nir
from models.professional import Profession, Registration, Sector, register_professional
from models.session import open_session
from resolvers.ids import encode

PASSWORD = "bench-password-2026-dossier"
DOCUMENTS = 40
HIDDEN = 4  # hidden by the holder: a professional under consent does not see them
PDF = b"%%PDF-1.4\n%% bench document %d\n1 0 obj<<>>endobj\ntrailer<<>>\n%%%%EOF\n"


def _nir(sex: Sex, birth: date, serial: str) -> str:
    from stdnum.fr import nir

    body = f"{1 if sex is Sex.MALE else 2}{birth:%y}{birth:%m}75056{serial}"
    return body + nir.calc_check_digits(body)


async def _patient(vault: Vault, first: str, last: str, birth: date, serial: str) -> Patient:
    number = _nir(Sex.FEMALE, birth, serial)
    patient_id = uuid.uuid4()
    return await Patient.create(
        id=patient_id,
        nir_encrypted=seal_nir(vault, patient_id, number),
        nir_hash=vault.keyed_hash(number, purpose="nir"),
        first_name=first,
        last_name=last,
        birth_date=birth,
        sex=Sex.FEMALE,
        status=SpaceStatus.ACTIVE,
    )


async def _professional(n: int, last_name: str) -> Actor:
    pro = await register_professional(
        Registration(
            rpps=f"1000345678{n}",
            first_name="Claire",
            last_name=last_name,
            profession=Profession.MEDECIN,
            sector=Sector.HEALTH,
            email=f"pro{n}@bench.espace-sante.localhost",
            password=PASSWORD,
        )
    )
    return Actor(role=Role.PROFESSIONAL, professional_id=pro.id)


async def seed(settings: Settings) -> dict[str, str]:
    vault = Vault(settings.secret_key)
    blobs = settings.blob_store()  # file:// unless BLOB_URL
    now = utcnow()
    today = date.today()
    holder = await _patient(vault, "Camille", "Durand", date(1984, 5, 12), "123")
    relative = await _patient(vault, "Jean", "Durand", date(1956, 2, 20), "456")
    viewer = await _professional(1, "Martin")
    authors = [await _professional(2, "Bernard"), await _professional(3, "Petit")]
    for author in authors:
        assert author.professional_id is not None
        await grant_consent(
            holder.id, author.professional_id, ConsentAccess.READ_WRITE, expires_at=None, now=now
        )
    assert viewer.professional_id is not None
    await grant_consent(
        holder.id, viewer.professional_id, ConsentAccess.READ, expires_at=None, now=now
    )

    writers = [
        (
            Actor(role=Role.PATIENT, patient_id=holder.id, patient_status=SpaceStatus.ACTIVE),
            Relation(holder.id, holder=True),
        ),
        (
            Actor(role=Role.PATIENT, patient_id=relative.id, patient_status=SpaceStatus.ACTIVE),
            Relation(holder.id, representative=True),
        ),
        *[(a, Relation(holder.id, consent=ConsentAccess.READ_WRITE)) for a in authors],
    ]
    categories = list(DocumentCategory)
    for i in range(DOCUMENTS):
        actor, relation = writers[i % len(writers)]
        row = await add_document(
            NewDocument(
                title=f"Compte rendu n°{i + 1}",
                category=categories[i % len(categories)],
                data=PDF % i,
                declared_mime="application/pdf",
                date=today - timedelta(days=i // 2),
            ),
            patient_id=holder.id,
            actor=actor,
            relation=relation,
            blobs=blobs,
            max_bytes=settings.max_upload_bytes,
            today=today,
        )
        if i % (DOCUMENTS // HIDDEN) == 1:
            await set_hidden(row, True)
    account = await Account.get(professional_id=viewer.professional_id)
    session = await open_session(account, ttl=timedelta(hours=2), now=now)
    assert session.token is not None
    return {"token": session.token, "patient_id": encode("Patient", holder.id)}


async def main() -> None:
    settings = Settings.from_env()
    await Tortoise.init(config=tortoise_config(settings.database_url))
    try:
        print(json.dumps(await seed(settings)))
    finally:
        await Tortoise.close_connections()


if __name__ == "__main__":
    asyncio.run(main())
