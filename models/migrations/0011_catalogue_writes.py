"""Partner apps that write (models/catalogue.py, models/document.py, models/appointment.py):
the app that authored a document, the appointment platform that booked an appointment, and
the grant an authorisation code's exchange created (what a reuse of the code revokes)."""

from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("models", "0010_establishments")]

    initial = False

    operations = [
        ops.AddField(
            model_name="Document",
            name="author_app",
            field=fields.ForeignKeyField(
                "models.PartnerApp",
                source_field="author_app_id",
                null=True,
                db_constraint=True,
                to_field="id",
                related_name="authored_documents",
                on_delete=OnDelete.SET_NULL,
            ),
        ),
        ops.AddField(
            model_name="Appointment",
            name="app",
            field=fields.ForeignKeyField(
                "models.PartnerApp",
                source_field="app_id",
                null=True,
                db_constraint=True,
                to_field="id",
                related_name="appointments",
                on_delete=OnDelete.SET_NULL,
            ),
        ),
        ops.AddField(
            model_name="AuthorizationCode",
            name="grant",
            field=fields.ForeignKeyField(
                "models.AppGrant",
                source_field="grant_id",
                null=True,
                db_constraint=True,
                to_field="id",
                related_name="codes",
                on_delete=OnDelete.SET_NULL,
            ),
        ),
    ]
