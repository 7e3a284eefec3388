"""The `espace-sante` command.

serve, migrate, create-operator, seed-demo, export-schema, run-jobs, documents, blobs
(api/blob_cli.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tortoise import Tortoise

from api import audit_cli, blob_cli
from api.config import ConfigError, Settings
from api.db import tortoise_config
from models.crypto import Vault, migration_key
from models.errors import DomainError

logger = logging.getLogger("espace_sante")

CHECK_TIMEOUT = 10.0  # seconds to reach the database or Redis at start


class StartupError(Exception):
    """A database or broadcast backend that cannot be used at start: one line, exit code 2."""


def _redacted(url: str) -> str:
    """The URL without its password, fit for a message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, TimeoutError):
        return f"no answer within {CHECK_TIMEOUT:g} s"
    return f"{text} ({type(exc).__name__})" if text else type(exc).__name__


async def open_database(settings: Settings) -> None:
    """Tortoise.init, then one statement, so that a wrong `DATABASE_URL` (unknown scheme,
    unreachable server, bad credentials, missing database or directory) is a `StartupError`
    rather than a traceback at the first query."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    url = settings.database_url
    where = f"cannot use the database DATABASE_URL={_redacted(url)}"
    if url.startswith("sqlite://") and not url.startswith("sqlite://:memory:"):
        folder = Path(url.removeprefix("sqlite://").split("?", 1)[0]).parent
        if not folder.is_dir():
            raise StartupError(f"{where}: the directory {folder} does not exist")
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await Tortoise.init(config=tortoise_config(url))
            await Tortoise.get_connection("default").execute_query("SELECT 1")
    except Exception as exc:
        quiet = logging.getLogger("tortoise")
        level, quiet.level = quiet.level, logging.WARNING  # no "shutdown" line: one line only
        try:
            with contextlib.suppress(Exception):  # fails too when the URL could not be parsed
                await Tortoise.close_connections()
        finally:
            quiet.setLevel(level)
        # aiosqlite stops its thread without waiting after a failed connect: let it finish
        # before the event loop closes, or it prints a traceback at exit.
        await asyncio.sleep(0.1)
        raise StartupError(f"{where}: {_one_line(exc)}") from exc


async def check_broadcast(settings: Settings) -> None:
    """A Redis `BROADCAST_URL` must answer a PING at start (the server would otherwise start
    degraded, delivering no live event until Redis comes back)."""
    from redis.asyncio import Redis

    from subscriptions.backends import check_url

    url = settings.broadcast_url
    try:
        check_url(url)
    except ValueError as exc:
        raise StartupError(f"BROADCAST_URL={_redacted(url)}: {exc}") from exc
    if url.startswith("memory://"):
        return
    client = Redis.from_url(url, socket_connect_timeout=CHECK_TIMEOUT, socket_timeout=CHECK_TIMEOUT)
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await client.ping()
    except Exception as exc:
        raise StartupError(
            f"cannot reach the broadcast backend BROADCAST_URL={_redacted(url)}: {_one_line(exc)}"
        ) from exc
    finally:
        await client.aclose()


async def _with_db(settings: Settings, work: Callable[[], Awaitable[int]]) -> int:
    await open_database(settings)
    try:
        return await work()
    finally:
        await Tortoise.close_connections()


async def migrate(settings: Settings) -> None:
    """Apply the migrations of models/migrations (the same on SQLite and PostgreSQL)."""
    from tortoise.config import TortoiseConfig
    from tortoise.migrations.api import migrate as migrate_api

    config = TortoiseConfig.from_dict(tortoise_config(settings.database_url))
    await open_database(settings)
    try:
        # Data migrations that re-encrypt columns (0003) read the key from here.
        with migration_key(Vault(settings.secret_key)):
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
    asyncio.run(check_broadcast(settings))
    if args.no_migrate:
        asyncio.run(_with_db(settings, _nothing))
    else:
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


async def _nothing() -> int:
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
        except DomainError as exc:  # a bad password or a taken e-mail: a message, not a traceback
            print(f"error: {exc.message}", file=sys.stderr)
            return 1
        print(f"operator {operator.email} created")
        return 0

    return asyncio.run(_with_db(settings, work))


def cmd_seed_demo(args: argparse.Namespace, settings: Settings) -> int:
    from models.crypto import Vault
    from models.demo import seed_demo

    async def work() -> int:
        blobs = settings.blob_store()
        try:
            lines = await seed_demo(
                Vault(settings.secret_key),
                blobs,
                reminder_hours=settings.appointment_reminder_hours,
            )
        finally:
            await blobs.aclose()
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


def cmd_documents(args: argparse.Namespace, settings: Settings) -> int:
    if args.documents_command == "load":
        return _documents_load(args, settings)
    return _documents_list(settings)


def _documents_load(args: argparse.Namespace, settings: Settings) -> int:
    """Registers the documents of a manifest (models/persisted.py), all or none."""
    from api.extensions.persisted import check_manifest
    from api.schema import schema
    from models.persisted import check_client, load_manifest, parse_manifest

    try:
        raw = Path(args.file).read_bytes()
    except OSError as exc:
        print(f"error: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    try:
        client = None if args.client is None else check_client(args.client)
        manifest = parse_manifest(raw)
    except DomainError as exc:
        print(f"error: {args.file}: {exc.message}", file=sys.stderr)
        return 1
    checked = check_manifest(manifest, schema._schema)
    for error in checked.errors:
        print(f"error: {args.file}: {error}", file=sys.stderr)
    if checked.errors:
        print("error: nothing was loaded", file=sys.stderr)
        return 1
    for warning in checked.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    where = "the shared first-party list" if client is None else f"the list of client {client}"

    async def work() -> int:
        try:
            report = await load_manifest(manifest, client=client, registered_by=_cli_user())
        except DomainError as exc:
            print(f"error: {args.file}: {exc.message}", file=sys.stderr)
            return 1
        count = len({entry.sha256 for entry in manifest.entries})
        print(f"{args.file}: {manifest.format}, {count} document{'s' * (count != 1)}")
        print(f"added to {where}: {len(report.added)}")
        for entry in report.added:
            extra = f"  {entry.name}" if entry.name else ""
            alias = f"  (id {entry.alias})" if entry.alias else ""
            print(f"  sha256:{entry.sha256}{extra}{alias}")
        print(f"already on it: {report.already}")
        return 0

    return asyncio.run(_with_db(settings, work))


def _cli_user() -> str:
    try:
        return f"cli:{getpass.getuser()}"[:200]
    except (KeyError, OSError):  # no name for this uid (a container)
        return "cli"


def _documents_list(settings: Settings) -> int:
    from models.persisted import DocumentSource, list_registrations

    async def work() -> int:
        rows = await list_registrations()
        if not rows:
            print("no document is registered")
            return 0
        groups: dict[str, list[str]] = {}
        for row in rows:
            if row.source is DocumentSource.APQ:
                group = "automatic persisted queries (APQ, never trusted)"
            elif row.client is None:
                group = "shared first-party list"
            else:
                group = f"client {row.client}"
            aliases = f"  ids {', '.join(row.aliases)}" if row.aliases else ""
            moment = row.registered_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
            groups.setdefault(group, []).append(
                f"  sha256:{row.sha256}  {row.name or '-'}  {moment} by {row.registered_by}"
                + aliases
            )
        for group, lines in groups.items():
            print(f"{group}: {len(lines)} document{'s' * (len(lines) != 1)}")
            print("\n".join(lines))
        return 0

    return asyncio.run(_with_db(settings, work))


class _HelpFormatter(argparse.HelpFormatter):
    """argparse measures a command's name without the indent it prints it at, so the longest
    (`create-operator`) got its summary on the next line; measured as printed, each command
    and its summary share one line."""

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        if action.help is not argparse.SUPPRESS:
            for subaction in self._iter_indented_subactions(action):
                printed = len(self._format_action_invocation(subaction)) + self._current_indent
                self._action_max_length = max(self._action_max_length, printed)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="espace-sante",
        formatter_class=_HelpFormatter,
        description="Mon espace santé: a personal health record behind one GraphQL API.",
        epilog=(
            "Settings come from environment variables (DATABASE_URL, BROADCAST_URL, "
            "SECRET_KEY, ...; see README.md). A configuration error, or a database or Redis "
            "that cannot be reached at start, exits with code 2 and a one-line message."
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name, help=summary, description=description, formatter_class=_HelpFormatter
        )

    serve = command(
        "serve",
        "migrate, then serve the GraphQL API (HTTP and websocket)",
        "Check that the database and the broadcast backend answer, apply the migrations "
        "(unless --no-migrate), then serve /graphql over HTTP and websocket.",
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    serve.add_argument(
        "--port", type=int, default=8000, help="port to listen on (default: %(default)s)"
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes (default: %(default)s); more than one needs BROADCAST_URL=redis://…",
    )
    serve.add_argument(
        "--reload", action="store_true", help="restart on code changes (development)"
    )
    serve.add_argument("--no-migrate", action="store_true", help="skip the migrations at start")
    command(
        "migrate",
        "create or upgrade the database schema",
        "Create or upgrade the database schema from models/migrations (a no-op when up to date).",
    )
    operator = command(
        "create-operator",
        "create an operator account",
        "Create an operator account: operators enrol people and register professionals.",
    )
    operator.add_argument("--email", required=True, help="the operator's login e-mail")
    operator.add_argument("--password", help="12 characters or more; prompted for when absent")
    command(
        "seed-demo",
        "load the demo world once and print its logins",
        "Migrate, load the demo world once (a family's year of care, fictitious people) and "
        "print its logins; running it again changes nothing.",
    )
    export = command(
        "export-schema",
        "write the GraphQL schema (SDL) to a file",
        "Write the GraphQL schema (SDL) to a file; needs no settings.",
    )
    export.add_argument(
        "--output", "-o", default="schema.graphql", help="file to write (default: %(default)s)"
    )
    jobs = command(
        "run-jobs",
        "run the periodic jobs once (safe from cron)",
        "Run the periodic jobs once (spaces due, reminders, purges, mail delivery) and print a "
        "count per job; safe on several machines at once.",
    )
    jobs.add_argument(
        "--now", help="the moment to run at, ISO-8601 with an offset (default: the clock)"
    )
    documents = command(
        "documents",
        "register and list persisted GraphQL documents",
        "Persisted documents: `load` registers a manifest's documents, `list` prints what is "
        "registered, per client. TRUSTED_DOCUMENTS=enforce serves only these.",
    )
    documents_sub = documents.add_subparsers(
        dest="documents_command", required=True, title="commands", metavar="COMMAND"
    )
    load = documents_sub.add_parser(
        "load",
        help="register the documents of a manifest (idempotent)",
        description="Register the documents of a manifest: Apollo's persisted-query manifest, "
        "GraphQL Code Generator's persisted-documents.json or Relay's map. Each id is checked "
        "against its text; a file with one that does not match is refused whole. Prints what "
        "it added; running it again adds nothing.",
    )
    load.add_argument("file", help="the manifest (JSON)")
    load.add_argument(
        "--client",
        help="the list of this client (matched to the apollographql-client-name header); "
        "default: the shared first-party list",
    )
    documents_sub.add_parser(
        "list",
        help="print the registered documents, per client",
        description="Print the registered documents: the shared first-party list, each "
        "client's list, then those registered by automatic persisted queries.",
    )
    blob_cli.add_parser(command)  # espace-sante blobs migrate|verify|rewrap
    audit_cli.add_parser(command)  # espace-sante audit verify
    return parser


COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "serve": cmd_serve,
    "migrate": cmd_migrate,
    "create-operator": cmd_create_operator,
    "seed-demo": cmd_seed_demo,
    "run-jobs": cmd_run_jobs,
    "documents": cmd_documents,
    "blobs": blob_cli.cmd_blobs,
    "audit": audit_cli.cmd_audit,
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
    try:
        return COMMANDS[args.command](args, settings)
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
