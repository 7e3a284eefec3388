"""Instructions per dossier read, counted by callgrind: a deterministic A/B for issue 16.

    .venv/bin/python -m bench.instructions [--requests 200] [--warmup 50] [--root DIR ...]

Wall-clock and CPU figures on this kind of machine drift by up to 30 % from one minute to
the next, so two versions of the code are best compared by the instructions they execute.
This runs bench/dossier.py's read (the same seed, query, variables and viewer) in process,
straight through the ASGI application (no socket, no uvicorn, no load generator), for the
GraphQL app sent as a persisted document and for bench/plain_app.py, under
`valgrind --tool=callgrind`, twice per app: once with the warm-up alone and once with the
warm-up and N more requests. The difference divided by N is what one request costs, with
start-up, import and the warm-up taken out. The same figures come out of the same code
whatever else the machine is doing.

--workload send counts one `sendMessage` end to end instead, as bench/send_message.py
measures it: a recipient subscribed to `messageReceived` over graphql-transport-ws (an
in-process ASGI websocket), the professional's mutation over HTTP, and the frame that
reaches the recipient's socket; beside bench/send_message.py's plain app doing the same.

--root DIR (repeatable) measures the copy of the project in DIR as well (its packages first
on sys.path), against the same seeded database: `git archive HEAD | tar -x -C /tmp/base`
and `--root /tmp/base` compares a change with the last commit.

`--inside KIND` is the in-process driver that valgrind runs (KIND: graphql | plain |
send-graphql | send-plain).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


async def _drive(kind: str, requests: int, token: str, patient_id: str) -> None:
    from bench.dossier import QUERY

    if kind == "plain":
        from bench.plain_app import create_app

        app: Any = create_app()
        path = "/dossier"
    else:
        from api.app import create_app as create_api

        app = create_api()
        path = "/graphql"
    sha256 = hashlib.sha256(QUERY.encode()).hexdigest()
    apq = {"persistedQuery": {"version": 1, "sha256Hash": sha256}}
    variables = {"id": patient_id, "first": 20}
    register = {"query": QUERY, "variables": variables, "extensions": apq}
    persisted = {"variables": variables, "extensions": apq}

    async with app.router.lifespan_context(app):
        await _post(app, path, token, register if kind == "graphql" else persisted)
        for _ in range(requests):
            await _post(app, path, token, persisted)


def _http_scope(path: str, token: str, length: int) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"authorization", f"Bearer {token}".encode()),
            (b"content-length", str(length).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def _post(app: Any, path: str, token: str, payload: Any) -> bytes:
    body = json.dumps(payload).encode()
    sent = False
    chunks: list[bytes] = []
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(_http_scope(path, token, len(body)), receive, send)
    answer = b"".join(chunks)
    if status != 200 or b'"errors"' in answer:
        raise SystemExit(f"{path}: {status} {answer[:500]!r}")
    return answer


class _Socket:
    """An ASGI websocket connection driven in process: what the client sends, what the app
    sent back (text frames, parsed)."""

    def __init__(self, app: Any, path: str, subprotocols: list[str]) -> None:
        self.inbound: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.outbound: asyncio.Queue[Any] = asyncio.Queue()
        scope = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "scheme": "ws",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(b"host", b"127.0.0.1"), (b"origin", b"http://127.0.0.1")],
            "client": ("127.0.0.1", 50001),
            "server": ("127.0.0.1", 8000),
            "subprotocols": subprotocols,
        }
        self.inbound.put_nowait({"type": "websocket.connect"})
        self.task = asyncio.ensure_future(app(scope, self.inbound.get, self._sent))

    async def _sent(self, message: dict[str, Any]) -> None:
        if message["type"] == "websocket.send":
            self.outbound.put_nowait(json.loads(message.get("text") or message["bytes"]))
        elif message["type"] == "websocket.close":
            self.outbound.put_nowait({"type": "closed", "code": message.get("code")})

    def send(self, frame: Any) -> None:
        self.inbound.put_nowait({"type": "websocket.receive", "text": json.dumps(frame)})

    async def recv(self, wait: float = 10) -> Any:
        return await asyncio.wait_for(self.outbound.get(), wait)

    async def close(self) -> None:
        """Disconnect; an app that never reads again (the plain one) is cancelled."""
        self.inbound.put_nowait({"type": "websocket.disconnect", "code": 1000})
        done, _ = await asyncio.wait([self.task], timeout=0.5)
        if not done:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


async def _drive_send(kind: str, requests: int, seed: dict[str, Any]) -> None:
    """`requests` messages, each sent and awaited on the recipient's socket (bench.send_message)."""
    from bench.send_message import SEND, SUBSCRIPTION, baseline_app
    from resolvers.ids import decode_as

    patient = seed["patients"][0]
    pro, conversation = seed["professional"], patient["conversation"]
    app: Any
    if kind == "send-plain":
        app = baseline_app()
        socket = _Socket(app, "/ws", [])
        socket.send({"token": patient["token"]})
        conversation_pk = str(decode_as(conversation, "Conversation"))

        async def one(k: int, wait: float = 10) -> None:
            body = {"conversation": conversation_pk, "body": f"Message {k} du Dr Martin."}
            sent = json.loads(await _post(app, "/send", pro, body))["message"]["id"]
            while (await socket.recv(wait))["id"] != sent:
                pass
    else:
        from api.app import create_app as create_api

        app = create_api()
        socket = _Socket(app, "/graphql", ["graphql-transport-ws"])
        init = {"Authorization": f"Bearer {patient['token']}"}
        socket.send({"type": "connection_init", "payload": init})

        async def one(k: int, wait: float = 10) -> None:
            variables = {"conversationId": conversation, "body": f"Message {k} du Dr Martin."}
            answer = await _post(app, "/graphql", pro, {"query": SEND, "variables": variables})
            sent = json.loads(answer)["data"]["sendMessage"]["message"]["id"]
            while True:
                frame = await socket.recv(wait)
                if frame.get("type") != "next":
                    raise SystemExit(f"{kind}: {frame!r:.300}")
                if frame["payload"]["data"]["messageReceived"]["id"] == sent:
                    return

    async with app.router.lifespan_context(app):
        first = await socket.recv()
        if first.get("type") not in ("ready", "connection_ack"):
            raise SystemExit(f"{kind}: {first!r:.300}")
        if kind == "send-graphql":
            socket.send({"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIPTION}})
            for k in range(50):  # live once a message sent after subscribing arrives
                try:
                    await one(-1 - k, wait=0.5)
                    break
                except TimeoutError:
                    continue
        for k in range(requests):
            await one(k)
        await socket.close()


def _inside(args: argparse.Namespace) -> None:
    seeded = json.loads(os.environ["BENCH_SEED"])
    if args.inside.startswith("send-"):
        asyncio.run(_drive_send(args.inside, args.requests, seeded))
        # The plain app's aiosqlite connection is never closed (as when served): its thread
        # would keep the interpreter from exiting.
        sys.stdout.flush()
        os._exit(0)
    asyncio.run(_drive(args.inside, args.requests, seeded["token"], seeded["patient_id"]))


def _count(root: Path, kind: str, requests: int, env: dict[str, str], out: Path) -> int:
    run_env = dict(env, PYTHONPATH=str(root))
    # Once outside valgrind first: a module changed since its last import is compiled on
    # this run, not counted in the first of the two below (hundreds of millions).
    driver = [PYTHON, str(Path(__file__).resolve()), "--inside", kind, "--requests", "1"]
    subprocess.run(driver, cwd=root, env=run_env, capture_output=True, check=True)
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            PYTHON,
            str(Path(__file__).resolve()),  # this driver, whatever copy is measured
            "--inside",
            kind,
            "--requests",
            str(requests),
        ],
        cwd=root,
        env=run_env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        sys.exit(f"{kind} in {root} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        sys.exit(f"no instruction count in valgrind's output:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="counted, per app")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--root", type=Path, action="append", default=[], help="another copy")
    parser.add_argument("--no-plain", action="store_true", help="skip the plain endpoint")
    parser.add_argument(
        "--workload", choices=["dossier", "send"], default="dossier", help="what one request is"
    )
    parser.add_argument(
        "--inside",
        choices=["graphql", "plain", "send-graphql", "send-plain"],
        help=argparse.SUPPRESS,
    )
    args = parser.parse_args()
    if args.inside:
        _inside(args)
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed")

    from bench.dossier import _env, _run
    from bench.fanout import server_env

    data_dir = Path(tempfile.mkdtemp(prefix="bench-instructions-", dir="/dev/shm"))
    send = args.workload == "send"
    if send:
        env = server_env(data_dir, f"sqlite://{data_dir}/espace-sante.sqlite3", "memory://")
        env["PYTHONPATH"] = str(ROOT)
    else:
        env = _env(data_dir)
    env["PYTHONHASHSEED"] = "0"
    graphql, plain = ("send-graphql", "send-plain") if send else ("graphql", "plain")
    try:
        _run([PYTHON, "-m", "api.cli", "migrate"], env)
        if send:
            seed_file = data_dir / "seed.json"
            seed = ["_seed", "--patients", "1", "--out", str(seed_file)]
            _run([PYTHON, "-m", "bench.fanout", *seed], env)
            env["BENCH_SEED"] = seed_file.read_text()
        else:
            env["BENCH_SEED"] = _run([PYTHON, "-m", "bench.seed"], env).splitlines()[-1]
        measured = [(graphql, ROOT), *((graphql, root.resolve()) for root in args.root)]
        if not args.no_plain:
            measured.append((plain, ROOT))
        print(f"{'app':12} {'code':32} {'instructions/request':>22}", flush=True)
        for kind, root in measured:
            low = _count(root, kind, args.warmup, env, data_dir / "low.out")
            high = _count(root, kind, args.warmup + args.requests, env, data_dir / "high.out")
            per = (high - low) / args.requests
            print(f"{kind:12} {root!s:32} {per / 1e6:20.3f} M", flush=True)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
