"""Two servers (two machines, as far as they know: each its own DATA_DIR) sharing
PostgreSQL, Redis and the object store: what one stores, the other serves; with Redis gone,
messages are still stored and answered at once."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx

from tests.e2e.live_support import ServerProcess, gql_data, start_setup
from tests.faults.support import post, private_postgres
from tests.redis_server import RedisServer
from tests.seaweed import Seaweed, free_ports
from tests.test_documents import ADD

START = """mutation($patientId: ID!, $body: String!) {
  startConversation(input: {patientId: $patientId, subject: "Suivi", body: $body}) {
    conversation { id } message { id } } }"""
SEND = """mutation($conversationId: ID!, $body: String!) {
  sendMessage(input: {conversationId: $conversationId, body: $body}) { message { id } } }"""
MESSAGES = """query($id: ID!) { node(id: $id) {
  ... on Conversation { messages(first: 10) { edges { node { id body } } } } } }"""
SCAN = (
    b"%PDF-1.4\n% compte rendu operatoire, deux pages\n"
    + bytes(range(32, 127)) * 4000
    + b"\n%%EOF\n"
)


async def test_a_document_stored_through_one_worker_is_read_through_the_other(
    tmp_path: Path, weed: Seaweed, redis_server: RedisServer
) -> None:
    with private_postgres() as pg:
        actors = start_setup(pg.url, tmp_path / "setup", 1, migrate=True).actors()
        pro, alice = actors.professional, actors.patients[0]
        shared = weed.env("shared")
        one_port, other_port = free_ports(2)
        one = ServerProcess("one", tmp_path / "one", pg.url, redis_server.url, one_port, env=shared)
        other = ServerProcess(
            "other", tmp_path / "other", pg.url, redis_server.url, other_port, env=shared
        )
        try:
            one.wait_healthy()
            other.wait_healthy()
            async with httpx.AsyncClient(timeout=30) as http:
                variables = {
                    "input": {"title": "CR opératoire", "category": "REPORT", "file": None}
                }
                stored = await post(
                    http,
                    one.url,
                    ADD,
                    variables,
                    alice.token,
                    files={"file": ("cr.pdf", SCAN, "application/pdf")},
                )
                assert stored.kind == "ok", stored
                document = stored.body["data"]["addDocument"]["document"]
                read = await http.get(
                    f"{other.url}/documents/{document['id']}/content",
                    headers={"Authorization": f"Bearer {alice.token}"},
                )
            started = await gql_data(
                one.url, START, {"patientId": alice.id, "body": "Bonjour"}, pro.token
            )
            conversation = started["startConversation"]["conversation"]["id"]
            # Redis gone: messages are still stored and answered at once (live delivery
            # waits for Redis; a reconnecting client gets them with `after`).
            redis_server.stop()
            async with httpx.AsyncClient(timeout=30) as http:
                sent = await post(
                    http,
                    one.url,
                    SEND,
                    {"conversationId": conversation, "body": "Suite"},
                    pro.token,
                )
                ready_without_redis = await http.get(f"{other.url}/readyz")
            redis_server.start()
            seen = await gql_data(other.url, MESSAGES, {"id": conversation}, alice.token)
        finally:
            one.stop()
            other.stop()

    assert document["sha256"] == hashlib.sha256(SCAN).hexdigest()
    assert (read.status_code, read.content) == (200, SCAN)
    assert [p.name for p in (tmp_path / "one").rglob("*") if "blobs" in p.parts] == []
    assert sent.kind == "ok", sent
    assert sent.seconds < 5
    assert (ready_without_redis.status_code, ready_without_redis.json()["checks"]) == (
        503,
        {"database": True, "broadcast": False, "objectStore": True},
    )
    assert [e["node"]["body"] for e in seen["node"]["messages"]["edges"]] == ["Bonjour", "Suite"]
    objects = await weed.keys("shared")
    assert len(objects) == 1
    assert SCAN[:40] not in next(iter(objects.values()))
