"""Encrypted blobs in an object store (models/blobs.py): the index of stored objects, each
with its plaintext's SHA-256, its size, its data key wrapped by a master key, whether the
object is complete, and when an upload last wrote or reused it (the reaper's clock).

Blobs kept in clear before this (DATA_DIR/blobs/ab/cd/<sha256>) are still served;
`espace-sante blobs migrate` encrypts them."""

from uuid import uuid4

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("models", "0006_franceconnect")]

    initial = False

    operations = [
        ops.CreateModel(
            name="Blob",
            fields=[
                (
                    "id",
                    fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("sha256", fields.CharField(db_index=True, max_length=64)),
                ("size", fields.BigIntField()),
                ("key_id", fields.CharField(max_length=16)),
                ("wrapped_key", fields.BinaryField()),
                ("stored", fields.BooleanField(default=False)),
                ("touched_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={
                "table": "blob",
                "app": "models",
                "pk_attr": "id",
                "table_description": (
                    "Encrypted document and attachment bytes: object, wrapped key."
                ),
            },
            bases=["Model"],
        ),
    ]
