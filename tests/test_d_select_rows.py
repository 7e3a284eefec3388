"""`select_rows` (models/sqlite_thread.py), one call on SQLite's thread, answers what the
ORM's own path (`execute_query`) answers, on every database: the same rows, the same
errors, and the same professional relation (models/access.py) read with it. A first page
with its authors is read on SQLite as the page, then each author once by key, in one call
on SQLite's thread; elsewhere (and in a transaction) with its authors joined to it: both
read the same rows and prime the loaders with the same authors."""

from __future__ import annotations

import hashlib
from datetime import date
from typing import Any
from uuid import UUID

import pytest
from tortoise.backends.sqlite.client import SqliteClient
from tortoise.exceptions import OperationalError
from tortoise.transactions import in_transaction

from models.access import Actor, relations
from models.account import Role
from models.base import parameter_prefix, utcnow
from models.consent import ConsentAccess, grant_consent
from models.document import Document as DocumentModel
from models.document import DocumentCategory
from models.patient import Patient
from models.professional import Professional
from models.sqlite_thread import select_rows
from resolvers.loaders import ByIdLoader
from resolvers.pagination import Order, Where, fetch_first_rows
from tests.conftest import PG_URL
from tests.factories import make_patient, make_professional
from tests.sql_counter import count_statements
from tests.test_positioned_transaction import thread_calls

pytestmark = pytest.mark.usefixtures("client")  # the application started: the database open


# Patched in for models.sqlite_thread's SqliteClient: no client is one, so `select_rows`
# takes `execute_query`.
NOTHING = type("Nothing", (), {})
SQLITE_CLIENT = "models.sqlite_thread.SqliteClient"


async def test_rows_are_the_orms(monkeypatch: pytest.MonkeyPatch) -> None:
    alice = await make_patient("Alice")
    await make_patient("Bea")
    db = Patient._meta.db
    p = parameter_prefix(db)
    sql = f'SELECT "first_name", "birth_date" FROM "patient" WHERE "id" <> {p}1 ORDER BY 1'
    fast = await select_rows(db, sql, [str(alice.patient.id)])
    with monkeypatch.context() as patch:
        patch.setattr(SQLITE_CLIENT, NOTHING)
        slow = await select_rows(db, sql, [str(alice.patient.id)])
    assert [tuple(row) for row in fast] == [tuple(row) for row in slow]
    assert [row["first_name"] for row in fast] == ["Bea"]


async def test_errors_are_the_orms(monkeypatch: pytest.MonkeyPatch) -> None:
    db = Patient._meta.db
    with pytest.raises(OperationalError):
        await select_rows(db, 'SELECT no_such_column FROM "patient"', [])
    with monkeypatch.context() as patch, pytest.raises(OperationalError):
        patch.setattr(SQLITE_CLIENT, NOTHING)
        await select_rows(db, 'SELECT no_such_column FROM "patient"', [])


async def test_a_professionals_relation_is_read_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    alice = await make_patient("Alice")
    bea = await make_patient("Bea")
    doctor = await make_professional()
    assert isinstance(doctor.pk, UUID)
    await grant_consent(
        alice.patient.id, doctor.pk, ConsentAccess.READ_WRITE, expires_at=None, now=utcnow()
    )
    actor = Actor(role=Role.PROFESSIONAL, professional_id=doctor.pk)
    ids = [alice.patient.id, bea.patient.id]
    fast = await relations(actor, ids, date.today())
    with monkeypatch.context() as patch:
        patch.setattr(SQLITE_CLIENT, NOTHING)
        slow = await relations(actor, ids, date.today())
    assert fast == slow
    assert fast[alice.patient.id].consent is ConsentAccess.READ_WRITE
    assert fast[bea.patient.id].consent is None
    for pid in ids:
        row, same = fast[pid].row, slow[pid].row
        assert row is not None and same is not None
        assert (row.id, row.last_name, row.status) == (same.id, same.last_name, same.status)


async def test_the_sqlite_path_is_the_one_taken_on_sqlite(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = Patient._meta.db
    if not isinstance(db, SqliteClient):
        pytest.skip("SQLite only")
    await make_patient()

    async def refused(*_args: Any) -> Any:
        raise AssertionError("execute_query taken")

    monkeypatch.setattr(db, "execute_query", refused)
    rows = await select_rows(db, 'SELECT count(*) FROM "patient"', [])
    assert rows[0][0] >= 1


FIELDS = ["id", "author_patient_id", "author_professional_id", "date", "created_at"]
ORDER = Order((("date", True), ("created_at", True), ("id", True)))


async def authored_dossier() -> tuple[Where, UUID, list[UUID]]:
    """Seven documents of one space, by its holder, two doctors, or no one."""
    holder = await make_patient("Alice")
    doctors = [await make_professional("Moreau"), await make_professional("Roux")]
    for n in range(7):
        data = f"{n}".encode()
        await DocumentModel.create(
            patient_id=holder.patient.id,
            title=f"Document {n}",
            category=DocumentCategory.OTHER,
            date=date(2024, 1, 1 + n % 3),
            mime_type="text/plain",
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            author_professional_id=doctors[n % 2].pk if n % 3 == 1 else None,
            author_patient_id=holder.patient.id if n % 3 == 0 else None,
        )
    pros = [doctor.pk for doctor in doctors]
    assert all(isinstance(pk, UUID) for pk in pros)
    return Where('"patient_id" = {}', [str(holder.patient.id)]), holder.patient.id, pros


def loaders() -> dict[str, Any]:
    return {
        "author_professional_id": ByIdLoader(Professional),
        "author_patient_id": ByIdLoader(Patient),
    }


async def primed(loaders: dict[str, Any], ids: list[Any]) -> list[tuple[Any, ...]]:
    """What the loaders hold of these rows, as (id, names), without loading anything."""
    out = []
    for loader in loaders.values():
        for pk in ids:
            if loader.holds(pk):
                row = await loader.load(pk)
                out.append((row.pk, row.first_name, row.last_name))
    return sorted(out, key=str)


async def test_a_first_page_with_authors_reads_and_primes_as_the_join(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    where, holder, pros = await authored_dossier()
    plain = [tuple(row) for row in await fetch_first_rows(DocumentModel, where, ORDER, 6, FIELDS)]
    # the page with its authors, as it is read on this database
    fast = loaders()
    with count_statements() as statements:
        rows = await fetch_first_rows(DocumentModel, where, ORDER, 6, FIELDS, fast)
    # the same with the authors joined to it, as on PostgreSQL and inside transactions
    joined = loaders()
    async with in_transaction():
        joined_rows = await fetch_first_rows(DocumentModel, where, ORDER, 6, FIELDS, joined)
    assert [tuple(row)[: len(FIELDS)] for row in rows] == plain
    assert [tuple(row)[: len(FIELDS)] for row in joined_rows] == plain
    ids = [holder, *pros]
    assert await primed(fast, ids) == await primed(joined, ids) != []
    assert {pk for pk in pros if fast["author_professional_id"].holds(pk)} == set(pros)
    if isinstance(DocumentModel._meta.db, SqliteClient):
        # the page, then the doctors and the holder by key: no join
        assert len(statements) == 3 and all("JOIN" not in sql for sql in statements)
        assert " IN (?, ?)" in statements[1] and " IN (?)" in statements[2]
    else:
        assert len(statements) == 1 and "LEFT JOIN" in statements[0]


@pytest.mark.skipif(bool(PG_URL), reason="the one call is SQLite's")
async def test_a_page_and_its_authors_are_one_call_on_sqlites_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    where, _, _ = await authored_dossier()
    calls = thread_calls(monkeypatch)
    await fetch_first_rows(DocumentModel, where, ORDER, 6, FIELDS, loaders())
    assert len(calls) == 1


async def test_a_page_of_no_author_reads_no_author(monkeypatch: pytest.MonkeyPatch) -> None:
    holder = await make_patient("Alice")
    data = b"x"
    await DocumentModel.create(
        patient_id=holder.patient.id,
        title="Anonyme",
        category=DocumentCategory.OTHER,
        date=date(2024, 1, 1),
        mime_type="text/plain",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    where = Where('"patient_id" = {}', [str(holder.patient.id)])
    with count_statements() as statements:
        rows = await fetch_first_rows(DocumentModel, where, ORDER, 6, FIELDS, loaders())
    assert len(rows) == 1 and len(statements) == 1
