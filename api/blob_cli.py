"""`espace-sante blobs`: migrate the document bytes between stores, verify them, rewrap keys.

espace-sante blobs migrate --to s3://bucket/prefix   copy every blob (resumable)
espace-sante blobs verify [--url URL]                 every row's bytes exist and decrypt
espace-sante blobs rewrap                             data keys under the current master key
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable

from api.config import Settings
from models.blobs import parse_blob_url


def add_parser(command: Callable[[str, str, str], argparse.ArgumentParser]) -> None:
    blobs = command(
        "blobs",
        "migrate, verify or rewrap the stored document bytes",
        "Document and attachment bytes, encrypted in the store BLOB_URL names: `migrate` "
        "copies them all to another store, `verify` checks each row's bytes, `rewrap` wraps "
        "every data key under the current master key.",
    )
    sub = blobs.add_subparsers(
        dest="blobs_command", required=True, title="commands", metavar="COMMAND"
    )
    migrate = sub.add_parser(
        "migrate",
        help="copy every blob to another store (resumable)",
        description="Copy every blob from the store BLOB_URL names to --to (file://DIRECTORY "
        "or s3://BUCKET[/PREFIX], signed in with S3_*), encrypting on the way any still kept "
        "in clear. The service may keep running: rows do not change. Objects already copied "
        "are skipped, so an interrupted run resumes. Then set BLOB_URL to the new store and "
        "run it once more from the old one to copy what was uploaded in between.",
    )
    migrate.add_argument("--to", required=True, metavar="URL", help="the store to copy to")
    verify = sub.add_parser(
        "verify",
        help="check that every row's bytes exist and decrypt to its SHA-256",
        description="Check that every document and attachment row has its bytes, and that they "
        "decrypt (every segment authenticated) to the row's SHA-256. Exit code 1 on any "
        "failure, each printed.",
    )
    verify.add_argument("--url", help="the store to check (default: BLOB_URL)")
    sub.add_parser(
        "rewrap",
        help="wrap every data key under the current master key",
        description="After BLOB_MASTER_KEY changed (the previous key in BLOB_OLD_MASTER_KEYS): "
        "re-wrap every blob's data key under the new one. No blob is rewritten. Then the old "
        "key can be dropped.",
    )


def cmd_blobs(args: argparse.Namespace, settings: Settings) -> int:
    from api.cli import _with_db

    handlers = {"migrate": _migrate, "verify": _verify, "rewrap": _rewrap}
    handler = handlers[args.blobs_command]
    url = getattr(args, "to", None) or getattr(args, "url", None)
    if url is not None:
        try:
            parse_blob_url(url)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    async def work() -> int:
        return await handler(args, settings)

    return asyncio.run(_with_db(settings, work))


def _say(line: str) -> None:
    print(line, flush=True)


async def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from models.blob_maintenance import migrate

    source, target = settings.blob_store(), settings.blob_store(args.to)
    if source.url == target.url:
        print("error: --to is the store in use (BLOB_URL)", file=sys.stderr)
        return 2
    try:
        report = await migrate(source, target.objects, progress=_say)
    finally:
        await source.aclose()
        await target.aclose()
    _say(f"encrypted (were in clear): {report.encrypted}")
    _say(f"copied to {target.url}: {report.copied}")
    _say(f"already there: {report.present}")
    for failure in report.failures:
        print(f"failed: {failure}", file=sys.stderr)
    if report.failures:
        print(f"error: {len(report.failures)} blob(s) not copied", file=sys.stderr)
        return 1
    _say(f"done: set BLOB_URL={target.url}, then run this once more from {source.url}")
    return 0


async def _verify(args: argparse.Namespace, settings: Settings) -> int:
    from models.blob_maintenance import verify

    store = settings.blob_store(args.url)
    try:
        report = await verify(store, progress=_say)
    finally:
        await store.aclose()
    for failure in report.failures:
        print(f"failed: {failure}", file=sys.stderr)
    legacy = f" ({report.legacy} still in clear: run `blobs migrate`)" if report.legacy else ""
    _say(f"{store.url}: {report.checked} blob(s) checked, {len(report.failures)} failed{legacy}")
    return 1 if report.failures else 0


async def _rewrap(args: argparse.Namespace, settings: Settings) -> int:
    from models.blob_maintenance import rewrap

    store = settings.blob_store()
    try:
        count, failures = await rewrap(store)
    finally:
        await store.aclose()
    for failure in failures:
        print(f"failed: {failure}", file=sys.stderr)
    _say(f"data keys rewrapped under {store.keyring.current_id}: {count}")
    return 1 if failures else 0
