"""Settings, read once from the environment into one frozen object."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from ipaddress import ip_network
from pathlib import Path
from urllib.parse import urlsplit

from models.blob_crypto import Keyring, derive_master_key, parse_master_key
from models.blobs import BlobStore, S3Location, object_store, parse_blob_url
from models.outbox import Mailer
from models.session import LoginPolicy


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
    "MAX_QUERY_COST",
    "MAX_QUERY_DEPTH",
    "MAX_ALIASES",
    "MAX_TOKENS",
    "MAX_DIRECTIVES",
    "TRUSTED_DOCUMENTS",
    "APQ",
    "APQ_MAX_BYTES",
    "APQ_REGISTRATIONS_PER_HOUR",
    "COMPILED_PLANS",
    "BLOB_URL",
    "S3_ENDPOINT_URL",
    "S3_ACCESS_KEY_ID",
    "S3_SECRET_ACCESS_KEY",
    "S3_REGION",
    "BLOB_MASTER_KEY",
    "BLOB_OLD_MASTER_KEYS",
    "RATE_LIMIT_REQUESTS_PER_MINUTE",
    "RATE_LIMIT_COST_PER_MINUTE",
    "RATE_LIMIT_ADDRESS_REQUESTS_PER_MINUTE",
    "RATE_LIMIT_ADDRESS_COST_PER_MINUTE",
    "RATE_LIMIT_BURST_SECONDS",
    "FRANCECONNECT_ISSUER",
    "FRANCECONNECT_CLIENT_ID",
    "FRANCECONNECT_CLIENT_SECRET",
    "FRONTEND_URL",
)


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer") from exc


def _limit(env: dict[str, str], name: str, default: int) -> int:
    """A limit on requests: a positive integer (0 would refuse every request)."""
    value = _int(env, name, default)
    if value < 1:
        raise ConfigError(f"{name} must be a positive integer")
    return value


def _budget(env: dict[str, str], name: str, default: int) -> int:
    """A request budget per minute: a positive integer, or 0 to switch that budget off."""
    value = _int(env, name, default)
    if value < 0:
        raise ConfigError(f"{name} must be 0 (off) or a positive integer")
    return value


def _budgets(env: dict[str, str], max_query_cost: int) -> dict[str, int]:
    """The request budget's settings (api/budget.py), by the name of their field."""
    default = Settings  # the dataclass's defaults
    per_token = default.rate_limit_requests_per_minute
    cost_per_token = default.rate_limit_cost_per_minute
    per_address = default.rate_limit_address_requests_per_minute
    cost_per_address = default.rate_limit_address_cost_per_minute
    budgets = {
        "rate_limit_requests_per_minute": _budget(env, "RATE_LIMIT_REQUESTS_PER_MINUTE", per_token),
        "rate_limit_cost_per_minute": _budget(env, "RATE_LIMIT_COST_PER_MINUTE", cost_per_token),
        "rate_limit_address_requests_per_minute": (
            _budget(env, "RATE_LIMIT_ADDRESS_REQUESTS_PER_MINUTE", per_address)
        ),
        "rate_limit_address_cost_per_minute": (
            _budget(env, "RATE_LIMIT_ADDRESS_COST_PER_MINUTE", cost_per_address)
        ),
    }
    burst = _limit(env, "RATE_LIMIT_BURST_SECONDS", default.rate_limit_burst_seconds)
    for name in ("rate_limit_cost_per_minute", "rate_limit_address_cost_per_minute"):
        # A bucket must hold the costliest request allowed, or that request never runs.
        per_minute = budgets[name]
        if per_minute and per_minute * burst < max_query_cost * 60:
            raise ConfigError(
                f"{name.upper()} x RATE_LIMIT_BURST_SECONDS / 60 must be at least"
                f" MAX_QUERY_COST ({max_query_cost}): a bucket holds the costliest request"
            )
    return {**budgets, "rate_limit_burst_seconds": burst}


def _trusted_documents(env: dict[str, str]) -> str:
    mode = (env.get("TRUSTED_DOCUMENTS") or "off").strip().lower()
    if mode not in {"off", "log", "enforce"}:
        raise ConfigError("TRUSTED_DOCUMENTS must be off, log or enforce")
    return mode


def _networks(env: dict[str, str], name: str) -> tuple[str, ...]:
    """Comma-separated addresses or networks (CIDR), each checked here rather than per request."""
    entries = tuple(p.strip() for p in env.get(name, "").split(",") if p.strip())
    for entry in entries:
        try:
            ip_network(entry, strict=False)
        except ValueError:
            raise ConfigError(f"{name}: {entry!r} is not an address or a network") from None
    return entries


def _url(env: dict[str, str], name: str, *, https: bool) -> str | None:
    """An absolute http(s) URL, as written; https only when asked for."""
    value = (env.get(name) or "").strip()
    if not value:
        return None
    parts = urlsplit(value)
    schemes = {"https"} if https else {"http", "https"}
    if parts.scheme not in schemes or not parts.netloc or parts.fragment:
        expected = "an https URL" if https else "an http(s) URL"
        raise ConfigError(f"{name} must be {expected}")
    return value


def _franceconnect(env: dict[str, str], environment: str) -> dict[str, str | None]:
    """All three FRANCECONNECT_* or none (FranceConnect login off), and then FRONTEND_URL."""
    https = environment == "production"
    issuer = _url(env, "FRANCECONNECT_ISSUER", https=https)
    values = {
        # Compared with the provider's own `issuer`, which ends without a slash.
        "franceconnect_issuer": issuer.rstrip("/") if issuer else None,
        "franceconnect_client_id": (env.get("FRANCECONNECT_CLIENT_ID") or "").strip() or None,
        "franceconnect_client_secret": (env.get("FRANCECONNECT_CLIENT_SECRET") or "").strip()
        or None,
    }
    if any(values.values()) and not all(values.values()):
        missing = ", ".join(k.upper() for k, v in values.items() if not v)
        raise ConfigError(f"FranceConnect is half configured: set {missing} too")
    frontend_url = _url(env, "FRONTEND_URL", https=https)
    if issuer and not frontend_url:
        raise ConfigError("FRONTEND_URL must be set with FranceConnect (where its logins land)")
    return {**values, "frontend_url": frontend_url}


def _blob_url(env: dict[str, str]) -> str:
    url = (env.get("BLOB_URL") or "").strip()
    if url:
        try:
            parse_blob_url(url)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return url


def _master_keys(env: dict[str, str]) -> tuple[str | None, tuple[str, ...]]:
    """BLOB_MASTER_KEY and BLOB_OLD_MASTER_KEYS (comma-separated), each checked here."""
    current = (env.get("BLOB_MASTER_KEY") or "").strip() or None
    old = tuple(k.strip() for k in (env.get("BLOB_OLD_MASTER_KEYS") or "").split(",") if k.strip())
    named = [("BLOB_MASTER_KEY", current)] if current else []
    for name, key in named + [("BLOB_OLD_MASTER_KEYS", k) for k in old]:
        try:
            parse_master_key(key)
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}") from None
    return current, old


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
    # Limits on each GraphQL operation (api/extensions/limits.py, api/extensions/cost.py).
    max_query_cost: int = 5000
    max_query_depth: int = 10
    max_aliases: int = 15
    max_tokens: int = 1000
    max_directives: int = 50
    # Persisted documents (api/extensions/persisted.py): off, log or enforce; APQ and its bounds.
    trusted_documents: str = "off"
    apq: bool = True
    apq_max_bytes: int = 16384
    apq_registrations_per_hour: int = 100
    # Compiled plans of documents (api/plans/): leaves read without per-field dispatch.
    compiled_plans: bool = True
    # Document and attachment bytes (models/blobs.py): "" is file://DATA_DIR/blobs.
    blob_url: str = ""
    s3_endpoint_url: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = field(default=None, repr=False)
    s3_region: str | None = None
    # Wraps each blob's data key; derived from SECRET_KEY when not set. Old ones still unwrap
    # (until `espace-sante blobs rewrap`), as does the one derived from SECRET_KEY.
    blob_master_key: str | None = field(default=None, repr=False)
    blob_old_master_keys: tuple[str, ...] = field(default=(), repr=False)
    # The request budget (api/budget.py): token buckets per session and per client address,
    # over requests and over query cost, each holding `rate_limit_burst_seconds` of its rate;
    # 0 switches a budget off.
    rate_limit_requests_per_minute: int = 600
    rate_limit_cost_per_minute: int = 60_000
    rate_limit_address_requests_per_minute: int = 3000
    rate_limit_address_cost_per_minute: int = 300_000
    rate_limit_burst_seconds: int = 10
    # FranceConnect login (api/franceconnect.py): off unless the issuer, client and secret are
    # set; FRONTEND_URL is where the browser lands after it (with ?ticket= or ?error=).
    franceconnect_issuer: str | None = None
    franceconnect_client_id: str | None = None
    franceconnect_client_secret: str | None = field(default=None, repr=False)
    frontend_url: str | None = None

    @property
    def development(self) -> bool:
        return self.environment == "development"

    @property
    def franceconnect_enabled(self) -> bool:
        return bool(
            self.franceconnect_issuer
            and self.franceconnect_client_id
            and self.franceconnect_client_secret
            and self.frontend_url
        )

    @property
    def mailer(self) -> Mailer:
        return Mailer(
            secret_key=self.secret_key,
            public_url=self.public_url,
            mail_from=self.mail_from,
            smtp_url=self.smtp_url,
            outbox_dir=self.outbox_dir,
            log_codes=self.development,
        )

    @property
    def login_policy(self) -> LoginPolicy:
        return LoginPolicy(
            two_factor=self.two_factor, session_ttl=self.session_ttl, mailer=self.mailer
        )

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def blob_location(self) -> str:
        """BLOB_URL, or the default file store under DATA_DIR."""
        return self.blob_url or f"file://{self.blob_dir}"

    def blob_keyring(self) -> Keyring:
        derived = derive_master_key(self.secret_key)
        if self.blob_master_key is None:
            current, retired = derived, []
        else:
            current, retired = parse_master_key(self.blob_master_key), [derived]
        retired += [parse_master_key(k) for k in self.blob_old_master_keys]
        return Keyring(current, retired)

    def blob_store(self, url: str | None = None) -> BlobStore:
        """The encrypted store at `url` (default: `blob_location`); S3_* sign in to s3://.
        Each call makes a store of its own (and, for S3, a client): `aclose` it."""
        s3 = S3Location(
            bucket="-",
            endpoint_url=self.s3_endpoint_url,
            access_key_id=self.s3_access_key_id,
            secret_access_key=self.s3_secret_access_key,
            region=self.s3_region,
        )
        return BlobStore(object_store(url or self.blob_location, s3=s3), self.blob_keyring())

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
        smtp_url = env.get("SMTP_URL", "").strip() or None
        if smtp_url is None and environment == "production":
            # Without it every login and activation code would be written to DATA_DIR/outbox.
            raise ConfigError("SMTP_URL must be set in production (login and activation codes)")
        origins = tuple(o.strip() for o in env.get("ALLOWED_ORIGINS", "").split(",") if o.strip())
        hours = tuple(
            int(h) for h in env.get("APPOINTMENT_REMINDER_HOURS", "48,2").split(",") if h.strip()
        )
        master_key, old_master_keys = _master_keys(env)
        max_query_cost = _limit(env, "MAX_QUERY_COST", cls.max_query_cost)
        budgets = _budgets(env, max_query_cost)
        return cls(
            environment=environment,
            data_dir=data_dir,
            database_url=env.get("DATABASE_URL") or f"sqlite://{data_dir / 'espace-sante.sqlite3'}",
            broadcast_url=env.get("BROADCAST_URL") or "memory://",
            smtp_url=smtp_url,
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
            trusted_proxies=_networks(env, "TRUSTED_PROXIES"),
            max_query_cost=max_query_cost,
            max_query_depth=_limit(env, "MAX_QUERY_DEPTH", cls.max_query_depth),
            max_aliases=_limit(env, "MAX_ALIASES", cls.max_aliases),
            max_tokens=_limit(env, "MAX_TOKENS", cls.max_tokens),
            max_directives=_limit(env, "MAX_DIRECTIVES", cls.max_directives),
            trusted_documents=_trusted_documents(env),
            apq=_bool(env.get("APQ"), True),
            apq_max_bytes=_limit(env, "APQ_MAX_BYTES", cls.apq_max_bytes),
            apq_registrations_per_hour=_limit(
                env, "APQ_REGISTRATIONS_PER_HOUR", cls.apq_registrations_per_hour
            ),
            compiled_plans=_bool(env.get("COMPILED_PLANS"), cls.compiled_plans),
            blob_url=_blob_url(env),
            s3_endpoint_url=(env.get("S3_ENDPOINT_URL") or "").strip() or None,
            s3_access_key_id=env.get("S3_ACCESS_KEY_ID") or None,
            s3_secret_access_key=env.get("S3_SECRET_ACCESS_KEY") or None,
            s3_region=(env.get("S3_REGION") or "").strip() or None,
            blob_master_key=master_key,
            blob_old_master_keys=old_master_keys,
            **_franceconnect(env, environment),
            rate_limit_requests_per_minute=budgets["rate_limit_requests_per_minute"],
            rate_limit_cost_per_minute=budgets["rate_limit_cost_per_minute"],
            rate_limit_address_requests_per_minute=budgets[
                "rate_limit_address_requests_per_minute"
            ],
            rate_limit_address_cost_per_minute=budgets["rate_limit_address_cost_per_minute"],
            rate_limit_burst_seconds=budgets["rate_limit_burst_seconds"],
        )
