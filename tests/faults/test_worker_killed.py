"""Two servers sharing PostgreSQL and Redis, `messageReceived` subscribers live on both; one
is killed with SIGKILL (no shutdown hook runs) while messages keep being sent through the
other. The survivor's subscribers lose nothing and get nothing twice; a client of the killed
server reconnects to the survivor with `after` (the cursor of the last message it received)
and gets every message it missed, once, in order, then goes on live."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.live_support import Actor, Closed, LiveSocket, ServerProcess, start_setup
from tests.e2e.test_live import bodies, message_edges, send, start_conversation, subscribed
from tests.faults.support import Tally, post, private_postgres
from tests.redis_server import RedisServer
from tests.seaweed import free_ports

SEND = """mutation($conversationId: ID!, $body: String!) {
  sendMessage(input: {conversationId: $conversationId, body: $body}) { message { id body } } }"""
SENDS = 24  # messages sent through the survivor while (and after) the other is killed
PAUSE = 0.05  # seconds between two of them
BOUND = 60.0  # seconds: the whole exchange, kill and reconnection included


async def test_a_worker_killed_loses_nothing_for_the_survivors_and_the_reconnected(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    with private_postgres() as pg:
        actors = start_setup(pg.url, tmp_path / "setup", 1, migrate=True).actors()
        pro, alice = actors.professional, actors.patients[0]
        victim_port, survivor_port = free_ports(2)
        victim = ServerProcess("victim", tmp_path / "victim", pg.url, redis_server.url, victim_port)
        survivor = ServerProcess(
            "survivor", tmp_path / "survivor", pg.url, redis_server.url, survivor_port
        )
        sockets: list[LiveSocket] = []
        try:
            victim.wait_healthy()
            survivor.wait_healthy()
            async with asyncio.timeout(BOUND):
                seen = await _kill_under_traffic(victim, survivor, pro, alice, sockets)
        finally:
            for socket in sockets:
                await socket.close()
            victim.stop()
            survivor.stop()

    assert seen.tally.kinds() == ["ok"] * SENDS  # the survivor answered every send
    assert seen.sent == [f"s{n}" for n in range(1, SENDS + 1)]
    for got in seen.on_survivor:  # every message sent through the survivor, once, in order
        assert got == seen.sent
    # The victim's subscriber got the first ones live, through Redis, until the kill ended
    # its socket without a close frame; it missed the rest (the kill came a third of the way).
    assert seen.on_victim == seen.sent[: len(seen.on_victim)]
    assert len(seen.on_victim) < SENDS
    assert seen.victim_end == (None, "")
    # Reconnected with the cursor of the last one: exactly what it missed, once, in order.
    assert seen.on_victim + seen.replayed == seen.sent
    assert seen.live == ["end"] * 3  # then live, all three, with nothing pending
    assert seen.quiet == [[], [], []]


@dataclass
class Seen:
    sent: list[str]  # through the survivor, from before the kill to after it
    tally: Tally  # the survivor's answers to them
    on_survivor: list[list[str]]  # what each of its two subscribers received of them
    on_victim: list[str]  # what the victim's subscriber received of them before the kill
    victim_end: tuple[int | None, str]  # how its socket ended: (close code, reason)
    replayed: list[str]  # what it received once reconnected to the survivor with `after`
    live: list[str]  # a message sent next: what each of the three received
    quiet: list[list[dict[str, Any]]]  # and then nothing more


async def _kill_under_traffic(
    victim: ServerProcess,
    survivor: ServerProcess,
    pro: Actor,
    alice: Actor,
    sockets: list[LiveSocket],
) -> Seen:
    conversation, _, cursor = await start_conversation(survivor.url, pro, alice)
    await send(survivor.url, pro, conversation, "m1")

    async def live_on(server: ServerProcess) -> tuple[LiveSocket, str]:
        """A subscriber proven live: it replays "m1", stored before it subscribed."""
        socket = await LiveSocket.open(server.ws_url)
        sockets.append(socket)
        op_id = await subscribed(socket, alice.token, cursor, conversation)
        assert await bodies(socket, op_id, 1) == ["m1"]
        return socket, op_id

    on_victim = await live_on(victim)
    on_survivor = [await live_on(survivor), await live_on(survivor)]
    # Sent through both servers: each subscriber gets each, whichever server it is on.
    before = []
    for n, server in enumerate((victim, survivor, victim), start=1):
        await send(server.url, pro, conversation, f"b{n}")
        before.append(f"b{n}")
    assert await bodies(*on_victim, 3) == before
    for socket, op_id in on_survivor:
        assert await bodies(socket, op_id, 3) == before

    tally = Tally()
    sent: list[str] = []

    async def sender(http: httpx.AsyncClient) -> None:
        for n in range(1, SENDS + 1):
            body = f"s{n}"
            variables = {"conversationId": conversation, "body": body}
            outcome = await post(http, survivor.url, SEND, variables, pro.token)
            tally.outcomes.append(outcome)
            if outcome.kind == "ok":
                sent.append(body)
            await asyncio.sleep(PAUSE)

    async with httpx.AsyncClient(timeout=10) as http:
        sending = asyncio.create_task(sender(http))
        try:
            while len(sent) < SENDS // 3 and not sending.done():  # a third sent, more to come
                await asyncio.sleep(0.01)
            victim.process.kill()  # SIGKILL
            await asyncio.to_thread(victim.process.wait, 10)
            victim_got, victim_end = await _until_closed(*on_victim)
            await sending
        finally:
            sending.cancel()

    survivors_got = [await bodies(socket, op_id, len(sent)) for socket, op_id in on_survivor]

    # The victim's client reconnects to the survivor from the last message it received.
    edges = await message_edges(survivor.url, conversation, alice.token)
    last = victim_got[-1] if victim_got else before[-1]
    last_received = next(e["cursor"] for e in edges if e["node"]["body"] == last)
    reconnected = await LiveSocket.open(survivor.ws_url)
    sockets.append(reconnected)
    op_id = await subscribed(reconnected, alice.token, last_received, conversation)
    replayed = await bodies(reconnected, op_id, len(sent) - len(victim_got))

    await send(survivor.url, pro, conversation, "end")
    subscribers = [*on_survivor, (reconnected, op_id)]
    live = [(await bodies(socket, op_id, 1))[0] for socket, op_id in subscribers]
    quiet = [await socket.silent_for(0.3) for socket, _ in subscribers]
    return Seen(sent, tally, survivors_got, victim_got, victim_end, replayed, live, quiet)


async def _until_closed(socket: LiveSocket, op_id: str) -> tuple[list[str], tuple[int | None, str]]:
    """The bodies a subscriber received until its server went away, and how it ended."""
    got: list[str] = []
    while True:
        try:
            message = await socket.receive(10)
        except Closed as closed:
            return got, (closed.code, closed.reason)
        assert message.get("id") == op_id and message.get("type") == "next", message
        got.append(message["payload"]["data"]["messageReceived"]["body"])
