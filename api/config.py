"""Settings, read once from the environment into one frozen object."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path


class ConfigError(RuntimeError):
    pass


def _bool(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


# Every environment variable `Settings.from_env` reads; the README's table documents each.
VARIABLES = (
    "ENVIRONMENT",
    "DATABASE_URL",
    "BROADCAST_URL",
    "SMTP_URL",
    "MAIL_FROM",
    "SECRET_KEY",
    "ALLOWED_ORIGINS",
    "DATA_DIR",
    "PUBLIC_URL",
    "TWO_FACTOR",
    "SESSION_TTL_MINUTES",
    "MAX_UPLOAD_BYTES",
    "MAX_ATTACHMENT_BYTES",
    "MAX_REQUEST_BYTES",
    "SCHEDULER_ENABLED",
    "SCHEDULER_INTERVAL_SECONDS",
    "APPOINTMENT_REMINDER_HOURS",
    "TRUSTED_PROXIES",
)


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer") from exc


def _dev_secret(data_dir: Path) -> str:
    """A development key kept in DATA_DIR so encrypted data survives restarts."""
    path = data_dir / "dev-secret-key"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    path.write_text(key)
    path.chmod(0o600)
    return key


@dataclass(frozen=True)
class Settings:
    environment: str = "production"
    data_dir: Path = Path("data")
    database_url: str = "sqlite://data/espace-sante.sqlite3"
    broadcast_url: str = "memory://"
    smtp_url: str | None = None
    mail_from: str = "Mon espace santé <no-reply@espace-sante.localhost>"
    secret_key: str = ""
    allowed_origins: tuple[str, ...] = ()
    public_url: str = "http://127.0.0.1:8000"
    two_factor: bool = True
    session_ttl: timedelta = timedelta(hours=8)
    max_upload_bytes: int = 20 * 1024 * 1024
    max_attachment_bytes: int = 5 * 1024 * 1024
    max_request_bytes: int = 55 * 1024 * 1024  # ten 5 MB attachments and the form fit
    scheduler_enabled: bool = True
    scheduler_interval: int = 60
    appointment_reminder_hours: tuple[int, ...] = (48, 2)
    trusted_proxies: tuple[str, ...] = field(default_factory=tuple)

    @property
    def development(self) -> bool:
        return self.environment == "development"

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        environment = env.get("ENVIRONMENT", "production").strip().lower() or "production"
        if environment not in {"production", "development", "test"}:
            raise ConfigError("ENVIRONMENT must be production, development or test")
        data_dir = Path(env.get("DATA_DIR") or "data")
        secret_key = env.get("SECRET_KEY", "")
        if not secret_key:
            if environment == "production":
                raise ConfigError("SECRET_KEY must be set in production (32+ random characters)")
            secret_key = _dev_secret(data_dir)
        if len(secret_key) < 32:
            raise ConfigError("SECRET_KEY must be at least 32 characters")
        two_factor = _bool(env.get("TWO_FACTOR"), True)
        if not two_factor and environment == "production":
            raise ConfigError("two-factor login cannot be switched off in production")
        origins = tuple(o.strip() for o in env.get("ALLOWED_ORIGINS", "").split(",") if o.strip())
        hours = tuple(
            int(h) for h in env.get("APPOINTMENT_REMINDER_HOURS", "48,2").split(",") if h.strip()
        )
        return cls(
            environment=environment,
            data_dir=data_dir,
            database_url=env.get("DATABASE_URL") or f"sqlite://{data_dir / 'espace-sante.sqlite3'}",
            broadcast_url=env.get("BROADCAST_URL") or "memory://",
            smtp_url=env.get("SMTP_URL") or None,
            mail_from=env.get("MAIL_FROM") or cls.mail_from,
            secret_key=secret_key,
            allowed_origins=origins,
            public_url=(env.get("PUBLIC_URL") or cls.public_url).rstrip("/"),
            two_factor=two_factor,
            session_ttl=timedelta(minutes=_int(env, "SESSION_TTL_MINUTES", 480)),
            max_upload_bytes=_int(env, "MAX_UPLOAD_BYTES", cls.max_upload_bytes),
            max_attachment_bytes=_int(env, "MAX_ATTACHMENT_BYTES", cls.max_attachment_bytes),
            max_request_bytes=_int(env, "MAX_REQUEST_BYTES", cls.max_request_bytes),
            scheduler_enabled=_bool(env.get("SCHEDULER_ENABLED"), True),
            scheduler_interval=_int(env, "SCHEDULER_INTERVAL_SECONDS", 60),
            appointment_reminder_hours=hours,
            trusted_proxies=tuple(
                p.strip() for p in env.get("TRUSTED_PROXIES", "").split(",") if p.strip()
            ),
        )
