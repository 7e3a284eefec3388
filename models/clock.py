"""Positions in commit order, for what clients resume from: messages and reminder alerts.

A row takes its position as its transaction's last step before the commit, by moving its
clock's row, whose lock it then holds until the commit: the next writer waits for that commit
before it gets the next position. Positions are therefore in commit order, across workers
and machines: whoever sees a row at position p sees every row below p that will ever exist.
A moment (`sentAt`), taken when the request starts and by the clock of whichever machine
served it, is not: a message committed late could sort before one a client already has, and a
client resuming from that one's cursor would never get it. Each clock's lock is held for one
insert (or update) and the commit; a rolled-back transaction leaves a gap, never a repeat.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from tortoise import fields
from tortoise.backends.base.client import BaseDBAsyncClient, TransactionalDBClient
from tortoise.backends.sqlite.client import SqliteClient
from tortoise.models import Model
from tortoise.transactions import in_transaction

from models.base import parameter_prefix
from models.sqlite_thread import in_one_transaction, on_sqlite_thread

MESSAGES = 1  # Message.seq
ALERTS = 2  # Reminder.alert_seq: reminders as they fall due


class Clock(Model):
    """One row per clock: the last position it gave."""

    id = fields.IntField(primary_key=True, generated=False)
    value = fields.BigIntField()

    class Meta:
        table = "clock"


# {p}1 the clock. An upsert: a database made without the migrations has no row yet.
_NEXT = (
    "INSERT INTO clock (id, value) VALUES ({p}1, 1) "
    "ON CONFLICT (id) DO UPDATE SET value = clock.value + 1 RETURNING value"
)


async def next_position(conn: BaseDBAsyncClient, clock_id: int) -> int:
    """The clock's next position, in the caller's transaction (its lock lasts until the
    commit: call it last, just before the write that uses it)."""
    sql = _NEXT.format(p=parameter_prefix(conn))
    # execute_query_dict: the asyncpg client's execute_query drops what an INSERT returns.
    rows = await conn.execute_query_dict(sql, [clock_id])
    return int(rows[0]["value"])


async def committed_position(clock_id: int) -> int:
    """The clock's last position committed: every row at or below it is visible now (or was
    rolled back)."""
    row = await Clock.get_or_none(id=clock_id)
    return row.value if row is not None else 0


class _Position:
    """In a `Write`'s parameters: the position its transaction took."""


POSITION: Final = _Position()


@dataclass(frozen=True)
class Write:
    """One statement of a `positioned` transaction."""

    sql: str
    params: list[Any]
    # Run as Tortoise runs a model's INSERT (`execute_insert`), and that row marked saved.
    row: Model | None = field(default=None, compare=False)
    # Changing no row stops the transaction: rolled back, `positioned` answers None.
    required: bool = False


def inserting(row: Model, db: BaseDBAsyncClient, *, position: str | None = None) -> Write:
    """The INSERT that `Model.create` runs for `row` (an unsaved instance): Tortoise's own
    statement and values; the field named `position` gets the transaction's position."""
    model = type(row)
    if model._meta.db_default_db_columns or model._meta.generated_db_fields:
        raise TypeError(f"{model.__name__}: only rows whose every value Python sets")
    executor = db.executor_class(model=model, db=db)
    fields_map = model._meta.fields_map
    params = [
        POSITION if name == position else fields_map[name].to_db_value(getattr(row, name), row)
        for name in executor.regular_columns
    ]
    return Write(executor.insert_query, params, row=row)


@dataclass
class Read:
    """A query for once a `positioned` transaction has committed, and its `rows` then. On
    SQLite it runs in the transaction's own call on the database's thread: one hand-off less
    for what the caller reads next anyway (a message's recipients)."""

    sql: str  # its parameters numbered {p}1, {p}2…: `sql_for` the connection that runs it
    params: list[Any]
    rows: list[dict[str, Any]] = field(default_factory=list)

    def sql_for(self, db: BaseDBAsyncClient) -> str:
        return self.sql.format(p=parameter_prefix(db))


class _Unchanged(Exception):
    """A required write changed no row."""


async def positioned(
    clock_id: int,
    before: Sequence[Write],
    after: Sequence[Write],
    then: Read | None = None,
    *,
    db: BaseDBAsyncClient | None = None,
) -> int | None:
    """One transaction: `before`, then the clock's next position (`next_position`: taken
    last, just before the writes that use it), then `after`, whose `POSITION`s it fills in.
    The position, or None (and nothing written, nor `then` read) if a required write changed
    no row. `then`, if any, is read once the transaction is over (inside another transaction,
    after the writes).

    On SQLite, outside any other transaction, the whole transaction is one call on the
    database's thread rather than one per statement (each hand-off to that thread and back
    costs more CPU than the statement it carries): the same statements, in the same order,
    under the same lock. `db`: the connection the writes were made for, if the caller has it
    (`Clock._meta.db`: each look-up of the context's connection costs)."""
    db = db or Clock._meta.db
    try:
        if isinstance(db, SqliteClient) and not isinstance(db, TransactionalDBClient):
            position = await _positioned_sqlite(db, clock_id, before, after, then)
        else:
            position = await _positioned(clock_id, before, after)
            if then is not None:
                then.rows = await db.execute_query_dict(then.sql_for(db), then.params)
    except _Unchanged:
        return None
    for write in (*before, *after):
        if write.row is not None:
            write.row._saved_in_db = True
    return position


async def _positioned(clock_id: int, before: Sequence[Write], after: Sequence[Write]) -> int:
    async with in_transaction() as conn:
        for write in before:
            await _run(conn, write, None)
        position = await next_position(conn, clock_id)
        for write in after:
            await _run(conn, write, position)
    return position


async def _run(conn: BaseDBAsyncClient, write: Write, position: int | None) -> None:
    params = [position if p is POSITION else p for p in write.params]
    if write.row is not None:
        await conn.execute_insert(write.sql, params)
        return
    changed, _ = await conn.execute_query(write.sql, params)
    if write.required and not changed:
        raise _Unchanged()


async def _positioned_sqlite(
    client: SqliteClient,
    clock_id: int,
    before: Sequence[Write],
    after: Sequence[Write],
    then: Read | None,
) -> int:
    log = client.log
    next_sql = _NEXT.format(p="?")

    def run(conn: sqlite3.Connection) -> int:
        for write in before:
            log.debug("%s: %s", write.sql, write.params)
            if conn.execute(write.sql, write.params).rowcount == 0 and write.required:
                raise _Unchanged()
        log.debug("%s: %s", next_sql, [clock_id])
        position = int(conn.execute(next_sql, [clock_id]).fetchone()[0])
        for write in after:
            params = [position if p is POSITION else p for p in write.params]
            log.debug("%s: %s", write.sql, params)
            conn.execute(write.sql, params)
        return position

    transaction = in_one_transaction(run)
    then_sql = then.sql_for(client) if then is not None else ""

    def run_then(conn: sqlite3.Connection) -> int:
        position = transaction(conn)
        if then is not None:
            log.debug("%s: %s", then_sql, then.params)
            then.rows = list(map(dict, conn.execute(then_sql, then.params).fetchall()))
        return position

    return await on_sqlite_thread(client, run_then)
