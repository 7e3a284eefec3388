"""One lock row per rate-limited key (`attempt_key`): an attempt is reserved under it, so
concurrent guesses are counted one after the other (models/ratelimit.py)."""

from uuid import uuid4

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("models", "0003_row_bound_encryption")]

    initial = False

    operations = [
        ops.CreateModel(
            name="AttemptKey",
            fields=[
                (
                    "id",
                    fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("key", fields.CharField(unique=True, max_length=80)),
                ("touched_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={
                "table": "attempt_key",
                "app": "models",
                "pk_attr": "id",
                "table_description": (
                    "One row per limited key, locked while an attempt of that key is reserved."
                ),
            },
            bases=["Entity"],
        ),
    ]
