"""The blocks by professional: every relation of a professional with a space, and every
message a professional sends, asks whether a patient blocked them (`BLOCKING` in
models/access.py, `professional_id = …`), and the only index of `block`, its unique
(patient_id, professional_id), made SQLite scan the whole table for it. Declared in the
model's Meta too (tests/test_cli.py compares a migrated database with the models')."""

from __future__ import annotations

from tortoise import migrations
from tortoise.indexes import Index
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("models", "0016_document_page_index")]

    initial = False

    operations = [
        ops.AddIndex(model_name="Block", index=Index(fields=["professional_id"])),
    ]
