"""One call on the SQLite connection's own thread, for a transaction of several statements.

Tortoise runs SQLite through aiosqlite, which hands each statement to the connection's
thread and back; each hand-off costs more CPU than a short statement it carries. A hot
transaction of a few statements (a message's send, an access event) is therefore run as
one function on that thread: the same statements, in the same order, under Tortoise's lock
of the connection, which its own transactions hold throughout. Neither the lock nor
aiosqlite's call is public: tests/test_positioned_transaction.py guards both."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, TypeVar

from tortoise.backends.base.client import BaseDBAsyncClient, TransactionalDBClient
from tortoise.backends.sqlite.client import SqliteClient
from tortoise.exceptions import IntegrityError, OperationalError

T = TypeVar("T")


async def on_sqlite_thread(client: SqliteClient, work: Callable[[sqlite3.Connection], T]) -> T:
    """`work(connection)` on the connection's thread, under Tortoise's lock; sqlite3's
    errors raised as Tortoise raises them."""
    async with client._lock:
        if client._connection is None:
            await client.create_connection(with_db=True)
        connection = client._connection
        assert connection is not None
        call = connection._execute
        try:
            result: T = await call(work, connection._conn)  # type: ignore[no-untyped-call]
        except sqlite3.IntegrityError as exc:
            raise IntegrityError(exc) from exc
        except sqlite3.OperationalError as exc:
            raise OperationalError(exc) from exc
    return result


def in_one_transaction(
    work: Callable[[sqlite3.Connection], T],
) -> Callable[[sqlite3.Connection], T]:
    """`work` between BEGIN and COMMIT, rolled back if it raises."""

    def transaction(conn: sqlite3.Connection) -> T:
        conn.execute("BEGIN")
        try:
            result = work(conn)
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        return result

    return transaction


async def select_rows(db: BaseDBAsyncClient, sql: str, values: list[Any]) -> Sequence[Any]:
    """The rows of one SELECT (`sql` written with `db`'s parameters), as `execute_query`
    answers them. On SQLite outside a transaction, one call on its thread without
    `execute_query`'s wrappers, which cost more than a short statement: the same lock, log
    line, rows (`sqlite3.Row`s) and errors."""
    if isinstance(db, SqliteClient) and not isinstance(db, TransactionalDBClient):
        db.log.debug("%s: %s", sql, values)
        return await on_sqlite_thread(db, partial(_fetch_all, sql, values))
    _, rows = await db.execute_query(sql, values)
    return rows


def _fetch_all(sql: str, values: list[Any], conn: sqlite3.Connection) -> list[Any]:
    return conn.execute(sql, values).fetchall()


Statements = list[tuple[str, list[Any]]]


async def select_rows_then(
    db: SqliteClient, sql: str, values: list[Any], then: Callable[[list[Any]], Statements]
) -> tuple[list[Any], list[list[Any]]]:
    """The rows of one SELECT, and of the SELECTs `then` writes from them (on SQLite's
    thread: it must only read the rows), in one call on that thread outside a transaction:
    a hand-off costs more than a short statement. Each statement logged as `select_rows`
    logs it."""
    db.log.debug("%s: %s", sql, values)
    rows, statements, answers = await on_sqlite_thread(db, partial(_fetch_then, sql, values, then))
    for statement, parameters in statements:
        db.log.debug("%s: %s", statement, parameters)
    return rows, answers


def _fetch_then(
    sql: str, values: list[Any], then: Callable[[list[Any]], Statements], conn: sqlite3.Connection
) -> tuple[list[Any], Statements, list[list[Any]]]:
    rows = conn.execute(sql, values).fetchall()
    statements = then(rows)
    return rows, statements, [conn.execute(s, v).fetchall() for s, v in statements]
