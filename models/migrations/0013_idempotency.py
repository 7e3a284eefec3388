"""Safe retries (models/idempotency.py): the idempotency keys of the last day, one per
viewer, operation and key, each with its input's fingerprint and what it created."""

from uuid import uuid4

from tortoise import fields, migrations
from tortoise.indexes import Index
from tortoise.migrations import operations as ops

from models.idempotency import Operation


class Migration(migrations.Migration):
    dependencies = [("models", "0012_message_sequence")]

    initial = False

    operations = [
        ops.CreateModel(
            name="IdempotencyKey",
            fields=[
                (
                    "id",
                    fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("viewer", fields.CharField(max_length=100)),
                (
                    "operation",
                    fields.CharEnumField(
                        description=(
                            "SEND_MESSAGE: sendMessage\n"
                            "START_CONVERSATION: startConversation\n"
                            "ADD_DOCUMENT: addDocument\n"
                            "CREATE_APPOINTMENT: createAppointment"
                        ),
                        enum_type=Operation,
                        max_length=32,
                    ),
                ),
                ("key", fields.CharField(max_length=255)),
                ("fingerprint", fields.CharField(max_length=64)),
                ("object_id", fields.UUIDField()),
                ("second_id", fields.UUIDField(null=True)),
            ],
            options={
                "table": "idempotency_key",
                "app": "models",
                "unique_together": (("viewer", "operation", "key"),),
                "indexes": [Index(fields=["created_at"])],
                "pk_attr": "id",
                "table_description": (
                    "Idempotency keys of the last day and what each one created."
                ),
            },
            bases=["Entity"],
        ),
    ]
