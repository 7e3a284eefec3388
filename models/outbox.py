"""A durable outbox for e-mails and postal letters that carry confidential codes.

Callers queue a message inside their own transaction, so it is stored before their mutation
returns; a worker delivers it later and retries with backoff. The code stays in the row,
encrypted (a database dump alone does not reveal a pending code), until delivery succeeds;
then it is wiped and the body only renders redacted.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import functools
import logging
import os
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo

import aiosmtplib
from tortoise import fields
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import Q

from models.base import Entity, utcnow
from models.crypto import Vault

MODEL_MODULE = "models.outbox"

PLACEHOLDER = "{code}"
REDACTED = "••••••"
MAX_ATTEMPTS = 20
SMTP_TIMEOUT = 10.0
# Longer than a whole SMTP exchange at SMTP_TIMEOUT per step, so a live claim is never
# taken over; a crashed worker's claim lapses and the message is retried.
CLAIM_LEASE = timedelta(minutes=5)
# Delivered messages keep a name and an address: they go once nobody needs them.
RETENTION = timedelta(days=30)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Mailer:
    """How messages leave: plain values the edge takes from its mailer."""

    secret_key: str
    public_url: str
    mail_from: str
    smtp_url: str | None
    outbox_dir: Path
    # Development only: a delivered code also appears in the log.
    log_codes: bool = False


class Channel(enum.StrEnum):
    EMAIL = "EMAIL"
    POST = "POST"


class Status(enum.StrEnum):
    PENDING = "PENDING"
    SENT = "SENT"
    PRINTED = "PRINTED"
    FAILED = "FAILED"


class OutboxMessage(Entity):
    channel = fields.CharEnumField(Channel, max_length=8)
    recipient = fields.TextField()
    subject = fields.CharField(max_length=255)
    body = fields.TextField()
    # The code, encrypted for this row (see `seal`); wiped once delivered.
    # TextField has no nullable overload; TextField subclasses str, so this type-checks.
    secret: str | None = fields.TextField(null=True)
    kind = fields.CharField(max_length=40)
    # The space it is about (activation codes), so an opposition erases it with the rest.
    patient_id = fields.UUIDField(null=True, db_index=True)
    status = fields.CharEnumField(Status, max_length=8, default=Status.PENDING)
    attempts = fields.IntField(default=0)
    next_attempt_at = fields.DatetimeField(default=utcnow)
    claimed_until = fields.DatetimeField(null=True)
    last_error: str | None = fields.TextField(null=True)
    sent_at = fields.DatetimeField(null=True)

    class Meta:
        table = "outbox_message"
        indexes = (("status", "next_attempt_at"),)


def render(message: OutboxMessage, code: str | None) -> str:
    """The body with the code while it is undelivered, with a redaction afterwards."""
    return message.body.replace(PLACEHOLDER, code or REDACTED)


def _context(message_id: uuid.UUID) -> str:
    return f"outbox.secret:{message_id}"


def seal(vault: Vault, message_id: uuid.UUID, code: str) -> str:
    """The code as stored in the row: encrypted, and bound to that row."""
    return base64.b64encode(vault.encrypt(code, context=_context(message_id))).decode()


def reveal(message: OutboxMessage, vault: Vault) -> str | None:
    """The code of an undelivered message; None once delivered (or for a message without)."""
    if not message.secret:
        return None
    return vault.decrypt(base64.b64decode(message.secret), context=_context(message.id))


@functools.lru_cache(maxsize=4)
def _vault(secret_key: str) -> Vault:
    return Vault(secret_key)


async def queue_email(
    *,
    to: str,
    subject: str,
    body: str,
    secret: str | None,
    kind: str,
    vault: Vault,
    patient_id: uuid.UUID | None = None,
    using_db: BaseDBAsyncClient | None = None,
) -> OutboxMessage:
    return await _queue(Channel.EMAIL, to, subject, body, secret, kind, vault, patient_id, using_db)


async def queue_letter(
    *,
    address: str,
    subject: str,
    body: str,
    secret: str | None,
    kind: str,
    vault: Vault,
    patient_id: uuid.UUID | None = None,
    using_db: BaseDBAsyncClient | None = None,
) -> OutboxMessage:
    return await _queue(
        Channel.POST, address, subject, body, secret, kind, vault, patient_id, using_db
    )


async def _queue(
    channel: Channel,
    recipient: str,
    subject: str,
    body: str,
    secret: str | None,
    kind: str,
    vault: Vault,
    patient_id: uuid.UUID | None,
    using_db: BaseDBAsyncClient | None,
) -> OutboxMessage:
    message_id = uuid.uuid4()
    return await OutboxMessage.create(
        using_db=using_db,
        id=message_id,
        channel=channel,
        recipient=recipient,
        subject=subject,
        body=body,
        secret=seal(vault, message_id, secret) if secret else None,
        kind=kind,
        patient_id=patient_id,
    )


async def deliver_pending(mailer: Mailer, *, now: datetime | None = None, limit: int = 100) -> int:
    """Deliver the due PENDING messages; returns how many this call delivered."""
    now = now or utcnow()
    rows = await (
        OutboxMessage.filter(_due(now)).order_by("next_attempt_at").limit(limit).values("id")
    )
    delivered = 0
    for row in rows:
        if await deliver(row["id"], mailer, now=now):
            delivered += 1
    return delivered


async def deliver(
    message_id: uuid.UUID | str, mailer: Mailer, *, now: datetime | None = None
) -> bool:
    """Deliver one message if it is due and no other worker holds it; True once delivered."""
    now = now or utcnow()
    claimed = await OutboxMessage.filter(_due(now), id=message_id).update(
        claimed_until=now + CLAIM_LEASE
    )
    if claimed != 1:
        return False
    message = await OutboxMessage.get(id=message_id)
    code: str | None = None
    try:
        code = reveal(message, _vault(mailer.secret_key))
        if message.channel is Channel.EMAIL:
            await _send_email(message, code, mailer, now)
        else:
            await asyncio.to_thread(
                _write_private,
                _letter_path(mailer, message.id),
                render_letter(message, code, mailer, now).encode(),
            )
    except Exception as exc:
        await _record_failure(message, code, exc, mailer, now)
        return False
    await OutboxMessage.filter(id=message.id, status=Status.PENDING).update(
        status=Status.SENT, sent_at=now, secret=None, claimed_until=None
    )
    _log_delivery(message, code, mailer)
    return True


async def mark_printed(message_id: uuid.UUID | str, mailer: Mailer) -> bool:
    """The operator printed and posted the letter: its file, the last copy of the code, goes."""
    updated = await OutboxMessage.filter(
        id=message_id, channel=Channel.POST, status=Status.SENT
    ).update(status=Status.PRINTED)
    if updated != 1:
        return False
    await asyncio.to_thread(_letter_path(mailer, message_id).unlink, missing_ok=True)
    return True


async def erase_for(
    patient_id: uuid.UUID, *, using_db: BaseDBAsyncClient | None = None
) -> list[str]:
    """Delete every message about a space (after an opposition, nothing of theirs is kept);
    returns their ids, whose files `remove_files` deletes once the transaction commits."""
    ids = (
        await OutboxMessage.filter(patient_id=patient_id)
        .using_db(using_db)
        .values_list("id", flat=True)
    )
    if ids:
        await OutboxMessage.filter(id__in=ids).using_db(using_db).delete()
    return [str(i) for i in ids]


async def remove_files(mailer: Mailer, ids: list[str]) -> None:
    """The e-mail copies (without SMTP_URL) and letters of these messages."""
    if ids:
        await asyncio.to_thread(_remove_files, mailer, ids)


async def purge_delivered(mailer: Mailer, now: datetime) -> int:
    """Delete the messages queued more than RETENTION ago and done with (delivered, printed
    or given up), and their files. A letter sent for printing stays until it is marked
    printed: its file is what the operator prints."""
    done = Q(status__in=[Status.PRINTED, Status.FAILED]) | Q(
        status=Status.SENT, channel=Channel.EMAIL
    )
    ids = await OutboxMessage.filter(done, created_at__lt=now - RETENTION).values_list(
        "id", flat=True
    )
    if ids:
        await OutboxMessage.filter(id__in=ids).delete()
        await remove_files(mailer, [str(i) for i in ids])
    return len(ids)


def _remove_files(mailer: Mailer, ids: list[str]) -> None:
    for message_id in ids:
        (mailer.outbox_dir / f"{message_id}.eml").unlink(missing_ok=True)
        _letter_path(mailer, message_id).unlink(missing_ok=True)


def render_letter(message: OutboxMessage, code: str | None, mailer: Mailer, now: datetime) -> str:
    """The letter to print: the sender, the address, the date, then the message itself,
    which says what to do and by when."""
    address = "\n".join(line.strip() for line in message.recipient.strip().splitlines())
    return (
        f"Mon espace santé\n{mailer.public_url}\n\n"
        f"{address}\n\n"
        f"Le {_french_date(now)}\n\n"
        f"Objet : {message.subject}\n\n"
        f"{render(message, code).strip()}\n\n"
        "Ce code est personnel et confidentiel : ne le communiquez à personne. Aucun agent "
        "ne vous le demandera.\n"
        f"\nRéférence : {message.id}\n"
    )


def mask_recipient(recipient: str) -> str:
    """'jane@example.org' -> 'j***@example.org'; a postal address keeps one letter."""
    local, at, domain = recipient.strip().rpartition("@")
    if at and local:
        return f"{local[0]}***@{domain}"
    first = recipient.strip()[:1]
    return f"{first}***"


@dataclass(frozen=True)
class _SmtpTarget:
    hostname: str
    port: int
    use_tls: bool
    start_tls: bool | None
    username: str | None
    password: str | None


_SCHEMES = {
    "smtp": (25, False, None),
    "smtp+starttls": (587, False, True),
    "smtps": (465, True, False),
}


def _parse_smtp_url(url: str) -> _SmtpTarget:
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES:
        raise ValueError("SMTP_URL must start with smtp://, smtp+starttls:// or smtps://")
    default_port, use_tls, start_tls = _SCHEMES[parts.scheme]
    return _SmtpTarget(
        hostname=parts.hostname or "localhost",
        port=parts.port or default_port,
        use_tls=use_tls,
        start_tls=start_tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def _due(now: datetime) -> Q:
    return Q(status=Status.PENDING, next_attempt_at__lte=now) & (
        Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)
    )


def _build_email(
    message: OutboxMessage, code: str | None, mailer: Mailer, now: datetime
) -> EmailMessage:
    domain = parseaddr(mailer.mail_from)[1].rpartition("@")[2] or "localhost"
    email = EmailMessage()
    email["From"] = mailer.mail_from
    email["To"] = message.recipient
    email["Subject"] = message.subject
    email["Date"] = format_datetime(now)
    # Derived from the row, so a retried message is recognisable as the same one.
    email["Message-ID"] = f"<{message.id}@{domain}>"
    email.set_content(render(message, code))
    return email


async def _send_email(
    message: OutboxMessage, code: str | None, mailer: Mailer, now: datetime
) -> None:
    email = _build_email(message, code, mailer, now)
    if mailer.smtp_url is None:
        path = mailer.outbox_dir / f"{message.id}.eml"
        await asyncio.to_thread(_write_private, path, email.as_bytes())
        return
    target = _parse_smtp_url(mailer.smtp_url)
    await aiosmtplib.send(
        email,
        hostname=target.hostname,
        port=target.port,
        username=target.username,
        password=target.password,
        use_tls=target.use_tls,
        start_tls=target.start_tls,
        timeout=SMTP_TIMEOUT,
    )


async def _record_failure(
    message: OutboxMessage, code: str | None, exc: Exception, mailer: Mailer, now: datetime
) -> None:
    attempts = message.attempts + 1
    error = _describe(exc, code, mailer)
    status = Status.FAILED if attempts >= MAX_ATTEMPTS else Status.PENDING
    delay = timedelta(seconds=min(3600, 30 * 2**attempts))
    await OutboxMessage.filter(id=message.id, status=Status.PENDING).update(
        attempts=attempts,
        next_attempt_at=now + delay,
        last_error=error,
        status=status,
        claimed_until=None,
    )
    masked = mask_recipient(message.recipient)
    if status is Status.FAILED:
        logger.error(
            "outbox: %s to %s (%s) failed for good after %d attempts: %s",
            message.channel.value,
            masked,
            message.id,
            attempts,
            error,
        )
    else:
        logger.warning(
            "outbox: %s to %s (%s) failed, attempt %d, retry in %ds: %s",
            message.channel.value,
            masked,
            message.id,
            attempts,
            delay.total_seconds(),
            error,
        )


def _describe(exc: Exception, code: str | None, mailer: Mailer) -> str:
    """The error class and a short message, with nothing secret left in it."""
    text = str(exc)
    secrets: list[str | None] = [code]
    if mailer.smtp_url:
        secrets.append(_password_of(mailer.smtp_url))
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    text = " ".join(text.split())[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _password_of(url: str) -> str | None:
    try:
        return _parse_smtp_url(url).password
    except ValueError:
        return None


def _log_delivery(message: OutboxMessage, code: str | None, mailer: Mailer) -> None:
    masked = mask_recipient(message.recipient)
    verb = "e-mail sent" if message.channel is Channel.EMAIL else "letter queued for printing"
    logger.info("outbox: %s to %s, kind %s, id %s", verb, masked, message.kind, message.id)
    if mailer.log_codes and code:
        logger.info("development: code for %s is %s", masked, code)


def _letter_path(mailer: Mailer, message_id: uuid.UUID | str) -> Path:
    return mailer.outbox_dir / "letters" / f"{message_id}.txt"


def _write_private(path: Path, data: bytes) -> None:
    """Write atomically, readable by the service account only: the file holds a code."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


_MONTHS = (
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
)


def _french_date(moment: datetime) -> str:
    moment = moment.astimezone(ZoneInfo("Europe/Paris"))
    day = "1er" if moment.day == 1 else str(moment.day)
    return f"{day} {_MONTHS[moment.month - 1]} {moment.year}"
