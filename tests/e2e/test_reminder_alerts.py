"""reminderAlerts end to end: a real `espace-sante serve` whose in-process scheduler runs
every second, and real websocket subscribers.

An appointment booked to start in 2 h + a few seconds has its 2 h reminder fall due a few
seconds later, so the scheduler (not the booking) raises it: it must reach the holder, the
representative of a minor, and nobody else. An emergency access reaches the holder at once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PG_URL, free_port
from tests.e2e import live_support
from tests.e2e.live_support import WAIT, LiveSocket, ServerProcess, gql_data, server_env

pytestmark = pytest.mark.e2e

MARGIN = 3.0  # seconds between booking and the 2 h reminder falling due
QUIET = 1.0  # how long "nothing arrives" is watched for
ALERTS = """
subscription {
  reminderAlerts { id kind rule title reason status dueAt appointment { id } }
}"""
CREATE = """
mutation($input: CreateAppointmentInput!) {
  createAppointment(input: $input) { appointment { id } }
}"""
EMERGENCY = """
mutation($patientId: ID!) {
  emergencyAccess(input: {patientId: $patientId, reason: "Patiente inconsciente aux urgences"}) {
    patient { id }
  }
}"""


# --- the actors, made in a subprocess (the test process holds no Tortoise state) ----------


@dataclass(frozen=True)
class Actor:
    id: str
    token: str


@dataclass(frozen=True)
class Cast:
    professional: Actor
    holder: Actor
    parent: Actor  # legal representative of `minor`
    minor: Actor  # no account: token is empty
    other: Actor


async def _make_cast(migrate_first: bool) -> dict[str, dict[str, str]]:
    from datetime import date

    from argon2 import PasswordHasher
    from stdnum.fr import nir
    from tortoise import Tortoise

    import models.passwords
    from api.cli import migrate
    from api.config import Settings
    from api.db import tortoise_config
    from models.account import Account, Role
    from models.base import utcnow
    from models.crypto import Vault
    from models.passwords import hash_password
    from models.patient import Patient, Representation, Sex, SpaceStatus, seal_nir
    from models.professional import Profession, Professional, Sector
    from models.session import open_session
    from resolvers.ids import encode

    models.passwords._hasher = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
    settings = Settings.from_env()
    if migrate_first:
        await migrate(settings)
    await Tortoise.init(config=tortoise_config(settings.database_url))
    try:
        vault = Vault(settings.secret_key)
        password = await hash_password(live_support.PASSWORD)
        tag = uuid.uuid4().hex[:8]
        today = date.today()

        async def session(account: Account) -> str:
            opened = await open_session(account, ttl=timedelta(hours=1), now=utcnow())
            assert opened.token is not None
            return opened.token

        async def patient(n: int, first: str, age: int, login: bool) -> dict[str, str]:
            # Under 25, so that no screening or vaccination reminder is ever due for them.
            born = date(today.year - age, 1, 15)
            body = f"2{born:%y}0175056{n:03d}"
            number = body + nir.calc_check_digits(body)
            patient_id = uuid.uuid4()
            row = await Patient.create(
                id=patient_id,
                nir_encrypted=seal_nir(vault, patient_id, number),
                nir_hash=vault.keyed_hash(number, purpose="nir"),
                first_name=first,
                last_name="Lefebvre",
                birth_date=born,
                sex=Sex.FEMALE,
                status=SpaceStatus.ACTIVE,
            )
            token = ""
            if login:
                account = await Account.create(
                    email=f"{first.lower()}.{tag}@example.org",
                    password_hash=password,
                    role=Role.PATIENT,
                    patient_id=row.id,
                )
                token = await session(account)
            return {"id": encode("Patient", row.id), "token": token, "pk": str(row.id)}

        professional = await Professional.create(
            rpps=f"1{uuid.uuid4().int % 10**10:010d}",
            first_name="Paul",
            last_name="Bernard",
            profession=Profession.MEDECIN,
            sector=Sector.HEALTH,
        )
        pro_account = await Account.create(
            email=f"pro.{tag}@example.org",
            password_hash=password,
            role=Role.PROFESSIONAL,
            professional_id=professional.id,
        )
        cast = {
            "professional": {
                "id": encode("Professional", professional.id),
                "token": await session(pro_account),
            },
            "holder": await patient(1, "Alice", 22, login=True),
            "parent": await patient(2, "Claire", 24, login=True),
            "minor": await patient(3, "Lea", 8, login=False),
            "other": await patient(4, "Berthe", 23, login=True),
        }
        await Representation.create(
            representative_id=cast["parent"].pop("pk"), dependent_id=cast["minor"].pop("pk")
        )
        for actor in cast.values():
            actor.pop("pk", None)
        return cast
    finally:
        await Tortoise.close_connections()


def make_cast(database_url: str, folder: Path, *, migrate: bool) -> Cast:
    args = [sys.executable, "-m", "tests.e2e.test_reminder_alerts", "setup"]
    process = subprocess.run(
        [*args, *(["--migrate"] if migrate else [])],
        env=server_env(folder, database_url, "memory://"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if process.returncode != 0:
        raise RuntimeError(f"setup failed:\n{process.stdout}\n{process.stderr}")
    data = json.loads(process.stdout.strip().splitlines()[-1])
    return Cast(**{name: Actor(**actor) for name, actor in data.items()})


# --- the server ----------------------------------------------------------------------------


def scheduled_env(data_dir: Path, database_url: str, broadcast_url: str) -> dict[str, str]:
    env = server_env(data_dir, database_url, broadcast_url)
    env.update(SCHEDULER_ENABLED="true", SCHEDULER_INTERVAL_SECONDS="1")
    return env


@dataclass
class Live:
    server: ServerProcess
    cast: Cast


@pytest.fixture(scope="module")
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    from tests.e2e.test_server import _pg

    folder = tmp_path_factory.mktemp("alerts")
    pg_name = None
    server: ServerProcess | None = None
    try:
        if PG_URL:
            pg_name = f"espace_sante_alerts_{uuid.uuid4().hex[:10]}"
            asyncio.run(_pg(f'CREATE DATABASE "{pg_name}"'))
            database_url = f"{PG_URL.rpartition('/')[0]}/{pg_name}"
        else:
            path = folder / "alerts.sqlite3"
            shutil.copyfile(request.getfixturevalue("db_template"), path)
            database_url = f"sqlite://{path}"
        # The actors exist before the server starts: its scheduler finds nothing due.
        cast = make_cast(database_url, folder, migrate=PG_URL is not None)
        with pytest.MonkeyPatch.context() as patch:
            # live_support's launcher turns the scheduler off; these tests need it on.
            patch.setattr(live_support, "server_env", scheduled_env)
            server = ServerProcess(
                "alerts", folder / "server", database_url, "memory://", free_port()
            )
        server.wait_healthy()
        yield Live(server, cast)
    finally:
        failure = None
        if server is not None:
            code = server.stop()
            output = server.output()
            if code not in (0, -signal.SIGTERM) or "Traceback" in output:
                failure = f"server exited with {code}:\n{output}"
        if pg_name is not None:
            asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))
        if failure:
            pytest.fail(failure)


@pytest.fixture
async def sockets() -> AsyncIterator[Callable[..., Any]]:
    """Opens websockets for a test and closes every one of them, whatever happens."""
    opened: list[LiveSocket] = []

    async def open_socket(url: str) -> LiveSocket:
        socket = await LiveSocket.open(url)
        opened.append(socket)
        return socket

    try:
        yield open_socket
    finally:
        for socket in opened:
            await socket.close()


async def subscribed(
    open_socket: Callable[..., Any], live: Live, actor: Actor
) -> tuple[LiveSocket, str]:
    socket: LiveSocket = await open_socket(live.server.ws_url)
    ack = await socket.init(actor.token)
    assert ack["type"] == "connection_ack", ack
    return socket, await socket.subscribe(ALERTS)


async def book(live: Live, actor: Actor, start: datetime, patient: Actor | None = None) -> str:
    variables = {
        "input": {
            "startsAt": start.isoformat(),
            "endsAt": (start + timedelta(minutes=30)).isoformat(),
            "title": "Consultation",
            **({"patientId": patient.id} if patient else {}),
        }
    }
    data = await gql_data(live.server.url, CREATE, variables, actor.token)
    appointment_id: str = data["createAppointment"]["appointment"]["id"]
    return appointment_id


# --- the tests -----------------------------------------------------------------------------


async def test_a_due_reminder_reaches_the_holder_and_a_minors_representative_only(
    live: Live, sockets: Any
) -> None:
    cast = live.cast
    holder, holder_op = await subscribed(sockets, live, cast.holder)
    parent, parent_op = await subscribed(sockets, live, cast.parent)
    other, _ = await subscribed(sockets, live, cast.other)

    # appointments whose 2 h reminder falls due MARGIN seconds from now (the 48 h one is
    # already past at booking, so it is never created)
    start = (datetime.now(UTC) + timedelta(hours=2, seconds=MARGIN)).replace(microsecond=0)
    due = (start - timedelta(hours=2)).timestamp()
    own = await book(live, cast.holder, start)
    childs = await book(live, cast.parent, start, patient=cast.minor)

    to_holder = (await holder.next_data(holder_op, timeout=WAIT + MARGIN))["reminderAlerts"]
    arrived = time.time()
    to_parent = (await parent.next_data(parent_op, timeout=WAIT))["reminderAlerts"]

    assert arrived >= due - 0.01  # raised when due, not when booked
    assert arrived <= due + WAIT
    for alert, appointment in ((to_holder, own), (to_parent, childs)):
        assert alert["kind"] == "APPOINTMENT" and alert["rule"] == "APPOINTMENT_2H"
        assert alert["status"] == "SENT"
        assert alert["appointment"] == {"id": appointment}
        assert datetime.fromisoformat(alert["dueAt"]).timestamp() == due
    assert await other.silent_for(QUIET) == []
    assert await holder.silent_for(0.1) == []  # the minor's reminder went to the parent only
    assert await parent.silent_for(0.1) == []


async def test_an_emergency_access_reaches_the_holder_at_once(live: Live, sockets: Any) -> None:
    cast = live.cast
    holder, holder_op = await subscribed(sockets, live, cast.holder)
    other, _ = await subscribed(sockets, live, cast.other)
    # proven live first: a reminder the scheduler raises reaches this subscription
    start = (datetime.now(UTC) + timedelta(hours=2, seconds=MARGIN)).replace(microsecond=0)
    await book(live, cast.holder, start)
    first = (await holder.next_data(holder_op, timeout=WAIT + MARGIN))["reminderAlerts"]
    assert first["rule"] == "APPOINTMENT_2H"

    asked = time.monotonic()
    await gql_data(
        live.server.url, EMERGENCY, {"patientId": cast.holder.id}, cast.professional.token
    )
    alert = (await holder.next_data(holder_op, timeout=WAIT))["reminderAlerts"]

    assert time.monotonic() - asked < 2.0
    assert alert["kind"] == "EMERGENCY_ACCESS" and alert["rule"] == "EMERGENCY_ACCESS"
    assert alert["status"] == "SENT" and alert["appointment"] is None
    assert "Patiente inconsciente aux urgences" in alert["reason"]
    assert await other.silent_for(QUIET) == []
    assert await holder.silent_for(0.1) == []


# --- `python -m tests.e2e.test_reminder_alerts setup` ---------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="test_reminder_alerts")
    sub = parser.add_subparsers(dest="command", required=True)
    setup = sub.add_parser("setup", help="create the actors in DATABASE_URL, print them as JSON")
    setup.add_argument("--migrate", action="store_true", help="migrate DATABASE_URL first")
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(_make_cast(args.migrate))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
