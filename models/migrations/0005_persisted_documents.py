"""The registry of persisted GraphQL documents (models/persisted.py): each text by its
SHA-256, the lists it is on (a client's, the shared first-party one, APQ), and the other ids
a manifest gave it."""

from uuid import uuid4

from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.migrations import operations as ops

from models.persisted import DocumentSource


class Migration(migrations.Migration):
    dependencies = [("models", "0004_attempt_limits")]

    initial = False

    operations = [
        ops.CreateModel(
            name="PersistedDocument",
            fields=[
                (
                    "sha256",
                    fields.CharField(primary_key=True, unique=True, db_index=True, max_length=64),
                ),
                ("text", fields.TextField(unique=False)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "persisted_document",
                "app": "models",
                "pk_attr": "sha256",
                "table_description": "GraphQL documents by their SHA-256 (persisted queries).",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="DocumentAlias",
            fields=[
                (
                    "id",
                    fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("alias", fields.CharField(max_length=200)),
                ("client", fields.CharField(default="", max_length=100)),
                (
                    "document",
                    fields.ForeignKeyField(
                        "models.PersistedDocument",
                        source_field="document_id",
                        db_constraint=True,
                        to_field="sha256",
                        related_name="aliases",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
            ],
            options={
                "table": "document_alias",
                "app": "models",
                "unique_together": (("client", "alias"),),
                "pk_attr": "id",
                "table_description": (
                    "Another id of a document in a client's manifest (Relay's MD5, Code "
                    "Generator's SHA-1)."
                ),
            },
            bases=["Entity"],
        ),
        ops.CreateModel(
            name="DocumentRegistration",
            fields=[
                (
                    "id",
                    fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                (
                    "document",
                    fields.ForeignKeyField(
                        "models.PersistedDocument",
                        source_field="document_id",
                        db_constraint=True,
                        to_field="sha256",
                        related_name="registrations",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("client", fields.CharField(default="", max_length=100)),
                (
                    "source",
                    fields.CharEnumField(
                        description="MANIFEST: manifest\nAPQ: apq",
                        enum_type=DocumentSource,
                        max_length=8,
                    ),
                ),
                ("name", fields.CharField(null=True, max_length=200)),
                ("registered_by", fields.CharField(max_length=200)),
            ],
            options={
                "table": "document_registration",
                "app": "models",
                "unique_together": (("document", "client", "source"),),
                "pk_attr": "id",
                "table_description": (
                    "A document on a list: a client's (or the shared one, client ''), by a "
                    "manifest or APQ."
                ),
            },
            bases=["Entity"],
        ),
    ]
