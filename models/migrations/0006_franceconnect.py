"""FranceConnect login (models/franceconnect.py): the pending authorisation requests, the
single-use login tickets, the ID token kept beside the session it opened, and an index on
(birth_date, sex) for the candidates of the identity matching."""

from uuid import uuid4

from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.indexes import Index
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("models", "0005_persisted_documents")]

    initial = False

    operations = [
        ops.CreateModel(
            name="AuthorizationRequest",
            fields=[
                (
                    "id",
                    fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("state_hash", fields.CharField(unique=True, max_length=64)),
                ("nonce_hash", fields.CharField(max_length=64)),
                ("code_verifier", fields.BinaryField(null=True)),
                ("patient_hint", fields.UUIDField(null=True)),
                (
                    "expires_at",
                    fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False),
                ),
            ],
            options={
                "table": "franceconnect_request",
                "app": "models",
                "pk_attr": "id",
                "table_description": "A login sent to the provider, waiting for its callback.",
            },
            bases=["Entity"],
        ),
        ops.CreateModel(
            name="LoginTicket",
            fields=[
                (
                    "id",
                    fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("ticket_hash", fields.CharField(unique=True, max_length=64)),
                (
                    "account",
                    fields.ForeignKeyField(
                        "models.Account",
                        source_field="account_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="franceconnect_tickets",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("id_token", fields.BinaryField()),
                (
                    "expires_at",
                    fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False),
                ),
            ],
            options={
                "table": "franceconnect_ticket",
                "app": "models",
                "pk_attr": "id",
                "table_description": (
                    "What the callback hands the front end, exchanged once for a session."
                ),
            },
            bases=["Entity"],
        ),
        ops.CreateModel(
            name="ProviderSession",
            fields=[
                (
                    "id",
                    fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                (
                    "session",
                    fields.OneToOneField(
                        "models.Session",
                        source_field="session_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="provider_session",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("id_token", fields.BinaryField()),
            ],
            options={
                "table": "franceconnect_session",
                "app": "models",
                "pk_attr": "id",
                "table_description": (
                    "The ID token a session was opened with: its `id_token_hint` at the "
                    "provider's logout."
                ),
            },
            bases=["Entity"],
        ),
        ops.AddIndex(
            model_name="Patient",
            index=Index(fields=["birth_date", "sex"]),
        ),
    ]
