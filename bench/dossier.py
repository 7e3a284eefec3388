"""Benchmark of the dossier médical read: GraphQL against a hand-written plain endpoint.

    .venv/bin/python -m bench.dossier [--seconds 10] [--rounds 5] [--warmup 2]
                                      [--concurrency 16] [--disk] [--profile DIR] [--keep]

Requests per second and p50/p99 latency, on ONE uvicorn worker each, of

    patient(id) { documents(first: 20) { edges { node { title category date
        author { ... on Professional { lastName } ... on Patient { lastName } } } } } }

(GraphQL variables, the same text every time, so the parser and validation caches hit) for
a professional under a READ consent, each request writing its access event, beside
bench/plain_app.py, which runs the equivalent hand-written SQL, writes the same event and
returns the same JSON (checked before the load); both measured in the same run, and the
ratio.

The database is a fresh SQLite file (`espace-sante migrate`) seeded by bench/seed.py through
the domain code: one patient, 40 documents (4 hidden) by the holder, a relative and two
professionals, and the viewing professional's consent and session. It lives on tmpfs
(/dev/shm) unless --disk: each commit costs an fsync (4-6 ms on this machine's disk), which
would cap both servers at the same ~200 writes/s and hide what is measured here.

The real app runs as `espace-sante serve --no-migrate`, the baseline under uvicorn with the
same log level; each is pinned to CPU 0 and the load generator (`wrk`, else an asyncio +
httpx process) to CPU 1. The measured seconds are cut into rounds that alternate between
the two servers, so that both see the same machine however busy it gets; besides req/s and
latency, the server's own CPU time per request (from /proc, all its threads) is the figure
that depends least on the rest of the machine. --profile then records the GraphQL server
with py-spy under the same load and prints where its time goes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

QUERY = (
    "query Dossier($id: ID!, $first: Int) { patient(id: $id) { documents(first: $first) "
    "{ edges { node { title category date author { ... on Professional { lastName } "
    "... on Patient { lastName } } } } } } }"
)

SERVER_CPU = 0
LOAD_CPU = 1


@dataclass
class Run:
    """One burst of load: its requests, duration and latency quantiles (0.1 % steps, ms)."""

    requests: int
    seconds: float
    errors: int
    quantiles: list[float]
    error_kinds: dict[str, int] = field(default_factory=dict)


@dataclass
class Result:
    """One server over all its rounds."""

    name: str
    runs: list[Run] = field(default_factory=list)
    cpu_seconds: float = 0.0  # the server's CPU time (all threads) over the measured runs
    events_per_request: float = 0.0  # over a few sequential probes before the load

    @property
    def requests(self) -> int:
        return sum(run.requests for run in self.runs)

    @property
    def rps(self) -> float:
        return self.requests / sum(run.seconds for run in self.runs)

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.cpu_seconds / max(1, self.requests)

    @property
    def errors(self) -> int:
        return sum(run.errors for run in self.runs)

    def latency_ms(self, q: float) -> float:
        """A quantile of all the runs together, each run weighted by its requests."""
        points = sorted(
            (value, run.requests / len(run.quantiles))
            for run in self.runs
            for value in run.quantiles
        )
        total = sum(weight for _, weight in points)
        seen = 0.0
        for value, weight in points:
            seen += weight
            if seen >= q * total:
                return value
        return points[-1][0] if points else 0.0


# --- processes --------------------------------------------------------------------------


def _pin(cpu: int) -> Any:
    if (os.cpu_count() or 1) < 2 or not hasattr(os, "sched_setaffinity"):
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def _env(data_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ENVIRONMENT="development",
        TWO_FACTOR="false",
        SCHEDULER_ENABLED="false",
        DATA_DIR=str(data_dir),
        PYTHONPATH=str(ROOT),
        # One token and one address send every request: the request budget (api/budget.py)
        # still runs, at rates no benchmark reaches.
        RATE_LIMIT_REQUESTS_PER_MINUTE="100000000",
        RATE_LIMIT_COST_PER_MINUTE="100000000000",
        RATE_LIMIT_ADDRESS_REQUESTS_PER_MINUTE="100000000",
        RATE_LIMIT_ADDRESS_COST_PER_MINUTE="100000000000",
    )
    env.pop("DATABASE_URL", None)
    return env


def _run(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(f"{' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


@contextlib.contextmanager
def _server(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_pin(SERVER_CPU),
        )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"server not ready at {url}:\n{log.read_text()}")


def _post(url: str, body: bytes, token: str) -> dict[str, Any]:
    request = urllib.request.Request(
        url,
        data=body,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


# --- load -------------------------------------------------------------------------------

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = [==[{body}]==]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {token}"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d %d %d\\n", summary.requests,
    summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    e.status + e.connect + e.read + e.write + e.timeout))
  for i = 1, 1000 do
    io.write(string.format("Q %d\\n", latency:percentile(i / 10)))
  end
end
"""
QUANTILES = [i / 1000 for i in range(1, 1001)]


def _wrk(url: str, body: bytes, token: str, seconds: float, concurrency: int) -> Run:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT.format(body=body.decode(), token=token))
    try:
        out = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{concurrency}",
                f"-d{max(1, round(seconds))}s",
                "-s",
                script.name,
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
            preexec_fn=_pin(LOAD_CPU),
        ).stdout
    finally:
        os.unlink(script.name)
    lines = out.splitlines()
    counts = [int(v) for v in next(x for x in lines if x.startswith("RESULT ")).split()[1:]]
    requests, duration_us, *kinds, errors = counts
    quantiles = [int(x.split()[1]) / 1000 for x in lines if x.startswith("Q ")]
    names = ("status", "connect", "read", "write", "timeout")
    detail = {name: n for name, n in zip(names, kinds, strict=True) if n}
    return Run(requests, duration_us / 1e6, errors, quantiles, detail)


def _httpx(url: str, body: bytes, token: str, seconds: float, concurrency: int) -> Run:
    args = [
        PYTHON,
        "-m",
        "bench.dossier",
        "--load",
        url,
        "--token",
        token,
        "--seconds",
        str(seconds),
        "--concurrency",
        str(concurrency),
    ]
    out = subprocess.run(
        args, cwd=ROOT, input=body, capture_output=True, check=True, preexec_fn=_pin(LOAD_CPU)
    ).stdout
    return Run(**json.loads(out))


async def _load(url: str, body: bytes, token: str, seconds: float, concurrency: int) -> None:
    """The fallback load generator (a separate process): fixed concurrency, fixed time."""
    import asyncio

    import httpx

    latencies: list[float] = []
    errors = 0
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        start = time.perf_counter()
        deadline = start + seconds

        async def worker() -> None:
            nonlocal errors
            while (t0 := time.perf_counter()) < deadline:
                response = await client.post(url, content=body, headers=headers)
                latencies.append(time.perf_counter() - t0)
                errors += response.status_code != 200

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    last = len(latencies) - 1
    quantiles = [latencies[min(last, int(q * len(latencies)))] * 1000 for q in QUANTILES]
    print(
        json.dumps(
            {
                "requests": len(latencies),
                "seconds": elapsed,
                "errors": errors,
                "quantiles": quantiles,
            }
        )
    )


def drive(url: str, body: bytes, token: str, seconds: float, concurrency: int) -> Run:
    run = _wrk if shutil.which("wrk") else _httpx
    return run(url, body, token, seconds, concurrency)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all threads (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _events(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return int(conn.execute("SELECT count(*) FROM access_event").fetchone()[0])


def _events_per_request(db: Path, url: str, body: bytes, token: str, probes: int = 5) -> float:
    """Access events written per request, counted over a few requests one at a time (under
    load, requests the load generator abandons at the end of a run still write theirs)."""
    before = _events(db)
    for _ in range(probes):
        _post(url, body, token)
    return (_events(db) - before) / probes


# --- profile ----------------------------------------------------------------------------

# Where the GraphQL server's time goes. A sample belongs to the first DOMAIN area one of its
# frames is in (their SQL included), else to the TECHNICAL area of its innermost known frame.
DOMAIN: list[tuple[str, tuple[str, ...]]] = [
    ("auth (session lookup)", ("authenticate (models/session.py", "get_context (api/app.py")),
    (
        "permission checks (visibility, relation, guards)",
        ("(models/access.py", "visible_patients (resolvers/people.py", "has_permission ("),
    ),
    ("access event write", ("(models/audit.py", "(resolvers/audit.py")),
]
TECHNICAL: list[tuple[str, tuple[str, ...]]] = [
    ("SQL: sqlite3 and the aiosqlite hand-off", ("aiosqlite/", "sqlite3/")),
    (
        "ORM: building the SQL",
        (
            "pypika_tortoise/",
            "resolve_filters",
            "_make_query",
            "tortoise/expressions.py",
            "tortoise/query_utils.py",
        ),
    ),
    ("ORM: building rows and models", ("tortoise/", "iso8601/", "uuid.py")),
    ("JSON encoding and decoding", ("json/",)),
    (
        "parsing and validation",
        (
            "graphql/language/",
            "graphql/validation/",
            "parser_cache",
            "validation_cache",
            "extensions/limits.py",
        ),
    ),
    (
        "execution: fields, types, loaders, resolvers",
        (
            "graphql/",
            "strawberry/schema/",
            "strawberry/types/",
            "strawberry/extensions/",
            "strawberry/dataloader.py",
            "strawberry/permission.py",
            "strawberry/execution/",
            "strawberry/utils/",
            "resolvers/",
            "api/context.py",
        ),
    ),
    (
        "HTTP: uvicorn, starlette, strawberry's view",
        (
            "uvicorn/",
            "starlette/",
            "h11/",
            "strawberry/http/",
            "strawberry/asgi/",
            "cross_web/",
            "api/view.py",
            "api/app.py",
        ),
    ),
    ("asyncio event loop", ("asyncio/",)),
]
IDLE = ("select (selectors.py", "Queue.get (queue.py", "wait (threading.py")


def _aiosqlite_waiting() -> str:
    """The frame of aiosqlite's worker thread waiting for work (py-spy counts it busy)."""
    import inspect

    import aiosqlite.core

    lines, first = inspect.getsourcelines(aiosqlite.core._connection_worker_thread)
    offset = next(i for i, line in enumerate(lines) if "tx.get()" in line)
    return f"_connection_worker_thread (aiosqlite/core.py:{first + offset})"


def _area(frames: list[str]) -> str:
    for name, keys in DOMAIN:
        if any(key in frame for frame in frames for key in keys):
            return name
    for frame in reversed(frames):
        for name, keys in TECHNICAL:
            if any(key in frame for key in keys):
                return name
    return "other"


def profile_areas(folded: Path) -> tuple[list[tuple[str, float]], float]:
    """Shares of the event loop thread's busy samples (py-spy raw output with --threads),
    and the busy samples of the aiosqlite thread, relative to the loop thread's."""
    areas: dict[str, int] = {}
    loop_busy = sql_busy = 0
    waiting = _aiosqlite_waiting()
    for line in folded.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = stack.split(";")
        if len(frames) < 2 or frames[-1] == waiting or any(k in frames[-1] for k in IDLE):
            continue
        count = int(count_text)
        if "MainThread" not in frames[0]:
            sql_busy += count if any("aiosqlite" in frame for frame in frames) else 0
            continue
        loop_busy += count
        area = _area(frames[1:])
        areas[area] = areas.get(area, 0) + count
    shares = sorted(((k, 100 * v / loop_busy) for k, v in areas.items()), key=lambda kv: -kv[1])
    return shares, 100 * sql_busy / max(1, loop_busy)


# --- main -------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10, help="measured, per server")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved, per server")
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--disk", action="store_true", help="DATA_DIR on disk, not tmpfs")
    parser.add_argument("--profile", type=Path, help="also record the GraphQL server here")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    parser.add_argument("--load", help=argparse.SUPPRESS)
    parser.add_argument("--token", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        import asyncio

        body = sys.stdin.buffer.read()
        asyncio.run(_load(args.load, body, args.token, args.seconds, args.concurrency))
        return

    shm = Path("/dev/shm")
    base = None if args.disk or not shm.is_dir() else shm
    data_dir = Path(tempfile.mkdtemp(prefix="bench-dossier-", dir=base))
    env = _env(data_dir)
    try:
        _run([PYTHON, "-m", "api.cli", "migrate"], env)
        seeded = json.loads(_run([PYTHON, "-m", "bench.seed"], env).splitlines()[-1])
        token = seeded["token"]
        body = json.dumps(
            {"query": QUERY, "variables": {"id": seeded["patient_id"], "first": 20}}
        ).encode()
        gql_port, plain_port = free_port(), free_port()
        gql_url = f"http://127.0.0.1:{gql_port}/graphql"
        plain_url = f"http://127.0.0.1:{plain_port}/dossier"
        gql_log, plain_log = data_dir / "graphql.log", data_dir / "plain.log"
        gql_cmd = [PYTHON, "-m", "api.cli", "serve", "--port", str(gql_port), "--no-migrate"]
        plain_cmd = [
            PYTHON,
            "-m",
            "uvicorn",
            "bench.plain_app:create_app",
            "--factory",
            "--port",
            str(plain_port),
            "--log-level",
            "info",
        ]
        with _server(gql_cmd, env, gql_log) as gql, _server(plain_cmd, env, plain_log) as plain:
            _wait_ready(f"http://127.0.0.1:{gql_port}/healthz", gql, gql_log)
            _wait_for_port(plain_port, plain, plain_log)
            answer = _post(gql_url, body, token)
            if answer.get("errors") or answer != _post(plain_url, body, token):
                sys.exit(f"the two answers differ:\n{json.dumps(answer)[:2000]}")
            edges = answer["data"]["patient"]["documents"]["edges"]
            db = data_dir / "espace-sante.sqlite3"
            results = [Result("GraphQL (Strawberry + Tortoise)"), Result("plain Starlette + SQL")]
            servers = [(gql_url, gql), (plain_url, plain)]
            for result, (url, _) in zip(results, servers, strict=True):
                result.events_per_request = _events_per_request(db, url, body, token)
            for url, _ in servers:
                drive(url, body, token, args.warmup, args.concurrency)
            # Interleaved rounds: both servers see the same machine, however busy it gets.
            for _ in range(args.rounds):
                for result, (url, proc) in zip(results, servers, strict=True):
                    time.sleep(0.5)  # requests abandoned by the last run finish, off the clock
                    cpu = _cpu_seconds(proc.pid)
                    run = drive(url, body, token, args.seconds / args.rounds, args.concurrency)
                    result.cpu_seconds += _cpu_seconds(proc.pid) - cpu
                    result.runs.append(run)
            if args.profile:
                _profile(args, gql, gql_url, body, token)
        _report(results, len(edges), args, base is None)
        for result, log in zip(results, (gql_log, plain_log), strict=True):
            if result.errors:
                failures = [x for x in log.read_text().splitlines() if "200 OK" not in x]
                print(f"{result.name}, its log besides the 200s:", *failures[-15:], sep="\n  ")
    finally:
        if args.keep:
            print(f"data kept in {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited:\n{log.read_text()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    sys.exit(f"nothing listens on port {port}:\n{log.read_text()}")


def _profile(
    args: argparse.Namespace, gql: subprocess.Popen[bytes], url: str, body: bytes, token: str
) -> None:
    spy = shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy")
    args.profile.mkdir(parents=True, exist_ok=True)
    folded = args.profile / "graphql.folded"
    seconds = max(1, round(args.seconds))
    recorder = subprocess.Popen(
        [
            spy,
            "record",
            "--pid",
            str(gql.pid),
            "--duration",
            str(seconds),
            "--rate",
            "250",
            "--format",
            "raw",
            "--output",
            str(folded),
            "--threads",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    drive(url, body, token, seconds, args.concurrency)
    recorder.wait()
    if folded.exists():
        shares, sql_thread = profile_areas(folded)
        print(f"\nWhere the GraphQL server's event loop thread spends its busy time ({folded}):")
        for area, share in shares:
            print(f"  {share:5.1f}%  {area}")
        print(f"  (the aiosqlite thread is busy {sql_thread:.0f}% as long, in parallel)")


def _report(results: list[Result], edges: int, args: argparse.Namespace, disk: bool) -> None:
    gql, plain = results
    print(
        f"\nDossier read, {edges} documents per page, concurrency {args.concurrency}, "
        f"{args.seconds:g} s per server in {args.rounds} interleaved rounds after "
        f"{args.warmup:g} s of warm-up, one worker each, {os.cpu_count()} CPUs, "
        f"SQLite on {'disk' if disk else 'tmpfs'}"
    )
    print(
        f"{'':32} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'CPU ms/req':>10} {'errors':>6} "
        f"{'events/req':>10}"
    )
    for r in results:
        events = r.events_per_request
        print(
            f"{r.name:32} {r.rps:7.0f} {r.latency_ms(0.5):7.1f} {r.latency_ms(0.99):7.1f} "
            f"{r.cpu_ms:10.2f} {r.errors:6d} {events:10.2f}"
        )
    for r in results:
        kinds: dict[str, int] = {}
        for run in r.runs:
            for kind, n in run.error_kinds.items():
                kinds[kind] = kinds.get(kind, 0) + n
        if kinds:
            print(f"  {r.name} errors by kind (wrk): {kinds}")
    print(
        f"ratio GraphQL / plain: {100 * gql.rps / plain.rps:.1f}% of the plain throughput; "
        f"{100 * plain.cpu_ms / gql.cpu_ms:.1f}% by server CPU per request"
    )


if __name__ == "__main__":
    main()
