"""The `espace-sante` command, called in-process through `api.cli.main`."""

from __future__ import annotations

import asyncio
import re
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from tortoise import Tortoise
from tortoise.backends.base.executor import EXECUTOR_CACHE
from tortoise.cli.cli import tortoise_cli_context
from tortoise.migrations.autodetector import MigrationAutodetector

import api.cli
import api.config
from api.app import create_app
from api.cli import main
from api.config import VARIABLES, Settings
from api.db import tortoise_config
from api.schema import schema_sdl
from models.demo import DEMO_PASSWORD

LOGIN = """
mutation($email: String!, $password: String!) {
  login(input: {email: $email, password: $password}) {
    token
    viewer { __typename }
  }
}
"""


@pytest.fixture(autouse=True)
def fresh_query_cache() -> Iterator[None]:
    """Tortoise caches each model's INSERT/DELETE SQL per connection *name* ("default"), not
    per dialect: these tests run SQLite in-process, so under TEST_DATABASE_URL the suite's
    PostgreSQL statements must not leak in, nor SQLite's `?` placeholders leak out."""
    EXECUTOR_CACHE.clear()
    yield
    EXECUTOR_CACHE.clear()


def development_env(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    """A development environment in data_dir, whatever the developer's shell exports."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATA_DIR", str(data_dir))
    monkeypatch.setenv("ENVIRONMENT", "development")
    monkeypatch.setenv("TWO_FACTOR", "false")
    monkeypatch.setenv("SCHEDULER_ENABLED", "false")


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    development_env(monkeypatch, tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`migrate` is the slow part: run it once, and copy its result for the other commands."""
    folder = tmp_path_factory.mktemp("cli-template")
    with pytest.MonkeyPatch.context() as monkeypatch:
        development_env(monkeypatch, folder)
        EXECUTOR_CACHE.clear()
        assert main(["migrate"]) == 0
    return folder / "espace-sante.sqlite3"


@pytest.fixture
def migrated(data_dir: Path, migrated_template: Path) -> Path:
    database = data_dir / "espace-sante.sqlite3"
    shutil.copyfile(migrated_template, database)
    return database


def tables(database: Path) -> dict[str, str]:
    with closing(sqlite3.connect(database)) as conn:
        rows = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type IN ('table', 'index') "
            "AND name NOT LIKE 'sqlite_%'"
        ).fetchall()
    return {name: sql for name, sql in rows}


def columns(database: Path) -> dict[str, set[str]]:
    with closing(sqlite3.connect(database)) as conn:
        names = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' AND name <> 'tortoise_migrations'"
            )
        ]
        return {
            name: {row[1] for row in conn.execute(f'PRAGMA table_info("{name}")')} for name in names
        }


def indexes(database: Path) -> set[tuple[str, tuple[str, ...], bool]]:
    """Each table's indexes, unique constraints included: (table, columns, unique)."""
    with closing(sqlite3.connect(database)) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' AND name <> 'tortoise_migrations'"
            )
        ]
        found = set()
        for table in tables:
            for _, name, unique, *_ in conn.execute(f'PRAGMA index_list("{table}")'):
                info = conn.execute(f'PRAGMA index_info("{name}")')
                found.add((table, tuple(row[2] for row in info), bool(unique)))
        return found


def count(database: Path, table: str) -> int:
    with closing(sqlite3.connect(database)) as conn:
        (n,) = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()
    return int(n)


async def login(email: str, password: str) -> dict[str, object]:
    app = create_app(Settings.from_env())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.9", 4242))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            response = await http.post(
                "/graphql",
                json={"query": LOGIN, "variables": {"email": email, "password": password}},
            )
    body: dict[str, object] = response.json()
    return body


# --- migrate ----------------------------------------------------------------------------


def test_migrate_creates_the_tables_on_a_fresh_sqlite_file(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = data_dir / "espace-sante.sqlite3"
    assert not database.exists()

    assert main(["migrate"]) == 0

    assert capsys.readouterr().out == "database is up to date\n"
    assert {"tortoise_migrations", "account", "operator", "patient", "session"} <= set(
        tables(database)
    )
    assert count(database, "tortoise_migrations") == len(
        list((Path(api.cli.__file__).parent.parent / "models" / "migrations").glob("0*.py"))
    )


def test_migrate_twice_is_a_no_op(migrated: Path) -> None:
    before = tables(migrated), count(migrated, "tortoise_migrations")

    assert main(["migrate"]) == 0

    assert (tables(migrated), count(migrated, "tortoise_migrations")) == before


def test_migrations_match_the_models() -> None:
    """What `tortoise makemigrations` would write: nothing, or a migration is missing."""

    async def pending() -> list[str]:
        config = tortoise_config("sqlite://:memory:")
        async with tortoise_cli_context(config) as ctx:
            assert ctx.apps is not None
            writers = await MigrationAutodetector(ctx.apps, config["apps"]).changes()
        return [
            f"{writer.app_label}: {type(operation).__name__} {vars(operation)}"
            for writer in writers
            for operation in writer.operations
        ]

    changes = asyncio.run(pending())

    assert changes == [], (
        "the models changed without a migration: run "
        "`.venv/bin/tortoise makemigrations` and commit models/migrations/\n" + "\n".join(changes)
    )


def test_migrated_columns_match_the_generated_schema(
    migrated_template: Path, tmp_path: Path
) -> None:
    generated = tmp_path / "generated.sqlite3"

    async def generate() -> None:
        await Tortoise.init(config=tortoise_config(f"sqlite://{generated}"))
        try:
            await Tortoise.generate_schemas()
        finally:
            await Tortoise.close_connections()

    asyncio.run(generate())

    assert columns(migrated_template) == columns(generated)
    assert indexes(migrated_template) == indexes(generated)


# --- create-operator --------------------------------------------------------------------


def test_create_operator_then_login_works(
    migrated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["create-operator", "--email", "Ops@Example.org", "--password", "a-long-password"])

    assert code == 0
    assert capsys.readouterr().out == "operator ops@example.org created\n"
    result = asyncio.run(login("ops@example.org", "a-long-password"))
    assert "errors" not in result, result
    data = result["data"]
    assert isinstance(data, dict)
    assert data["login"]["viewer"] == {"__typename": "Operator"}
    assert isinstance(data["login"]["token"], str)


def test_create_operator_refuses_a_taken_email_without_a_traceback(
    migrated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["create-operator", "--email", "ops@example.org", "--password", "a-long-password"])
        == 0
    )
    capsys.readouterr()

    code = main(["create-operator", "--email", "ops@example.org", "--password", "another-password"])

    assert code == 1
    assert capsys.readouterr().err == "error: This e-mail address is already in use.\n"
    assert count(migrated, "account") == 1


# --- seed-demo --------------------------------------------------------------------------


def _age(month: int, day: int, year: int) -> int:
    """Years completed by someone born on that day, today in Paris."""
    today = datetime.now(ZoneInfo("Europe/Paris")).date()
    return today.year - year - ((today.month, today.day) < (month, day))


DEMO_LOGINS = [
    f"demo logins (password for all: {DEMO_PASSWORD}):",
    "  operator      operateur@demo.espace-sante.localhost",
    "  professional  dr.martin@demo.espace-sante.localhost   (Dr Claire Martin, GP)",
    "  professional  dr.benali@demo.espace-sante.localhost   (Dr Karim Benali, emergency room)",
    "  professional  e.garnier@demo.espace-sante.localhost   (hospital admissions nurse)",
    "  professional  s.lambert@demo.espace-sante.localhost   (physio, consent expired)",
    "  professional  dr.moreau@demo.espace-sante.localhost   (blocked by Camille)",
    "  patient       camille@demo.espace-sante.localhost     (represents her son Léo,"
    f" {_age(9, 3, 2016)})",
    "  patient       thomas@demo.espace-sante.localhost      (her husband, represents Léo too)",
    f"  patient       jean@demo.espace-sante.localhost        (her father, {_age(2, 20, 1958)})",
]


def test_seed_demo_prints_the_logins_and_is_idempotent(
    migrated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = migrated

    assert main(["seed-demo"]) == 0
    first = capsys.readouterr().out
    accounts, patients = count(database, "account"), count(database, "patient")
    assert main(["seed-demo"]) == 0
    second = capsys.readouterr().out

    assert first.splitlines()[-11:] == ["demo data loaded", *DEMO_LOGINS]
    assert second.splitlines()[-11:] == ["demo data already loaded", *DEMO_LOGINS]
    assert (accounts, patients) == (9, 4)
    assert (count(database, "account"), count(database, "patient")) == (9, 4)


# --- export-schema ----------------------------------------------------------------------


def test_export_schema_writes_the_sdl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "exported.graphql"

    assert main(["export-schema", "--output", str(target)]) == 0

    assert target.read_text(encoding="utf-8") == schema_sdl()
    assert capsys.readouterr().out == f"wrote {target}\n"


# --- run-jobs ---------------------------------------------------------------------------


def test_run_jobs_prints_its_report(migrated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run-jobs", "--now", "2026-11-25T09:00:00+01:00"]) == 0

    lines = capsys.readouterr().out.splitlines()
    report = dict(line.split(": ") for line in lines)
    assert all(re.fullmatch(r"[a-z_]+", name) for name in report), lines
    assert {"spaces_created", "spaces_purged", "messages_delivered"} <= set(report)
    assert set(report.values()) == {"0"}  # nothing due on an empty database, and no job failed


@pytest.mark.parametrize("moment", ["2026-11-25T09:00:00", "tomorrow"])
def test_run_jobs_refuses_a_moment_without_an_offset(
    data_dir: Path, capsys: pytest.CaptureFixture[str], moment: str
) -> None:
    assert main(["run-jobs", "--now", moment]) == 2

    assert "--now needs an offset" in capsys.readouterr().err
    assert not (data_dir / "espace-sante.sqlite3").exists()


# --- serve and settings -----------------------------------------------------------------


def test_serve_with_several_workers_on_memory_broadcast_refuses(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import uvicorn

    started: list[str] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: started.append("uvicorn"))

    async def fake_migrate(settings: Settings) -> None:
        started.append("migrate")

    monkeypatch.setattr(api.cli, "migrate", fake_migrate)

    code = main(["serve", "--workers", "2"])

    assert code == 2
    assert "BROADCAST_URL" in capsys.readouterr().err
    assert started == []
    assert not (data_dir / "espace-sante.sqlite3").exists()


def test_production_without_secret_key_refuses(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.delenv("TWO_FACTOR")

    code = main(["migrate"])

    assert code == 2
    assert capsys.readouterr().err == (
        "configuration error: SECRET_KEY must be set in production (32+ random characters)\n"
    )
    assert list(data_dir.iterdir()) == []


def test_production_without_smtp_url_refuses_to_start(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without SMTP, every login and activation code would go to DATA_DIR/outbox/ in clear."""
    import uvicorn

    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("SECRET_KEY", "k" * 40)
    monkeypatch.delenv("TWO_FACTOR")
    started: list[str] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: started.append("uvicorn"))

    async def fake_migrate(settings: Settings) -> None:
        started.append("migrate")

    monkeypatch.setattr(api.cli, "migrate", fake_migrate)

    # when production starts without SMTP_URL: exit 2, one line, nothing started or written
    assert main(["serve"]) == 2
    assert capsys.readouterr().err == (
        "configuration error: SMTP_URL must be set in production (login and activation codes)\n"
    )
    assert started == []
    assert list(data_dir.iterdir()) == []
    # and with it, it starts
    monkeypatch.setenv("SMTP_URL", "smtp://127.0.0.1:2525")
    assert main(["serve"]) == 0
    assert (started, capsys.readouterr().err) == (["migrate", "uvicorn"], "")


def test_production_refuses_two_factor_off(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("SECRET_KEY", "k" * 40)

    assert main(["serve"]) == 2

    assert "two-factor" in capsys.readouterr().err


def test_every_setting_read_is_listed_and_documented() -> None:
    source = Path(api.config.__file__).read_text()
    read = set(re.findall(r'env(?:\.get\(|, )"([A-Z][A-Z0-9_]*)"', source))
    readme = (Path(__file__).parent.parent / "README.md").read_text()

    assert read == set(VARIABLES)
    assert [name for name in VARIABLES if f"| `{name}` |" not in readme] == []
