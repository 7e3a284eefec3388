"""Positions in commit order (models/clock.py): each message gets its position (`seq`), and
each reminder its alert position (`alert_seq`) as it falls due, taken under its clock's row
lock as the last step before the commit; cursors encode them instead of moments taken when
the request started. Read marks gain the position they read up to (null for those set
before: they keep comparing moments).

The messages already stored are numbered in the order their cursors had them (their moment,
then their id), so that a cursor handed out before this migration stands for the same place
(resolvers/messaging.py still reads the old form); the reminders already raised, by the
moment they were raised. Each clock starts after the last of them.
"""

from __future__ import annotations

from typing import Any

from tortoise import fields, migrations
from tortoise.indexes import Index
from tortoise.migrations import operations as ops

from models.base import parameter_prefix

BATCH = 1000
MESSAGES, ALERTS = 1, 2  # models/clock.py


async def _number(client: Any, table: str, column: str, where: str, clock: int) -> None:
    p = parameter_prefix(client)
    done = 0
    while True:
        rows = await client.execute_query_dict(
            f'SELECT "id" FROM "{table}" WHERE {where} ORDER BY "sent_at", "id"'  # noqa: S608
            f" LIMIT {BATCH} OFFSET {done}"
        )
        updates = [[done + n, row["id"]] for n, row in enumerate(rows, start=1)]
        if updates:
            await client.execute_many(
                f'UPDATE "{table}" SET "{column}" = {p}1 WHERE "id" = {p}2',  # noqa: S608
                updates,
            )
        done += len(rows)
        if len(rows) < BATCH:
            break
    await client.execute_query(
        f'INSERT INTO "clock" ("id", "value") VALUES ({p}1, {p}2)',  # noqa: S608
        [clock, done],
    )


async def number_existing(apps: Any, schema_editor: Any) -> None:
    client = schema_editor.client
    await _number(client, "message", "seq", "1 = 1", MESSAGES)
    await _number(client, "reminder", "alert_seq", '"sent_at" IS NOT NULL', ALERTS)


class Migration(migrations.Migration):
    dependencies = [("models", "0011_catalogue_writes")]

    initial = False

    operations = [
        ops.CreateModel(
            name="Clock",
            fields=[
                ("id", fields.IntField(generated=False, primary_key=True, unique=True)),
                ("value", fields.BigIntField()),
            ],
            options={
                "table": "clock",
                "app": "models",
                "pk_attr": "id",
                "table_description": "One row per clock: the last position it gave.",
            },
            bases=["Model"],
        ),
        ops.AddField(
            model_name="Message",
            name="seq",
            field=fields.BigIntField(null=True, unique=True),
        ),
        ops.AddField(
            model_name="Reminder",
            name="alert_seq",
            field=fields.BigIntField(null=True, unique=True),
        ),
        ops.AddField(model_name="ReadMark", name="read_seq", field=fields.BigIntField(null=True)),
        ops.AddField(
            model_name="MemberReadMark", name="read_seq", field=fields.BigIntField(null=True)
        ),
        ops.RunPython(number_existing, ops.RunPython.noop),
        ops.AddIndex(
            model_name="Message",
            index=Index(fields=["conversation_id", "seq"]),
        ),
        ops.AddIndex(
            model_name="Reminder",
            index=Index(fields=["patient_id", "alert_seq"]),
        ),
    ]
