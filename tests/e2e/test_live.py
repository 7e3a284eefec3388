"""Live delivery end to end: real `espace-sante serve` processes, real websocket clients.

Race-free by construction (STACK.md trap 8): a subscriber starts with `after:` set to the
cursor of the conversation's first message and first receives a message stored before it
subscribed; that replay proves the subscription is live, so whatever is sent next must
arrive through the event bus (memory://, Redis, across processes or workers).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest
from redis import asyncio as aioredis
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin, Subprotocol

from tests.conftest import PG_URL, free_port
from tests.e2e.live_support import (
    ALLOWED_ORIGIN,
    LEGACY_WS,
    PASSWORD,
    WAIT,
    Actor,
    Actors,
    Closed,
    LiveSocket,
    ServerProcess,
    Setup,
    gql_data,
    open_session_for,
    start_setup,
)
from tests.e2e.test_server import _pg
from tests.redis_server import RedisServer, redis_reachable

pytestmark = pytest.mark.e2e
PROTOCOL = Subprotocol("graphql-transport-ws")

PATIENTS = 16
QUIET = 0.5  # how long "nothing arrives" is watched for, where no later event can prove it
ENDS_WITHIN = 5.0  # a revoked session's stream ends this fast (far below RECHECK_SECONDS)

START = """
mutation($patientId: ID!, $body: String!) {
  startConversation(input: {patientId: $patientId, subject: "Résultats", body: $body}) {
    conversation { id }
    message { id }
  }
}"""
SEND = """
mutation($conversationId: ID!, $body: String!) {
  sendMessage(input: {conversationId: $conversationId, body: $body}) { message { id body } }
}"""
MESSAGES = """
query($id: ID!) {
  node(id: $id) {
    ... on Conversation { messages(first: 100) { edges { cursor node { id body } } } }
  }
}"""
SUBSCRIPTION = """
subscription($after: String, $conversationId: ID) {
  messageReceived(after: $after, conversationId: $conversationId) {
    id body conversation { id }
  }
}"""


def unavailable(reason: str) -> NoReturn:
    # In CI a missing Redis must fail the build: a skipped guard protects nothing.
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


# --- fixtures ---------------------------------------------------------------------------


@dataclass
class Fleet:
    """Every server of the module, started at once (their start-up dominates the runtime)."""

    actors: Actors
    main: ServerProcess  # over REDIS_URL, or memory:// without a Redis
    workers: ServerProcess | None  # `serve --workers 2` over REDIS_URL
    outage: ServerProcess | None  # over a Redis of its own, stopped and restarted by a test
    own_redis: RedisServer | None
    redis_url: str | None
    database_url: str
    folder: Path

    def short_session(self, actor: Actor, seconds: float) -> str:
        """A new token of `actor` that expires `seconds` from now."""
        return open_session_for(self.database_url, self.folder, actor.account, seconds=seconds)


@pytest.fixture(scope="module")
def fleet(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    folder = tmp_path_factory.mktemp("live")
    shared_redis = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
    redis_url = shared_redis if redis_reachable(shared_redis) else None
    own_redis: RedisServer | None = None
    started: list[ServerProcess] = []
    setup: Setup | None = None
    pg_name = None
    try:
        if shutil.which("redis-server"):
            own_redis = RedisServer()
            own_redis.start()
        if PG_URL:
            pg_name = f"espace_sante_live_{uuid.uuid4().hex[:10]}"
            asyncio.run(_pg(f'CREATE DATABASE "{pg_name}"'))
            database_url = f"{PG_URL.rpartition('/')[0]}/{pg_name}"
            setup = start_setup(database_url, folder, PATIENTS, migrate=True)
            actors = setup.actors()  # migrated before any server touches it
        else:
            # A copy of the session's migrated template (conftest): migrating costs more
            # than everything else here. Every server shares this file, as workers would.
            path = folder / "live.sqlite3"
            shutil.copyfile(request.getfixturevalue("db_template"), path)
            database_url = f"sqlite://{path}"
            setup = start_setup(database_url, folder, PATIENTS, migrate=False)

        def serve(name: str, broadcast_url: str, workers: int = 1) -> ServerProcess:
            server = ServerProcess(
                name, folder / name, database_url, broadcast_url, free_port(), workers=workers
            )
            started.append(server)
            return server

        main = serve("main", redis_url or "memory://")
        workers = serve("workers", redis_url, workers=2) if redis_url else None
        outage = serve("outage", own_redis.url) if own_redis else None
        if not PG_URL:
            actors = setup.actors()
        for server in started:
            server.wait_healthy()
        yield Fleet(actors, main, workers, outage, own_redis, redis_url, database_url, folder)
    finally:
        if setup is not None:
            setup.stop()
        failures = []
        for server in started:
            code = server.stop()
            output = server.output()
            # uvicorn re-raises the signal it handled once its shutdown is complete.
            if code not in (0, -signal.SIGTERM) or "Traceback" in output:
                failures.append(f"--- {server.name} exited with {code}:\n{output}")
        if own_redis is not None:
            own_redis.stop()
        if pg_name is not None:
            asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))
        if failures:
            pytest.fail("\n".join(failures))


@pytest.fixture(scope="module")
def actors(fleet: Fleet) -> Actors:
    return fleet.actors


@pytest.fixture(scope="module")
def patient_pool(actors: Actors) -> Iterator[Actor]:
    """Each test takes fresh patients: no test sees another's conversations."""
    return iter(actors.patients)


@pytest.fixture
def patient(patient_pool: Iterator[Actor]) -> Actor:
    return next(patient_pool)


@pytest.fixture
def single(fleet: Fleet) -> ServerProcess:
    return fleet.main


@pytest.fixture
def redis_url(fleet: Fleet) -> str:
    if fleet.redis_url is None:
        unavailable(f"no Redis at {os.environ.get('REDIS_URL', 'redis://127.0.0.1:6379/15')}")
    return fleet.redis_url


@pytest.fixture
def pair(fleet: Fleet, redis_url: str) -> list[ServerProcess]:
    """Two servers, each its own processes, sharing REDIS_URL and the database."""
    assert fleet.workers is not None
    return [fleet.main, fleet.workers]


@pytest.fixture
def workers(fleet: Fleet, redis_url: str) -> ServerProcess:
    assert fleet.workers is not None
    return fleet.workers


@pytest.fixture
def own_redis(fleet: Fleet) -> RedisServer:
    if fleet.own_redis is None:
        unavailable("redis-server is not installed")
    return fleet.own_redis


@pytest.fixture
def outage(fleet: Fleet, own_redis: RedisServer) -> ServerProcess:
    assert fleet.outage is not None
    return fleet.outage


@pytest.fixture
async def sockets() -> AsyncIterator[Callable[..., Any]]:
    """Opens websockets for a test and closes every one of them, whatever happens."""
    opened: list[LiveSocket] = []

    async def open_socket(url: str, protocol: str = "graphql-transport-ws") -> LiveSocket:
        socket = await LiveSocket.open(url, protocol)
        opened.append(socket)
        return socket

    try:
        yield open_socket
    finally:
        for socket in opened:
            await socket.close()


# --- helpers ----------------------------------------------------------------------------


async def start_conversation(url: str, pro: Actor, patient: Actor) -> tuple[str, str, str]:
    """(conversation id, first message id, the first message's cursor)."""
    data = await gql_data(url, START, {"patientId": patient.id, "body": "m0"}, pro.token)
    conversation = data["startConversation"]["conversation"]["id"]
    message = data["startConversation"]["message"]["id"]
    edges = await message_edges(url, conversation, pro.token)
    assert [e["node"]["id"] for e in edges] == [message]
    return conversation, message, edges[0]["cursor"]


async def message_edges(url: str, conversation: str, token: str) -> list[dict[str, Any]]:
    data = await gql_data(url, MESSAGES, {"id": conversation}, token)
    edges: list[dict[str, Any]] = data["node"]["messages"]["edges"]
    return edges


async def send(url: str, pro: Actor, conversation: str, body: str) -> str:
    data = await gql_data(url, SEND, {"conversationId": conversation, "body": body}, pro.token)
    message = data["sendMessage"]["message"]
    assert message["body"] == body
    message_id: str = message["id"]
    return message_id


async def subscribed(
    socket: LiveSocket, token: str, after: str, conversation: str | None = None
) -> str:
    ack = await socket.init(token)
    assert ack["type"] == "connection_ack", ack
    return await socket.subscribe(SUBSCRIPTION, {"after": after, "conversationId": conversation})


async def bodies(socket: LiveSocket, op_id: str, count: int) -> list[str]:
    return [(await socket.next_data(op_id))["messageReceived"]["body"] for _ in range(count)]


async def refused(socket: LiveSocket, op_id: str) -> None:
    """The operation answers UNAUTHENTICATED and ends, with no data.

    graphql-transport-ws reports an error raised by the resolver as a `next` without data,
    then `complete`; a refusal before execution would be an `error` message."""
    answer = await socket.receive()
    assert answer["id"] == op_id, answer
    if answer["type"] == "error":
        errors = answer["payload"]
    else:
        assert answer["type"] == "next" and answer["payload"]["data"] is None, answer
        errors = answer["payload"]["errors"]
        assert await socket.receive() == {"id": op_id, "type": "complete"}
    assert [e["extensions"]["code"] for e in errors] == ["UNAUTHENTICATED"], errors


async def closed_with_its_session(socket: LiveSocket, within: float) -> None:
    """A session revoked or expired closes its sockets with 4401 (api/ws_operations.py)."""
    with pytest.raises(Closed) as closed:
        await socket.receive(within)
    assert (closed.value.code, closed.value.reason) == (
        4401,
        "The session is invalid or has expired.",
    )


async def nothing_else(
    server: ServerProcess, pro: Actor, socket: LiveSocket, op_id: str, conversation: str
) -> None:
    """No duplicate is pending: a message sent now is the very next one to arrive."""
    await send(server.url, pro, conversation, "end")
    assert await bodies(socket, op_id, 1) == ["end"]
    assert await socket.silent_for(0.1) == []


async def live_subscriber(
    open_socket: Callable[..., Any], url: str, patient: Actor, conversation: str, cursor: str
) -> tuple[LiveSocket, str]:
    """A subscription proven live: it replayed "m1", stored before it subscribed."""
    socket: LiveSocket = await open_socket(url)
    op_id = await subscribed(socket, patient.token, cursor)
    assert await bodies(socket, op_id, 1) == ["m1"]
    return socket, op_id


# --- one server -------------------------------------------------------------------------


async def test_the_patient_receives_live_and_another_patient_nothing(
    single: ServerProcess, actors: Actors, patient_pool: Iterator[Actor], sockets: Any
) -> None:
    pro = actors.professional
    alice, other = next(patient_pool), next(patient_pool)
    conversation, _, cursor = await start_conversation(single.url, pro, alice)
    other_conversation, _, other_cursor = await start_conversation(single.url, pro, other)
    await send(single.url, pro, conversation, "m1")
    await send(single.url, pro, other_conversation, "m1")
    socket, op_id = await live_subscriber(sockets, single.ws_url, alice, conversation, cursor)
    other_socket, other_op = await live_subscriber(
        sockets, single.ws_url, other, other_conversation, other_cursor
    )

    sent = await send(single.url, pro, conversation, "live")

    message = (await socket.next_data(op_id))["messageReceived"]
    assert message == {"id": sent, "body": "live", "conversation": {"id": conversation}}
    # Published after "live" on the same bus: had "live" reached the other patient, it would
    # have come first.
    await send(single.url, pro, other_conversation, "for the other")
    assert await bodies(other_socket, other_op, 1) == ["for the other"]
    assert await other_socket.silent_for(0.1) == []
    assert await socket.silent_for(0.1) == []


async def test_logout_ends_the_stream_and_nothing_is_delivered_after(
    single: ServerProcess, actors: Actors, patient: Actor, sockets: Any
) -> None:
    pro = actors.professional
    conversation, _, cursor = await start_conversation(single.url, pro, patient)
    await send(single.url, pro, conversation, "m1")
    socket, _ = await live_subscriber(sockets, single.ws_url, patient, conversation, cursor)

    assert await gql_data(single.url, "mutation { logout }", token=patient.token) == {
        "logout": True
    }

    # The socket closes with its session (4401): nothing more can reach it, nor start on it.
    await closed_with_its_session(socket, ENDS_WITHIN)


async def test_close_space_ends_the_stream(
    single: ServerProcess, actors: Actors, patient: Actor, sockets: Any
) -> None:
    pro = actors.professional
    conversation, _, cursor = await start_conversation(single.url, pro, patient)
    await send(single.url, pro, conversation, "m1")
    socket, _ = await live_subscriber(sockets, single.ws_url, patient, conversation, cursor)

    closed = await gql_data(
        single.url,
        "mutation($p: String!) { closeSpace(input: {password: $p}) { patient { status } } }",
        {"p": PASSWORD},
        patient.token,
    )

    assert closed == {"closeSpace": {"patient": {"status": "CLOSED"}}}
    await closed_with_its_session(socket, ENDS_WITHIN)


async def test_the_stream_ends_when_its_session_expires(
    fleet: Fleet, single: ServerProcess, actors: Actors, patient: Actor, sockets: Any
) -> None:
    pro = actors.professional
    conversation, _, cursor = await start_conversation(single.url, pro, patient)
    await send(single.url, pro, conversation, "m1")
    lifetime = 3.0
    # Taken before the session is made (in a subprocess, which may take a while to exit):
    # it expires no earlier than this.
    expires = asyncio.get_running_loop().time() + lifetime
    token = fleet.short_session(patient, seconds=lifetime)
    socket: LiveSocket = await sockets(single.ws_url)
    op_id = await subscribed(socket, token, cursor)
    assert await bodies(socket, op_id, 1) == ["m1"]
    await send(single.url, pro, conversation, "while valid")
    assert await bodies(socket, op_id, 1) == ["while valid"]

    await closed_with_its_session(socket, lifetime + ENDS_WITHIN)

    assert asyncio.get_running_loop().time() >= expires - 0.5  # ended by expiry, not before


async def test_a_page_of_another_origin_cannot_open_the_websocket(
    single: ServerProcess,
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await connect(single.ws_url, origin=Origin("https://evil.example"), subprotocols=[PROTOCOL])

    response = refused.value.response
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/json"
    assert json.loads(response.body) == {
        "errors": [
            {
                "message": "This origin may not open the GraphQL websocket.",
                "extensions": {"code": "FORBIDDEN"},
            }
        ]
    }
    # A page of an allowed origin, and a client that is no browser (no Origin), may.
    for origin in (Origin(ALLOWED_ORIGIN), None):
        async with connect(single.ws_url, origin=origin, subprotocols=[PROTOCOL]) as socket:
            assert socket.subprotocol == PROTOCOL


def _one_error(answer: dict[str, Any], op_id: str) -> dict[str, Any]:
    assert (answer["id"], answer["type"]) == (op_id, "error"), answer
    payload = answer["payload"]
    errors: list[dict[str, Any]] = payload if isinstance(payload, list) else [payload]
    assert len(errors) == 1, errors
    return errors[0]


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", LEGACY_WS])
async def test_a_malformed_operation_answers_a_coded_error_on_both_protocols(
    single: ServerProcess, patient: Actor, sockets: Any, protocol: str
) -> None:
    socket: LiveSocket = await sockets(single.ws_url, protocol)
    assert (await socket.init(patient.token))["type"] == "connection_ack"

    async def error_of(query: str) -> dict[str, Any]:
        op_id = await socket.subscribe(query)
        return _one_error(await socket.receive(), op_id)

    broken = await error_of("subscription {")
    unknown = await error_of("subscription { nothingHere }")

    assert broken["extensions"] == {"code": "GRAPHQL_PARSE_FAILED"}
    assert unknown["extensions"] == {"code": "GRAPHQL_VALIDATION_FAILED"}
    # Queries and mutations go to POST /graphql: the socket carries subscriptions only.
    for operation in ("{ viewer { __typename } }", "mutation { logout }"):
        assert await error_of(operation) == {
            "message": (
                "The websocket carries subscriptions only: "
                "send queries and mutations to POST /graphql."
            ),
            "extensions": {"code": "BAD_USER_INPUT"},
        }
    # The socket still serves: nothing was left half-open by the failures.
    op_id = await socket.subscribe(SUBSCRIPTION, {"after": None})
    assert await socket.silent_for(0.2) == []
    await socket.stop(op_id)


async def test_a_bad_token_is_refused_at_connection_init(
    single: ServerProcess, sockets: Any
) -> None:
    socket: LiveSocket = await sockets(single.ws_url)
    await socket.send(
        {"type": "connection_init", "payload": {"authorization": "Bearer not-a-token"}}
    )

    with pytest.raises(Closed) as closed:
        await socket.receive()

    assert closed.value.code in (4401, 4403)


async def test_a_missing_token_answers_an_error_and_streams_nothing(
    single: ServerProcess, actors: Actors, patient: Actor, sockets: Any
) -> None:
    conversation, _, cursor = await start_conversation(single.url, actors.professional, patient)
    await send(single.url, actors.professional, conversation, "m1")
    socket: LiveSocket = await sockets(single.ws_url)
    ack = await socket.init(payload={})
    assert ack["type"] == "connection_ack"

    op_id = await socket.subscribe(SUBSCRIPTION, {"after": cursor})

    await refused(socket, op_id)
    await send(single.url, actors.professional, conversation, "m2")
    assert await socket.silent_for(QUIET) == []


async def test_the_legacy_graphql_ws_protocol_delivers_too(
    single: ServerProcess, actors: Actors, patient: Actor, sockets: Any
) -> None:
    pro = actors.professional
    conversation, _, cursor = await start_conversation(single.url, pro, patient)
    await send(single.url, pro, conversation, "m1")
    socket: LiveSocket = await sockets(single.ws_url, LEGACY_WS)
    op_id = await subscribed(socket, patient.token, cursor)
    assert await bodies(socket, op_id, 1) == ["m1"]

    await send(single.url, pro, conversation, "live")

    assert await bodies(socket, op_id, 1) == ["live"]
    await socket.stop(op_id)
    assert await socket.receive() == {"id": op_id, "type": "complete"}


async def test_the_legacy_protocol_refuses_a_bad_token(single: ServerProcess, sockets: Any) -> None:
    socket: LiveSocket = await sockets(single.ws_url, LEGACY_WS)

    answer = await socket.init("not-a-token")

    assert answer["type"] == "connection_error", answer
    with pytest.raises(Closed):
        await socket.receive()


async def test_replay_from_a_cursor_then_live_in_order_without_duplicates(
    single: ServerProcess, actors: Actors, patient: Actor, sockets: Any
) -> None:
    pro = actors.professional
    conversation, _, _ = await start_conversation(single.url, pro, patient)
    await send(single.url, pro, conversation, "m1")
    missed = [f"m{n}" for n in range(2, 7)]
    for body in missed:  # stored while the patient was disconnected
        await send(single.url, pro, conversation, body)
    cursor_of_m1 = (await message_edges(single.url, conversation, pro.token))[1]["cursor"]
    socket: LiveSocket = await sockets(single.ws_url)
    op_id = await subscribed(socket, patient.token, cursor_of_m1, conversation)

    assert await bodies(socket, op_id, len(missed)) == missed
    for body in ("live1", "live2"):
        await send(single.url, pro, conversation, body)
    assert await bodies(socket, op_id, 2) == ["live1", "live2"]
    await nothing_else(single, pro, socket, op_id, conversation)


# --- several processes over Redis -------------------------------------------------------


@pytest.mark.redis
async def test_sent_through_one_process_received_through_another(
    pair: list[ServerProcess], actors: Actors, patient: Actor, sockets: Any
) -> None:
    sender, receiver = pair
    pro = actors.professional
    conversation, _, cursor = await start_conversation(sender.url, pro, patient)
    await send(sender.url, pro, conversation, "m1")
    socket, op_id = await live_subscriber(sockets, receiver.ws_url, patient, conversation, cursor)

    for body in ("a1", "a2", "a3"):
        await send(sender.url, pro, conversation, body)

    assert await bodies(socket, op_id, 3) == ["a1", "a2", "a3"]
    await nothing_else(sender, pro, socket, op_id, conversation)


@pytest.mark.redis
async def test_a_redis_outage_loses_nothing_and_duplicates_nothing(
    outage: ServerProcess, own_redis: RedisServer, actors: Actors, patient: Actor, sockets: Any
) -> None:
    pro = actors.professional
    conversation, _, cursor = await start_conversation(outage.url, pro, patient)
    await send(outage.url, pro, conversation, "m1")
    socket, op_id = await live_subscriber(sockets, outage.ws_url, patient, conversation, cursor)
    await send(outage.url, pro, conversation, "before")
    assert await bodies(socket, op_id, 1) == ["before"]

    own_redis.stop()
    during = ["during1", "during2"]
    for body in during:  # the mutation succeeds: publishing is best effort
        await send(outage.url, pro, conversation, body)
    stored = [e["node"]["body"] for e in await message_edges(outage.url, conversation, pro.token)]
    assert stored == ["m0", "m1", "before", *during]
    own_redis.start()
    await wait_ready(outage)
    await send(outage.url, pro, conversation, "after")

    assert await bodies(socket, op_id, 3) == [*during, "after"]
    await nothing_else(outage, pro, socket, op_id, conversation)


CURSORED = """
subscription($after: String) {
  messageReceived(after: $after) { id body cursor conversation { id } }
}"""


@pytest.mark.redis
async def test_a_client_resumes_from_its_last_message_cursor_across_workers_and_conversations(
    pair: list[ServerProcess], actors: Actors, patient: Actor, sockets: Any
) -> None:
    """Issue 18's resumption: the `cursor` of the last message received, over every
    conversation of the viewer, then messages sent through both workers while it is away:
    each arrives once, in commit order, then live."""
    one, two = pair
    pro = actors.professional
    first, _, _ = await start_conversation(one.url, pro, patient)
    second, _, started = await start_conversation(two.url, pro, patient)
    socket: LiveSocket = await sockets(two.ws_url)
    assert (await socket.init(patient.token))["type"] == "connection_ack"
    # After the newest message there: what follows arrives, replayed or live (the protocol
    # never says when a subscription is live).
    op_id = await socket.subscribe(CURSORED, {"after": started})
    await send(one.url, pro, first, "seen1")
    await send(two.url, pro, second, "seen2")
    seen = [(await socket.next_data(op_id))["messageReceived"] for _ in range(2)]
    assert [m["body"] for m in seen] == ["seen1", "seen2"]
    await socket.close()

    missed = []
    for n in range(6):  # both workers, both conversations, while the client is away
        server, conversation = pair[n % 2], (first, second)[n // 3]
        missed.append(f"missed{n}")
        await send(server.url, pro, conversation, missed[-1])
    back: LiveSocket = await sockets(one.ws_url)
    assert (await back.init(patient.token))["type"] == "connection_ack"
    op_id = await back.subscribe(CURSORED, {"after": seen[-1]["cursor"]})
    replayed = [(await back.next_data(op_id))["messageReceived"] for _ in missed]
    await send(two.url, pro, first, "live")
    live = (await back.next_data(op_id))["messageReceived"]

    assert [m["body"] for m in replayed] == missed
    assert live["body"] == "live"
    cursors = [m["cursor"] for m in [*seen, *replayed, live]]
    assert len(set(cursors)) == len(cursors)
    assert await back.silent_for(0.2) == []


async def wait_ready(server: ServerProcess) -> None:
    """/readyz answers 200 once the event bus made a round trip through Redis again."""
    import httpx

    async with httpx.AsyncClient(timeout=2.0) as http:
        async with asyncio.timeout(WAIT):
            while (await http.get(f"{server.url}/readyz")).status_code != 200:
                await asyncio.sleep(0.1)


@pytest.mark.redis
async def test_every_subscriber_of_two_workers_gets_every_message(
    workers: ServerProcess,
    redis_url: str,
    actors: Actors,
    patient: Actor,
    sockets: Any,
) -> None:
    pro = actors.professional
    conversation, _, cursor = await start_conversation(workers.url, pro, patient)
    await send(workers.url, pro, conversation, "m1")
    channel = f"account:{patient.account}"
    subscribers: list[tuple[LiveSocket, str]] = []
    # Open sockets until both workers hold a subscription to the patient's channel (each
    # worker subscribes once per channel): then every send, whichever worker takes it,
    # also has to cross to the other worker. Opened a few at once: connections opened one
    # after the other tend to be accepted by the same worker, woken first each time.
    for _ in range(8):
        subscribers += await asyncio.gather(
            *(
                live_subscriber(sockets, workers.ws_url, patient, conversation, cursor)
                for _ in range(4)
            )
        )
        if await channel_subscribers(redis_url, channel) >= 2:
            break
    assert await channel_subscribers(redis_url, channel) == 2, "one worker took every socket"

    sent = [f"w{n}" for n in range(6)]
    for body in sent:  # a fresh HTTP connection each: the workers share them out
        await send(workers.url, pro, conversation, body)

    for socket, op_id in subscribers:
        assert await bodies(socket, op_id, len(sent)) == sent
    for socket, _ in subscribers:
        assert await socket.silent_for(0.1) == []


async def channel_subscribers(url: str, channel: str) -> int:
    client = aioredis.Redis.from_url(url)
    try:
        counts = await client.pubsub_numsub(channel)
    finally:
        await client.aclose()
    return int(counts[0][1])
