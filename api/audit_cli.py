"""`espace-sante audit verify`: check the hash chain of every space's access log.

Recomputes each space's chain from its first event (models/audit.py `verify_chain`) and
prints one line per broken space (where, and why), then a summary. Exit code 1 if any chain
is broken, 0 if all verify.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable

from api.config import Settings


def add_parser(command: Callable[[str, str, str], argparse.ArgumentParser]) -> None:
    audit = command(
        "audit",
        "verify the access logs' hash chains",
        "The access log of each space is a hash chain (each event carries the hash of the one "
        "before it): `verify` recomputes every space's chain and reports any event altered, "
        "removed or inserted.",
    )
    sub = audit.add_subparsers(
        dest="audit_command", required=True, title="commands", metavar="COMMAND"
    )
    sub.add_parser(
        "verify",
        help="check every space's access log (exit 1 on a break)",
        description="Recompute the hash chain of every space's access log from its first "
        "event. Prints each broken space (the position and moment of the first break, and "
        "why) and a summary; exit code 1 if any chain is broken.",
    )


def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    from api.cli import _with_db

    return asyncio.run(_with_db(settings, _verify))


async def _verify() -> int:
    from models.audit import every_space, verify_chain

    spaces = events = 0
    broken = 0
    async for patient_id in every_space():
        checked = await verify_chain(patient_id)
        spaces += 1
        events += checked.events
        if checked.broken is not None:
            broken += 1
            where = checked.broken
            moment = where.at.isoformat() if where.at is not None else "unknown moment"
            event = f"event {where.event_id}" if where.event_id is not None else "end of chain"
            print(
                f"BROKEN patient {patient_id}: at position {where.seq} ({event}, {moment}): "
                f"{where.reason}"
            )
    verdict = "all chains verify" if not broken else f"{broken} broken"
    print(f"{spaces} spaces, {events} access events: {verdict}")
    return 1 if broken else 0
