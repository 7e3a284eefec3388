"""Real processes and real sockets for the live-delivery tests (tests/e2e/test_live.py).

- `ServerProcess`: `espace-sante serve` in its own process, with its own DATA_DIR.
- `setup_database`: migrates a database and creates a professional and patients, each with
  an open session, in a subprocess (`python -m tests.e2e.live_support setup`), so the
  test process never holds Tortoise state.
- `LiveSocket`: a small client of both websocket protocols over `websockets`:
  graphql-transport-ws and the legacy graphql-ws (subscriptions-transport-ws).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from api.config import VARIABLES

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"
WAIT = 10.0  # the bound on every wait for something that should happen
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
SECRET_KEY = "live-e2e-secret-key-" + "k" * 32
PASSWORD = "correct horse battery staple"
ALLOWED_ORIGIN = "https://app.espace-sante.example"


def command(*args: str) -> list[str]:
    """The installed `espace-sante` script of this interpreter's environment."""
    script = Path(sys.executable).with_name("espace-sante")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "api.cli", *args]


def server_env(
    data_dir: Path, database_url: str, broadcast_url: str, **overrides: str
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    env.update(
        DATA_DIR=str(data_dir),
        DATABASE_URL=database_url,
        BROADCAST_URL=broadcast_url,
        ENVIRONMENT="development",
        TWO_FACTOR="false",
        SCHEDULER_ENABLED="false",
        SECRET_KEY=SECRET_KEY,
        ALLOWED_ORIGINS=ALLOWED_ORIGIN,
        PYTHONUNBUFFERED="1",
        # The suite's own traffic (the fuzzer's: thousands of requests from one address)
        # far below the request budget; its tests set their own (test_budget_two_workers).
        RATE_LIMIT_REQUESTS_PER_MINUTE="1000000",
        RATE_LIMIT_COST_PER_MINUTE="100000000",
        RATE_LIMIT_ADDRESS_REQUESTS_PER_MINUTE="1000000",
        RATE_LIMIT_ADDRESS_COST_PER_MINUTE="100000000",
    )
    env.update(overrides)
    return env


# --- the database -----------------------------------------------------------------------


@dataclass(frozen=True)
class Actor:
    id: str  # global id
    account: str  # account UUID: its event channel is account:<uuid>
    token: str


@dataclass(frozen=True)
class Actors:
    professional: Actor
    patients: list[Actor]


def start_setup(database_url: str, data_dir: Path, patients: int, *, migrate: bool) -> Setup:
    """Create the actors (after migrating `database_url` if asked), in a subprocess."""
    args = ["setup", "--patients", str(patients), *([] if migrate else ["--no-migrate"])]
    return Setup(
        subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.live_support", *args],
            env=server_env(data_dir, database_url, "memory://"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    )


def open_session_for(database_url: str, data_dir: Path, account: str, *, seconds: float) -> str:
    """A new token of `account` that expires in `seconds`, made in a subprocess."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.e2e.live_support", "session", account, str(seconds)],
        env=server_env(data_dir, database_url, "memory://"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"session failed:\n{done.stdout}\n{done.stderr}")
    token: str = json.loads(done.stdout.strip().splitlines()[-1])["token"]
    return token


class Setup:
    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process

    def actors(self) -> Actors:
        try:
            out, err = self.process.communicate(timeout=60)
        finally:
            self.stop()
        if self.process.returncode != 0:
            raise RuntimeError(f"setup failed:\n{out}\n{err}")
        data = json.loads(out.strip().splitlines()[-1])
        return Actors(
            professional=Actor(**data["professional"]),
            patients=[Actor(**p) for p in data["patients"]],
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


async def _setup(patients: int, *, migrate_first: bool) -> dict[str, Any]:
    from argon2 import PasswordHasher
    from tortoise import Tortoise

    import models.passwords
    from api.cli import migrate
    from api.config import Settings
    from api.db import tortoise_config

    # The real cost (~0.2 s a hash) buys nothing here; the server verifies any parameters.
    models.passwords._hasher = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
    settings = Settings.from_env()
    if migrate_first:
        await migrate(settings)
    await Tortoise.init(config=tortoise_config(settings.database_url))
    try:
        return await _make_actors(settings, patients)
    finally:
        await Tortoise.close_connections()


async def _open_session(account_id: str, seconds: float) -> dict[str, Any]:
    from datetime import timedelta

    from tortoise import Tortoise

    from api.config import Settings
    from api.db import tortoise_config
    from models.account import Account
    from models.base import utcnow
    from models.session import open_session

    await Tortoise.init(config=tortoise_config(Settings.from_env().database_url))
    try:
        account = await Account.get(id=account_id)
        opened = await open_session(account, ttl=timedelta(seconds=seconds), now=utcnow())
        return {"token": opened.token}
    finally:
        await Tortoise.close_connections()


async def _make_actors(settings: Any, patients: int) -> dict[str, Any]:
    import uuid
    from datetime import date, timedelta

    from stdnum.fr import nir

    from models.account import Account, Role
    from models.base import utcnow
    from models.crypto import Vault
    from models.passwords import hash_password
    from models.patient import Patient, Sex, SpaceStatus, seal_nir
    from models.professional import Profession, Professional, Sector
    from models.session import open_session
    from resolvers.ids import encode

    vault = Vault(settings.secret_key)
    password_hash = await hash_password(PASSWORD)
    tag = uuid.uuid4().hex[:8]

    async def session(account: Account) -> str:
        opened = await open_session(account, ttl=timedelta(hours=1), now=utcnow())
        assert opened.token is not None
        return opened.token

    professional = await Professional.create(
        rpps=f"1{uuid.uuid4().int % 10**10:010d}",
        first_name="Paul",
        last_name="Bernard",
        profession=Profession.MEDECIN,
        sector=Sector.HEALTH,
    )
    pro_account = await Account.create(
        email=f"pro.{tag}@example.org",
        password_hash=password_hash,
        role=Role.PROFESSIONAL,
        professional_id=professional.id,
    )
    made = []
    for n in range(patients):
        body = f"2800175056{n:03d}"
        number = body + nir.calc_check_digits(body)
        patient_id = uuid.uuid4()
        patient = await Patient.create(
            id=patient_id,
            nir_encrypted=seal_nir(vault, patient_id, number),
            nir_hash=vault.keyed_hash(number, purpose="nir"),
            first_name=f"Alice{n}",
            last_name="Lefebvre",
            birth_date=date(1980, 1, 1),
            sex=Sex.FEMALE,
            status=SpaceStatus.ACTIVE,
        )
        account = await Account.create(
            email=f"alice{n}.{tag}@example.org",
            password_hash=password_hash,
            role=Role.PATIENT,
            patient_id=patient.id,
        )
        made.append(
            {
                "id": encode("Patient", patient.id),
                "account": str(account.id),
                "token": await session(account),
            }
        )
    return {
        "professional": {
            "id": encode("Professional", professional.id),
            "account": str(pro_account.id),
            "token": await session(pro_account),
        },
        "patients": made,
    }


# --- server processes -------------------------------------------------------------------


class ServerProcess:
    """`espace-sante serve` on a free port; `stop()` always leaves no process behind."""

    def __init__(
        self,
        name: str,
        data_dir: Path,
        database_url: str,
        broadcast_url: str,
        port: int,
        workers: int = 1,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}/graphql"
        self.log = data_dir / "server.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        args = ["serve", "--host", "127.0.0.1", "--port", str(port), "--no-migrate"]
        if workers > 1:
            args += ["--workers", str(workers)]
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(
                command(*args),
                env=server_env(data_dir, database_url, broadcast_url, **(env or {})),
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready in {START_TIMEOUT} s:\n{self.output()}")

    def stop(self) -> int:
        """SIGTERM, as a process manager sends it; SIGKILL if it does not stop in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


# --- HTTP -------------------------------------------------------------------------------


async def gql(
    url: str, query: str, variables: Mapping[str, Any] | None = None, token: str | None = None
) -> dict[str, Any]:
    """One POST /graphql on a fresh connection (so a multi-worker server spreads them)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(timeout=WAIT) as http:
        response = await http.post(
            f"{url}/graphql", json={"query": query, "variables": variables}, headers=headers
        )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def gql_data(
    url: str, query: str, variables: Mapping[str, Any] | None = None, token: str | None = None
) -> dict[str, Any]:
    body = await gql(url, query, variables, token)
    assert "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data


# --- websockets -------------------------------------------------------------------------


class Closed(Exception):
    """The server closed the socket."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed with {code}: {reason}")
        self.code = code
        self.reason = reason


class LiveSocket:
    """One websocket speaking graphql-transport-ws or the legacy graphql-ws.

    `messages()` answers protocol messages as the server sent them, minus keep-alives.
    """

    def __init__(self, connection: ClientConnection, protocol: str) -> None:
        self.connection = connection
        self.protocol = protocol
        self._ids = 0

    @classmethod
    async def open(cls, url: str, protocol: str = TRANSPORT_WS) -> LiveSocket:
        connection = await asyncio.wait_for(
            connect(url, subprotocols=[Subprotocol(protocol)], open_timeout=WAIT), WAIT
        )
        assert connection.subprotocol == protocol
        return cls(connection, protocol)

    async def close(self) -> None:
        await self.connection.close()

    async def __aenter__(self) -> LiveSocket:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def send(self, message: Mapping[str, Any]) -> None:
        await self.connection.send(json.dumps(message))

    async def receive(self, timeout: float = WAIT) -> dict[str, Any]:
        """The next message (keep-alives skipped); `Closed` if the server closed the socket."""
        while True:
            try:
                raw = await asyncio.wait_for(self.connection.recv(), timeout)
            except ConnectionClosed as exc:
                received = exc.rcvd
                raise Closed(
                    received.code if received else None, received.reason if received else ""
                ) from exc
            message: dict[str, Any] = json.loads(raw)
            if message.get("type") not in ("ka", "ping", "pong"):
                return message
            if message.get("type") == "ping":
                await self.send({"type": "pong"})

    async def silent_for(self, seconds: float) -> list[dict[str, Any]]:
        """Whatever arrives within `seconds` (a bounded wait for "nothing")."""
        got: list[dict[str, Any]] = []
        deadline = asyncio.get_running_loop().time() + seconds
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            try:
                got.append(await self.receive(left))
            except TimeoutError:
                break
        return got

    async def init(
        self, token: str | None = None, payload: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """connection_init with the token in its payload; answers the server's reply."""
        if payload is None:
            payload = {"Authorization": f"Bearer {token}"} if token else {}
        await self.send({"type": "connection_init", "payload": dict(payload)})
        return await self.receive()

    async def subscribe(self, query: str, variables: Mapping[str, Any] | None = None) -> str:
        self._ids += 1
        op_id = str(self._ids)
        kind = "subscribe" if self.protocol == TRANSPORT_WS else "start"
        payload = {"query": query, "variables": dict(variables or {})}
        await self.send({"id": op_id, "type": kind, "payload": payload})
        return op_id

    async def stop(self, op_id: str) -> None:
        kind = "complete" if self.protocol == TRANSPORT_WS else "stop"
        await self.send({"id": op_id, "type": kind})

    async def next_data(self, op_id: str, timeout: float = WAIT) -> dict[str, Any]:
        """The data of the next result of `op_id`; fails on anything else."""
        try:
            message = await self.receive(timeout)
        except TimeoutError:
            raise AssertionError(f"no result for operation {op_id} in {timeout} s") from None
        expected = "next" if self.protocol == TRANSPORT_WS else "data"
        assert message.get("id") == op_id and message.get("type") == expected, message
        payload: dict[str, Any] = message["payload"]
        assert "errors" not in payload, payload
        data: dict[str, Any] = payload["data"]
        return data


# --- the setup subprocess ---------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="live_support")
    sub = parser.add_subparsers(dest="command", required=True)
    setup = sub.add_parser("setup", help="migrate DATABASE_URL and print the actors as JSON")
    setup.add_argument("--patients", type=int, default=1)
    setup.add_argument("--no-migrate", action="store_true", help="the database is migrated")
    session = sub.add_parser("session", help="open a session of an account, print its token")
    session.add_argument("account", help="the account's UUID")
    session.add_argument("seconds", type=float, help="its lifetime")
    args = parser.parse_args(argv)
    if args.command == "session":
        print(json.dumps(asyncio.run(_open_session(args.account, args.seconds))))
        return 0
    actors = asyncio.run(_setup(args.patients, migrate_first=not args.no_migrate))
    print(json.dumps(actors))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


@contextlib.contextmanager
def serve_demo(data_dir: Path, name: str, *, public_url: bool = False) -> Iterator[ServerProcess]:
    """`espace-sante seed-demo`, then `espace-sante serve` on a free port, as `./scripts/demo`
    runs them (with `PUBLIC_URL` the server's own address if `public_url`: the links it
    answers then work as printed)."""
    from tests.conftest import free_port

    database_url = f"sqlite://{data_dir / 'espace-sante.sqlite3'}"
    port = free_port()
    extra = {"PUBLIC_URL": f"http://127.0.0.1:{port}"} if public_url else {}
    seeded = subprocess.run(
        command("seed-demo"),
        env=server_env(data_dir, database_url, "memory://", **extra),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert seeded.returncode == 0, seeded.stderr
    server = ServerProcess(name, data_dir, database_url, "memory://", port, env=extra)
    try:
        server.wait_healthy()
        yield server
    finally:
        server.stop()
