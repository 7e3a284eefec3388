"""Tortoise configuration: one app, the modules of `models/`, migrations in `models.migrations`."""

from __future__ import annotations

import os
from typing import Any

MODEL_MODULES: list[str] = [
    "models.account",
    "models.patient",
    "models.professional",
    "models.establishment",
    "models.session",
    "models.lifecycle",
    "models.outbox",
    "models.ratelimit",
    "models.consent",
    "models.audit",
    "models.document",
    "models.record",
    "models.reminder",
    "models.message",
    "models.clock",
    "models.appointment",
    "models.calendar_feed",
    "models.persisted",
    "models.catalogue",
    "models.blobs",
    "models.franceconnect",
    "models.idempotency",
]


# PostgreSQL: seconds to open a connection, and to wait for any one statement, unless the URL
# says otherwise (`?timeout=…&command_timeout=…`). While the server is down or frozen, a
# request then fails within seconds (SERVICE_UNAVAILABLE) rather than hanging; the pool opens
# new connections by itself once it is back.
PG_CONNECT_TIMEOUT = 3
PG_COMMAND_TIMEOUT = 10.0


def _connection(database_url: str) -> str | dict[str, Any]:
    if not database_url.startswith(("postgres://", "postgresql://", "asyncpg://")):
        return database_url
    from tortoise.backends.base.config_generator import expand_db_url

    config = expand_db_url(database_url)
    credentials = config["credentials"]
    credentials.setdefault("timeout", PG_CONNECT_TIMEOUT)
    credentials["command_timeout"] = float(credentials.get("command_timeout", PG_COMMAND_TIMEOUT))
    return config


def tortoise_config(database_url: str) -> dict[str, Any]:
    return {
        "connections": {"default": _connection(database_url)},
        "apps": {
            "models": {
                "models": MODEL_MODULES,
                "default_connection": "default",
                "migrations": "models.migrations",
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


def __getattr__(name: str) -> Any:
    """TORTOISE_ORM for the `tortoise` CLI (makemigrations), computed only when asked for."""
    if name == "TORTOISE_ORM":
        data_dir = os.environ.get("DATA_DIR") or "data"
        url = os.environ.get("DATABASE_URL") or f"sqlite://{data_dir}/espace-sante.sqlite3"
        return tortoise_config(url)
    raise AttributeError(name)
