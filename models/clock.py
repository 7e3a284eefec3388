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

from tortoise import fields
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.models import Model

from models.base import parameter_prefix

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
