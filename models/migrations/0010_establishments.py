"""Establishments in the messagerie (models/establishment.py): the members of an
establishment's shared inbox; a conversation's establishment and purpose, each member's read
receipts (models/message.py); and the establishment an access event went through
(models/audit.py)."""

from uuid import uuid4

from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.indexes import Index
from tortoise.migrations import operations as ops

from models.message import ConversationPurpose


class Migration(migrations.Migration):
    dependencies = [("models", "0009_partner_apps")]

    initial = False

    operations = [
        ops.CreateModel(
            name="EstablishmentMember",
            fields=[
                (
                    "id",
                    fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                (
                    "establishment",
                    fields.ForeignKeyField(
                        "models.Establishment",
                        source_field="establishment_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="members",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "professional",
                    fields.ForeignKeyField(
                        "models.Professional",
                        source_field="professional_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="memberships",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("since", fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={
                "table": "establishment_member",
                "app": "models",
                "unique_together": (("establishment", "professional"),),
                "indexes": [Index(fields=["professional_id", "establishment_id"])],
                "pk_attr": "id",
                "table_description": (
                    "A professional who reads and answers the establishment's shared inbox."
                ),
            },
            bases=["Entity"],
        ),
        ops.CreateModel(
            name="MemberReadMark",
            fields=[
                (
                    "id",
                    fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                (
                    "conversation",
                    fields.ForeignKeyField(
                        "models.Conversation",
                        source_field="conversation_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="member_read_marks",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "professional",
                    fields.ForeignKeyField(
                        "models.Professional",
                        source_field="professional_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="member_read_marks",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("read_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={
                "table": "member_read_mark",
                "app": "models",
                "unique_together": (("conversation", "professional"),),
                "pk_attr": "id",
                "table_description": (
                    "How far each member of an establishment has read one of its conversations."
                ),
            },
            bases=["Entity"],
        ),
        ops.AddField(
            model_name="AccessEvent",
            name="establishment_id",
            field=fields.UUIDField(null=True),
        ),
        ops.AddField(
            model_name="Conversation",
            name="establishment",
            field=fields.ForeignKeyField(
                "models.Establishment",
                source_field="establishment_id",
                null=True,
                db_constraint=True,
                to_field="id",
                related_name="conversations",
                on_delete=OnDelete.RESTRICT,
            ),
        ),
        ops.AddField(
            model_name="Conversation",
            name="purpose",
            field=fields.CharEnumField(
                default=ConversationPurpose.CARE,
                description=(
                    "CARE: CARE\nADMISSION: ADMISSION\nDISCHARGE: DISCHARGE\n"
                    "ADMINISTRATIVE: ADMINISTRATIVE"
                ),
                enum_type=ConversationPurpose,
                max_length=16,
            ),
        ),
        ops.AddIndex(
            model_name="Conversation",
            index=Index(fields=["establishment_id", "last_message_at"]),
        ),
    ]
