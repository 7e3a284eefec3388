"""The indexes of the purges of ended sessions and login challenges (models/session.py,
`purge_ended_sessions`, `purge_ended_challenges`, run by run-jobs): each run finds the
rows that expired, or were revoked, more than a day ago without reading a table of every
login. Declared in the models' Meta too, so a database made by the migrations has what
one made from the models has (tests/test_cli.py compares them)."""

from __future__ import annotations

from tortoise import migrations
from tortoise.indexes import Index
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("models", "0014_lost_indexes")]

    initial = False

    operations = [
        ops.AddIndex(model_name="Session", index=Index(fields=["expires_at"])),
        ops.AddIndex(model_name="Session", index=Index(fields=["revoked_at"])),
        ops.AddIndex(model_name="LoginChallenge", index=Index(fields=["expires_at"])),
    ]
