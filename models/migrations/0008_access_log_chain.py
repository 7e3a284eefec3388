"""The access log as a hash chain per space (models/audit.py): each event gets its position
in its space's chain (`seq`) and its hash (`chain_hash`), and each space with events a head
row (`access_log_head`) holding the end of its chain. The actions and bases gain `EXPORT` and
`HOLDER` (the export of a space).

The events already logged are chained here, in the order they were logged (their moment,
then their creation, then their id), with the same encoding and hash as every later append
(`models.audit.link`), so that `verifyAccessLog` and `espace-sante audit verify` find them
valid. The columns are added nullable, filled, then made required; the pair (patient, seq)
is unique.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.migrations import operations as ops
from tortoise.migrations.constraints import UniqueConstraint

from models.audit import GENESIS, AccessAction, AccessBasis, link
from models.base import parameter_prefix, utcnow

BATCH = 1000
# The columns of an event when this migration runs (later ones are absent from the events it
# chains, and `link` leaves an absent optional column out of the hash).
COLUMNS = (
    "id",
    "patient_id",
    "at",
    "created_at",
    "actor_id",
    "actor_role",
    "action",
    "basis",
    "document_id",
    "request_id",
)


def _moment(value: Any) -> datetime:
    # SQLite hands moments back as text, PostgreSQL as datetimes.
    return datetime.fromisoformat(value) if isinstance(value, str) else value


async def chain_existing(apps: Any, schema_editor: Any) -> None:
    client = schema_editor.client
    p = parameter_prefix(client)
    columns = ", ".join(f'"{name}"' for name in COLUMNS)
    patients = await client.execute_query_dict(
        'SELECT DISTINCT "patient_id" FROM "access_event" ORDER BY "patient_id"'
    )
    for found in patients:
        patient = found["patient_id"]
        previous, seq, last_at = GENESIS, 0, None
        while True:
            rows = await client.execute_query_dict(
                f'SELECT {columns} FROM "access_event" WHERE "patient_id" = {p}1'  # noqa: S608
                f' ORDER BY "at", "created_at", "id" LIMIT {BATCH} OFFSET {seq}',
                [patient],
            )
            updates = []
            for row in rows:
                seq += 1
                event = {**row, "seq": seq}
                event["at"], event["created_at"] = _moment(row["at"]), _moment(row["created_at"])
                previous = link(previous, event)
                last_at = event["at"]
                updates.append([seq, previous, row["id"]])
            if updates:
                await client.execute_many(
                    f'UPDATE "access_event" SET "seq" = {p}1, "chain_hash" = {p}2'  # noqa: S608
                    f' WHERE "id" = {p}3',
                    updates,
                )
            if len(rows) < BATCH:
                break
        await client.execute_query(
            'INSERT INTO "access_log_head" ("id", "created_at", "patient_id", "seq",'  # noqa: S608
            f' "chain_hash", "last_at") VALUES ({p}1, {p}2, {p}3, {p}4, {p}5, {p}6)',
            [str(uuid4()), utcnow(), str(UUID(str(patient))), seq, previous, last_at],
        )


class Migration(migrations.Migration):
    dependencies = [("models", "0007_object_storage")]

    initial = False

    operations = [
        ops.CreateModel(
            name="AccessLogHead",
            fields=[
                (
                    "id",
                    fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                (
                    "patient",
                    fields.OneToOneField(
                        "models.Patient",
                        source_field="patient_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="access_log_head",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("seq", fields.BigIntField()),
                ("chain_hash", fields.CharField(max_length=64)),
                ("last_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={
                "table": "access_log_head",
                "app": "models",
                "pk_attr": "id",
                "table_description": (
                    "The end of one space's chain: the position, hash and moment of its last "
                    "event."
                ),
            },
            bases=["Entity"],
        ),
        ops.AlterField(
            model_name="AccessEvent",
            name="action",
            field=fields.CharEnumField(
                description=(
                    "READ: READ\nWRITE: WRITE\nDOWNLOAD: DOWNLOAD\nLOOKUP: LOOKUP\n"
                    "EMERGENCY_OPEN: EMERGENCY_OPEN\nEXPORT: EXPORT"
                ),
                enum_type=AccessAction,
                max_length=16,
            ),
        ),
        ops.AlterField(
            model_name="AccessEvent",
            name="basis",
            field=fields.CharEnumField(
                description=(
                    "CONSENT: CONSENT\nTREATING_DOCTOR: TREATING_DOCTOR\nEMERGENCY: EMERGENCY\n"
                    "REPRESENTATIVE: REPRESENTATIVE\nAUTHOR: AUTHOR\nCONVERSATION: CONVERSATION\n"
                    "OPERATOR: OPERATOR\nAPP: APP\nLOOKUP: LOOKUP\nHOLDER: HOLDER"
                ),
                enum_type=AccessBasis,
                max_length=16,
            ),
        ),
        ops.AddField(
            model_name="AccessEvent", name="seq", field=fields.BigIntField(null=True)
        ),
        ops.AddField(
            model_name="AccessEvent",
            name="chain_hash",
            field=fields.CharField(max_length=64, null=True),
        ),
        ops.RunPython(chain_existing, ops.RunPython.noop),
        ops.AlterField(model_name="AccessEvent", name="seq", field=fields.BigIntField()),
        ops.AlterField(
            model_name="AccessEvent", name="chain_hash", field=fields.CharField(max_length=64)
        ),
        ops.AddConstraint(
            model_name="AccessEvent",
            constraint=UniqueConstraint(fields=("patient", "seq"), name=None),
        ),
    ]
