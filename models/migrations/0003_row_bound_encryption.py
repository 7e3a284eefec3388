"""Bind each stored NIR and calendar-feed token to its row.

Until now both were sealed with a constant associated data ("nir", "calendar-feed"), so a
ciphertext copied into another row decrypted there. Each is re-encrypted here with its
table, column and primary key as associated data (`models.crypto.row_context`), which the
code reads with from now on: a copied ciphertext no longer decrypts.

Re-encrypting needs SECRET_KEY, which Tortoise's runner cannot pass: `espace-sante migrate`
supplies it (`models.crypto.migration_key`). A bare `tortoise migrate` works on a database
with nothing to convert (a fresh one), and refuses otherwise.

Safe to run twice and from several machines at once: a value that already decrypts for its
row is left alone (AES-GCM tells the two apart: a ciphertext authenticates under one
associated data only), and each row is rewritten only if it still holds what was read.
The contexts are written out here, as they were when this migration was written.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

from tortoise import migrations
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.migrations import operations as ops

from models.base import parameter_prefix
from models.crypto import DecryptionError, Vault, migration_vault

# (table, column, the constant associated data of 0001)
COLUMNS = (
    ("patient", "nir_encrypted", "nir"),
    ("calendar_feed", "token_encrypted", "calendar-feed"),
)
BATCH = 500


class KeyNeeded(RuntimeError):
    pass


def _bound(table: str, column: str, row_id: Any) -> str:
    # SQLite hands the key back as text, PostgreSQL as a UUID: one spelling for both.
    return f"{table}.{column}:{UUID(str(row_id))}"


async def _batches(
    client: BaseDBAsyncClient, table: str, column: str
) -> AsyncIterator[list[tuple[Any, bytes]]]:
    """The (id, ciphertext) pairs of the column, in batches, in key order."""
    p = parameter_prefix(client)
    last: Any = None
    while True:
        after = "" if last is None else f' AND "id" > {p}1'
        rows = await client.execute_query_dict(
            f'SELECT "id", "{column}" AS "sealed" FROM "{table}" '  # noqa: S608 (constants)
            f'WHERE "{column}" IS NOT NULL{after} ORDER BY "id" LIMIT {BATCH}',
            [] if last is None else [last],
        )
        if rows:
            yield [(row["id"], bytes(row["sealed"])) for row in rows]
        if len(rows) < BATCH:
            return
        last = rows[-1]["id"]


def _key() -> Vault:
    vault = migration_vault()
    if vault is None:
        raise KeyNeeded(
            "0003_row_bound_encryption re-encrypts the stored NIRs and calendar-feed tokens "
            "with SECRET_KEY: run it with `espace-sante migrate`"
        )
    return vault


def _opens(vault: Vault, sealed: bytes, context: str) -> bool:
    try:
        vault.decrypt(sealed, context=context)
    except DecryptionError:
        return False
    return True


async def _convert(client: BaseDBAsyncClient, *, to_row: bool) -> None:
    p = parameter_prefix(client)
    for table, column, legacy in COLUMNS:
        async for batch in _batches(client, table, column):
            vault = _key()
            for row_id, sealed in batch:
                bound = _bound(table, column, row_id)
                source, target = (legacy, bound) if to_row else (bound, legacy)
                if _opens(vault, sealed, target):
                    continue  # already converted, by an earlier or a concurrent run
                try:
                    plaintext = vault.decrypt(sealed, context=source)
                except DecryptionError:
                    raise DecryptionError(
                        f"{table} {row_id}: {column} does not decrypt with this SECRET_KEY "
                        "(the migration is rolled back)"
                    ) from None
                # Only if it still holds what was read: a concurrent run may have won.
                await client.execute_query(
                    f'UPDATE "{table}" SET "{column}" = {p}1 '  # noqa: S608 (constants)
                    f'WHERE "id" = {p}2 AND "{column}" = {p}3',
                    [vault.encrypt(plaintext, context=target), row_id, sealed],
                )


async def bind_to_rows(apps: Any, schema_editor: Any) -> None:
    await _convert(schema_editor.client, to_row=True)


async def unbind_from_rows(apps: Any, schema_editor: Any) -> None:
    await _convert(schema_editor.client, to_row=False)


class Migration(migrations.Migration):
    dependencies = [("models", "0002_outbox_patient")]

    initial = False

    operations = [
        ops.RunPython(bind_to_rows, unbind_from_rows),
    ]
