"""Periodic jobs, run by `espace-sante run-jobs` and by the in-process scheduler.

Each job is idempotent and safe on several machines at once: state changes are
conditional UPDATEs and unique keys in the database, never process-local locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from api.config import Settings
from models import catalogue, idempotency, lifecycle, ratelimit, session
from models.appointment import mark_done
from models.audience import managing_accounts
from models.base import paris_today, utcnow
from models.blob_maintenance import reap_blobs
from models.blobs import BlobStore
from models.crypto import Vault
from models.outbox import deliver_pending, purge_delivered
from models.reminder import Reminder, compute_rule_reminders, raise_due
from subscriptions.broadcast import EventBus
from subscriptions.channels import publish_reminder

logger = logging.getLogger(__name__)


async def alert(bus: EventBus | None, reminders: list[Reminder], now: datetime) -> int:
    """Push raised reminders to the holder and the representatives (ids only)."""
    if bus is None:
        return len(reminders)
    today = paris_today(now)
    for row in reminders:
        accounts = await managing_accounts(row.patient_id, today)
        await publish_reminder(bus, accounts=accounts, reminder_id=row.id)
    return len(reminders)


async def run_jobs(
    settings: Settings,
    *,
    now: datetime | None = None,
    bus: EventBus | None = None,
    blobs: BlobStore | None = None,
) -> dict[str, int]:
    """`bus` is the server's event bus; the CLI passes one only for a shared (Redis) bus.
    `blobs` is the server's blob store; without one, a store is opened for this run.

    `now` is taken to UTC first: SQLite compares timestamps as text, so a moment with another
    offset (`run-jobs --now …+01:00`) would be compared wrongly with the stored UTC ones.
    """
    if now is not None and (now.tzinfo is None or now.utcoffset() is None):
        raise ValueError("now must be timezone-aware")
    now = (now or utcnow()).astimezone(UTC)
    if blobs is None:
        store = settings.blob_store()
        try:
            return await run_jobs(settings, now=now, bus=bus, blobs=store)
        finally:
            await store.aclose()
    vault = Vault(settings.secret_key)
    jobs: dict[str, Callable[[], Awaitable[int]]] = {
        "spaces_created": lambda: lifecycle.create_spaces_due(now),
        "representations_ended": lambda: lifecycle.end_majority_links(
            vault=vault, mailer=settings.mailer, now=now
        ),
        "spaces_purged": lambda: lifecycle.purge_closed(now, blobs=blobs, mailer=settings.mailer),
        "messages_delivered": lambda: deliver_pending(settings.mailer, now=now),
        "messages_purged": lambda: purge_delivered(settings.mailer, now),
        "counters_purged": lambda: ratelimit.purge_older_than(now - timedelta(days=1)),
        "appointments_done": lambda: mark_done(now),
        "rule_reminders_created": lambda: compute_rule_reminders(now),
        "reminders_raised": lambda: _raise(bus, now),
        "blobs_reaped": lambda: reap_blobs(now, blobs=blobs),
        "app_credentials_purged": lambda: catalogue.purge_expired(now),
        "idempotency_keys_purged": lambda: idempotency.purge_expired(now),
        "sessions_purged": lambda: session.purge_ended_sessions(now),
        "login_challenges_purged": lambda: session.purge_ended_challenges(now),
    }
    report: dict[str, int] = {}
    for name, job in jobs.items():
        try:
            report[name] = await job()
        except Exception:
            # One failing job must not stop the others; it is retried at the next run.
            logger.exception("job %s failed", name)
            report[name] = -1
    return report


async def _raise(bus: EventBus | None, now: datetime) -> int:
    total = 0
    while batch := await raise_due(now):
        total += await alert(bus, batch, now)
    return total


class Scheduler:
    """Runs the jobs every `interval` seconds inside the server process."""

    def __init__(
        self, settings: Settings, bus: EventBus | None = None, blobs: BlobStore | None = None
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.blobs = blobs
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="espace-sante-scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await run_jobs(self.settings, bus=self.bus, blobs=self.blobs)
            except Exception:
                logger.exception("scheduled run failed")
            await asyncio.sleep(self.settings.scheduler_interval)
