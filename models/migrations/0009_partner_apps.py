"""The catalogue (models/catalogue.py): partner apps, the grants patients give them, their
authorisation codes and their tokens (codes, tokens and client secrets as keyed hashes
only)."""

import functools
from json import dumps, loads
from uuid import uuid4

from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.indexes import Index
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("models", "0008_access_log_chain")]

    initial = False

    operations = [
        ops.CreateModel(
            name="PartnerApp",
            fields=[
                (
                    "id",
                    fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("name", fields.CharField(max_length=100)),
                ("description", fields.CharField(max_length=1000)),
                ("homepage", fields.CharField(null=True, max_length=500)),
                ("client_id", fields.CharField(unique=True, max_length=64)),
                ("client_secret_hash", fields.CharField(null=True, max_length=64)),
                (
                    "redirect_uris",
                    fields.JSONField(
                        encoder=functools.partial(dumps, separators=(",", ":")), decoder=loads
                    ),
                ),
                (
                    "scopes",
                    fields.JSONField(
                        encoder=functools.partial(dumps, separators=(",", ":")), decoder=loads
                    ),
                ),
                ("registered_by", fields.CharField(max_length=200)),
            ],
            options={
                "table": "partner_app",
                "app": "models",
                "pk_attr": "id",
                "table_description": "Apps of the catalogue: OAuth clients acting for patients.",
            },
            bases=["Entity"],
        ),
        ops.CreateModel(
            name="AppGrant",
            fields=[
                (
                    "id",
                    fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                (
                    "app",
                    fields.ForeignKeyField(
                        "models.PartnerApp",
                        source_field="app_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="grants",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "patient",
                    fields.ForeignKeyField(
                        "models.Patient",
                        source_field="patient_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="app_grants",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "granted_by",
                    fields.ForeignKeyField(
                        "models.Patient",
                        source_field="granted_by_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="app_grants_given",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "scopes",
                    fields.JSONField(
                        encoder=functools.partial(dumps, separators=(",", ":")), decoder=loads
                    ),
                ),
                ("revoked_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                (
                    "last_used_at",
                    fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
                ),
            ],
            options={
                "table": "app_grant",
                "app": "models",
                "indexes": [Index(fields=["patient_id", "app_id"])],
                "pk_attr": "id",
                "table_description": "What a space granted a partner app, and who granted it.",
            },
            bases=["Entity"],
        ),
        ops.CreateModel(
            name="AppToken",
            fields=[
                (
                    "id",
                    fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                (
                    "grant",
                    fields.ForeignKeyField(
                        "models.AppGrant",
                        source_field="grant_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="tokens",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("access_hash", fields.CharField(unique=True, max_length=64)),
                ("refresh_hash", fields.CharField(unique=True, max_length=64)),
                (
                    "scopes",
                    fields.JSONField(
                        encoder=functools.partial(dumps, separators=(",", ":")), decoder=loads
                    ),
                ),
                ("access_expires_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ("refresh_expires_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ("rotated_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ("revoked_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={
                "table": "app_token",
                "app": "models",
                "pk_attr": "id",
                "table_description": "A partner app's access and refresh tokens (as hashes).",
            },
            bases=["Entity"],
        ),
        ops.CreateModel(
            name="AuthorizationCode",
            fields=[
                (
                    "id",
                    fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("code_hash", fields.CharField(unique=True, max_length=64)),
                (
                    "app",
                    fields.ForeignKeyField(
                        "models.PartnerApp",
                        source_field="app_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="codes",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "patient",
                    fields.ForeignKeyField(
                        "models.Patient",
                        source_field="patient_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="app_codes",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "granted_by",
                    fields.ForeignKeyField(
                        "models.Patient",
                        source_field="granted_by_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="app_codes_given",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("redirect_uri", fields.CharField(max_length=500)),
                (
                    "scopes",
                    fields.JSONField(
                        encoder=functools.partial(dumps, separators=(",", ":")), decoder=loads
                    ),
                ),
                ("code_challenge", fields.CharField(max_length=128)),
                ("code_challenge_method", fields.CharField(max_length=8)),
                ("expires_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ("used_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={
                "table": "app_authorization_code",
                "app": "models",
                "pk_attr": "id",
                "table_description": "Authorisation codes given to partner apps: single use.",
            },
            bases=["Entity"],
        ),
    ]
