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

--root DIR (repeatable) measures the copy of the project in DIR as well (its packages first
on sys.path), against the same seeded database: `git archive HEAD | tar -x -C /tmp/base`
and `--root /tmp/base` compares a change with the last commit.

`--inside KIND` is the in-process driver that valgrind runs (KIND: graphql | plain).
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
    register = json.dumps({"query": QUERY, "variables": variables, "extensions": apq}).encode()
    persisted = json.dumps({"variables": variables, "extensions": apq}).encode()

    async def call(body: bytes) -> bytes:
        scope = {
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
                (b"content-length", str(len(body)).encode()),
            ],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        }
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

        await app(scope, receive, send)
        answer = b"".join(chunks)
        if status != 200 or b'"errors"' in answer:
            raise SystemExit(f"{kind}: {status} {answer[:500]!r}")
        return answer

    async with app.router.lifespan_context(app):
        await call(register if kind == "graphql" else persisted)
        for _ in range(requests):
            await call(persisted)


def _inside(args: argparse.Namespace) -> None:
    seeded = json.loads(os.environ["BENCH_SEED"])
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
    parser.add_argument("--inside", choices=["graphql", "plain"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        _inside(args)
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed")

    from bench.dossier import _env, _run

    data_dir = Path(tempfile.mkdtemp(prefix="bench-instructions-", dir="/dev/shm"))
    env = _env(data_dir)
    env["PYTHONHASHSEED"] = "0"
    try:
        _run([PYTHON, "-m", "api.cli", "migrate"], env)
        env["BENCH_SEED"] = _run([PYTHON, "-m", "bench.seed"], env).splitlines()[-1]
        measured = [("graphql", ROOT), *(("graphql", root.resolve()) for root in args.root)]
        if not args.no_plain:
            measured.append(("plain", ROOT))
        print(f"{'app':8} {'code':32} {'instructions/request':>22}", flush=True)
        for kind, root in measured:
            low = _count(root, kind, args.warmup, env, data_dir / "low.out")
            high = _count(root, kind, args.warmup + args.requests, env, data_dir / "high.out")
            per = (high - low) / args.requests
            print(f"{kind:8} {root!s:32} {per / 1e6:20.3f} M", flush=True)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
