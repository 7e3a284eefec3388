"""PostgreSQL stopped and restarted under traffic: every request is answered (success, or
503 SERVICE_UNAVAILABLE with Retry-After) within seconds, no committed message is lost, and
the same server process serves again once the database is back."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from tests.e2e.live_support import ServerProcess, gql_data, start_setup
from tests.faults.support import Outcome, Tally, post, private_postgres, wait_until
from tests.seaweed import free_ports

START = """mutation($patientId: ID!, $body: String!) {
  startConversation(input: {patientId: $patientId, subject: "Suivi", body: $body}) {
    conversation { id } } }"""
SEND = """mutation($conversationId: ID!, $body: String!) {
  sendMessage(input: {conversationId: $conversationId, body: $body}) { message { id body } } }"""
MESSAGES = """query($id: ID!) { node(id: $id) {
  ... on Conversation { messages(first: 100) { edges { node { id body } } } } } }"""
PROMPT = 8.0  # seconds: the longest any answer may take, the database down or not


async def test_postgres_stopped_and_restarted_under_traffic(tmp_path: Path) -> None:
    with private_postgres() as pg:
        actors = start_setup(pg.url, tmp_path / "setup", 1, migrate=True).actors()
        pro, patient = actors.professional, actors.patients[0]
        server = ServerProcess("app", tmp_path / "app", pg.url, "memory://", free_ports(1)[0])
        try:
            server.wait_healthy()
            started = await gql_data(
                server.url, START, {"patientId": patient.id, "body": "m-0"}, pro.token
            )
            conversation = started["startConversation"]["conversation"]["id"]
            tally = Tally()
            accepted: dict[str, str] = {}  # message id -> body, for every success
            sent: set[str] = {"m-0"}
            stop = asyncio.Event()

            async def sender(name: str, http: httpx.AsyncClient) -> None:
                n = 0
                while not stop.is_set() and len(sent) < 90:
                    n += 1
                    body = f"{name}-{n}"
                    sent.add(body)
                    outcome = await post(
                        http,
                        server.url,
                        SEND,
                        {"conversationId": conversation, "body": body},
                        pro.token,
                    )
                    tally.outcomes.append(outcome)
                    if outcome.kind == "ok":
                        message = outcome.body["data"]["sendMessage"]["message"]
                        accepted[message["id"]] = message["body"]
                    await asyncio.sleep(0.15)

            async with httpx.AsyncClient(timeout=30) as http:
                senders = [asyncio.create_task(sender(name, http)) for name in ("a", "b")]
                await asyncio.sleep(1.5)
                before = len(tally.outcomes)
                await asyncio.to_thread(pg.stop, "fast")
                await asyncio.sleep(1.0)
                ready_down = await http.get(f"{server.url}/readyz")
                await asyncio.sleep(2.0)
                down = tally.outcomes[before:]
                await asyncio.to_thread(pg.start)
                restarted_at = len(tally.outcomes)

                def back() -> bool:  # five successes in a row since the restart
                    after = tally.kinds()[restarted_at:]
                    return len(after) >= 5 and after[-5:] == ["ok"] * 5

                await asyncio.to_thread(wait_until, back, 30, "service back after the restart")
                stop.set()
                await asyncio.gather(*senders)
                ready_up = await http.get(f"{server.url}/readyz")
                stored = await gql_data(server.url, MESSAGES, {"id": conversation}, pro.token)
        finally:
            server.stop()

    assert tally.unexpected() == [], tally.unexpected()[:3]
    assert max(o.seconds for o in tally.outcomes) < PROMPT, _slowest(tally)
    assert "unavailable" in [o.kind for o in down]  # the outage was seen, and answered
    assert tally.outcomes[0].kind == "ok"
    assert (ready_down.status_code, ready_down.json()["checks"]) == (
        503,
        {"database": False, "broadcast": True, "objectStore": True},
    )
    assert (ready_up.status_code, ready_up.json()["status"]) == (200, "ready")
    edges = stored["node"]["messages"]["edges"]
    kept = {edge["node"]["id"]: edge["node"]["body"] for edge in edges}
    assert accepted.items() <= kept.items()  # no committed message lost
    assert set(kept.values()) <= sent  # and nothing else written
    assert len(kept) == len(set(kept.values()))  # each once


def _slowest(tally: Tally) -> Outcome:
    return max(tally.outcomes, key=lambda o: o.seconds)


def test_the_private_cluster_is_not_the_shared_instance() -> None:
    with private_postgres() as pg:
        assert pg.port != 5432
        assert str(pg.data).startswith(str(pg.root))
        started = time.monotonic()
        pg.stop()
        pg.start()
        assert time.monotonic() - started < 30
