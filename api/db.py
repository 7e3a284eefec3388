"""Tortoise configuration: one app, the modules of `models/`, migrations in `models.migrations`."""

from __future__ import annotations

import os
from typing import Any

MODEL_MODULES: list[str] = [
    "models.account",
    "models.patient",
    "models.professional",
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
    "models.appointment",
    "models.calendar_feed",
    "models.persisted",
]


def tortoise_config(database_url: str) -> dict[str, Any]:
    return {
        "connections": {"default": database_url},
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
