"""The NIR and the calendar-feed token are encrypted for their row (associated data: table,
column, primary key), and migration 0003 re-encrypts what was sealed with a constant."""

from __future__ import annotations

import asyncio
import logging
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from tortoise import Tortoise
from tortoise.migrations.api import migrate as migrate_api

from api.app import create_app
from api.cli import migrate
from api.config import Settings
from api.db import tortoise_config
from models.calendar_feed import CalendarFeed
from models.crypto import DecryptionError, Vault, migration_key, token_hash
from models.patient import Patient, SpaceStatus
from tests.conftest import PG_URL, SECRET, _pg_admin, _settings
from tests.factories import Person, make_patient
from tests.graphql import GraphQLResult, gql

NIR = "{ viewer { ... on Patient { firstName nir } } }"
FEED_URL = "query($id: ID!) { patient(id: $id) { calendarFeedUrl } }"
BEFORE_0003 = "models.0002_outbox_patient"
VAULT = Vault(SECRET)


def masked(result: GraphQLResult) -> bool:
    """One error, masked: INTERNAL_SERVER_ERROR with a request id and a generic message."""
    [error] = result.errors
    return (
        error["message"] == "Internal server error."
        and set(error["extensions"])
        == {
            "code",
            "requestId",
        }
        and error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    )


async def stored_nir(person: Person) -> bytes:
    row = await Patient.get(id=person.patient.id)
    assert row.nir_encrypted is not None
    return row.nir_encrypted


def token_of(url: str) -> str:
    return url.removeprefix("http://testserver/calendar/").removesuffix(".ics")


# --- a ciphertext copied into another row ---------------------------------------------


async def test_a_nir_copied_into_another_patient_row_does_not_reveal_it(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    # given Alice's NIR ciphertext copied into Bob's row
    alice = await make_patient("Alice")
    bob = await make_patient("Bob")
    await Patient.filter(id=bob.patient.id).update(nir_encrypted=await stored_nir(alice))
    caplog.set_level(logging.ERROR)

    # when Bob reads his NIR
    result = await gql(client, NIR, token=bob.token)

    # then he gets a masked error and no NIR, never Alice's; the log names the row only
    assert result.data == {"viewer": {"firstName": "Bob", "nir": None}}
    assert masked(result)
    assert alice.nir not in result.response.text
    assert f"the NIR of patient {bob.patient.id} does not decrypt for its row" in caplog.text
    assert alice.nir not in caplog.text
    # and Alice still reads her own
    mine = await gql(client, NIR, token=alice.token)
    assert mine.ok() == {"viewer": {"firstName": "Alice", "nir": alice.nir}}


async def test_a_feed_token_copied_into_another_feed_row_does_not_reveal_it(
    client: httpx.AsyncClient,
) -> None:
    # given two feeds, and Alice's token ciphertext copied into Bob's feed row
    alice = await make_patient("Alice")
    bob = await make_patient("Bob")
    alice_url = (await gql(client, FEED_URL, {"id": alice.id}, token=alice.token)).ok()
    bob_url = (await gql(client, FEED_URL, {"id": bob.id}, token=bob.token)).ok()
    alice_feed = await CalendarFeed.get(patient_id=alice.patient.id)
    await CalendarFeed.filter(patient_id=bob.patient.id).update(
        token_encrypted=alice_feed.token_encrypted
    )

    # when Bob asks for his feed URL
    result = await gql(client, FEED_URL, {"id": bob.id}, token=bob.token)

    # then he gets a masked error and no URL, never Alice's
    assert result.data == {"patient": {"calendarFeedUrl": None}}
    assert masked(result)
    assert token_of(alice_url["patient"]["calendarFeedUrl"]) not in result.response.text
    # and his own URL, whose hash is still in his row, still serves his feed
    response = await client.get(
        bob_url["patient"]["calendarFeedUrl"].removeprefix("http://testserver")
    )
    assert response.status_code == 200


async def test_the_stored_ciphertexts_are_bound_to_table_column_and_row(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    url = (await gql(client, FEED_URL, {"id": alice.id}, token=alice.token)).ok()
    feed = await CalendarFeed.get(patient_id=alice.patient.id)
    sealed_nir = await stored_nir(alice)

    assert VAULT.decrypt(sealed_nir, context=f"patient.nir_encrypted:{alice.patient.id}") == (
        alice.nir
    )
    assert VAULT.decrypt(
        feed.token_encrypted, context=f"calendar_feed.token_encrypted:{feed.id}"
    ) == token_of(url["patient"]["calendarFeedUrl"])
    for blob, constant in ((sealed_nir, "nir"), (feed.token_encrypted, "calendar-feed")):
        with pytest.raises(DecryptionError):
            VAULT.decrypt(blob, context=constant)


# --- migration 0003 -------------------------------------------------------------------


async def _pg(statement: str) -> None:
    import asyncpg

    _, admin = _pg_admin(str(PG_URL))
    conn = await asyncpg.connect(admin.replace("postgres://", "postgresql://", 1))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def _pg_url(name: str) -> str:
    base, _ = _pg_admin(str(PG_URL))
    return f"{base}/{name}"


@pytest.fixture(scope="module")
def template_0002(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Migrating is the slow part: up to 0002 once, copied for each test."""
    folder = tmp_path_factory.mktemp("before-0003")
    if PG_URL:
        name = f"espace_sante_0002_{uuid.uuid4().hex[:10]}"
        asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
        asyncio.run(migrate_to(_settings(folder, _pg_url(name)), BEFORE_0003))
        yield name
        asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    else:
        path = folder / "template.sqlite3"
        asyncio.run(migrate_to(_settings(folder, f"sqlite://{path}"), BEFORE_0003))
        yield str(path)


@pytest.fixture
async def before_0003(tmp_path: Path, template_0002: str) -> AsyncIterator[Settings]:
    """A database of its own migrated up to 0002, as the code before row-bound encryption
    left it (a SQLite file, or a PostgreSQL database with TEST_DATABASE_URL)."""
    if not PG_URL:
        shutil.copyfile(template_0002, tmp_path / "db.sqlite3")
        yield _settings(tmp_path, f"sqlite://{tmp_path / 'db.sqlite3'}")
        return
    name = f"espace_sante_rowbound_{uuid.uuid4().hex[:10]}"
    await _pg(f'CREATE DATABASE "{name}" TEMPLATE "{template_0002}"')
    try:
        yield _settings(tmp_path, _pg_url(name))
    finally:
        await _pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def migrate_to(settings: Settings, target: str, *, key: bool = True) -> None:
    config = tortoise_config(settings.database_url)
    await Tortoise.init(config=config)
    try:
        if key:
            with migration_key(Vault(settings.secret_key)):
                await migrate_api(config=config, target=target)
        else:
            await migrate_api(config=config, target=target)
    finally:
        await Tortoise.close_connections()


@asynccontextmanager
async def orm(settings: Settings) -> AsyncIterator[None]:
    await Tortoise.init(config=tortoise_config(settings.database_url))
    try:
        yield
    finally:
        await Tortoise.close_connections()


@asynccontextmanager
async def app_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.9", 4242))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


LEGACY_TOKEN = "legacy-feed-token-" + "t" * 25


async def write_legacy_rows(settings: Settings) -> tuple[Person, Person]:
    """Two patients, a space opposed (no NIR kept) and a feed, sealed the pre-0003 way."""
    async with orm(settings):
        alice = await make_patient("Alice")
        bob = await make_patient("Bob")
        await make_patient("Oscar", status=SpaceStatus.OPPOSED)
        await Patient.filter(first_name="Oscar").update(nir_encrypted=None)
        for person in (alice, bob):
            await Patient.filter(id=person.patient.id).update(
                nir_encrypted=VAULT.encrypt(person.nir, context="nir")
            )
        await CalendarFeed.create(
            patient_id=alice.patient.id,
            token_hash=token_hash(LEGACY_TOKEN),
            token_encrypted=VAULT.encrypt(LEGACY_TOKEN, context="calendar-feed"),
        )
    return alice, bob


async def stored(settings: Settings) -> dict[str, Any]:
    async with orm(settings):
        return {
            "nirs": await Patient.all().order_by("id").values_list("id", "nir_encrypted"),
            "feeds": await CalendarFeed.all().order_by("id").values_list("id", "token_encrypted"),
            "applied": await applied(),
        }


async def applied() -> list[str]:
    conn = Tortoise.get_connection("default")
    rows = await conn.execute_query_dict('SELECT "name" FROM "tortoise_migrations"')
    return sorted(row["name"] for row in rows)


def bound_values(rows: dict[str, Any]) -> list[str]:
    """What the stored ciphertexts hold, each opened for its own row; the constant
    associated data of 0001 must open none of them."""
    sealed = [(f"patient.nir_encrypted:{pk}", blob) for pk, blob in rows["nirs"] if blob]
    sealed += [(f"calendar_feed.token_encrypted:{pk}", blob) for pk, blob in rows["feeds"]]
    for _, blob in sealed:
        for constant in ("nir", "calendar-feed"):
            with pytest.raises(DecryptionError):
                VAULT.decrypt(blob, context=constant)
    return sorted(VAULT.decrypt(blob, context=context) for context, blob in sealed)


async def read_back(settings: Settings, alice: Person, bob: Person) -> dict[str, Any]:
    async with app_client(settings) as http:
        alice_nir = await gql(http, NIR, token=alice.token)
        bob_nir = await gql(http, NIR, token=bob.token)
        feed = await gql(http, FEED_URL, {"id": alice.id}, token=alice.token)
    return {
        "alice": alice_nir.ok()["viewer"]["nir"],
        "bob": bob_nir.ok()["viewer"]["nir"],
        "feed": feed.ok()["patient"]["calendarFeedUrl"],
    }


async def test_migrate_binds_the_legacy_ciphertexts_to_their_rows(before_0003: Settings) -> None:
    # given NIRs and a feed token sealed with the constant associated data of 0001
    settings = before_0003
    alice, bob = await write_legacy_rows(settings)

    # when `espace-sante migrate` runs
    await migrate(settings)

    # then everyone reads their own values back through GraphQL
    assert await read_back(settings, alice, bob) == {
        "alice": alice.nir,
        "bob": bob.nir,
        "feed": f"http://testserver/calendar/{LEGACY_TOKEN}.ics",
    }
    # and each ciphertext is now bound to its row: the constant no longer opens any
    after = await stored(settings)
    assert "0003_row_bound_encryption" in after["applied"]
    assert bound_values(after) == sorted([alice.nir, bob.nir, LEGACY_TOKEN])


async def test_migrate_twice_and_a_concurrent_second_run_change_nothing(
    before_0003: Settings,
) -> None:
    # given legacy rows, migrated once
    settings = before_0003
    alice, bob = await write_legacy_rows(settings)
    await migrate(settings)
    once = await stored(settings)

    # when migrate runs again, and then as a second machine would that saw 0003 unapplied
    await migrate(settings)
    twice = await stored(settings)
    async with orm(settings):
        conn = Tortoise.get_connection("default")
        await conn.execute_query(
            'DELETE FROM "tortoise_migrations" WHERE "name" = \'0003_row_bound_encryption\''
        )
    await migrate(settings)

    # then no ciphertext changed, each still bound to its row, and the values read back
    assert twice == once
    assert await stored(settings) == once
    assert bound_values(once) == sorted([alice.nir, bob.nir, LEGACY_TOKEN])
    assert (await read_back(settings, alice, bob))["bob"] == bob.nir


async def test_rows_already_bound_are_kept_and_legacy_ones_converted(before_0003: Settings) -> None:
    # given Alice's NIR sealed the new way (written by new code) and Bob's the old way
    settings = before_0003
    alice, bob = await write_legacy_rows(settings)
    async with orm(settings):
        bound = VAULT.encrypt(alice.nir, context=f"patient.nir_encrypted:{alice.patient.id}")
        await Patient.filter(id=alice.patient.id).update(nir_encrypted=bound)

    # when migrate runs
    await migrate(settings)

    # then Alice's ciphertext is untouched, and both read back
    async with orm(settings):
        assert await stored_nir(alice) == bound
    values = await read_back(settings, alice, bob)
    assert (values["alice"], values["bob"]) == (alice.nir, bob.nir)


async def test_migrate_with_another_secret_key_refuses_and_changes_nothing(
    before_0003: Settings,
) -> None:
    # given legacy rows
    settings = before_0003
    await write_legacy_rows(settings)
    before = await stored(settings)

    # when migrate runs with a key the rows were not sealed with
    with pytest.raises(DecryptionError, match="does not decrypt with this SECRET_KEY"):
        await migrate(replace(settings, secret_key="another-key-" + "y" * 32))

    # then nothing was converted, nor 0003 recorded
    assert await stored(settings) == before
    assert "0003_row_bound_encryption" not in before["applied"]


async def test_0003_without_the_key_refuses_on_rows_and_runs_on_an_empty_database(
    before_0003: Settings,
) -> None:
    # given legacy rows
    settings = before_0003
    await write_legacy_rows(settings)
    before = await stored(settings)

    # when 0003 runs without `espace-sante migrate` supplying the key
    with pytest.raises(RuntimeError, match="run it with `espace-sante migrate`"):
        await migrate_to(settings, "models.0003_row_bound_encryption", key=False)

    # then nothing changed
    assert await stored(settings) == before
    # while with nothing to re-encrypt (a fresh database), it runs
    async with orm(settings):
        await Patient.all().update(nir_encrypted=None)
        await CalendarFeed.all().delete()
    await migrate_to(settings, "models.0003_row_bound_encryption", key=False)
    assert "0003_row_bound_encryption" in (await stored(settings))["applied"]


async def test_rolling_0003_back_restores_the_constant_associated_data(
    before_0003: Settings,
) -> None:
    # given legacy rows, migrated by 0003 (rolling back later migrations on SQLite goes
    # through Tortoise's table rebuilds, which drop indexes a later reverse step then misses)
    settings = before_0003
    alice, bob = await write_legacy_rows(settings)
    await migrate_to(settings, "models.0003_row_bound_encryption")
    assert bound_values(await stored(settings)) == sorted([alice.nir, bob.nir, LEGACY_TOKEN])

    # when the migration is rolled back
    await migrate_to(settings, BEFORE_0003)

    # then the code before it could read them again
    async with orm(settings):
        assert VAULT.decrypt(await stored_nir(bob), context="nir") == bob.nir
        feed = await CalendarFeed.get(patient_id=alice.patient.id)
        assert VAULT.decrypt(feed.token_encrypted, context="calendar-feed") == LEGACY_TOKEN
