from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiosmtpd.controller import Controller
from tortoise import Tortoise

from api.config import Settings
from api.db import tortoise_config
from models.base import utcnow
from models.crypto import DecryptionError, Vault
from models.outbox import (
    REDACTED,
    RETENTION,
    OutboxMessage,
    Status,
    deliver,
    deliver_pending,
    erase_for,
    mark_printed,
    purge_delivered,
    queue_email,
    queue_letter,
    remove_files,
    render,
    reveal,
)
from tests.ports import free_port

CODE = "K7QM-3XZP-R9TW"
BODY = "Bonjour,\n\nVotre code d'activation : {code}\n"
SECRET_KEY = "x" * 40
VAULT = Vault(SECRET_KEY)


class Catcher:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


def text_of(message: Message) -> str:
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


@pytest_asyncio.fixture
async def db(database_url: str) -> AsyncIterator[None]:
    """The suite's database (a SQLite copy, or PostgreSQL with TEST_DATABASE_URL)."""
    await Tortoise.init(config=tortoise_config(database_url))
    try:
        yield
    finally:
        await Tortoise.close_connections()


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def smtp(port: int) -> Iterator[Catcher]:
    catcher = Catcher()
    controller = Controller(catcher, hostname="127.0.0.1", port=port)
    controller.start()
    yield catcher
    controller.stop()


def settings_for(tmp_path: Path, *, port: int | None, environment: str = "test") -> Settings:
    return Settings(
        environment=environment,
        data_dir=tmp_path,
        smtp_url=f"smtp://127.0.0.1:{port}" if port else None,
        secret_key=SECRET_KEY,
    )


async def queue(to: str = "jane@example.org", patient_id: uuid.UUID | None = None) -> OutboxMessage:
    return await queue_email(
        to=to,
        subject="Votre code",
        body=BODY,
        secret=CODE,
        kind="activation_code",
        vault=VAULT,
        patient_id=patient_id,
    )


async def test_the_stored_code_is_encrypted_and_bound_to_its_row(db: None) -> None:
    first, second = await queue("a@example.org"), await queue("b@example.org")

    rows = {row.id: row for row in await OutboxMessage.all()}

    stored = rows[first.id].secret
    assert stored is not None
    assert CODE not in stored
    assert CODE.replace("-", "") not in stored.replace("-", "")
    assert stored != rows[second.id].secret  # a fresh nonce each time
    assert reveal(rows[first.id], VAULT) == CODE
    # Copied onto another row, or read with another key, it does not decrypt.
    rows[second.id].secret = stored
    with pytest.raises(DecryptionError):
        reveal(rows[second.id], VAULT)
    with pytest.raises(DecryptionError):
        reveal(rows[first.id], Vault("y" * 40))


async def test_queued_email_is_delivered_then_redacted(
    db: None, tmp_path: Path, port: int, smtp: Catcher
) -> None:
    message = await queue()

    delivered = await deliver(message.id, settings_for(tmp_path, port=port).mailer)

    assert delivered is True
    [caught] = smtp.messages
    assert caught["To"] == "jane@example.org"
    assert caught["Subject"] == "Votre code"
    assert caught["Message-ID"] == f"<{message.id}@espace-sante.localhost>"
    assert CODE in text_of(caught)
    row = await OutboxMessage.get(id=message.id)
    assert (row.status, row.secret, row.attempts) == (Status.SENT, None, 0)
    assert row.sent_at is not None
    assert render(row, reveal(row, VAULT)) == BODY.replace("{code}", REDACTED)


async def test_smtp_down_keeps_the_code_and_retries_later(
    db: None, tmp_path: Path, port: int
) -> None:
    settings = settings_for(tmp_path, port=port).mailer
    message = await queue()
    before = utcnow()

    assert await deliver(message.id, settings) is False

    row = await OutboxMessage.get(id=message.id)
    assert (row.status, reveal(row, VAULT), row.attempts) == (Status.PENDING, CODE, 1)
    assert row.next_attempt_at > before + timedelta(seconds=50)
    assert row.last_error is not None
    assert row.last_error.startswith("SMTPConnect")
    assert CODE not in row.last_error
    assert row.claimed_until is None
    # Not due yet: nothing is attempted.
    assert await deliver_pending(settings) == 0

    catcher = Catcher()
    controller = Controller(catcher, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        later = utcnow() + timedelta(minutes=2)
        assert await deliver_pending(settings, now=later) == 1
        assert await deliver_pending(settings, now=later + timedelta(hours=2)) == 0
    finally:
        controller.stop()

    assert len(catcher.messages) == 1
    assert CODE in text_of(catcher.messages[0])
    row = await OutboxMessage.get(id=message.id)
    assert (row.status, row.secret, row.attempts) == (Status.SENT, None, 1)


async def test_gives_up_after_twenty_attempts(
    db: None, tmp_path: Path, port: int, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(tmp_path, port=port).mailer
    message = await queue()
    await OutboxMessage.filter(id=message.id).update(attempts=19)

    assert await deliver(message.id, settings) is False

    row = await OutboxMessage.get(id=message.id)
    assert (row.status, row.attempts, reveal(row, VAULT)) == (Status.FAILED, 20, CODE)
    assert any(r.levelno == logging.ERROR for r in caplog.records)
    assert await deliver_pending(settings, now=utcnow() + timedelta(days=1)) == 0


async def test_concurrent_workers_send_each_message_once(
    db: None, tmp_path: Path, port: int, smtp: Catcher
) -> None:
    settings = settings_for(tmp_path, port=port).mailer
    messages = [await queue(f"user{i}@example.org") for i in range(5)]

    counts = await asyncio.gather(deliver_pending(settings), deliver_pending(settings))

    assert sum(counts) == 5
    assert sorted(m["To"] for m in smtp.messages) == sorted(m.recipient for m in messages)


async def test_without_smtp_url_writes_an_eml_file(db: None, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, port=None).mailer
    message = await queue()

    assert await deliver_pending(settings) == 1

    path = settings.outbox_dir / f"{message.id}.eml"
    written = message_from_bytes(path.read_bytes())
    assert written["To"] == "jane@example.org"
    assert CODE in text_of(written)
    assert path.stat().st_mode & 0o777 == 0o600
    assert (await OutboxMessage.get(id=message.id)).secret is None


async def test_code_is_logged_in_development_only(
    db: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="models.outbox")
    await queue()
    await deliver_pending(settings_for(tmp_path, port=None, environment="development").mailer)
    assert "development: code for j***@example.org is " + CODE in caplog.text

    caplog.clear()
    await queue()
    await deliver_pending(settings_for(tmp_path, port=None, environment="production").mailer)
    assert "j***@example.org" in caplog.text
    assert "jane@" not in caplog.text
    assert CODE not in caplog.text


async def test_letter_is_rendered_for_printing_then_marked_printed(
    db: None, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, port=None).mailer
    letter = await queue_letter(
        address="Jeanne Martin\n12 rue des Lilas\n75011 Paris",
        subject="Votre espace santé",
        body=BODY,
        secret=CODE,
        kind="activation_code",
        vault=VAULT,
    )

    assert await deliver_pending(settings) == 1

    path = settings.outbox_dir / "letters" / f"{letter.id}.txt"
    text = path.read_text()
    assert CODE in text
    assert "Jeanne Martin\n12 rue des Lilas\n75011 Paris" in text
    assert "Votre code d'activation : " + CODE in text
    assert "personnel et confidentiel" in text
    row = await OutboxMessage.get(id=letter.id)
    assert (row.status, row.secret) == (Status.SENT, None)
    assert row.sent_at is not None

    assert await mark_printed(letter.id, settings) is True

    assert not path.exists()
    assert (await OutboxMessage.get(id=letter.id)).status == Status.PRINTED
    assert await mark_printed(letter.id, settings) is False


async def test_delivered_messages_go_after_the_retention_but_not_unprinted_letters(
    db: None, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, port=None).mailer
    sent, pending = await queue("sent@example.org"), await queue("later@example.org")
    letter = await queue_letter(
        address="Jeanne Martin\n75011 Paris",
        subject="Votre espace santé",
        body=BODY,
        secret=CODE,
        kind="activation_code",
        vault=VAULT,
    )
    now = utcnow()
    assert await deliver(sent.id, settings, now=now) is True
    assert await deliver(letter.id, settings, now=now) is True
    eml = settings.outbox_dir / f"{sent.id}.eml"
    letter_file = settings.outbox_dir / "letters" / f"{letter.id}.txt"
    assert eml.exists() and letter_file.exists()
    await OutboxMessage.filter(id=pending.id).update(next_attempt_at=now + timedelta(days=60))

    assert await purge_delivered(settings, now + RETENTION - timedelta(minutes=1)) == 0
    assert await purge_delivered(settings, now + RETENTION + timedelta(minutes=1)) == 1

    assert {m.id for m in await OutboxMessage.all()} == {pending.id, letter.id}
    assert not eml.exists()
    assert letter_file.exists()  # not printed yet: still needed
    assert await mark_printed(letter.id, settings) is True
    assert await purge_delivered(settings, now + RETENTION + timedelta(minutes=1)) == 1
    assert {m.id for m in await OutboxMessage.all()} == {pending.id}


async def test_erasing_a_space_removes_its_messages_and_their_files(
    db: None, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, port=None).mailer
    mine, other = uuid.uuid4(), uuid.uuid4()
    kept = await queue("other@example.org", patient_id=other)
    gone = [await queue("me@example.org", patient_id=mine) for _ in range(2)]
    assert await deliver_pending(settings) == 3

    ids = await erase_for(mine)
    await remove_files(settings, ids)

    assert sorted(ids) == sorted(str(m.id) for m in gone)
    assert [m.id for m in await OutboxMessage.all()] == [kept.id]
    assert sorted(p.name for p in settings.outbox_dir.glob("*.eml")) == [f"{kept.id}.eml"]
