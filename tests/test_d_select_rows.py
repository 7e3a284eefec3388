"""`select_rows` (models/sqlite_thread.py), one call on SQLite's thread, answers what the
ORM's own path (`execute_query`) answers, on every database: the same rows, the same
errors, and the same professional relation (models/access.py) read with it. A first page
with its authors, read on SQLite without its outer ORDER BY, is checked to be in order."""

from __future__ import annotations

import hashlib
from datetime import date
from typing import Any
from uuid import UUID

import pytest
from tortoise.backends.sqlite.client import SqliteClient
from tortoise.exceptions import OperationalError

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
from resolvers.pagination import Order, Where, fetch_first_rows, in_order
from tests.factories import make_patient, make_professional

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


def test_in_order_reads_rows_as_sqlite_sorts_them() -> None:
    descending = ((0, True), (1, False))
    assert in_order([("2024-02-01", "b"), ("2024-01-01", "a"), ("2024-01-01", "c")], descending)
    assert in_order([], descending) and in_order([("x", "y")], descending)
    assert not in_order([("2024-01-01", "a"), ("2024-02-01", "b")], descending)
    assert not in_order([("2024-01-01", "c"), ("2024-01-01", "a")], descending)
    assert not in_order([("2024-01-01", None), ("2024-01-01", "a")], descending)
    assert not in_order([(2, "a"), ("1", "a")], descending)  # SQLite sorts text after numbers


async def test_a_first_page_out_of_order_is_read_again_sorted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a dossier with authors, read once as it comes
    holder = await make_patient("Alice")
    doctor = await make_professional()
    for n in range(6):
        data = f"{n}".encode()
        await DocumentModel.create(
            patient_id=holder.patient.id,
            title=f"Document {n}",
            category=DocumentCategory.OTHER,
            date=date(2024, 1, 1 + n % 3),
            mime_type="text/plain",
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            author_professional_id=doctor.pk if n % 2 else None,
            author_patient_id=None if n % 2 else holder.patient.id,
        )
    where = Where('"patient_id" = {}', [str(holder.patient.id)])
    fields = ["id", "author_patient_id", "author_professional_id", "date", "created_at"]
    order = Order((("date", True), ("created_at", True), ("id", True)))
    expected = list(await fetch_first_rows(DocumentModel, where, order, 5, fields))
    # when the rows of the statement without its ORDER BY come in another order
    statements: list[str] = []

    async def shuffled(db: Any, sql: str, values: list[Any]) -> Any:
        statements.append(sql)
        rows = list(await select_rows(db, sql, values))
        return rows if "ORDER BY page." in sql else rows[::-1]

    monkeypatch.setattr("resolvers.pagination.select_rows", shuffled)
    prime = {
        "author_professional_id": ByIdLoader(Professional),
        "author_patient_id": ByIdLoader(Patient),
    }
    rows = await fetch_first_rows(DocumentModel, where, order, 5, fields, prime)
    # then they are read again, sorted by the statement
    assert [tuple(row)[: len(fields)] for row in rows] == [tuple(row) for row in expected]
    if isinstance(DocumentModel._meta.db, SqliteClient):
        assert len(statements) == 2 and "ORDER BY page." in statements[1]
    else:
        assert len(statements) == 1
