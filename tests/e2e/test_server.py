"""The real thing: `espace-sante seed-demo`, then `espace-sante serve` in its own process,
talked to over TCP the way a client does. On SQLite; also on PostgreSQL (and Redis as the
broadcast backend) when TEST_DATABASE_URL (and REDIS_URL) are set."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from stdnum.fr import nir

from api.config import VARIABLES
from models.demo import DEMO_PASSWORD
from tests.conftest import PG_URL, free_port

pytestmark = pytest.mark.e2e

START_TIMEOUT = 60.0  # generous: CI machines are shared
STOP_TIMEOUT = 15.0
BACKENDS = ["sqlite", *(["postgres"] if PG_URL else [])]


@dataclass
class Server:
    url: str
    backend: str


def command(*args: str) -> list[str]:
    """The installed `espace-sante` script of this interpreter's environment."""
    script = Path(sys.executable).with_name("espace-sante")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "api.cli", *args]


def server_env(data_dir: Path, database_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    env.update(
        DATA_DIR=str(data_dir),
        ENVIRONMENT="development",
        TWO_FACTOR="false",
        SCHEDULER_ENABLED="false",
        PYTHONUNBUFFERED="1",
    )
    if database_url:
        env["DATABASE_URL"] = database_url
        redis_url = os.environ.get("REDIS_URL")
        if redis_url:
            env["BROADCAST_URL"] = redis_url
    return env


async def _pg(statement: str) -> None:
    import asyncpg

    assert PG_URL is not None
    conn = await asyncpg.connect(PG_URL.replace("postgres://", "postgresql://", 1))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    """A database of its own next to TEST_DATABASE_URL's, dropped at the end."""
    assert PG_URL is not None
    name = f"espace_sante_e2e_{uuid.uuid4().hex[:10]}"
    asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{PG_URL.rpartition('/')[0]}/{name}"
    finally:
        asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def wait_until_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"the server did not answer /healthz within {START_TIMEOUT} s:\n{log.read_text()}")


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    backend: str = request.param
    data_dir = tmp_path_factory.mktemp(f"e2e-{backend}")
    database_url = request.getfixturevalue("pg_database") if backend == "postgres" else None
    env = server_env(data_dir, database_url)
    seeded = subprocess.run(
        command("seed-demo"), env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert seeded.returncode == 0, seeded.stderr
    assert "camille@demo.espace-sante.localhost" in seeded.stdout

    port = free_port()
    log = data_dir / "server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            command("serve", "--host", "127.0.0.1", "--port", str(port), "--no-migrate"),
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, process, log)
        yield Server(url=url, backend=backend)
    finally:
        # A clean stop on SIGTERM, as a process manager sends it: the lifespan runs to its end.
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            pytest.fail(f"the server ignored SIGTERM for {STOP_TIMEOUT} s:\n{log.read_text()}")
    output_text = log.read_text()
    # uvicorn re-raises the signal it handled once its shutdown is complete.
    assert process.returncode in (0, -signal.SIGTERM), output_text
    assert "Application shutdown complete" in output_text, output_text
    assert "Traceback" not in output_text, output_text


def demo_nir(sex: int, birth: str, serial: str) -> str:
    body = f"{sex}{birth}75056{serial}"
    return body + nir.calc_check_digits(body)


def test_readyz_sees_the_database_and_the_broadcast_backend(server: Server) -> None:
    response = httpx.get(f"{server.url}/readyz")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"database": True, "broadcast": True, "objectStore": True},
    }


def test_demo_patient_logs_in_and_reads_her_space(server: Server) -> None:
    with httpx.Client(base_url=server.url) as http:
        login = http.post(
            "/graphql",
            json={
                "query": "mutation($email: String!, $password: String!) {"
                " login(input: {email: $email, password: $password}) { token } }",
                "variables": {
                    "email": "camille@demo.espace-sante.localhost",
                    "password": DEMO_PASSWORD,
                },
            },
        )
        token = login.json()["data"]["login"]["token"]
        viewer = http.post(
            "/graphql",
            json={"query": "{ viewer { ... on Patient { firstName nir } } }"},
            headers={"Authorization": f"Bearer {token}"},
        )

    assert viewer.status_code == 200
    assert viewer.json() == {
        "data": {"viewer": {"firstName": "Camille", "nir": demo_nir(2, "8405", "123")}}
    }


def test_graphiql_is_served_to_a_browser_in_development(server: Server) -> None:
    response = httpx.get(f"{server.url}/graphql", headers={"Accept": "text/html"})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "graphiql" in response.text.lower()


def test_unknown_route_answers_a_json_error(server: Server) -> None:
    response = httpx.get(f"{server.url}/no-such-route")

    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert [e["extensions"]["code"] for e in response.json()["errors"]] == ["NOT_FOUND"]
