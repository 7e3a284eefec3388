"""The object store (SeaweedFS) killed, then frozen, during uploads and downloads: clean
refusals within seconds and no document without its bytes; once it is back, everything is
served by the same server process, and the reaper removes what a refused upload left."""

from __future__ import annotations

import asyncio
import hashlib
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from tests.e2e.live_support import ServerProcess, command, server_env, start_setup
from tests.faults.support import post, wait_until
from tests.seaweed import Seaweed, free_ports
from tests.test_documents import ADD

LIST = """query($id: ID!) { patient(id: $id) {
  documents(first: 50) { edges { node { id sha256 } } } } }"""
PROMPT = 8.0  # the store refusing connections: an answer within seconds
FROZEN = 15.0  # the store accepting connections but never answering: read timeouts


def letter(n: int) -> bytes:
    return f"Compte rendu n°{n} : bilan normal, à revoir dans un an.\n".encode() * 300


async def upload(http: httpx.AsyncClient, url: str, token: str, data: bytes) -> object:
    variables = {"input": {"title": "Compte rendu", "category": "REPORT", "file": None}}
    return await post(
        http, url, ADD, variables, token, files={"file": ("cr.txt", data, "text/plain")}
    )


async def test_the_object_store_down_then_back(tmp_path: Path, weed: Seaweed) -> None:
    database = f"sqlite://{tmp_path / 'db.sqlite3'}"
    actors = start_setup(database, tmp_path / "setup", 1, migrate=True).actors()
    alice = actors.patients[0]
    s3 = weed.env("outage")
    server = ServerProcess("app", tmp_path / "app", database, "memory://", free_ports(1)[0], env=s3)
    try:
        server.wait_healthy()
        async with httpx.AsyncClient(timeout=60) as http:
            first = await upload(http, server.url, alice.token, letter(1))
            assert first.kind == "ok", first  # type: ignore[attr-defined]
            first_id = first.body["data"]["addDocument"]["document"]["id"]  # type: ignore[attr-defined]

            # Killed: connections refused.
            await asyncio.to_thread(weed.kill)
            refused_upload = await upload(http, server.url, alice.token, letter(2))
            started = time.monotonic()
            refused_download = await http.get(
                f"{server.url}/documents/{first_id}/content",
                headers={"Authorization": f"Bearer {alice.token}"},
            )
            download_seconds = time.monotonic() - started
            ready_down = await http.get(f"{server.url}/readyz")

            # Back: the same process serves again.
            await asyncio.to_thread(weed.start)
            await asyncio.to_thread(
                wait_until,
                lambda: httpx.get(f"{server.url}/readyz", timeout=5).status_code == 200,
                30,
                "ready again",
            )
            served = await http.get(
                f"{server.url}/documents/{first_id}/content",
                headers={"Authorization": f"Bearer {alice.token}"},
            )
            second = await upload(http, server.url, alice.token, letter(2))

            # Frozen: connections accepted, nothing answered; then thawed.
            await asyncio.to_thread(weed.freeze)
            try:
                frozen_upload = await upload(http, server.url, alice.token, letter(3))
            finally:
                await asyncio.to_thread(weed.thaw)
            listed = await post(http, server.url, LIST, {"id": alice.id}, alice.token)
    finally:
        server.stop()

    assert refused_upload.kind == "unavailable", refused_upload  # type: ignore[attr-defined]
    assert refused_upload.seconds < PROMPT  # type: ignore[attr-defined]
    assert refused_download.status_code == 503
    assert refused_download.headers["Retry-After"] == "5"
    assert refused_download.json()["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
    assert download_seconds < PROMPT
    assert (ready_down.status_code, ready_down.json()["checks"]) == (
        503,
        {"database": True, "broadcast": True, "objectStore": False},
    )
    assert (served.status_code, served.content) == (200, letter(1))
    assert second.kind == "ok", second  # type: ignore[attr-defined]
    assert frozen_upload.kind == "unavailable", frozen_upload  # type: ignore[attr-defined]
    assert frozen_upload.seconds < FROZEN  # type: ignore[attr-defined]
    edges = listed.body["data"]["patient"]["documents"]["edges"]  # type: ignore[attr-defined]
    assert sorted(e["node"]["sha256"] for e in edges) == sorted(
        hashlib.sha256(letter(n)).hexdigest() for n in (1, 2)
    )  # the refused uploads left no document

    # The refused uploads left rows (and, the frozen one, maybe bytes) for the reaper.
    later = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    env = server_env(tmp_path / "app", database, "memory://", **s3)
    done = await asyncio.to_thread(_run, [*command("run-jobs", "--now", later)], env)
    reaped = dict(line.split(": ") for line in done.splitlines())["blobs_reaped"]
    assert int(reaped) >= 2
    verified = await asyncio.to_thread(_run, [*command("blobs", "verify")], env)
    assert verified.endswith("2 blob(s) checked, 0 failed\n")
    names = sorted(key.rsplit("/", 1)[1] for key in await weed.keys("outage"))
    assert names == await asyncio.to_thread(_stored_names, database, env)


def _run(args: list[str], env: dict[str, str]) -> str:
    import subprocess

    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _stored_names(database: str, env: dict[str, str]) -> list[str]:
    """The object names of the `blob` rows, from the database itself."""
    import sqlite3
    import uuid

    path = database.removeprefix("sqlite://")
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT id, stored FROM blob").fetchall()
    assert all(stored for _, stored in rows), rows
    return sorted(uuid.UUID(str(row_id)).hex for row_id, _ in rows)
