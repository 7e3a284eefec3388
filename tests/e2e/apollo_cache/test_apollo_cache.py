"""A real normalised cache (Apollo Client's InMemoryCache, npm, pinned in this folder) against
a real `espace-sante serve` (issue 18, item 3): after each mutation whose payload returns
what it changed (`patient`, the health profile by its id, the new document or message
edge), the cached query shows the change with no refetch (`cache-only`, no request made),
and is exactly what the server then answers. The scenarios are in cache.mjs.

Needs `node` and npm: the test installs Apollo Client with `npm ci` from the committed
package-lock.json when node_modules is missing. Without them it is skipped, except in CI
(CI=true), where it fails.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port
from tests.e2e.live_support import (
    PASSWORD,
    Actors,
    ServerProcess,
    gql_data,
    open_session_for,
    start_setup,
)
from tests.e2e.test_http_audit import unavailable

pytestmark = pytest.mark.e2e

HERE = Path(__file__).parent
NPM_TIMEOUT = 300
RUN_TIMEOUT = 120  # the whole script: a dozen requests or so per scenario
SCENARIOS = [
    "updateHealthProfile",
    "rotateCalendarFeed",
    "grantConsent",
    "addDocument",
    "deleteDocument",
    "revokeConsent",
    "sendMessage",
    "markConversationRead",
    "requestDeletion",
]
CLOSE = (
    """mutation($input: CloseSpaceInput!) { closeSpace(input: $input) { patient { status } } }"""
)


@pytest.fixture(scope="module")
def node() -> str:
    binary, npm = shutil.which("node"), shutil.which("npm")
    if binary is None or npm is None:
        unavailable("node and npm are needed: Apollo Client runs in node")
    assert binary is not None and npm is not None
    if not (HERE / "node_modules" / "@apollo" / "client").is_dir():
        installed = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=HERE,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT,
            check=False,
        )
        assert installed.returncode == 0, f"npm ci failed:\n{installed.stdout}\n{installed.stderr}"
    return binary


@pytest.fixture(scope="module")
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, Actors, Path, str]]:
    """A server on a SQLite file of its own (the cache is a client's business: one database
    engine is enough), with a professional and two patients."""
    folder = tmp_path_factory.mktemp("apollo-cache")
    path = folder / "apollo.sqlite3"
    template = request.getfixturevalue("db_template")
    copied = Path(template).is_file()  # the session's migrated SQLite template
    if copied:
        shutil.copyfile(template, path)
    database_url = f"sqlite://{path}"
    actors = start_setup(database_url, folder / "setup", 2, migrate=not copied).actors()
    served = ServerProcess("apollo", folder / "server", database_url, "memory://", free_port())
    try:
        served.wait_healthy()
        yield served, actors, folder, database_url
    finally:
        code = served.stop()
        output = served.output()
        if code not in (0, -signal.SIGTERM) or "Traceback" in output:
            pytest.fail(f"the server exited with {code}:\n{output}")


def run(node: str, config: dict[str, Any]) -> list[dict[str, Any]]:
    done = subprocess.run(
        [node, "cache.mjs", json.dumps(config)],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"cache.mjs failed to run:\n{done.stdout}\n{done.stderr}"
    results: list[dict[str, Any]] = json.loads(done.stdout)
    return results


def test_each_payload_merges_into_the_cached_patient_without_a_refetch(
    node: str, world: tuple[ServerProcess, Actors, Path, str]
) -> None:
    server, actors, folder, database_url = world
    patient, closing = actors.patients
    # the deletion scenario needs a closed space, logged into again (closing ends sessions)
    closed = asyncio.run(
        gql_data(server.url, CLOSE, {"input": {"password": PASSWORD}}, closing.token)
    )
    assert closed == {"closeSpace": {"patient": {"status": "CLOSED"}}}
    token = open_session_for(database_url, folder / "session", closing.account, seconds=600)

    results = run(
        node,
        {
            "url": server.url,
            "patient": {"id": patient.id, "token": patient.token},
            "closed": {"id": closing.id, "token": token, "password": PASSWORD},
            "professional": {"id": actors.professional.id, "token": actors.professional.token},
        },
    )

    for result in results:
        if not result["ok"]:
            print(f"{result['name']}:\n{result['error']}")
    assert [(r["name"], r["ok"]) for r in results] == [(name, True) for name in SCENARIOS]
