"""The dossier's page index ends with the documents' id: a page is read in (date, created_at,
id) order, newest first (`resolvers/pagination.py`), and without the id in the index SQLite
sorted each page again in a temporary B-tree (`USE TEMP B-TREE FOR RIGHT PART OF ORDER
BY`). With it, the page is the index read backwards, up to its LIMIT. Declared in the
model's Meta too, so a database made by the migrations has what one made from the models
has (tests/test_cli.py compares them)."""

from __future__ import annotations

from tortoise import migrations
from tortoise.indexes import Index
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("models", "0015_session_purge")]

    initial = False

    operations = [
        ops.AddIndex(
            model_name="Document", index=Index(fields=["patient_id", "date", "created_at", "id"])
        ),
        ops.RemoveIndex(model_name="Document", fields=["patient_id", "date", "created_at"]),
    ]
