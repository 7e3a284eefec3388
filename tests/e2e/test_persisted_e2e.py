"""Persisted documents across real server processes: the registry is the database's, so a
document registered through one `espace-sante serve` process is served by another sharing
the database, and by the same server after a restart (each process caches what it looked
up, never what it did not find)."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import PG_URL, free_port
from tests.e2e.live_support import WAIT, Actors, ServerProcess, Setup, start_setup
from tests.e2e.test_server import _pg

pytestmark = pytest.mark.e2e

VIEWER = "query Viewer { viewer { ... on Patient { firstName lastName } } }"
SHA256 = hashlib.sha256(VIEWER.encode()).hexdigest()
APQ = {"persistedQuery": {"version": 1, "sha256Hash": SHA256}}
ALICE = {"data": {"viewer": {"firstName": "Alice0", "lastName": "Lefebvre"}}}
NOT_FOUND = {
    "errors": [
        {"message": "PersistedQueryNotFound", "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"}}
    ]
}


@dataclass
class Pair:
    """Two servers, each a process of its own, on one database."""

    first: ServerProcess
    second: ServerProcess
    actors: Actors
    database_url: str
    folder: Path


@pytest.fixture(scope="module")
def pair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    folder = tmp_path_factory.mktemp("persisted")
    started: list[ServerProcess] = []
    setup: Setup | None = None
    pg_name = None
    try:
        if PG_URL:
            pg_name = f"espace_sante_persisted_{uuid.uuid4().hex[:10]}"
            asyncio.run(_pg(f'CREATE DATABASE "{pg_name}"'))
            database_url = f"{PG_URL.rpartition('/')[0]}/{pg_name}"
            setup = start_setup(database_url, folder, 1, migrate=True)
        else:
            path = folder / "persisted.sqlite3"
            shutil.copyfile(request.getfixturevalue("db_template"), path)
            database_url = f"sqlite://{path}"
            setup = start_setup(database_url, folder, 1, migrate=False)
        actors = setup.actors()
        for name in ("first", "second"):
            started.append(
                ServerProcess(name, folder / name, database_url, "memory://", free_port())
            )
        for server in started:
            server.wait_healthy()
        yield Pair(started[0], started[1], actors, database_url, folder)
    finally:
        if setup is not None:
            setup.stop()
        failures = []
        for server in started:
            code = server.stop()
            if code not in (0, -signal.SIGTERM) or "Traceback" in server.output():
                failures.append(f"--- {server.name} exited with {code}:\n{server.output()}")
        if pg_name is not None:
            asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))
        if failures:
            pytest.fail("\n".join(failures))


async def call(server: ServerProcess, token: str, body: dict[str, Any]) -> Any:
    """One POST on a fresh connection; every answer here is HTTP 200."""
    async with httpx.AsyncClient(timeout=WAIT) as http:
        response = await http.post(
            f"{server.url}/graphql", json=body, headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_document_registered_through_one_process_is_served_by_another(
    pair: Pair,
) -> None:
    token = pair.actors.patients[0].token

    assert await call(pair.second, token, {"extensions": APQ}) == NOT_FOUND
    assert await call(pair.first, token, {"query": VIEWER, "extensions": APQ}) == ALICE
    assert await call(pair.second, token, {"extensions": APQ}) == ALICE
    assert await call(pair.second, token, {"documentId": f"sha256:{SHA256}"}) == ALICE
    assert await call(pair.first, token, {"extensions": APQ}) == ALICE


async def test_a_registered_hash_alone_is_served_after_a_restart(pair: Pair) -> None:
    token = pair.actors.patients[0].token
    text = "query Names { viewer { ... on Patient { lastName firstName } } }"
    apq = {
        "persistedQuery": {"version": 1, "sha256Hash": hashlib.sha256(text.encode()).hexdigest()}
    }
    names = {"data": {"viewer": {"lastName": "Lefebvre", "firstName": "Alice0"}}}

    def serve(name: str) -> ServerProcess:
        return ServerProcess(name, pair.folder / name, pair.database_url, "memory://", free_port())

    before = serve("before-restart")
    try:
        before.wait_healthy()
        assert await call(before, token, {"extensions": apq}) == NOT_FOUND
        assert await call(before, token, {"query": text, "extensions": apq}) == names
    finally:
        stopped = before.stop()
    after = serve("after-restart")
    try:
        after.wait_healthy()
        by_hash = await call(after, token, {"extensions": apq})
        by_id = await call(after, token, {"documentId": apq["persistedQuery"]["sha256Hash"]})
    finally:
        restarted = after.stop()

    assert by_hash == names
    assert by_id == names
    for server, code in ((before, stopped), (after, restarted)):
        assert code in (0, -signal.SIGTERM)
        assert "Traceback" not in server.output()
