"""The purge of ended login sessions and used or expired login challenges (run-jobs)."""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

import httpx
import pytest

from api.config import Settings
from api.jobs import run_jobs
from models import session as sessions
from models.account import Account
from models.base import utcnow
from models.crypto import code_hash, token_hash
from models.franceconnect import ProviderSession
from models.session import ENDED_KEPT, LoginChallenge, Session, open_session
from tests.factories import make_patient, vault
from tests.graphql import gql
from tests.lifecycle_support import VIEWER, cheap_dummy_hash, only_error  # noqa: F401

pytestmark = pytest.mark.usefixtures("client")  # the application started: the database open


async def _account() -> Account:
    person = await make_patient(login=False)
    return await Account.get(patient_id=person.patient.id)


async def _session(
    account: Account, *, opened: datetime, ttl: timedelta, revoked: datetime | None = None
) -> tuple[str, UUID]:
    """A session opened at `opened` for `ttl`, revoked at `revoked` if given: its token, id."""
    result = await open_session(account, ttl=ttl, now=opened)
    assert result.token is not None
    row = await Session.get(token_hash=token_hash(result.token))
    if revoked is not None:
        await sessions.logout(row.id, now=revoked)
    return result.token, row.id


async def _challenge(account: Account, *, expires: datetime, used: datetime | None = None) -> UUID:
    row = await LoginChallenge.create(
        account_id=account.id,
        code_hash=code_hash(vault, "123456"),
        expires_at=expires,
        used_at=used,
    )
    return row.id


async def _left(model: type[Session] | type[LoginChallenge]) -> set[UUID]:
    return set(await model.all().values_list("id", flat=True))  # type: ignore[arg-type]


async def test_sessions_ended_more_than_a_day_ago_go_and_the_others_stay() -> None:
    # given sessions live, ended less than a day ago, and ended more than a day ago
    now = utcnow()
    account = await _account()
    day, hour = timedelta(days=1), timedelta(hours=1)
    assert day == ENDED_KEPT
    _, live = await _session(account, opened=now - hour, ttl=8 * hour)
    _, expired_lately = await _session(account, opened=now - day, ttl=hour)
    _, revoked_lately = await _session(account, opened=now - day, ttl=30 * day, revoked=now - hour)
    _, expired_long_ago = await _session(account, opened=now - 2 * day, ttl=hour)
    _, revoked_long_ago = await _session(
        account, opened=now - 3 * day, ttl=30 * day, revoked=now - day - hour
    )
    # a FranceConnect session's ID token, on an ended session and on a live one
    await ProviderSession.create(session_id=expired_long_ago, id_token=b"sealed")
    await ProviderSession.create(session_id=live, id_token=b"sealed")

    # when the purge runs
    purged = await sessions.purge_ended_sessions(now)

    # then the two ended more than a day ago are gone, with the ID token of one
    assert purged == 2
    assert await _left(Session) == {live, expired_lately, revoked_lately}
    assert {expired_long_ago, revoked_long_ago}.isdisjoint(await _left(Session))
    assert await ProviderSession.all().values_list("session_id", flat=True) == [live]
    # and a second run finds nothing
    assert await sessions.purge_ended_sessions(now) == 0


async def test_challenges_expired_more_than_a_day_ago_go_and_pending_ones_stay() -> None:
    # given challenges pending, expired lately, used lately, expired or used long ago
    now = utcnow()
    account = await _account()
    day, minute = timedelta(days=1), timedelta(minutes=1)
    pending = await _challenge(account, expires=now + 9 * minute)
    expired_lately = await _challenge(account, expires=now - 2 * minute)
    used_lately = await _challenge(account, expires=now + 5 * minute, used=now - 5 * minute)
    expired_long_ago = await _challenge(account, expires=now - day - minute)
    used_long_ago = await _challenge(
        account, expires=now - day - minute, used=now - day - 5 * minute
    )

    # when the purge runs
    purged = await sessions.purge_ended_challenges(now)

    # then the two ended more than a day ago are gone
    assert purged == 2
    assert await _left(LoginChallenge) == {pending, expired_lately, used_lately}
    assert {expired_long_ago, used_long_ago}.isdisjoint(await _left(LoginChallenge))


async def test_a_backlog_larger_than_a_batch_is_purged_in_one_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given seven sessions and seven challenges ended long ago, one live of each
    now = utcnow()
    account = await _account()
    for _ in range(7):
        await _session(account, opened=now - timedelta(days=3), ttl=timedelta(hours=1))
        await _challenge(account, expires=now - timedelta(days=3))
    _, live = await _session(account, opened=now, ttl=timedelta(hours=1))
    pending = await _challenge(account, expires=now + timedelta(minutes=5))
    monkeypatch.setattr(sessions, "PURGE_BATCH", 3)

    # when the purges run, in batches of three
    purged = (
        await sessions.purge_ended_sessions(now),
        await sessions.purge_ended_challenges(now),
    )

    # then all of the backlog went, and only it
    assert purged == (7, 7)
    assert await _left(Session) == {live}
    assert await _left(LoginChallenge) == {pending}


async def test_run_jobs_reports_the_purges_and_a_live_token_still_works(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    # given a live session, and one that expired two days ago (with its challenge)
    now = utcnow()
    account = await _account()
    live, _ = await _session(account, opened=now, ttl=timedelta(hours=8))
    ended, _ = await _session(account, opened=now - timedelta(days=2), ttl=timedelta(hours=8))
    await _challenge(account, expires=now - timedelta(days=2))
    await _challenge(account, expires=now + timedelta(minutes=5))
    refused = only_error(await gql(client, VIEWER, token=ended))
    assert refused["extensions"]["code"] == "UNAUTHENTICATED"

    # when the jobs run
    report = await run_jobs(settings, now=now)
    again = await run_jobs(settings, now=now)

    # then each purge counts its rows, once
    assert (report["sessions_purged"], report["login_challenges_purged"]) == (1, 1)
    assert (again["sessions_purged"], again["login_challenges_purged"]) == (0, 0)
    assert -1 not in report.values()
    # and the purged token still cannot authenticate, while the live one can
    refused = only_error(await gql(client, VIEWER, token=ended))
    assert refused["extensions"]["code"] == "UNAUTHENTICATED"
    viewer = (await gql(client, VIEWER, token=live)).ok()["viewer"]
    assert viewer["status"] == "ACTIVE"
