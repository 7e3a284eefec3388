"""accessLogged end to end: two real `espace-sante serve` processes sharing one database and
Redis; each access made through one reaches the holder's socket on the other, live; a
subscriber that reconnects replays what it missed from its cursor, in order, once; a legal
representative never gets an event about a document hidden from representatives.

Race-free as tests/e2e/test_live.py is (STACK.md trap 8): every subscription starts with
`after:` an event logged before it, and first receives the one logged after that: that
replay proves it live, so whatever is logged next must come through the event bus.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest

from tests.conftest import PG_URL, free_port
from tests.e2e.live_support import (
    WAIT,
    LiveSocket,
    ServerProcess,
    gql,
    gql_data,
    server_env,
)
from tests.e2e.test_server import _pg
from tests.redis_server import redis_reachable

pytestmark = pytest.mark.e2e

SUBSCRIPTION = """subscription($patientId: ID, $after: String) {
  accessLogged(patientId: $patientId, after: $after) {
    id action basis role document { id } actor { __typename ... on Professional { id } }
  }
}"""
READ = "query($id: ID!) { patient(id: $id) { firstName } }"
LOG = """{ viewer { ... on Patient {
  accessLog(first: 100) { edges { cursor node { id action } } }
  dependents { id accessLog(first: 100) { edges { cursor node { id action } } } } } } }"""
ADD = """mutation($input: AddDocumentInput!) { addDocument(input: $input) { document { id } } }"""
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
QUIET = 0.5


def unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI") == "true":  # a skipped guard protects nothing in CI
        pytest.fail(reason)
    pytest.skip(reason)


@dataclass(frozen=True)
class Who:
    id: str
    token: str


@dataclass(frozen=True)
class People:
    professional: Who
    holders: list[Who]  # each has given the professional a READ_WRITE consent
    parent: Who
    minor: Who  # the parent's child, who consented to the professional too


@dataclass
class Pair:
    a: ServerProcess
    b: ServerProcess
    people: People


@pytest.fixture(scope="module")
def pair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
    if not redis_reachable(redis_url):
        unavailable(f"no Redis at {redis_url}")
    folder = tmp_path_factory.mktemp("access-logged")
    started: list[ServerProcess] = []
    pg_name = None
    try:
        if PG_URL:
            pg_name = f"espace_sante_log_{uuid.uuid4().hex[:10]}"
            asyncio.run(_pg(f'CREATE DATABASE "{pg_name}"'))
            database_url = f"{PG_URL.rpartition('/')[0]}/{pg_name}"
        else:
            path = folder / "log.sqlite3"
            shutil.copyfile(request.getfixturevalue("db_template"), path)
            database_url = f"sqlite://{path}"
        people = _setup(database_url, folder, migrate=bool(PG_URL))
        for name in ("a", "b"):
            started.append(ServerProcess(name, folder / name, database_url, redis_url, free_port()))
        for server in started:
            server.wait_healthy()
        yield Pair(started[0], started[1], people)
    finally:
        failures = []
        for server in started:
            code = server.stop()
            output = server.output()
            if code not in (0, -signal.SIGTERM) or "Traceback" in output:
                failures.append(f"--- {server.name} exited with {code}:\n{output}")
        if pg_name is not None:
            asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))
        if failures:
            pytest.fail("\n".join(failures))


def _setup(database_url: str, folder: Path, *, migrate: bool) -> People:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.e2e.test_access_logged",
            *([] if migrate else ["--no-migrate"]),
        ],
        env=server_env(folder, database_url, "memory://"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"setup failed:\n{done.stdout}\n{done.stderr}")
    data = json.loads(done.stdout.strip().splitlines()[-1])
    return People(
        professional=Who(**data["professional"]),
        holders=[Who(**h) for h in data["holders"]],
        parent=Who(**data["parent"]),
        minor=Who(**data["minor"]),
    )


@pytest.fixture(scope="module")
def holders(pair: Pair) -> Iterator[Who]:
    return iter(pair.people.holders)


@pytest.fixture
async def sockets() -> AsyncIterator[Callable[..., Any]]:
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


# --- helpers ----------------------------------------------------------------------------


async def read(server: ServerProcess, pro: Who, space: Who) -> None:
    """One read of the space by the professional: one access event."""
    data = await gql_data(server.url, READ, {"id": space.id}, pro.token)
    assert data == {"patient": {"firstName": "Alice"}}


async def log_of(server: ServerProcess, viewer: Who, minor: bool = False) -> list[dict[str, Any]]:
    """The space's log as its holder (or, `minor`, the parent) reads it, oldest first."""
    data = (await gql_data(server.url, LOG, {}, viewer.token))["viewer"]
    log = data["dependents"][0]["accessLog"] if minor else data["accessLog"]
    return list(reversed(log["edges"]))


async def subscribe(
    socket: LiveSocket, viewer: Who, after: str | None, space: str | None = None
) -> str:
    ack = await socket.init(viewer.token)
    assert ack["type"] == "connection_ack", ack
    return await socket.subscribe(SUBSCRIPTION, {"after": after, "patientId": space})


async def events(socket: LiveSocket, op_id: str, count: int) -> list[dict[str, Any]]:
    return [(await socket.next_data(op_id))["accessLogged"] for _ in range(count)]


async def upload(server: ServerProcess, pro: Who, space: Who, **fields: Any) -> str:
    operations = {
        "query": ADD,
        "variables": {
            "input": {
                "title": "Bilan",
                "category": "LAB_RESULT",
                "patientId": space.id,
                **fields,
                "file": None,
            }
        },
    }
    async with httpx.AsyncClient(timeout=WAIT) as http:
        response = await http.post(
            f"{server.url}/graphql",
            data={
                "operations": json.dumps(operations),
                "map": json.dumps({"0": ["variables.input.file"]}),
            },
            files={"0": ("bilan.pdf", PDF, "application/pdf")},
            headers={"Authorization": f"Bearer {pro.token}", "Apollo-Require-Preflight": "true"},
        )
    body = response.json()
    assert "errors" not in body, body
    return str(body["data"]["addDocument"]["document"]["id"])


async def live(
    open_socket: Callable[..., Any], server: ServerProcess, pair: Pair, holder: Who
) -> tuple[LiveSocket, str, list[str]]:
    """A subscription of the holder on `server`, proven live: two reads logged before it,
    the second replayed from the first's cursor. Returns the socket, the operation, and
    the ids of the events logged so far."""
    pro = pair.people.professional
    await read(pair.a, pro, holder)
    await read(pair.b, pro, holder)
    logged = await log_of(pair.a, holder)
    socket: LiveSocket = await open_socket(server.ws_url)
    op_id = await subscribe(socket, holder, logged[-2]["cursor"])
    (replayed,) = await events(socket, op_id, 1)
    assert replayed["id"] == logged[-1]["node"]["id"]
    return socket, op_id, [e["node"]["id"] for e in logged]


# --- across workers ---------------------------------------------------------------------


@pytest.mark.redis
async def test_each_access_through_one_worker_reaches_the_holder_on_the_other_live(
    pair: Pair, holders: Iterator[Who], sockets: Any
) -> None:
    holder = next(holders)
    pro = pair.people.professional
    socket, op_id, _ = await live(sockets, pair.a, pair, holder)

    # when the professional reads the dossier, then adds to it, through the other process
    await read(pair.b, pro, holder)
    document = await upload(pair.b, pro, holder)  # written in the transaction of the deposit

    # then both arrive on the holder's socket, as they were logged, and nothing else
    got = await events(socket, op_id, 2)
    assert [(e["action"], e["basis"], e["role"]) for e in got] == [
        ("READ", "CONSENT", "PROFESSIONAL"),
        ("WRITE", "CONSENT", "PROFESSIONAL"),
    ]
    assert got[0]["actor"] == {"__typename": "Professional", "id": pro.id}
    assert got[1]["document"] == {"id": document}
    logged = await log_of(pair.a, holder)
    assert [e["id"] for e in got] == [e["node"]["id"] for e in logged[-2:]]
    assert await socket.silent_for(QUIET) == []


@pytest.mark.redis
async def test_a_reconnected_subscriber_replays_what_it_missed_in_order_then_goes_live(
    pair: Pair, holders: Iterator[Who], sockets: Any
) -> None:
    holder = next(holders)
    pro = pair.people.professional
    socket, op_id, _ = await live(sockets, pair.a, pair, holder)
    await read(pair.b, pro, holder)
    (last,) = await events(socket, op_id, 1)
    await socket.close()

    # while it is away, three accesses through either process
    for server in (pair.a, pair.b, pair.a):
        await read(server, pro, holder)
    missed = [e["node"]["id"] for e in (await log_of(pair.b, holder))[-3:]]

    # when it comes back, on the other process, after the last event it received
    again: LiveSocket = await sockets(pair.b.ws_url)
    op_id = await subscribe(again, holder, last["id"])

    # then it gets what it missed, in order, then what comes next, live, each once
    assert [e["id"] for e in await events(again, op_id, 3)] == missed
    await read(pair.a, pro, holder)
    (then,) = await events(again, op_id, 1)
    assert then["id"] == (await log_of(pair.b, holder))[-1]["node"]["id"]
    assert await again.silent_for(QUIET) == []

    # and a cursor of the accessLog list works as well as an event's id
    logged = await log_of(pair.a, holder)
    third: LiveSocket = await sockets(pair.a.ws_url)
    op_id = await subscribe(third, holder, logged[-3]["cursor"])
    assert [e["id"] for e in await events(third, op_id, 2)] == [
        e["node"]["id"] for e in logged[-2:]
    ]


# --- who gets what ----------------------------------------------------------------------


@pytest.mark.redis
async def test_a_representative_never_gets_an_event_about_a_document_hidden_from_them(
    pair: Pair, sockets: Any
) -> None:
    parent, minor, pro = pair.people.parent, pair.people.minor, pair.people.professional
    await read(pair.a, pro, minor)
    await read(pair.b, pro, minor)
    logged = await log_of(pair.a, parent, minor=True)
    socket: LiveSocket = await sockets(pair.a.ws_url)
    op_id = await subscribe(socket, parent, logged[-2]["cursor"], minor.id)
    replayed, opening = await events(socket, op_id, 2)
    assert replayed["id"] == logged[-1]["node"]["id"]
    # the parent's own reading of the log is an access of the space too
    assert (opening["action"], opening["basis"], opening["role"]) == (
        "READ",
        "REPRESENTATIVE",
        "PATIENT",
    )

    # when the professional deposits a document hidden from representatives, then reads
    await upload(pair.b, pro, minor, hiddenFromRepresentatives=True)
    await read(pair.b, pro, minor)

    # then the parent gets the read, and nothing of the deposit
    (got,) = await events(socket, op_id, 1)
    assert (got["action"], got["document"]) == ("READ", None)
    assert await socket.silent_for(QUIET) == []


async def test_nobody_else_listens_to_a_space(
    pair: Pair, holders: Iterator[Who], sockets: Any
) -> None:
    holder = next(holders)
    other = next(holders)
    pro = pair.people.professional
    for viewer, code in ((other, "NOT_FOUND"), (pro, "FORBIDDEN")):
        socket: LiveSocket = await sockets(pair.a.ws_url)
        op_id = await subscribe(socket, viewer, None, holder.id)
        answer = await socket.receive()
        assert answer["id"] == op_id, answer
        errors = answer["payload"] if answer["type"] == "error" else answer["payload"]["errors"]
        assert [e["extensions"]["code"] for e in errors] == [code], answer
    # nor does a professional without naming a space
    socket = await sockets(pair.a.ws_url)
    op_id = await subscribe(socket, pro, None)
    answer = await socket.receive()
    errors = answer["payload"] if answer["type"] == "error" else answer["payload"]["errors"]
    assert [e["extensions"]["code"] for e in errors] == ["FORBIDDEN"], answer


async def test_a_bad_cursor_is_bad_input(pair: Pair, holders: Iterator[Who], sockets: Any) -> None:
    holder = next(holders)
    body = await gql(pair.a.url, "{ __typename }", token=holder.token)
    assert body == {"data": {"__typename": "Query"}}
    socket: LiveSocket = await sockets(pair.a.ws_url)
    await subscribe(socket, holder, "not-a-cursor")
    answer = await socket.receive()
    errors = answer["payload"] if answer["type"] == "error" else answer["payload"]["errors"]
    assert [e["extensions"]["code"] for e in errors] == ["BAD_USER_INPUT"], answer


# --- the setup subprocess ---------------------------------------------------------------


async def _make(migrate_first: bool) -> dict[str, Any]:
    from datetime import date, timedelta

    from argon2 import PasswordHasher
    from stdnum.fr import nir
    from tortoise import Tortoise

    import models.passwords
    from api.cli import migrate
    from api.config import Settings
    from api.db import tortoise_config
    from models.account import Account, Role
    from models.base import utcnow
    from models.consent import Consent, ConsentAccess
    from models.crypto import Vault
    from models.patient import Patient, Representation, Sex, SpaceStatus, seal_nir
    from models.professional import Profession, Professional, Sector
    from models.session import open_session
    from resolvers.ids import encode

    models.passwords._hasher = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
    settings = Settings.from_env()
    if migrate_first:
        await migrate(settings)
    await Tortoise.init(config=tortoise_config(settings.database_url))
    vault = Vault(settings.secret_key)
    tag = uuid.uuid4().hex[:8]
    serial = iter(range(1000))

    async def token(account: Account) -> str:
        opened = await open_session(account, ttl=timedelta(hours=1), now=utcnow())
        assert opened.token is not None
        return opened.token

    async def patient(first: str, birth: date, email: str | None) -> tuple[Patient, str | None]:
        body = f"2{birth:%y}{birth:%m}75056{next(serial):03d}"
        pk = uuid.uuid4()
        number = body + nir.calc_check_digits(body)
        row = await Patient.create(
            id=pk,
            nir_encrypted=seal_nir(vault, pk, number),
            nir_hash=vault.keyed_hash(number, purpose="nir"),
            first_name=first,
            last_name="Lefebvre",
            birth_date=birth,
            sex=Sex.FEMALE,
            status=SpaceStatus.ACTIVE,
        )
        if email is None:
            return row, None
        account = await Account.create(
            email=email, password_hash="x", role=Role.PATIENT, patient_id=pk
        )
        return row, await token(account)

    try:
        pro = await Professional.create(
            rpps=f"1{uuid.uuid4().int % 10**10:010d}",
            first_name="Paul",
            last_name="Bernard",
            profession=Profession.MEDECIN,
            sector=Sector.HEALTH,
        )
        pro_account = await Account.create(
            email=f"pro.{tag}@example.org",
            password_hash="x",
            role=Role.PROFESSIONAL,
            professional_id=pro.id,
        )
        holders = []
        for n in range(6):
            row, holder_token = await patient("Alice", date(1980, 1, 1), f"h{n}.{tag}@example.org")
            await Consent.create(
                patient_id=row.id,
                professional_id=pro.id,
                access=ConsentAccess.READ_WRITE,
                granted_at=utcnow(),
            )
            holders.append({"id": encode("Patient", row.id), "token": holder_token})
        parent, parent_token = await patient("Nadia", date(1980, 5, 1), f"parent.{tag}@example.org")
        today = date.today()
        minor, _ = await patient("Alice", today.replace(year=today.year - 8), None)
        await Representation.create(representative_id=parent.id, dependent_id=minor.id)
        await Consent.create(
            patient_id=minor.id,
            professional_id=pro.id,
            access=ConsentAccess.READ_WRITE,
            granted_at=utcnow(),
        )
        return {
            "professional": {
                "id": encode("Professional", pro.id),
                "token": await token(pro_account),
            },
            "holders": holders,
            "parent": {"id": encode("Patient", parent.id), "token": parent_token},
            "minor": {"id": encode("Patient", minor.id), "token": ""},
        }
    finally:
        await Tortoise.close_connections()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="test_access_logged")
    parser.add_argument("--no-migrate", action="store_true")
    arguments = parser.parse_args()
    print(json.dumps(asyncio.run(_make(not arguments.no_migrate))))
