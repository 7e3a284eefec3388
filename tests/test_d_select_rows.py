"""`select_rows` (models/sqlite_thread.py), one call on SQLite's thread, answers what the
ORM's own path (`execute_query`) answers, on every database: the same rows, the same
errors, and the same professional relation (models/access.py) read with it."""

from __future__ import annotations

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
from models.patient import Patient
from models.sqlite_thread import select_rows
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
