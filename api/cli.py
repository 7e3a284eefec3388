"""The `espace-sante` command.

serve, migrate, create-operator, seed-demo, export-schema, run-jobs.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path

from tortoise import Tortoise

from api.config import ConfigError, Settings
from api.db import tortoise_config
from api.errors import ApiError

logger = logging.getLogger("espace_sante")


async def _with_db(settings: Settings, work: Callable[[], Awaitable[int]]) -> int:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    await Tortoise.init(config=tortoise_config(settings.database_url))
    try:
        return await work()
    finally:
        await Tortoise.close_connections()


async def migrate(settings: Settings) -> None:
    """Apply the migrations of models/migrations (the same on SQLite and PostgreSQL)."""
    from tortoise.config import TortoiseConfig
    from tortoise.migrations.api import migrate as migrate_api

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    config = TortoiseConfig.from_dict(tortoise_config(settings.database_url))
    await Tortoise.init(config=tortoise_config(settings.database_url))
    try:
        await migrate_api(config=config, app_labels=None, target=None)
    finally:
        await Tortoise.close_connections()


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    if args.workers > 1 and settings.broadcast_url.startswith("memory://"):
        print(
            "error: several workers need a shared broadcast backend: set BROADCAST_URL=redis://…",
            file=sys.stderr,
        )
        return 2
    if not args.no_migrate:
        asyncio.run(migrate(settings))
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers if not args.reload else None,
        reload=args.reload,
        proxy_headers=False,
        ws_max_size=1024 * 1024,
        # No permessage-deflate, whatever the client offers (every browser does): uvicorn
        # would keep a zlib compressor and decompressor per socket, ~40 KB of server memory
        # per idle subscription (bench/FANOUT.md), to shrink events of a few hundred bytes;
        # and compressing a stream that mixes health data with text another party chose
        # opens a length side channel (CRIME/BREACH-like) for nothing.
        ws_per_message_deflate=False,
        # uvicorn's default websocket implementation (websockets-sansio), holding less per
        # idle socket: light receive queue and writable flag, no handshake request/response
        # kept (api/websocket.py): about -6 KB per idle subscription (bench/FANOUT.md).
        ws="api.websocket:LeanWebSocketProtocol",
        log_level="info",
    )
    return 0


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    asyncio.run(migrate(settings))
    print("database is up to date")
    return 0


def cmd_create_operator(args: argparse.Namespace, settings: Settings) -> int:
    from models.operators import create_operator

    password = args.password or getpass.getpass("Password for the operator: ")

    async def work() -> int:
        try:
            operator = await create_operator(args.email, password)
        except ApiError as exc:  # a bad password or a taken e-mail: a message, not a traceback
            print(f"error: {exc.message}", file=sys.stderr)
            return 1
        print(f"operator {operator.email} created")
        return 0

    return asyncio.run(_with_db(settings, work))


def cmd_seed_demo(args: argparse.Namespace, settings: Settings) -> int:
    from models.demo import seed_demo

    async def work() -> int:
        lines = await seed_demo(settings)
        print("\n".join(lines))
        return 0

    asyncio.run(migrate(settings))
    return asyncio.run(_with_db(settings, work))


def cmd_export_schema(args: argparse.Namespace, settings: Settings | None) -> int:
    from api.schema import schema_sdl

    Path(args.output).write_text(schema_sdl(), encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


def cmd_run_jobs(args: argparse.Namespace, settings: Settings) -> int:
    from api.jobs import run_jobs

    try:
        now = datetime.fromisoformat(args.now) if args.now else None
    except ValueError:
        now = None
    if args.now and (now is None or now.tzinfo is None):
        print("error: --now needs an offset, e.g. 2026-11-25T09:00:00+01:00", file=sys.stderr)
        return 2

    async def work() -> int:
        # With a shared (Redis) bus, alerts raised here reach the servers' subscribers.
        bus = None
        if not settings.broadcast_url.startswith("memory://"):
            from subscriptions.broadcast import EventBus

            bus = EventBus(settings.broadcast_url)
            await bus.connect()
        try:
            report = await run_jobs(settings, now=now, bus=bus)
        finally:
            if bus is not None:
                await bus.disconnect()
        for name, count in report.items():
            print(f"{name}: {count}")
        return 0

    return asyncio.run(_with_db(settings, work))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="espace-sante", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP and websocket server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--reload", action="store_true")
    serve.add_argument("--no-migrate", action="store_true", help="skip migrations at start")
    sub.add_parser("migrate", help="create or upgrade the database schema")
    operator = sub.add_parser("create-operator", help="create an operator account")
    operator.add_argument("--email", required=True)
    operator.add_argument("--password", help="prompted for when absent")
    sub.add_parser("seed-demo", help="load demo data and print the demo logins")
    export = sub.add_parser("export-schema", help="write schema.graphql")
    export.add_argument("--output", "-o", default="schema.graphql")
    jobs = sub.add_parser("run-jobs", help="run the periodic jobs once (idempotent)")
    jobs.add_argument("--now", help="ISO-8601 moment with offset, instead of the clock")
    return parser


COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "serve": cmd_serve,
    "migrate": cmd_migrate,
    "create-operator": cmd_create_operator,
    "seed-demo": cmd_seed_demo,
    "run-jobs": cmd_run_jobs,
}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args = build_parser().parse_args(argv)
    if args.command == "export-schema":
        return cmd_export_schema(args, None)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    return COMMANDS[args.command](args, settings)


if __name__ == "__main__":
    raise SystemExit(main())
