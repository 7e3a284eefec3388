"""An establishment's shared inbox end to end: two real `espace-sante serve` processes sharing
the database and Redis, real websocket clients.

Two members of one hospital and a member of a clinic: the inbox and its replies, read state
per member, live delivery to both members across the two processes (and nothing to the
clinic's member), the patient's view. Race-free as tests/e2e/test_live.py: each subscriber
starts from a cursor and first receives a message stored before it subscribed, which proves
its subscription live; whatever is sent next must come through Redis.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PG_URL, free_port
from tests.e2e.live_support import (
    LEGACY_WS,
    TRANSPORT_WS,
    Actor,
    LiveSocket,
    ServerProcess,
    Setup,
    command,
    gql_data,
    server_env,
    start_setup,
)
from tests.e2e.test_live import unavailable
from tests.e2e.test_server import _pg
from tests.redis_server import RedisServer, redis_reachable

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

OPERATOR_EMAIL = "operateur@inbox.example.org"
OPERATOR_PASSWORD = "un mot de passe d'opérateur"

LOGIN = """mutation($email: String!, $password: String!) {
  login(input: {email: $email, password: $password}) { token } }"""
REGISTER_PROFESSIONAL = """mutation($input: RegisterProfessionalInput!) {
  registerProfessional(input: $input) { professional { id } } }"""
REGISTER = """mutation($finess: String!, $name: String!) {
  registerEstablishment(input: {finess: $finess, name: $name}) { establishment { id } } }"""
ADD = """mutation($establishment: ID!, $professional: ID!) {
  addEstablishmentMember(input: {establishmentId: $establishment,
    professionalId: $professional}) { establishment { id } } }"""
START = """mutation($input: StartConversationInput!) {
  startConversation(input: $input) { conversation { id } } }"""
SEND = """mutation($id: ID!, $body: String!) {
  sendMessage(input: {conversationId: $id, body: $body}) { message { id } } }"""
MARK_READ = """mutation($id: ID!) { markConversationRead(input: {conversationId: $id}) {
  conversation { unreadCount } } }"""
INBOX = """query($id: ID!) { node(id: $id) { ... on Establishment {
  conversations(first: 10, purpose: ADMISSION) {
    edges { node { id subject unreadCount } } } } } }"""
CONVERSATION = """query($id: ID!) { node(id: $id) { ... on Conversation {
  purpose unreadCount establishment { name }
  messages(first: 20) { edges { cursor node { body readAt
    sender { ... on Professional { lastName } ... on Patient { firstName } } } } } } } }"""
RECEIVED = """subscription($after: String) {
  messageReceived(after: $after) { body conversation { id } } }"""


@dataclass
class Inbox:
    """Bernard and Caron answer the hospital's inbox, Leroy the clinic's; Alice is a patient."""

    one: ServerProcess
    two: ServerProcess
    hospital: str
    bernard: Actor
    caron: Actor
    leroy: Actor
    alice: Actor


def create_operator(database_url: str, folder: Path) -> None:
    done = subprocess.run(
        command("create-operator", "--email", OPERATOR_EMAIL, "--password", OPERATOR_PASSWORD),
        env=server_env(folder, database_url, "memory://"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"create-operator failed:\n{done.stdout}\n{done.stderr}")


async def login(url: str, email: str, password: str) -> str:
    data = await gql_data(url, LOGIN, {"email": email, "password": password})
    token: str = data["login"]["token"]
    return token


async def professional(url: str, operator: str, rpps: str, last_name: str) -> Actor:
    """A professional registered by the operator, logged in."""
    email = f"{last_name.lower()}.{uuid.uuid4().hex[:6]}@example.org"
    password = "un mot de passe assez long"
    registration = {
        "rpps": rpps,
        "firstName": "Paule",
        "lastName": last_name,
        "profession": "INFIRMIER",
        "sector": "HEALTH",
        "email": email,
        "password": password,
    }
    data = await gql_data(url, REGISTER_PROFESSIONAL, {"input": registration}, operator)
    pro_id: str = data["registerProfessional"]["professional"]["id"]
    return Actor(id=pro_id, account="", token=await login(url, email, password))


async def staff(one: ServerProcess, two: ServerProcess, first: Actor, alice: Actor) -> Inbox:
    operator = await login(one.url, OPERATOR_EMAIL, OPERATOR_PASSWORD)
    caron = await professional(two.url, operator, "20000000001", "Caron")
    leroy = await professional(one.url, operator, "20000000002", "Leroy")

    async def register(finess: str, name: str) -> str:
        data = await gql_data(two.url, REGISTER, {"finess": finess, "name": name}, operator)
        establishment: str = data["registerEstablishment"]["establishment"]["id"]
        return establishment

    hospital = await register("750109993", "Hôpital des Tilleuls")
    clinic = await register("2A0000001", "Clinique du Golo")
    for establishment, member in ((hospital, first), (hospital, caron), (clinic, leroy)):
        variables = {"establishment": establishment, "professional": member.id}
        await gql_data(one.url, ADD, variables, operator)
    return Inbox(one, two, hospital, first, caron, leroy, alice)


@pytest.fixture(scope="module")
def inbox(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Inbox]:
    folder = tmp_path_factory.mktemp("inbox")
    shared = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
    own_redis: RedisServer | None = None
    started: list[ServerProcess] = []
    setup: Setup | None = None
    pg_name = None
    try:
        if redis_reachable(shared):
            redis_url = shared
        elif shutil.which("redis-server"):
            own_redis = RedisServer()
            own_redis.start()
            redis_url = own_redis.url
        else:
            unavailable(f"no Redis at {shared} and no redis-server to start")
        if PG_URL:
            pg_name = f"espace_sante_inbox_{uuid.uuid4().hex[:10]}"
            asyncio.run(_pg(f'CREATE DATABASE "{pg_name}"'))
            database_url = f"{PG_URL.rpartition('/')[0]}/{pg_name}"
            setup = start_setup(database_url, folder, 1, migrate=True)
            actors = setup.actors()
        else:
            path = folder / "inbox.sqlite3"
            shutil.copyfile(request.getfixturevalue("db_template"), path)
            database_url = f"sqlite://{path}"
            setup = start_setup(database_url, folder, 1, migrate=False)
            actors = setup.actors()
        create_operator(database_url, folder)
        for name in ("one", "two"):
            started.append(ServerProcess(name, folder / name, database_url, redis_url, free_port()))
        for server in started:
            server.wait_healthy()
        one, two = started
        yield asyncio.run(staff(one, two, actors.professional, actors.patients[0]))
    finally:
        if setup is not None:
            setup.stop()
        failures = []
        for server in started:
            code = server.stop()
            output = server.output()
            if code not in (0, -signal.SIGTERM) or "Traceback" in output:
                failures.append(f"--- {server.name} exited with {code}:\n{output}")
        if own_redis is not None:
            own_redis.stop()
        if pg_name is not None:
            asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))
        if failures:
            pytest.fail("\n".join(failures))


@pytest.fixture
async def sockets() -> AsyncIterator[list[LiveSocket]]:
    opened: list[LiveSocket] = []
    try:
        yield opened
    finally:
        for socket in opened:
            await socket.close()


async def subscriber(
    opened: list[LiveSocket], server: ServerProcess, actor: Actor, cursor: str, protocol: str
) -> tuple[LiveSocket, str]:
    socket = await LiveSocket.open(server.ws_url, protocol)
    opened.append(socket)
    ack = await socket.init(actor.token)
    assert ack["type"] == "connection_ack", ack
    return socket, await socket.subscribe(RECEIVED, {"after": cursor})


async def body(socket: LiveSocket, op_id: str) -> str:
    text: str = (await socket.next_data(op_id))["messageReceived"]["body"]
    return text


async def start(url: str, pro: Actor, patient: Actor, **extra: Any) -> str:
    variables = {"patientId": patient.id, "subject": "Votre admission", "body": "m0", **extra}
    data = await gql_data(url, START, {"input": variables}, pro.token)
    conversation: str = data["startConversation"]["conversation"]["id"]
    return conversation


async def send(url: str, actor: Actor, conversation: str, text: str) -> None:
    await gql_data(url, SEND, {"id": conversation, "body": text}, actor.token)


async def read(url: str, actor: Actor, conversation: str) -> dict[str, Any]:
    node: dict[str, Any] = (await gql_data(url, CONVERSATION, {"id": conversation}, actor.token))[
        "node"
    ]
    return node


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_two_members_share_the_inbox_live_across_two_processes(
    inbox: Inbox, sockets: list[LiveSocket], protocol: str
) -> None:
    one, two = inbox.one, inbox.two
    bernard, caron, leroy, alice = inbox.bernard, inbox.caron, inbox.leroy, inbox.alice
    # given Leroy's own conversation with Alice, then Bernard's admission conversation in the
    # hospital's inbox, each answered by Alice once
    own = await start(two.url, leroy, alice)
    admission = await start(
        one.url, bernard, alice, establishmentId=inbox.hospital, purpose="ADMISSION"
    )
    cursor = (await read(one.url, bernard, admission))["messages"]["edges"][0]["cursor"]
    await send(two.url, alice, admission, "m1")
    await send(one.url, alice, own, "m1 for Leroy")
    # each subscribed on a process of its own, proven live by the replay of m1
    bernard_socket, bernard_op = await subscriber(sockets, one, bernard, cursor, protocol)
    caron_socket, caron_op = await subscriber(sockets, two, caron, cursor, protocol)
    leroy_socket, leroy_op = await subscriber(sockets, two, leroy, cursor, protocol)
    assert await body(bernard_socket, bernard_op) == "m1"
    assert await body(caron_socket, caron_op) == "m1"
    assert await body(leroy_socket, leroy_op) == "m1 for Leroy"

    # when Alice writes through one process, and Caron answers through the other
    await send(one.url, alice, admission, "live from Alice")
    assert await body(caron_socket, caron_op) == "live from Alice"  # crossed to two
    assert await body(bernard_socket, bernard_op) == "live from Alice"
    await send(two.url, caron, admission, "answer from Caron")

    # then both members get both, in order; the clinic's member gets neither
    assert await body(bernard_socket, bernard_op) == "answer from Caron"  # crossed to one
    assert await body(caron_socket, caron_op) == "answer from Caron"
    await send(one.url, alice, own, "sentinel for Leroy")
    assert await body(leroy_socket, leroy_op) == "sentinel for Leroy"
    for socket in (bernard_socket, caron_socket, leroy_socket):
        assert await socket.silent_for(0.2) == []

    # and the inbox lists it for both members, each with their own read state
    for member, server in ((bernard, one), (caron, two)):
        listed = (await gql_data(server.url, INBOX, {"id": inbox.hospital}, member.token))["node"]
        # latest first (the other protocol's run left one too)
        assert listed["conversations"]["edges"][0]["node"]["id"] == admission
    marked = await gql_data(two.url, MARK_READ, {"id": admission}, bernard.token)
    assert marked == {"markConversationRead": {"conversation": {"unreadCount": 0}}}
    assert (await read(one.url, caron, admission))["unreadCount"] == 2  # Alice's two

    # and Alice sees the hospital, who wrote each message, and hers read by the hospital
    seen = await read(two.url, alice, admission)
    assert (seen["purpose"], seen["establishment"]) == (
        "ADMISSION",
        {"name": "Hôpital des Tilleuls"},
    )
    messages = [e["node"] for e in seen["messages"]["edges"]]
    assert [(m["body"], m["sender"], m["readAt"] is not None) for m in messages] == [
        ("m0", {"lastName": "Bernard"}, False),
        ("m1", {"firstName": "Alice0"}, True),
        ("live from Alice", {"firstName": "Alice0"}, True),
        ("answer from Caron", {"lastName": "Caron"}, False),
    ]
