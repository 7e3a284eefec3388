"""`authenticate`'s statement run on SQLite's thread (models/session.py) gives the actor
the ORM's own path (`execute_query_dict`) gives, on every database."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from tortoise.backends.sqlite.client import SqliteClient

from models.access import Actor
from models.account import Account
from models.base import utcnow
from models.crypto import token_hash
from models.errors import Unauthenticated
from models.patient import Patient, SpaceStatus
from models.session import Session, authenticate, logout, open_session
from tests.factories import make_operator, make_patient, make_professional

pytestmark = pytest.mark.usefixtures("client")  # the application started: the database open


async def _both(token: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    """What `authenticate` answers (an Actor, or the error's message), on this database's
    path and on `execute_query_dict`'s."""

    async def answer() -> Any:
        try:
            return await authenticate(token)
        except Unauthenticated as error:
            return str(error)

    fast = await answer()
    with monkeypatch.context() as patch:
        # No client is a SqliteClient any more: `select_rows` takes the ORM's path.
        patch.setattr("models.sqlite_thread.SqliteClient", type("Nothing", (), {}))
        slow = await answer()
    return fast, slow


async def test_every_role_authenticates_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    patient = await make_patient()
    professional = await make_professional()
    operator = await make_operator()
    for token in (patient.token, professional.token, operator.token):
        assert token is not None
        fast, slow = await _both(token, monkeypatch)
        assert isinstance(fast, Actor)
        assert fast == slow


async def test_ended_sessions_and_unknown_tokens_are_refused_alike(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    patient = await make_patient()
    assert patient.token is not None
    account = await Account.get(patient_id=patient.patient.id)
    expired = await open_session(account, ttl=timedelta(seconds=-1), now=utcnow())
    revoked = await open_session(account, ttl=timedelta(hours=1), now=utcnow())
    assert expired.token is not None and revoked.token is not None
    row = await Session.get(token_hash=token_hash(revoked.token))
    await logout(row.id, now=utcnow())
    closing = await make_patient("Bea", status=SpaceStatus.OPPOSED)
    for token in (expired.token, revoked.token, "no-such-token", closing.token):
        assert token is not None
        fast, slow = await _both(token, monkeypatch)
        assert fast == slow == "The session is invalid or has expired."


async def test_the_sqlite_path_is_the_one_taken_on_sqlite() -> None:
    if not isinstance(Session._meta.db, SqliteClient):
        pytest.skip("SQLite only")
    patient = await make_patient()
    assert patient.token is not None
    actor = await authenticate(patient.token)
    assert actor.patient_id == patient.patient.id
    assert actor.patient_status is SpaceStatus.ACTIVE


async def test_a_shared_actor_follows_its_row(monkeypatch: pytest.MonkeyPatch) -> None:
    # given a patient's session, authenticated twice: one actor, built once
    patient = await make_patient()
    assert patient.token is not None
    first = await authenticate(patient.token)
    assert await authenticate(patient.token) is first
    # when the space's status changes, then the next request reads it, not the shared actor
    await Patient.filter(id=patient.patient.id).update(status=SpaceStatus.CLOSED)
    closed = await authenticate(patient.token)
    assert closed.patient_status is SpaceStatus.CLOSED
    await Patient.filter(id=patient.patient.id).update(status=SpaceStatus.OPPOSED)
    fast, slow = await _both(patient.token, monkeypatch)
    assert fast == slow == "The session is invalid or has expired."
