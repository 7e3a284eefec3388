"""Compiled plans (api/plans/): the dossier read with and without them, and the plain endpoint.

    .venv/bin/python -m bench.plans [--seconds 12] [--rounds 4] [--warmup 2]
                                    [--concurrency 16] [--profile DIR] [--keep]

bench/dossier.py's read (the same seed, query, variables, viewer and checks), on four servers
measured in one run, in interleaved rounds (each pinned to CPU 0, the load to CPU 1):

- `compiled, persisted`: `COMPILED_PLANS=true`, the document sent by its APQ hash alone
  (registered once before the load, as a front end's first request does);
- `standard, persisted`: the same requests, `COMPILED_PLANS=false`;
- `compiled, free text`: `COMPILED_PLANS=true`, the text sent every time (the parser and
  validation caches hit, as for a persisted document);
- `plain Starlette + SQL`: bench/plain_app.py.

--baseline DIR adds a fifth server, `compiled, persisted` run from another copy of the
project (its packages first on sys.path: e.g. a copy whose api/plans/ is an earlier
version), so that a change of the plans is measured before and after in one run.

All answers are compared before the load, and the access events each writes per
request counted (1.00). The server's own CPU time per request (/proc, all threads) is the
steadiest figure; req/s is bounded by the load generator on a 2-CPU machine. --profile
records both GraphQL servers with py-spy and prints where their time goes (the areas of
bench/dossier.py).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.dossier import (
    PYTHON,
    QUERY,
    Result,
    _cpu_seconds,
    _env,
    _events_per_request,
    _post,
    _profile,
    _run,
    _server,
    _wait_for_port,
    _wait_ready,
    drive,
)
from tests.ports import free_port


def _bodies(patient_id: str) -> tuple[bytes, bytes, bytes]:
    """The free-text body, the APQ registration (hash and text) and the hash-only body."""
    variables = {"id": patient_id, "first": 20}
    sha256 = hashlib.sha256(QUERY.encode()).hexdigest()
    apq = {"persistedQuery": {"version": 1, "sha256Hash": sha256}}
    text = json.dumps({"query": QUERY, "variables": variables}).encode()
    register = json.dumps({"query": QUERY, "variables": variables, "extensions": apq}).encode()
    persisted = json.dumps({"variables": variables, "extensions": apq}).encode()
    return text, register, persisted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=12, help="measured, per server")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved, per server")
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--profile", type=Path, help="also record the GraphQL servers here")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    parser.add_argument(
        "--baseline", type=Path, help="a copy of the project: a fifth server, run from it"
    )
    args = parser.parse_args()

    shm = Path("/dev/shm")
    data_dir = Path(tempfile.mkdtemp(prefix="bench-plans-", dir=shm if shm.is_dir() else None))
    env = _env(data_dir)
    try:
        _run([PYTHON, "-m", "api.cli", "migrate"], env)
        seeded = json.loads(_run([PYTHON, "-m", "bench.seed"], env).splitlines()[-1])
        token = seeded["token"]
        text, register, persisted = _bodies(seeded["patient_id"])
        ports = [free_port() for _ in range(4)]
        names = [
            "compiled, persisted",
            "standard, persisted",
            "compiled, free text",
            "plain Starlette + SQL",
        ]
        logs = [data_dir / f"server{n}.log" for n in range(4)]
        commands = [
            [PYTHON, "-m", "api.cli", "serve", "--port", str(port), "--no-migrate"]
            for port in ports[:3]
        ]
        commands.append(
            [
                PYTHON,
                "-m",
                "uvicorn",
                "bench.plain_app:create_app",
                "--factory",
                "--port",
                str(ports[3]),
                "--log-level",
                "info",
            ]
        )
        envs = [
            {**env, "COMPILED_PLANS": "true"},
            {**env, "COMPILED_PLANS": "false"},
            {**env, "COMPILED_PLANS": "true"},
            env,
        ]
        urls = [f"http://127.0.0.1:{p}/graphql" for p in ports[:3]]
        urls.append(f"http://127.0.0.1:{ports[3]}/dossier")
        bodies = [persisted, persisted, text, text]
        if args.baseline:
            port = free_port()
            names.append("baseline (HEAD plans)")
            logs.append(data_dir / "server4.log")
            commands.append(_from_copy(args.baseline, port))
            envs.append({**env, "COMPILED_PLANS": "true"})
            urls.append(f"http://127.0.0.1:{port}/graphql")
            bodies.append(persisted)
            ports.append(port)
        with contextlib.ExitStack() as stack:
            procs = [
                stack.enter_context(_server(cmd, e, log))
                for cmd, e, log in zip(commands, envs, logs, strict=True)
            ]
            graphql = [0, 1, 2, *range(4, len(procs))]
            for n in graphql:
                _wait_ready(f"http://127.0.0.1:{ports[n]}/healthz", procs[n], logs[n])
            _wait_for_port(ports[3], procs[3], logs[3])
            registered = _post(urls[0], register, token)  # APQ: hash and text, once
            if args.baseline:
                _post(urls[4], register, token)
            answers = [_post(url, body, token) for url, body in zip(urls, bodies, strict=True)]
            if registered.get("errors") or any(a != registered for a in answers):
                sys.exit(f"the answers differ:\n{json.dumps(answers)[:3000]}")
            edges = len(registered["data"]["patient"]["documents"]["edges"])
            db = data_dir / "espace-sante.sqlite3"
            results = [Result(name) for name in names]
            for result, url, body in zip(results, urls, bodies, strict=True):
                result.events_per_request = _events_per_request(db, url, body, token)
            for url, body in zip(urls, bodies, strict=True):
                drive(url, body, token, args.warmup, args.concurrency)
            for _ in range(args.rounds):
                for result, url, body, proc in zip(results, urls, bodies, procs, strict=True):
                    time.sleep(0.5)
                    cpu = _cpu_seconds(proc.pid)
                    run = drive(url, body, token, args.seconds / args.rounds, args.concurrency)
                    result.cpu_seconds += _cpu_seconds(proc.pid) - cpu
                    result.runs.append(run)
            if args.profile:
                pairs = zip(names[:2], procs[:2], urls[:2], bodies[:2], strict=True)
                for name, proc, url, body in pairs:
                    print(f"\n== {name}")
                    folder = args.profile / name.replace(", ", "-").replace(" ", "-")
                    where = argparse.Namespace(**{**vars(args), "profile": folder})
                    _profile(where, proc, url, body, token)
        _report(results, edges, args)
    finally:
        if args.keep:
            print(f"data kept in {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


def _report(results: list[Result], edges: int, args: argparse.Namespace) -> None:
    print(
        f"\nDossier read, {edges} documents per page, concurrency {args.concurrency}, "
        f"{args.seconds:g} s per server in {args.rounds} interleaved rounds after "
        f"{args.warmup:g} s of warm-up, one worker each, {os.cpu_count()} CPUs, SQLite on tmpfs"
    )
    print(
        f"{'':24} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'CPU ms/req':>10} {'errors':>6} "
        f"{'events/req':>10}"
    )
    for r in results:
        print(
            f"{r.name:24} {r.rps:7.0f} {r.latency_ms(0.5):7.1f} {r.latency_ms(0.99):7.1f} "
            f"{r.cpu_ms:10.2f} {r.errors:6d} {r.events_per_request:10.2f}"
        )
    compiled, standard, free, plain = results[:4]
    print(
        f"compiled / standard (persisted): {100 * standard.cpu_ms / compiled.cpu_ms - 100:+.1f}% "
        f"requests per CPU second, {100 * compiled.rps / standard.rps - 100:+.1f}% req/s"
    )
    for r in (compiled, standard, free, *results[4:]):
        print(
            f"{r.name} / plain: {100 * plain.cpu_ms / r.cpu_ms:.1f}% by server CPU per request, "
            f"{100 * r.rps / plain.rps:.1f}% of the plain throughput"
        )


def _from_copy(root: Path, port: int) -> list[str]:
    """`espace-sante serve` with the packages of another copy of the project first."""
    argv = ["api.cli", "serve", "--port", str(port), "--no-migrate"]
    code = (
        f"import runpy, sys; sys.path.insert(0, {str(root.resolve())!r}); sys.argv = {argv!r}; "
        "runpy.run_module('api.cli', run_name='__main__', alter_sys=True)"
    )
    return [PYTHON, "-c", code]


if __name__ == "__main__":
    main()
