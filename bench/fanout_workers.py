"""Benchmark of live delivery on TWO workers over Redis, with many idle subscribers, then a
reconnect storm (issue 13, "Beyond one machine").

    .venv/bin/python -m bench.fanout_workers [--subscribers 10000] [--rate 100]
                                             [--seconds 60] [--clients 2]
                                             [--storm-seconds 20] [--storm-concurrency 256]
                                             [--baseline-subscribers 1000] [--keep]
                                             [--work DIR [--seed-only]]

Reuses bench/fanout.py's machinery (seeding, sender, analysis, process handling; see its
docstring for the method). Here:

- two `python -m api.cli serve --no-migrate` processes, each its own port (two machines, as
  far as they know), sharing one SQLite file on tmpfs (WAL) and a Redis of their own
  (`redis-server` on a free loopback port, no persistence) as BROADCAST_URL;
- N subscribers in all (--subscribers), half on each worker, through --clients subscriber
  processes per worker (asyncio + `websockets`, graphql-transport-ws, `after:` so that each
  is proven live by a replayed message before anything is measured). Memory per connection
  = each worker's VmRSS after its subscribers connected minus before, divided by them;
- a steady load for --seconds at --rate: two sender processes (one per worker, half the rate
  each), each message to a random patient's conversation, so about half of the deliveries
  cross from one worker to the other through Redis. Lost, duplicates, p50/p99 delivery
  latency (receipt on the recipient's socket - the mutation's response), and CPU per message
  (both workers' CPU time over the phase / messages sent);
- a reconnect storm: with a new load phase running (--storm-seconds), every subscriber drops
  its socket at once (transport aborted, as on a network cut) and reconnects to the OTHER
  worker with `after:` = the `cursor` of the last message it received. Reported: the time
  until every socket is acknowledged and subscribed again, and lost / duplicates over the
  whole storm phase (what was sent while a socket was away must come back by replay, once);
- a baseline in the same run: bench/fanout.py's single-worker run (redis, shipped server) at
  --baseline-subscribers and the same rate, 10 s.

The soft RLIMIT_NOFILE is raised to the hard limit; if that cannot hold N sockets in a
process, N is lowered and the report says so. Seeding 10,000 patients through the domain
code takes minutes: --work DIR keeps the work directory and reuses its seeded database on
the next run (--seed-only seeds it and stops). Every process started here is stopped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.fanout import (
    PYTHON,
    ROOT,
    SUBSCRIPTION,
    TRANSPORT_WS,
    Processes,
    Run,
    Server,
    analyse,
    cpu_seconds,
    measure_rss,
    one_run,
    sender_run,
    server_env,
    warm_up,
)

SPARE_FDS = 512  # per process, beyond its sockets: files, pipes, the database, Redis


# --- subscriber clients (subprocess) -----------------------------------------------------


class Subscriber:
    __slots__ = ("after", "live", "reader", "sub", "ws")

    def __init__(self, sub: dict[str, str]) -> None:
        self.sub = sub
        self.after = sub["after"]
        self.ws: Any = None
        self.reader: asyncio.Task[None] | None = None
        self.live = asyncio.Event()


async def _client(
    url: str, storm_url: str, subs: list[dict[str, str]], concurrency: int, storm_gate: int
) -> dict[str, Any]:
    from websockets.asyncio.client import connect
    from websockets.typing import Subprotocol

    loop = asyncio.get_running_loop()
    received: list[list[Any]] = []  # [message id, conversation id, expected conversation, t]
    errors: list[str] = []
    everyone = [Subscriber(sub) for sub in subs]

    async def read(s: Subscriber) -> None:
        try:
            async for raw in s.ws:
                t = time.monotonic()
                message = json.loads(raw)
                kind = message.get("type")
                if kind == "ping":
                    await s.ws.send(json.dumps({"type": "pong"}))
                    continue
                data = (message.get("payload") or {}).get("data") or {}
                event = data.get("messageReceived") if kind == "next" else None
                if event is None:
                    errors.append(str(message)[:300])
                    continue
                received.append(
                    [event["id"], event["conversation"]["id"], s.sub["conversation"], t]
                )
                s.after = event["cursor"]  # the message's own, as a client keeps it
                s.live.set()
        except Exception as exc:  # a socket that failed: reported, never hidden
            errors.append(repr(exc)[:300])

    async def open_one(s: Subscriber, target: str, gate: asyncio.Semaphore) -> None:
        async with gate:
            s.ws = await connect(
                target,
                subprotocols=[Subprotocol(TRANSPORT_WS)],
                compression=None,
                open_timeout=120,
                ping_interval=None,  # the server pings
                max_size=2**20,
            )
            init = {"Authorization": f"Bearer {s.sub['token']}"}
            await s.ws.send(json.dumps({"type": "connection_init", "payload": init}))
            ack = json.loads(await s.ws.recv())
            if ack.get("type") != "connection_ack":
                raise RuntimeError(f"no ack: {ack}")
            payload = {"query": SUBSCRIPTION, "variables": {"after": s.after}}
            await s.ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
            s.reader = asyncio.create_task(read(s))

    async def open_all(target: str, limit: int) -> tuple[float, int]:
        """(seconds until every socket is acknowledged and subscribed, how many are)."""
        gate = asyncio.Semaphore(limit)
        started = time.monotonic()
        outcomes = await asyncio.gather(
            *(open_one(s, target, gate) for s in everyone), return_exceptions=True
        )
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        errors.extend(repr(o)[:300] for o in failed)
        return time.monotonic() - started, len(outcomes) - len(failed)

    def status(**extra: Any) -> None:
        print(json.dumps({**extra, "errors": errors[:5]}), flush=True)

    started = time.monotonic()
    await open_all(url, concurrency)
    try:  # the first replayed message proves each subscription live
        await asyncio.wait_for(asyncio.gather(*(s.live.wait() for s in everyone)), 180)
    except TimeoutError:
        errors.append("not every subscription live after 180 s")
    status(ready=sum(s.live.is_set() for s in everyone), seconds=time.monotonic() - started)

    while (command := (await loop.run_in_executor(None, sys.stdin.readline)).strip()) in (
        "storm",
        "count",
    ):
        if command == "count":  # how many arrived so far: the orchestrator waits for a drain
            status(received=len(received))
            continue
        t0 = time.monotonic()
        for s in everyone:  # every socket drops at once, as on a network cut
            if s.reader is not None:
                s.reader.cancel()
            s.ws.transport.abort()
        seconds, subscribed = await open_all(storm_url, storm_gate)
        status(storm_seconds=seconds, dropped_at=t0, subscribed=subscribed)
    for s in everyone:
        if s.reader is not None:
            s.reader.cancel()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(
            asyncio.gather(*(s.ws.close() for s in everyone), return_exceptions=True), 5
        )
    return {"received": received, "errors": errors}


class Clients:
    """Subscriber processes of one worker; all live when constructed."""

    def __init__(
        self,
        procs: Processes,
        work: Path,
        url: str,
        storm_url: str,
        subs: list[dict[str, str]],
        processes: int,
        args: argparse.Namespace,
        tag: str,
    ) -> None:
        self.procs = procs
        self.children: list[subprocess.Popen[str]] = []
        self.outs: list[Path] = []
        for index in range(max(1, min(processes, len(subs)))):
            spec = work / f"{tag}-client{index}.json"
            spec.write_text(json.dumps(subs[index::processes]))
            out = work / f"{tag}-client{index}-out.json"
            self.outs.append(out)
            command = [PYTHON, "-m", "bench.fanout_workers", "_client", "--url", url]
            command += ["--storm-url", storm_url, "--spec", str(spec), "--out", str(out)]
            command += ["--storm-concurrency", str(args.storm_concurrency)]
            self.children.append(
                procs.start(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            )

    def statuses(self) -> list[dict[str, Any]]:
        found = []
        for child in self.children:
            assert child.stdout is not None
            line = child.stdout.readline()
            if not line:
                raise RuntimeError("a client process died")
            found.append(json.loads(line))
        return found

    def command(self, text: str) -> None:
        for child in self.children:
            assert child.stdin is not None
            with contextlib.suppress(BrokenPipeError, OSError):
                child.stdin.write(text + "\n")
                child.stdin.flush()

    def received(self) -> int:
        self.command("count")
        return sum(s["received"] for s in self.statuses())

    def finish(self) -> tuple[list[list[Any]], list[str]]:
        self.command("stop")
        received: list[list[Any]] = []
        errors: list[str] = []
        for child, out in zip(self.children, self.outs, strict=True):
            try:
                child.wait(60)
            except subprocess.TimeoutExpired:
                errors.append("a client process did not stop")
            self.procs.stop(child)
            if out.exists():
                data = json.loads(out.read_text())
                received += data["received"]
                errors += data["errors"]
        return received, errors


# --- the orchestrator --------------------------------------------------------------------


def drain(clients: list[Clients], limit: float, quiet: float = 10.0) -> float:
    """Wait until nothing more arrives for `quiet` seconds (at most `limit`): what is still
    queued when the load stops is late, not lost, and must not be counted lost."""
    started = last_change = time.monotonic()
    count = -1
    while time.monotonic() - started < limit:
        now = sum(batch.received() for batch in clients)
        if now != count:
            count, last_change = now, time.monotonic()
        elif time.monotonic() - last_change >= quiet:
            break
        time.sleep(2.0)
    return time.monotonic() - started


def raise_nofile_to_hard() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def both_senders(
    procs: Processes,
    work: Path,
    servers: list[Server],
    seed: dict[str, Any],
    conversations: list[str],
    rate: float,
    seconds: float,
    tag: str,
) -> tuple[list[list[Any]], list[str], float, int]:
    """One sender per worker at half the rate each, at the same time."""
    results: list[dict[str, Any]] = [{}, {}]

    def run(index: int) -> None:
        shuffled = conversations[:]
        random.Random(index).shuffle(shuffled)
        results[index] = sender_run(
            procs,
            work,
            servers[index],
            seed["professional"],
            shuffled,
            rate=rate / 2,
            seconds=seconds,
            tag=f"{tag}-{index}",
        )

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sent = results[0]["sent"] + results[1]["sent"]
    failures = results[0]["failures"] + results[1]["failures"]
    elapsed = max(results[0]["elapsed"], results[1]["elapsed"])
    offered = results[0]["offered"] + results[1]["offered"]
    return sent, failures, elapsed, offered


def overtaken_before_the_cut(sent: list[list[Any]], received: list[list[Any]], cut: float) -> int:
    """Lost messages whose conversation's subscriber, before the sockets were cut, received
    a message of that conversation whose request started later. Before cursors were commit
    positions (`sentAt` was taken when the request started), resuming then skipped them;
    kept as a check that none is lost that way any more."""
    got = {r[0] for r in received}
    started = {m: t0 for m, _, t0, _ in sent}
    later: dict[str, float] = {}  # conversation -> latest request start received before the cut
    for message_id, _, conversation, t in received:
        if t < cut and message_id in started:
            later[conversation] = max(later.get(conversation, 0.0), started[message_id])
    return sum(
        1
        for m, conversation, t0, _ in sent
        if m not in got and later.get(conversation, float("-inf")) > t0
    )


def orchestrate(args: argparse.Namespace) -> int:
    from tests.redis_server import RedisServer

    started = time.monotonic()
    limit = raise_nofile_to_hard()
    wanted = args.subscribers
    # The busiest process: a worker holding N/2 sockets, or a client holding N/2/clients.
    most = max(1, (limit - SPARE_FDS) * 2)
    subscribers = min(wanted, most)
    notes = [f"RLIMIT_NOFILE soft limit {limit} (raised to the hard limit)"]
    if subscribers < wanted:
        notes.append(f"{wanted} subscribers asked; the fd limit allows {subscribers}")
    load_average = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"load average before: {load_average}; {notes[0]}", flush=True)
    procs = Processes()
    if args.work is not None:  # kept, and its seeded database reused if large enough
        work = args.work.resolve()
        work.mkdir(parents=True, exist_ok=True)
        args.keep = True
    else:
        work = Path(tempfile.mkdtemp(prefix="bench-fanout-workers-", dir="/dev/shm"))
    redis = RedisServer()
    redis.start()
    lines: list[str] = []
    failed = False
    try:
        data_dir = work / "data"
        env = server_env(data_dir, f"sqlite://{data_dir}/espace-sante.sqlite3", redis.url)
        seed_file = work / "seed.json"
        patients = max(subscribers, args.baseline_subscribers)
        seeded = json.loads(seed_file.read_text())["patients"] if seed_file.exists() else []
        if len(seeded) < patients:
            shutil.rmtree(data_dir, ignore_errors=True)
            subprocess.run(
                [PYTHON, "-m", "api.cli", "migrate"], cwd=ROOT, env=env, check=True,
                stdout=subprocess.DEVNULL,
            )  # fmt: skip
            subprocess.run(
                [PYTHON, "-m", "bench.fanout", "_seed", "--patients", str(patients),
                 "--out", str(seed_file)],
                cwd=ROOT, env=env, check=True,
            )  # fmt: skip
        seed = json.loads(seed_file.read_text())
        print(f"{patients} patients seeded at {time.monotonic() - started:.0f} s", flush=True)
        if args.seed_only:
            return 0

        # The baseline: one worker, same machine, same minute.
        baseline = Run("redis", min(args.baseline_subscribers, patients), "shipped")
        if args.baseline_subscribers > 0:
            ns = argparse.Namespace(
                clients=2, seconds=10.0, rate=args.rate, low_rate=0, low_seconds=0, profile=None
            )
            one_run(procs, work, env, seed, baseline, ns)
            print(f"baseline done at {time.monotonic() - started:.0f} s", flush=True)

        servers = [Server(procs, env, work / f"worker{i}.log") for i in range(2)]
        for server in servers:
            server.wait_ready()
        for server in servers:
            warm_up(procs, work, server, seed, None)
        subs = seed["patients"][:subscribers]
        halves = [subs[0::2], subs[1::2]]
        clients: list[Clients] = []
        memory = []
        connect_seconds = []
        errors: list[str] = []
        try:
            for index, server in enumerate(servers):
                before = measure_rss(server.pid, 1.0)
                other = servers[1 - index].ws_url
                batch = Clients(
                    procs,
                    work,
                    server.ws_url,
                    other,
                    halves[index],
                    args.clients,
                    args,
                    f"w{index}",
                )
                clients.append(batch)
                statuses = batch.statuses()
                ready = sum(s["ready"] for s in statuses)
                errors += [e for s in statuses for e in s["errors"]]
                if ready < len(halves[index]):
                    errors.append(f"worker {index}: {ready}/{len(halves[index])} live")
                connect_seconds.append(max(s["seconds"] for s in statuses))
                after = measure_rss(server.pid, 1.5)
                memory.append((before, after, len(halves[index])))
                print(
                    f"worker {index}: {ready} live in {connect_seconds[-1]:.0f} s, "
                    f"{(after - before) / len(halves[index]):.1f} KB/conn",
                    flush=True,
                )
            conversations = [s["conversation"] for s in subs]

            cpu0 = sum(cpu_seconds(s.pid) for s in servers)
            sent, failures, elapsed, _ = both_senders(
                procs, work, servers, seed, conversations, args.rate, args.seconds, "steady"
            )
            time.sleep(2.0)  # the last deliveries drain
            cpu = sum(cpu_seconds(s.pid) for s in servers) - cpu0
            print(f"steady load done at {time.monotonic() - started:.0f} s", flush=True)

            # The storm: a new load phase, every socket dropped a few seconds into it.
            storm_result: dict[str, Any] = {}

            def storm() -> None:
                time.sleep(min(3.0, args.storm_seconds / 4))
                for batch in clients:
                    batch.command("storm")
                storm_result["statuses"] = [s for b in clients for s in b.statuses()]

            stormer = threading.Thread(target=storm)
            stormer.start()
            storm_sent, storm_failures, storm_elapsed, _ = both_senders(
                procs, work, servers, seed, conversations, args.rate, args.storm_seconds, "storm"
            )
            stormer.join(300)
            drained = drain(clients, args.drain)
            print(f"drained in {drained:.0f} s", flush=True)
            received: list[list[Any]] = []
            for batch in clients:
                got, more = batch.finish()
                received += got
                errors += more
        finally:
            for batch in clients:
                for child in batch.children:
                    procs.stop(child)
            for server in servers:
                server.stop()

        steady = analyse(sent, received)
        stormy = analyse(storm_sent, received)
        storm_statuses = storm_result.get("statuses", [])
        dropped_at = min((s["dropped_at"] for s in storm_statuses), default=float("inf"))
        overtaken = overtaken_before_the_cut(storm_sent, received, dropped_at)
        storm_seconds = max((s["storm_seconds"] for s in storm_statuses), default=float("nan"))
        resubscribed = sum(s["subscribed"] for s in storm_statuses)
        errors += [e for s in storm_statuses for e in s["errors"]]
        errors += failures[:5] + storm_failures[:5]
        # Latency of what was sent while the sockets were away (replayed) is not a delivery
        # latency; the storm phase reports lost / duplicates and the time to resubscribe.
        kb = [(a - b) / n for b, a, n in memory]
        lines += [
            f"Two workers over Redis, {subscribers} idle subscribers in all "
            f"({subscribers // 2} per worker), sendMessage at {args.rate:g}/s for "
            f"{args.seconds:g} s through both workers; latency = receipt - mutation response.",
            "",
            "| phase | subscribers | target msg/s | sent (msg/s) | failed | lost | dup | wrong "
            "| p50 ms | p99 ms | max ms | mutation p50/p99 ms | CPU/msg ms (both workers) |",
            "| --- " + "| ---: " * 12 + "|",
            f"| 2 workers, steady | {subscribers} | {args.rate:g} | {steady['sent']} "
            f"({steady['sent'] / elapsed:.0f}) | {len(failures)} | {steady['lost']} | "
            f"{steady['duplicates']} | {steady['wrong_recipient']} | {steady['p50']:.1f} | "
            f"{steady['p99']:.1f} | {steady['max']:.1f} | "
            f"{steady['mutation_p50']:.1f}/{steady['mutation_p99']:.1f} | "
            f"{cpu * 1000 / max(1, len(sent)):.2f} |",
        ]
        for load in baseline.loads:
            lines.append(
                f"| baseline: 1 worker (bench.fanout) | {baseline.subscribers} | "
                f"{load['target']:g} | {load['sent']} ({load['rate']:.0f}) | {load['failures']} "
                f"| {load['lost']} | {load['duplicates']} | {load['wrong_recipient']} | "
                f"{load['p50']:.1f} | {load['p99']:.1f} | {load['max']:.1f} | "
                f"{load['mutation_p50']:.1f}/{load['mutation_p99']:.1f} | "
                f"{load['server_cpu_per_message_ms']:.2f} |"
            )
        lines += [
            "",
            "Memory per idle connection (worker VmRSS after - before its subscribers connected):",
            "",
            "| worker | sockets | RSS before MB | RSS after MB | KB/connection | connect s |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for index, (before, after, n) in enumerate(memory):
            lines.append(
                f"| {index} | {n} | {before / 1024:.0f} | {after / 1024:.0f} | "
                f"{kb[index]:.1f} | {connect_seconds[index]:.0f} |"
            )
        for m in baseline.memory:
            lines.append(
                f"| baseline (1 worker, {'deflate offered' if m.offer else 'no deflate'}) | "
                f"{m.sockets} | | | {m.kb_per_connection:.1f} | {m.connect_seconds:.0f} |"
            )
        lines += [
            "",
            f"Reconnect storm: {subscribers} sockets dropped at once, {args.storm_seconds:g} s "
            f"load phase at {args.rate:g}/s; each resubscribed to the other worker with its "
            f"cursor (at most {args.storm_concurrency} handshakes in flight per client process).",
            "",
            "| resubscribed | time until all acknowledged and subscribed s | sent in phase "
            "| lost | dup | wrong | p50 ms | p99 ms | max ms (replays included) |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            f"| {resubscribed}/{subscribers} | {storm_seconds:.1f} | {stormy['sent']} "
            f"(in {storm_elapsed:.0f} s) | {stormy['lost']} | {stormy['duplicates']} | "
            f"{stormy['wrong_recipient']} | {stormy['p50']:.1f} | {stormy['p99']:.1f} | "
            f"{stormy['max']:.1f} |",
        ]
        if stormy["lost"]:
            lines += [
                "",
                f"Of the {stormy['lost']} lost in the storm, {overtaken} had been overtaken: "
                "before the cut, their recipient received a message of the same conversation "
                "sent after them (a later `sentAt`), so its cursor was already past them.",
            ]
        if len(notes) > 1 or errors or baseline.errors:
            lines += ["", "Notes and errors:", *(f"- {n}" for n in notes[1:])]
            lines += [f"- {e}" for e in (errors + baseline.errors)[:20]]
        failed = bool(
            errors
            or steady["lost"]
            or stormy["lost"]
            or steady["duplicates"]
            or stormy["duplicates"]
            or resubscribed < subscribers
        )
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
        redis.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print("\n".join(lines))
    load_after = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(
        f"\n(total {time.monotonic() - started:.0f} s; "
        f"load average {load_average} before, {load_after} after)"
    )
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    assert __doc__ is not None
    parser = argparse.ArgumentParser(
        prog="bench.fanout_workers", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command")
    client = sub.add_parser("_client")
    client.add_argument("--url", required=True)
    client.add_argument("--storm-url", required=True)
    client.add_argument("--spec", type=Path, required=True)
    client.add_argument("--out", type=Path, required=True)
    client.add_argument("--concurrency", type=int, default=64)
    client.add_argument("--storm-concurrency", type=int, default=256)
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--storm-seconds", type=float, default=20)
    parser.add_argument(
        "--storm-concurrency", type=int, default=256, help="handshakes in flight per client"
    )
    parser.add_argument("--clients", type=int, default=2, help="client processes per worker")
    parser.add_argument("--baseline-subscribers", type=int, default=1000, help="0: no baseline")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--work", type=Path, help="work directory: kept, its seed reused")
    parser.add_argument("--seed-only", action="store_true", help="seed --work, then stop")
    parser.add_argument(
        "--drain",
        type=float,
        default=300.0,
        help="at most this many seconds, after the load, for queued deliveries to arrive",
    )
    args = parser.parse_args(argv)
    if args.command == "_client":
        raise_nofile_to_hard()
        subs = json.loads(args.spec.read_text())
        result = asyncio.run(
            _client(args.url, args.storm_url, subs, args.concurrency, args.storm_concurrency)
        )
        args.out.write_text(json.dumps(result))
        return 0
    return orchestrate(args)


if __name__ == "__main__":
    raise SystemExit(main())
