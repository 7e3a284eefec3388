"""Benchmark of live delivery ("Messagerie santé"): fan-out of `messageReceived` on ONE worker.

    .venv/bin/python -m bench.fanout [--subscribers 100,1000] [--backends memory,redis]
                                     [--rate 100] [--seconds 10] [--low-rate 30]
                                     [--low-seconds 5] [--clients 2] [--pin] [--disk]
                                     [--redis-url redis://127.0.0.1:6379/14]
                                     [--no-server-deflate] [--profile DIR] [--keep]
                                     [--traced DIR]

For each backend (memory://, redis://) and each number N of subscribers, on a fresh
`python -m api.cli serve --no-migrate` (one uvicorn worker, as shipped):

- memory: after a warm-up, N/2 idle `messageReceived` subscriptions whose clients offer
  permessage-deflate (`websockets`' default, as every browser does), then N/2 whose clients
  offer nothing; each batch is charged the server VmRSS it adds, divided by its sockets. For
  the largest N (first backend only: uvicorn's cost does not depend on it), the same app
  served by uvicorn with `ws_per_message_deflate=True` shows what negotiating it would cost;
- latency: with the N subscribers live, a sender process posts `sendMessage` over HTTP,
  each to one patient's conversation (spread evenly), first --low-seconds at --low-rate (a
  rate one worker sustains: the cost of the fan-out itself), then --seconds at --rate (the
  target). It records when each mutation's response arrived, the receivers when the message
  reached the recipient's socket (CLOCK_MONOTONIC is system-wide, so processes compare
  times). Latency = receipt - response; lost = sent - received by the right recipient
  (duplicates and deliveries to a wrong socket are counted too). The sender never has more
  than IN_FLIGHT mutations waiting: a saturated server shows as an achieved rate below the
  target instead of a backlog that takes minutes to drain.

The database is a fresh SQLite file (`espace-sante migrate`) on tmpfs (/dev/shm) unless
--disk, seeded through the domain code (cheap argon2): N patients with an account and a
session each, one professional with a session and a conversation with each patient.
Subscribers pass `after:` a cursor just before their conversation's first message, so the
first replayed message proves the subscription live (STACK.md trap 8) before anything is
measured; messages not sent in a measured phase (replays) are ignored.

Clients: --clients processes of asyncio + `websockets` (graphql-transport-ws, the token in
the `connection_init` payload). Nothing is pinned unless --pin (server on CPU 0, clients
on CPU 1): on a shared two-CPU machine pinning mostly measures the neighbours. --profile
DIR records the server with py-spy (raw collapsed stacks) during each --rate phase.
--traced DIR runs the shipped server under tracemalloc and writes, per batch, the traced
heap each idle connection added, by package and by allocation site (with its callers): what
an idle subscription holds, e.g. `--subscribers 600 --backends memory --seconds 0
--low-rate 0 --no-server-deflate --traced DIR` (a few minutes: tracing is slow). Every
process started here is stopped on exit; the default run takes about 3 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
PYSPY = str(Path(sys.executable).with_name("py-spy"))
SERVER_CPU: int | None = None  # --pin: 0
CLIENT_CPU: int | None = None  # --pin: 1
SECRET_KEY = "bench-fanout-secret-key-" + "f" * 32
TRANSPORT_WS = "graphql-transport-ws"
IN_FLIGHT = 32  # the sender's bound on mutations awaiting their response

SUBSCRIPTION = (
    "subscription($after: String) { messageReceived(after: $after) "
    "{ id body sentAt cursor conversation { id } } }"
)
SEND = (
    "mutation($conversationId: ID!, $body: String!) { sendMessage(input: "
    "{conversationId: $conversationId, body: $body}) { message { id sentAt } } }"
)


# --- helpers ------------------------------------------------------------------------------


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    fields_ = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields_[11]) + int(fields_[12])) / os.sysconf("SC_CLK_TCK")


def pin(pid: int, cpu: int | None) -> None:
    if cpu is None:
        return
    with contextlib.suppress(OSError):
        if cpu < (os.cpu_count() or 1):
            os.sched_setaffinity(pid, {cpu})


def raise_nofile(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def server_env(data_dir: Path, database_url: str, broadcast_url: str) -> dict[str, str]:
    prefixes = (
        *("ENVIRONMENT", "DATABASE_URL", "BROADCAST_URL", "DATA_DIR", "SECRET_KEY"),
        *("TWO_FACTOR", "SCHEDULER_", "SESSION_TTL_MINUTES", "MAX_", "ALLOWED_ORIGINS"),
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(
        DATA_DIR=str(data_dir),
        DATABASE_URL=database_url,
        BROADCAST_URL=broadcast_url,
        ENVIRONMENT="development",
        TWO_FACTOR="false",
        SCHEDULER_ENABLED="false",
        SECRET_KEY=SECRET_KEY,
        SESSION_TTL_MINUTES="240",
        PYTHONUNBUFFERED="1",
        # Thousands of sockets and messages from one address: the request budget
        # (api/budget.py) still runs, at rates no benchmark reaches.
        RATE_LIMIT_REQUESTS_PER_MINUTE="100000000",
        RATE_LIMIT_COST_PER_MINUTE="100000000000",
        RATE_LIMIT_ADDRESS_REQUESTS_PER_MINUTE="100000000",
        RATE_LIMIT_ADDRESS_COST_PER_MINUTE="100000000000",
    )
    return env


# --- seeding (subprocess: the orchestrator never holds Tortoise state) ------------------


async def _seed(patients: int) -> dict[str, Any]:
    from datetime import date, timedelta
    from uuid import UUID

    from argon2 import PasswordHasher
    from stdnum.fr import nir
    from tortoise import Tortoise

    import models.passwords
    from api.config import Settings
    from api.db import tortoise_config
    from models.account import Account, Role
    from models.base import utcnow
    from models.crypto import Vault
    from models.message import start_conversation
    from models.passwords import hash_password
    from models.patient import Patient, Sex, SpaceStatus, seal_nir
    from models.professional import Profession, Professional, Sector
    from models.session import authenticate, open_session
    from resolvers.ids import encode
    from resolvers.pagination import encode_cursor

    # The real argon2 cost (~0.2 s a hash) buys nothing here; one hash serves every account.
    models.passwords._hasher = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
    settings = Settings.from_env()
    await Tortoise.init(config=tortoise_config(settings.database_url))
    try:
        vault = Vault(settings.secret_key)
        blobs = settings.blob_store()  # file:// unless BLOB_URL
        password_hash = await hash_password("bench-fanout-password")
        now = utcnow()

        async def token_of(account: Account) -> str:
            opened = await open_session(account, ttl=timedelta(hours=4), now=now)
            assert opened.token is not None
            return opened.token

        professional = await Professional.create(
            rpps="10003456789",
            first_name="Claire",
            last_name="Martin",
            profession=Profession.MEDECIN,
            sector=Sector.HEALTH,
        )
        pro_account = await Account.create(
            email="pro@fanout.example.org",
            password_hash=password_hash,
            role=Role.PROFESSIONAL,
            professional_id=professional.id,
        )
        pro_token = await token_of(pro_account)
        pro_actor = await authenticate(pro_token)
        made = []
        for n in range(patients):
            # Unique NIRs: commune code and serial both vary with n.
            body = f"28001{75001 + n // 1000:05d}"[:10] + f"{n % 1000:03d}"
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
                email=f"alice{n}@fanout.example.org",
                password_hash=password_hash,
                role=Role.PATIENT,
                patient_id=patient.id,
            )
            conversation, message = await start_conversation(
                patient.id,
                actor=pro_actor,
                subject="Résultats",
                body="Bonjour, vos résultats sont arrivés.",
                attachments=[],
                blobs=blobs,
                max_bytes=settings.max_attachment_bytes,
                now=utcnow(),
            )
            made.append(
                {
                    "token": await token_of(account),
                    "conversation": encode("Conversation", conversation.id),
                    # Just before the first message: its replay proves the subscription live.
                    "after": encode_cursor(
                        [message.sent_at - timedelta(milliseconds=1), UUID(int=0)]
                    ),
                }
            )
        return {"professional": pro_token, "patients": made}
    finally:
        await Tortoise.close_connections()


# --- subscriber clients (subprocess) -----------------------------------------------------


async def _client(
    url: str, subs: list[dict[str, str]], compression: str | None, concurrency: int
) -> dict[str, Any]:
    from websockets.asyncio.client import connect
    from websockets.typing import Subprotocol

    loop = asyncio.get_running_loop()
    received: list[list[Any]] = []  # [message id, conversation id, expected conversation, t]
    ready = 0
    all_ready = asyncio.Event()
    negotiated: list[bool] = []
    sockets = []
    errors: list[str] = []
    gate = asyncio.Semaphore(concurrency)

    async def one(sub: dict[str, str]) -> None:
        nonlocal ready
        async with gate:
            ws = await connect(
                url,
                subprotocols=[Subprotocol(TRANSPORT_WS)],
                compression=compression,
                open_timeout=60,
                ping_interval=None,  # the server pings; none of its replies are measured
                max_size=2**20,
            )
            sockets.append(ws)
            negotiated.append(bool(ws.protocol.extensions))
            init = {"Authorization": f"Bearer {sub['token']}"}
            await ws.send(json.dumps({"type": "connection_init", "payload": init}))
            ack = json.loads(await ws.recv())
            if ack.get("type") != "connection_ack":
                raise RuntimeError(f"no ack: {ack}")
            payload = {"query": SUBSCRIPTION, "variables": {"after": sub["after"]}}
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
        first = True
        async for raw in ws:
            t = time.monotonic()
            message = json.loads(raw)
            kind = message.get("type")
            if kind == "ping":
                await ws.send(json.dumps({"type": "pong"}))
                continue
            if kind != "next":
                errors.append(str(message)[:300])
                if kind in ("error", "complete"):
                    break
                continue
            data = (message["payload"].get("data") or {}).get("messageReceived")
            if data is None:
                errors.append(str(message)[:300])
                continue
            received.append([data["id"], data["conversation"]["id"], sub["conversation"], t])
            if first:
                first = False
                ready += 1
                if ready == len(subs):
                    all_ready.set()

    tasks = [asyncio.create_task(one(sub)) for sub in subs]

    async def watch() -> None:
        for task in asyncio.as_completed(tasks):
            try:
                await task
            except Exception as exc:  # a socket that failed: reported, never hidden
                errors.append(repr(exc)[:300])

    watcher = asyncio.create_task(watch())
    started = time.monotonic()
    # Each subscription is a handshake, an init and a replay: thousands of them per client
    # process take minutes on a busy machine (5,000 each did not make it in 120 s).
    limit = max(120, len(subs) // 20)
    try:
        await asyncio.wait_for(all_ready.wait(), limit)
    except TimeoutError:
        errors.append(f"only {ready}/{len(subs)} subscriptions live after {limit} s")
    print(
        json.dumps(
            {
                "ready": ready,
                "seconds": time.monotonic() - started,
                "deflate": sum(negotiated),
                "errors": errors[:5],
            }
        ),
        flush=True,
    )
    await loop.run_in_executor(None, sys.stdin.readline)  # "stop" (or EOF)
    watcher.cancel()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(
            asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True), 2
        )
    for task in tasks:
        task.cancel()
    return {"received": received, "errors": errors, "ready": ready}


# --- sender (subprocess) -----------------------------------------------------------------


async def _sender(
    url: str, token: str, conversations: list[str], rate: float, seconds: float
) -> dict[str, Any]:
    import httpx

    total = int(rate * seconds)
    order = [conversations[k % len(conversations)] for k in range(total)]
    random.Random(7).shuffle(order)
    sent: list[list[Any]] = []  # [message id, conversation, t_request, t_response]
    failures: list[str] = []
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30) as http:

        async def post(k: int, conversation: str) -> None:
            variables = {"conversationId": conversation, "body": f"Message {k} du Dr Martin."}
            t0 = time.monotonic()
            try:
                response = await http.post("/graphql", json={"query": SEND, "variables": variables})
                t1 = time.monotonic()
                body = response.json()
                message_id = body["data"]["sendMessage"]["message"]["id"]
            except Exception as exc:
                failures.append(repr(exc)[:300])
                return
            sent.append([message_id, conversation, t0, t1])

        await post(-1, conversations[0])  # opens the keep-alive connection; not counted
        sent.clear()
        # Open loop on a fixed schedule, but never more than IN_FLIGHT requests waiting: a
        # saturated server makes the sender fall behind (the achieved rate says so) instead
        # of piling up a backlog that would take minutes to drain.
        gate = asyncio.Semaphore(IN_FLIGHT)

        async def gated(k: int, conversation: str) -> None:
            try:
                await post(k, conversation)
            finally:
                gate.release()

        start = time.monotonic() + 0.05
        deadline = start + seconds
        tasks = []
        for k, conversation in enumerate(order):
            delay = start + k / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await gate.acquire()
            if time.monotonic() >= deadline:
                gate.release()
                break
            tasks.append(asyncio.create_task(gated(k, conversation)))
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - start
    return {"sent": sent, "failures": failures, "elapsed": elapsed, "offered": total}


# --- the orchestrator --------------------------------------------------------------------


@dataclass
class Memory:
    """One batch of idle subscriptions opened on a server, and what it cost."""

    offer: str | None  # what the clients offer: "deflate" or None
    sockets: int
    negotiated: int = 0
    kb_per_connection: float = 0.0
    connect_seconds: float = 0.0


@dataclass
class Run:
    """One fresh server: memory batches, then (shipped server) the load on all of them."""

    backend: str
    subscribers: int
    server: str  # "shipped" or "deflate=on"
    memory: list[Memory] = field(default_factory=list)
    loads: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class Processes:
    """Everything started here, stopped on exit whatever happens."""

    def __init__(self) -> None:
        self.running: list[subprocess.Popen[Any]] = []

    def start(self, args: list[str], *, cpu: int | None = None, **kwargs: Any) -> Any:
        process = subprocess.Popen(args, cwd=ROOT, **kwargs)
        self.running.append(process)
        if cpu is not None:
            pin(process.pid, cpu)
        return process

    def stop(self, process: subprocess.Popen[Any], timeout: float = 10) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process in self.running:
            self.running.remove(process)

    def stop_all(self) -> None:
        for process in list(self.running):
            self.stop(process, timeout=5)


class Server:
    def __init__(
        self,
        procs: Processes,
        env: dict[str, str],
        log: Path,
        *,
        deflate_on: bool = False,
        traced: Path | None = None,
    ) -> None:
        self.procs = procs
        self.traced = traced
        self.snapshots = 0
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/graphql"
        self.log = log
        if deflate_on:
            # The same app with uvicorn's permessage-deflate on: for comparison only.
            args = [PYTHON, "-m", "uvicorn", "api.app:create_app", "--factory"]
            args += ["--port", str(self.port), "--ws-per-message-deflate", "true"]
            args += ["--ws-max-size", str(1024 * 1024), "--log-level", "warning"]
        elif traced is not None:
            # The shipped uvicorn options, in a process that traces its allocations.
            args = [PYTHON, "-m", "bench.fanout", "_traced_serve", "--port", str(self.port)]
            args += ["--dir", str(traced)]
        else:
            args = [PYTHON, "-m", "api.cli", "serve", "--no-migrate", "--port", str(self.port)]
        with log.open("ab") as output:
            self.process = procs.start(
                args, cpu=SERVER_CPU, env=env, stdout=output, stderr=subprocess.STDOUT
            )

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    def snapshot(self) -> Path:
        """--traced: the server's tracemalloc snapshot now (after a full collection)."""
        assert self.traced is not None
        path = self.traced / f"{self.port}-{self.snapshots}.tracemalloc"
        self.snapshots += 1
        done = path.with_suffix(".done")
        self.process.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 300
        while not done.exists():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("no tracemalloc snapshot from the server")
            time.sleep(0.2)
        return path

    def wait_ready(self) -> None:
        import urllib.error
        import urllib.request

        # Tracing every allocation, start-up takes minutes.
        deadline = time.monotonic() + (30 if self.traced is None else 600)
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.log.read_text()[-3000:]}")
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as response,
            ):
                if response.status == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"server not ready:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        self.procs.stop(self.process, timeout=15)


class Clients:
    """--clients subscriber processes sharing the subscribers; all live when started."""

    def __init__(
        self,
        procs: Processes,
        work: Path,
        ws_url: str,
        subs: list[dict[str, str]],
        compression: str | None,
        processes: int,
        tag: str,
    ) -> None:
        self.procs = procs
        self.finished = False
        self.outs: list[Path] = []
        self.children: list[subprocess.Popen[str]] = []
        processes = max(1, min(processes, len(subs)))
        for index in range(processes):
            part = subs[index::processes]
            spec = work / f"{tag}-client{index}.json"
            spec.write_text(json.dumps(part))
            out = work / f"{tag}-client{index}-out.json"
            self.outs.append(out)
            args = [PYTHON, "-m", "bench.fanout", "_client", "--url", ws_url, "--spec", str(spec)]
            args += ["--out", str(out), "--compression", compression or "none"]
            self.children.append(
                procs.start(
                    args,
                    cpu=CLIENT_CPU,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        self.status = []
        for child in self.children:
            assert child.stdout is not None
            line = child.stdout.readline()
            if not line:
                raise RuntimeError("a client process died while connecting")
            self.status.append(json.loads(line))

    @property
    def ready(self) -> int:
        return sum(s["ready"] for s in self.status)

    @property
    def seconds(self) -> float:
        return float(max(s["seconds"] for s in self.status))

    @property
    def negotiated(self) -> int:
        return sum(s["deflate"] for s in self.status)

    @property
    def errors(self) -> list[str]:
        return [e for s in self.status for e in s["errors"]]

    def finish(self) -> tuple[list[list[Any]], list[str]]:
        """Stop the processes (their sockets close) and collect what they received; once."""
        if self.finished:
            return [], []
        self.finished = True
        received: list[list[Any]] = []
        errors: list[str] = []
        for child in self.children:
            assert child.stdin is not None
            with contextlib.suppress(BrokenPipeError, OSError):
                child.stdin.write("stop\n")
                child.stdin.flush()
        for child, out in zip(self.children, self.outs, strict=True):
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                errors.append("a client process did not stop")
            self.procs.stop(child)
            if out.exists():
                data = json.loads(out.read_text())
                received += data["received"]
                errors += data["errors"]
        return received, errors


def measure_rss(pid: int, settle: float) -> int:
    time.sleep(settle)
    samples = []
    for _ in range(5):
        samples.append(rss_kb(pid))
        time.sleep(0.1)
    return int(statistics.median(samples))


# --- --traced: where an idle subscription's memory goes (tracemalloc in the server) -------


def _traced_serve(port: int, directory: Path, frames: int) -> None:
    """`api.cli serve --no-migrate`'s uvicorn, tracing allocations (`frames` deep); on
    SIGUSR1, a full collection then a snapshot in `directory`, named by port and count."""
    import gc
    import itertools
    import tracemalloc

    import uvicorn

    tracemalloc.start(frames)
    count = itertools.count()

    def snapshot() -> None:
        gc.collect()
        path = directory / f"{port}-{next(count)}.tracemalloc"
        tracemalloc.take_snapshot().dump(str(path))
        path.with_suffix(".done").write_text(str(tracemalloc.get_traced_memory()))

    config = uvicorn.Config(
        "api.app:create_app",
        factory=True,
        host="127.0.0.1",
        port=port,
        proxy_headers=False,
        ws_max_size=1024 * 1024,
        ws_per_message_deflate=False,
        ws="api.websocket:LeanWebSocketProtocol",
        log_level="warning",
    )  # as api/cli.py `serve`

    async def serve() -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, snapshot)
        await uvicorn.Server(config).serve()

    asyncio.run(serve())


def _site(frame: Any) -> str:
    name = str(frame.filename)
    for marker in ("site-packages/", f"{ROOT}/"):
        if marker in name:
            name = name.split(marker, 1)[1]
    name = re.sub(r"^.*/lib/python3\.\d+/", "", name)  # the standard library's
    return f"{name}:{frame.lineno}"


def traced_report(before: Path, after: Path, sockets: int, out: Path, top: int = 40) -> str:
    """Traced heap added per socket between two snapshots: by package (the allocating
    frame's), and the `top` allocation sites with their callers, written to `out`."""
    import tracemalloc

    ignore = [tracemalloc.Filter(False, tracemalloc.__file__)]
    old = tracemalloc.Snapshot.load(str(before)).filter_traces(ignore)
    new = tracemalloc.Snapshot.load(str(after)).filter_traces(ignore)
    diffs = new.compare_to(old, "traceback")
    total = sum(d.size_diff for d in diffs) / sockets
    packages: dict[str, float] = {}
    for diff in diffs:
        site = _site(diff.traceback[-1]).split(":")[0]
        package = site.split("/")[0] if "/" in site else site
        packages[package] = packages.get(package, 0) + diff.size_diff / sockets
    lines = [f"traced heap per idle connection: {total / 1024:.2f} KB ({sockets} sockets)", ""]
    lines += [
        f"{size:8.0f} B  {name}" for name, size in sorted(packages.items(), key=lambda p: -p[1])
    ]
    lines.append("")
    for diff in sorted(diffs, key=lambda d: -d.size_diff)[:top]:
        callers = " < ".join(_site(f) for f in reversed(list(diff.traceback)[-8:]))
        lines.append(
            f"{diff.size_diff / sockets:7.0f} B {diff.count_diff / sockets:5.1f} obj  {callers}"
        )
    out.write_text("\n".join(lines) + "\n")
    return "\n".join(lines[: 2 + min(len(packages), 15)]) + f"\n(sites: {out})"


def analyse(sent: list[list[Any]], received: list[list[Any]]) -> dict[str, Any]:
    by_id = {message_id: (conversation, t0, t1) for message_id, conversation, t0, t1 in sent}
    got: dict[str, float] = {}
    duplicates = wrong = 0
    for message_id, conversation, expected, t in received:
        if message_id not in by_id:
            continue  # replayed from before the measured run
        if conversation != by_id[message_id][0] or expected != by_id[message_id][0]:
            wrong += 1
            continue
        if message_id in got:
            duplicates += 1
            continue
        got[message_id] = t
    after_response = [(got[m] - t1) * 1000 for m, (_, _, t1) in by_id.items() if m in got]
    after_request = [(got[m] - t0) * 1000 for m, (_, t0, _) in by_id.items() if m in got]
    mutation = [(t1 - t0) * 1000 for _, _, t0, t1 in sent]
    return {
        "sent": len(by_id),
        "received": len(got),
        "lost": len(by_id) - len(got),
        "duplicates": duplicates,
        "wrong_recipient": wrong,
        "p50": percentile(after_response, 0.50),
        "p99": percentile(after_response, 0.99),
        "max": max(after_response, default=float("nan")),
        "p50_from_request": percentile(after_request, 0.50),
        "p99_from_request": percentile(after_request, 0.99),
        "mutation_p50": percentile(mutation, 0.50),
        "mutation_p99": percentile(mutation, 0.99),
    }


def warm_up(
    procs: Processes, work: Path, server: Server, seed: dict[str, Any], compression: str | None
) -> None:
    """A few subscriptions and sends, so lazy imports and caches are not counted per socket."""
    subs = seed["patients"][-20:]
    clients = Clients(procs, work, server.ws_url, subs, compression, 1, "warm")
    sender_run(
        procs,
        work,
        server,
        seed["professional"],
        [s["conversation"] for s in subs],
        rate=40,
        seconds=0.5,
        tag="warm",
    )
    time.sleep(0.3)
    clients.finish()


def sender_run(
    procs: Processes,
    work: Path,
    server: Server,
    token: str,
    conversations: list[str],
    *,
    rate: float,
    seconds: float,
    tag: str,
) -> dict[str, Any]:
    spec = work / f"{tag}-sender.json"
    spec.write_text(json.dumps({"token": token, "conversations": conversations}))
    out = work / f"{tag}-sender-out.json"
    args = [PYTHON, "-m", "bench.fanout", "_sender", "--url", server.url, "--spec", str(spec)]
    args += ["--out", str(out), "--rate", str(rate), "--seconds", str(seconds)]
    sender = procs.start(args, cpu=CLIENT_CPU)
    try:
        sender.wait(seconds + 60)
    finally:
        procs.stop(sender)
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def one_run(
    procs: Processes,
    work: Path,
    env: dict[str, str],
    seed: dict[str, Any],
    run: Run,
    args: argparse.Namespace,
) -> None:
    """On a fresh server: half the subscribers offer permessage-deflate, then the other half
    do not, each batch measured as the VmRSS it adds; then the load, with all of them live.
    The comparison server (deflate on) gets the deflate-offering half only, and no load."""
    tag = f"{run.backend}-{run.subscribers}-{run.server}".replace("=", "")
    shipped = run.server == "shipped"
    traced = args.traced if shipped else None
    server = Server(procs, env, work / f"{tag}-server.log", deflate_on=not shipped, traced=traced)
    clients: list[Clients] = []
    try:
        server.wait_ready()
        warm_up(procs, work, server, seed, "deflate")
        half = run.subscribers // 2
        batches: list[tuple[str | None, list[dict[str, str]]]] = [
            ("deflate", seed["patients"][:half])
        ]
        if shipped:
            batches.append((None, seed["patients"][half : run.subscribers]))
        rss = measure_rss(server.pid, 1.0)
        snapshot = server.snapshot() if traced is not None else None
        for offer, subs in batches:
            memory = Memory(offer, len(subs))
            batch = Clients(
                procs,
                work,
                server.ws_url,
                subs,
                offer,
                max(1, args.clients // 2),
                f"{tag}-{offer or 'none'}",
            )
            clients.append(batch)
            memory.connect_seconds = batch.seconds
            memory.negotiated = batch.negotiated
            run.errors += batch.errors
            if batch.ready < len(subs):
                run.errors.append(f"{batch.ready}/{len(subs)} subscriptions live")
            after = measure_rss(server.pid, 1.5)
            memory.kb_per_connection = (after - rss) / len(subs)
            rss = after
            if traced is not None and snapshot is not None:
                taken = server.snapshot()
                out = traced / f"{tag}-{offer or 'none'}.txt"
                print(traced_report(snapshot, taken, len(subs), out), flush=True)
                snapshot = taken
            run.memory.append(memory)
        if shipped and args.seconds > 0:
            load_run(procs, work, server, seed, clients, run, args, tag)
    finally:
        for batch in clients:
            batch.finish()
        server.stop()


def load_run(
    procs: Processes,
    work: Path,
    server: Server,
    seed: dict[str, Any],
    clients: list[Clients],
    run: Run,
    args: argparse.Namespace,
    tag: str,
) -> None:
    """The --low-rate phase (what the fan-out costs below saturation), then --rate."""
    phases = [(args.low_rate, args.low_seconds)] if args.low_rate > 0 else []
    phases.append((args.rate, args.seconds))
    conversations = [s["conversation"] for s in seed["patients"][: run.subscribers]]
    results = []
    for number, (rate, seconds) in enumerate(phases):
        profile = None
        if args.profile and rate == args.rate:
            args.profile.mkdir(parents=True, exist_ok=True)
            raw = args.profile / f"{tag}.txt"
            record = ["record", "-p", str(server.pid), "-o", str(raw), "-f", "raw", "-r", "200"]
            profile = procs.start(
                [PYSPY, *record, "-d", str(int(seconds) + 1), "--nonblocking"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        cpu0 = cpu_seconds(server.pid)
        sent = sender_run(
            procs,
            work,
            server,
            seed["professional"],
            conversations,
            rate=rate,
            seconds=seconds,
            tag=f"{tag}-{number}",
        )
        time.sleep(1.5)  # the last deliveries drain
        cpu = cpu_seconds(server.pid) - cpu0
        results.append((rate, sent, cpu))
        if profile is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                profile.wait(15)
            procs.stop(profile)
    received: list[list[Any]] = []
    for batch in clients:
        got, errors = batch.finish()
        received += got
        run.errors += errors
    for rate, sent, cpu in results:
        run.errors += sent["failures"][:5]
        load = analyse(sent["sent"], received)
        load["target"] = rate
        load["failures"] = len(sent["failures"])
        load["rate"] = len(sent["sent"]) / sent["elapsed"]
        load["offered"] = sent["offered"]
        load["server_cpu_per_message_ms"] = cpu * 1000 / max(1, len(sent["sent"]))
        run.loads.append(load)


def fmt_ms(value: float) -> str:
    return f"{value:.1f}"


def report(runs: list[Run], args: argparse.Namespace) -> str:
    where = "pinned to CPU 0, clients on CPU 1" if args.pin else "unpinned"
    lines = [
        f"Fan-out of messageReceived, one uvicorn worker ({where}); sendMessage over HTTP "
        f"at the target rate ({args.low_seconds:g} s at the low rate, {args.seconds:g} s at "
        f"the high one), each to one patient's conversation. Latency = receipt on the "
        f"recipient's socket - arrival of the mutation's response. At most {IN_FLIGHT} "
        f"mutations in flight: a saturated server shows as a lower achieved rate.",
        "",
        "| backend | subscribers | target msg/s | offered | sent (msg/s) | failed | lost | dup "
        "| wrong "
        "| p50 ms | p99 ms | max ms "
        "| p99 from request ms | mutation p50/p99 ms | server CPU/msg ms |",
        "| --- " + "| ---: " * 14 + "|",
    ]
    for run in runs:
        lines += [
            f"| {run.backend} | {run.subscribers} | {load['target']:g} | {load['offered']} | "
            f"{load['sent']} ({load['rate']:.0f}) | {load['failures']} | "
            f"{load['lost']} | {load['duplicates']} | {load['wrong_recipient']} | "
            f"{fmt_ms(load['p50'])} | {fmt_ms(load['p99'])} | {fmt_ms(load['max'])} | "
            f"{fmt_ms(load['p99_from_request'])} | "
            f"{fmt_ms(load['mutation_p50'])}/{fmt_ms(load['mutation_p99'])} | "
            f"{load['server_cpu_per_message_ms']:.2f} |"
            for load in run.loads
        ]
    lines += [
        "",
        "Server memory per idle subscription (VmRSS added by the batch / its sockets):",
        "",
        "| backend | subscribers | server permessage-deflate | client offers | sockets "
        "| negotiated | KB/connection | connect+subscribe s |",
        "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for run in runs:
        for memory in run.memory:
            lines.append(
                f"| {run.backend} | {run.subscribers} | "
                f"{'off (shipped)' if run.server == 'shipped' else 'on'} | "
                f"{'permessage-deflate' if memory.offer else 'nothing'} | {memory.sockets} | "
                f"{memory.negotiated} | {memory.kb_per_connection:.1f} | "
                f"{memory.connect_seconds:.1f} |"
            )
    problems = [f"{r.backend}/{r.subscribers}/{r.server}: {e}" for r in runs for e in r.errors]
    if problems:
        lines += ["", "Errors:", *(f"- {p}" for p in problems[:20])]
    return "\n".join(lines)


def orchestrate(args: argparse.Namespace) -> int:
    global SERVER_CPU, CLIENT_CPU
    if args.pin:
        SERVER_CPU, CLIENT_CPU = 0, 1
    raise_nofile(max(args.subscribers) * 2 + 1024)
    if args.traced is not None:
        args.traced = args.traced.resolve()
        args.traced.mkdir(parents=True, exist_ok=True)
    if args.profile and not shutil.which(PYSPY):
        print("py-spy not found", file=sys.stderr)
        return 2
    started = time.monotonic()
    load_average = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"load average before: {load_average} on {os.cpu_count()} CPUs", flush=True)
    procs = Processes()
    base = None if args.disk else "/dev/shm"
    work = Path(tempfile.mkdtemp(prefix="bench-fanout-", dir=base))

    def on_signal(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    runs: list[Run] = []
    try:
        data_dir = work / "data"
        env = server_env(data_dir, f"sqlite://{data_dir}/espace-sante.sqlite3", "memory://")
        subprocess.run(
            [PYTHON, "-m", "api.cli", "migrate"],
            cwd=ROOT,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        seed_file = work / "seed.json"
        subprocess.run(
            [
                PYTHON,
                "-m",
                "bench.fanout",
                "_seed",
                "--patients",
                str(max(args.subscribers)),
                "--out",
                str(seed_file),
            ],
            cwd=ROOT,
            env=env,
            check=True,
        )
        seed = json.loads(seed_file.read_text())
        print(
            f"seeded {len(seed['patients'])} patients in {time.monotonic() - started:.1f} s",
            flush=True,
        )
        for backend in args.backends:
            url = "memory://" if backend == "memory" else args.redis_url
            backend_env = {**env, "BROADCAST_URL": url}
            if backend == "redis" and not redis_ok(url):
                print(f"skipped redis: {url} unreachable", file=sys.stderr)
                continue
            for subscribers in args.subscribers:
                servers = ["shipped"]
                # uvicorn's deflate cost does not depend on the backend: measured once.
                if (
                    args.server_deflate
                    and subscribers == max(args.subscribers)
                    and backend == args.backends[0]
                ):
                    servers.append("deflate=on")
                for server in servers:
                    run = Run(backend, subscribers, server)
                    one_run(procs, work, backend_env, seed, run, args)
                    runs.append(run)
                    memory = ", ".join(
                        f"{m.offer or 'none'} {m.kb_per_connection:.1f} KB/conn" for m in run.memory
                    )
                    loads = "".join(
                        f"; at {load['target']:g}/s sent {load['sent']} ({load['rate']:.0f}/s) "
                        f"lost {load['lost']} p50 {load['p50']:.1f} p99 {load['p99']:.1f} ms"
                        for load in run.loads
                    )
                    print(
                        f"[{time.monotonic() - started:5.1f}s] {backend} N={subscribers} "
                        f"server={server}: {memory}{loads}"
                        + (f"; errors: {run.errors[:3]}" if run.errors else ""),
                        flush=True,
                    )
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(report(runs, args))
    after = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(
        f"\n(total {time.monotonic() - started:.0f} s; "
        f"load average {load_average} before, {after} after)"
    )
    failed = any(r.errors or any(load["lost"] for load in r.loads) for r in runs)
    return 1 if failed else 0


def redis_ok(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.fanout", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command")
    seed = sub.add_parser("_seed")
    seed.add_argument("--patients", type=int, required=True)
    seed.add_argument("--out", type=Path, required=True)
    traced_serve = sub.add_parser("_traced_serve")
    traced_serve.add_argument("--port", type=int, required=True)
    traced_serve.add_argument("--dir", type=Path, required=True)
    traced_serve.add_argument("--frames", type=int, default=25)
    client = sub.add_parser("_client")
    client.add_argument("--url", required=True)
    client.add_argument("--spec", type=Path, required=True)
    client.add_argument("--out", type=Path, required=True)
    client.add_argument("--compression", default="deflate")
    client.add_argument("--concurrency", type=int, default=16)
    sender = sub.add_parser("_sender")
    sender.add_argument("--url", required=True)
    sender.add_argument("--spec", type=Path, required=True)
    sender.add_argument("--out", type=Path, required=True)
    sender.add_argument("--rate", type=float, default=100)
    sender.add_argument("--seconds", type=float, default=10)
    parser.add_argument(
        "--subscribers", type=lambda s: [int(x) for x in s.split(",")], default=[100, 1000]
    )
    parser.add_argument("--backends", type=lambda s: s.split(","), default=["memory", "redis"])
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument(
        "--low-rate", type=float, default=30, help="first, a rate one worker sustains (0: skip)"
    )
    parser.add_argument("--low-seconds", type=float, default=5)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--disk", action="store_true", help="the database on disk, not tmpfs")
    parser.add_argument(
        "--no-server-deflate",
        dest="server_deflate",
        action="store_false",
        help="skip the comparison run against a server with permessage-deflate on",
    )
    parser.add_argument("--pin", action="store_true", help="server on CPU 0, clients on CPU 1")
    parser.add_argument("--profile", type=Path, help="py-spy raw profiles of each load here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--traced",
        type=Path,
        help=(
            "the shipped server traces its allocations (tracemalloc): per batch, the traced "
            "heap per idle connection by package and allocation site, written here (slow: "
            "use with --seconds 0 --low-rate 0 --no-server-deflate; RSS figures are then "
            "inflated by the tracing)"
        ),
    )
    args = parser.parse_args(argv)
    if args.command == "_traced_serve":
        _traced_serve(args.port, args.dir, args.frames)
        return 0
    if args.command == "_seed":
        args.out.write_text(json.dumps(asyncio.run(_seed(args.patients))))
        return 0
    if args.command == "_client":
        raise_nofile(len(json.loads(args.spec.read_text())) * 2 + 256)
        compression = None if args.compression == "none" else args.compression
        subs = json.loads(args.spec.read_text())
        result = asyncio.run(_client(args.url, subs, compression, args.concurrency))
        args.out.write_text(json.dumps(result))
        return 0
    if args.command == "_sender":
        spec = json.loads(args.spec.read_text())
        result = asyncio.run(
            _sender(args.url, spec["token"], spec["conversations"], args.rate, args.seconds)
        )
        args.out.write_text(json.dumps(result))
        return 0
    return orchestrate(args)


if __name__ == "__main__":
    raise SystemExit(main())
