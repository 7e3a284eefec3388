"""Indexes the models declare that migrated databases lacked: SQLite loses the indexes of a
table Tortoise rebuilds to alter a column (access_event's (patient_id, at), rebuilt by
0008), and the index of outbox_message's patient_id was never created by a migration (on
either database). Created here if absent, under the names the models give them, so a
database made by the migrations has what one made from the models has
(tests/test_cli.py compares them)."""

from __future__ import annotations

from tortoise import migrations
from tortoise.migrations import operations as ops

LOST = (
    ("idx_access_even_patient_19504f", "access_event", '"patient_id", "at"'),
    ("idx_outbox_mess_patient_979b2e", "outbox_message", '"patient_id"'),
)


class Migration(migrations.Migration):
    dependencies = [("models", "0013_idempotency")]

    initial = False

    operations = [
        ops.RunSQL(
            [
                f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" ({columns})'
                for name, table, columns in LOST
            ],
            [f'DROP INDEX IF EXISTS "{name}"' for name, _, _ in LOST[1:]],
        ),
    ]
