"""The test harness: a real SQLite file per test (or PostgreSQL with TEST_DATABASE_URL),
the real app with its lifespan, and a real SMTP server on loopback."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from argon2 import PasswordHasher
from starlette.applications import Starlette

import models.passwords
from api.app import create_app
from api.cli import migrate
from api.config import Settings
from tests.ports import free_port as free_port  # the tests import it from here

SECRET = "test-secret-key-" + "x" * 32
PG_URL = os.environ.get("TEST_DATABASE_URL")  # e.g. postgres://postgres@127.0.0.1:5432/postgres


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2id at its real cost takes ~0.2 s a hash; tests use minimal parameters."""
    cheap = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
    monkeypatch.setattr(models.passwords, "_hasher", cheap)
    monkeypatch.setattr(models.passwords, "_DUMMY_HASH", cheap.hash("timing-only"))


# --- database ---------------------------------------------------------------------------


def _pg_admin(url: str) -> tuple[str, str]:
    base, _, _ = url.rpartition("/")
    return base, url


@pytest.fixture(scope="session")
def db_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Migrate once per session; each test gets a copy (SQLite) or truncated tables (PG)."""
    if PG_URL:
        import asyncpg

        base, admin = _pg_admin(PG_URL)
        name = f"espace_sante_test_{uuid.uuid4().hex[:10]}"

        async def create() -> None:
            conn = await asyncpg.connect(admin.replace("postgres://", "postgresql://", 1))
            await conn.execute(f'CREATE DATABASE "{name}"')
            await conn.close()

        async def drop() -> None:
            conn = await asyncpg.connect(admin.replace("postgres://", "postgresql://", 1))
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.close()

        asyncio.run(create())
        url = f"{base}/{name}"
        asyncio.run(migrate(_settings(tmp_path_factory.mktemp("pg"), url)))
        yield url
        asyncio.run(drop())
    else:
        folder = tmp_path_factory.mktemp("template")
        url = f"sqlite://{folder / 'template.sqlite3'}"
        asyncio.run(migrate(_settings(folder, url)))
        yield str(folder / "template.sqlite3")


# For tests that send hundreds of requests from one address in seconds (the permission
# matrices): not what the request budget is for, which tests/test_budget*.py cover.
UNLIMITED_BUDGET = dict.fromkeys(
    (
        "rate_limit_requests_per_minute",
        "rate_limit_cost_per_minute",
        "rate_limit_address_requests_per_minute",
        "rate_limit_address_cost_per_minute",
    ),
    0,
)


def _settings(data_dir: Path, database_url: str, **overrides: Any) -> Settings:
    base = Settings(
        environment="test",
        data_dir=data_dir,
        database_url=database_url,
        secret_key=SECRET,
        two_factor=False,
        scheduler_enabled=False,
        public_url="http://testserver",
    )
    return replace(base, **overrides)


async def _truncate_all(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
    tables = await conn.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname='public' "
        "AND tablename <> 'tortoise_migrations'"
    )
    if tables:
        names = ", ".join(f'"{t["tablename"]}"' for t in tables)
        await conn.execute(f"TRUNCATE {names} CASCADE")
    await conn.close()


@pytest.fixture
async def database_url(db_template: str, tmp_path: Path) -> str:
    if PG_URL:
        await _truncate_all(db_template)
        return db_template
    target = tmp_path / "db.sqlite3"
    shutil.copyfile(db_template, target)
    return f"sqlite://{target}"


# --- mail -------------------------------------------------------------------------------


@dataclass
class CaughtMail:
    messages: list[Any]

    def last_to(self, address: str) -> str:
        for envelope in reversed(self.messages):
            if address in envelope.rcpt_tos:
                return str(envelope.content.decode("utf-8", "replace"))
        raise AssertionError(f"no mail to {address}")


class _Handler:
    def __init__(self, box: CaughtMail) -> None:
        self.box = box

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.box.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[str, CaughtMail]]:
    box = CaughtMail(messages=[])
    controller = Controller(_Handler(box), hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield f"smtp://127.0.0.1:{controller.port}", box
    finally:
        controller.stop()


# --- the app ----------------------------------------------------------------------------


@pytest.fixture
def settings(tmp_path: Path, database_url: str, smtp: tuple[str, CaughtMail]) -> Settings:
    return _settings(tmp_path, database_url, smtp_url=smtp[0])


@pytest.fixture
def mailbox(smtp: tuple[str, CaughtMail]) -> CaughtMail:
    return smtp[1]


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Starlette]:
    """The application, started (its lifespan run), for tests that also open websockets
    on it (tests/asgi_websocket.py) or reach its services."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def http(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of `app` (the same application as its websockets)."""
    transport = httpx.ASGITransport(app=app, client=("127.0.0.9", 4242))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.9", 4242))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http
