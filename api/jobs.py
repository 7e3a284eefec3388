"""Periodic jobs, run by `espace-sante run-jobs` and by the in-process scheduler.

Each job is idempotent and safe on several machines at once: state changes are
conditional UPDATEs and unique keys in the database, never process-local locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from api.config import Settings
from models import lifecycle, ratelimit
from models.base import utcnow
from models.crypto import Vault
from models.outbox import deliver_pending

logger = logging.getLogger(__name__)


async def run_jobs(settings: Settings, *, now: datetime | None = None) -> dict[str, int]:
    now = now or utcnow()
    vault = Vault(settings.secret_key)
    jobs: dict[str, Callable[[], Awaitable[int]]] = {
        "spaces_created": lambda: lifecycle.create_spaces_due(now),
        "representations_ended": lambda: lifecycle.end_majority_links(
            vault=vault, settings=settings, now=now
        ),
        "spaces_purged": lambda: lifecycle.purge_closed(now),
        "messages_delivered": lambda: deliver_pending(settings, now=now),
        "counters_purged": lambda: ratelimit.purge_older_than(now - timedelta(days=1)),
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


class Scheduler:
    """Runs the jobs every `interval` seconds inside the server process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
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
                await run_jobs(self.settings)
            except Exception:
                logger.exception("scheduled run failed")
            await asyncio.sleep(self.settings.scheduler_interval)
