"""login, verifyLogin (two-factor) and logout through HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import timedelta

import httpx
import pytest

from api.app import create_app
from api.config import Settings
from models.session import CODE_FAILED, LOGIN_FAILED, LoginChallenge, Session
from tests.conftest import CaughtMail
from tests.factories import PASSWORD, Staff, make_operator, make_patient, make_professional
from tests.graphql import GraphQLResult, gql
from tests.lifecycle_support import (
    VERIFY_LOGIN,
    cheap_dummy_hash,  # noqa: F401  (autouse)
    db_snapshot,
    login,
    login_code_from,
    only_error,
    without_location,
)

REFUSED = {"message": LOGIN_FAILED, "extensions": {"code": "UNAUTHENTICATED"}}
CODE_REFUSED = {"message": CODE_FAILED, "extensions": {"code": "UNAUTHENTICATED"}}


@pytest.fixture
async def client_2fa(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(replace(settings, two_factor=True))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.9", 4242))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


async def _verify(client: httpx.AsyncClient, challenge_id: str, code: str) -> GraphQLResult:
    return await gql(client, VERIFY_LOGIN, {"input": {"challengeId": challenge_id, "code": code}})


def _rate_limited(result: GraphQLResult) -> int:
    error = only_error(result)
    assert error["extensions"]["code"] == "RATE_LIMITED"
    assert set(error["extensions"]) == {"code", "retryAfter"}
    retry_after = error["extensions"]["retryAfter"]
    assert isinstance(retry_after, int)
    return retry_after


async def test_login_without_two_factor_answers_a_token(client: httpx.AsyncClient) -> None:
    alice = await make_patient()
    assert alice.email

    result = await login(client, alice.email.upper() + " ", PASSWORD)

    payload = result.ok()["login"]
    assert payload["challenge"] is None
    assert payload["viewer"] == {"__typename": "Patient", "id": alice.id, "firstName": "Alice"}
    viewer = await gql(client, "{ viewer { ... on Patient { id } } }", token=payload["token"])
    assert viewer.ok() == {"viewer": {"id": alice.id}}


@pytest.mark.parametrize(
    ("maker", "typename"), [(make_professional, "Professional"), (make_operator, "Operator")]
)
async def test_staff_log_in_too(
    client: httpx.AsyncClient, maker: Callable[[], Awaitable[Staff]], typename: str
) -> None:
    staff = await maker()

    result = await login(client, staff.email, PASSWORD)

    assert result.ok()["login"]["viewer"] == {"__typename": typename}


async def test_unknown_e_mail_and_wrong_password_answer_alike(client: httpx.AsyncClient) -> None:
    # given an account
    alice = await make_patient()
    assert alice.email
    before = await db_snapshot()

    # when one tries an unknown e-mail, and the other a wrong password
    unknown = await login(client, "nobody@example.org", PASSWORD)
    wrong = await login(client, alice.email, "not-the-password")

    # then both get the same UNAUTHENTICATED answer, and no session is opened
    assert without_location(only_error(unknown)) == REFUSED
    assert without_location(only_error(wrong)) == REFUSED
    assert unknown.response.status_code == wrong.response.status_code
    assert await db_snapshot() == before


async def test_five_failures_for_one_e_mail_rate_limit_it(client: httpx.AsyncClient) -> None:
    # given five wrong passwords for one e-mail
    alice = await make_patient()
    assert alice.email
    for _ in range(5):
        assert without_location(only_error(await login(client, alice.email, "nope"))) == REFUSED
    before = await db_snapshot()

    # when the right password comes next
    result = await login(client, alice.email, PASSWORD)

    # then it is RATE_LIMITED for up to 15 minutes, and nothing is opened
    assert 1 <= _rate_limited(result) <= 15 * 60 + 1
    assert await db_snapshot() == before
    # and another account is not affected
    bob = await make_patient("Bob")
    assert bob.email
    assert (await login(client, bob.email, PASSWORD)).ok()["login"]["token"]


async def test_twenty_failures_from_one_address_rate_limit_it(client: httpx.AsyncClient) -> None:
    # given twenty failures from one client address, on twenty different e-mails
    alice = await make_patient()
    assert alice.email
    for n in range(20):
        result = await login(client, f"someone{n}@example.org", "nope")
        assert without_location(only_error(result)) == REFUSED
    before = await db_snapshot()

    # when a valid login comes from that address
    result = await login(client, alice.email, PASSWORD)

    # then it is RATE_LIMITED
    assert 1 <= _rate_limited(result) <= 15 * 60 + 1
    assert await db_snapshot() == before


async def test_two_factor_login_with_the_mailed_code(
    client_2fa: httpx.AsyncClient, mailbox: CaughtMail
) -> None:
    # given a login that passed the password step
    alice = await make_patient()
    assert alice.email
    first = (await login(client_2fa, alice.email, PASSWORD)).ok()["login"]
    assert (first["token"], first["expiresAt"], first["viewer"]) == (None, None, None)
    code = login_code_from(mailbox, alice.email)
    assert len(code) == 6

    # when the mailed code is given
    result = await _verify(client_2fa, first["challenge"]["id"], code)

    # then a session opens, and the code cannot be used again
    payload = result.ok()["verifyLogin"]
    assert payload["viewer"] == {"__typename": "Patient", "id": alice.id, "firstName": "Alice"}
    assert payload["challenge"] is None
    viewer = await gql(client_2fa, "{ viewer { ... on Patient { id } } }", token=payload["token"])
    assert viewer.ok() == {"viewer": {"id": alice.id}}
    before = await db_snapshot()
    replay = await _verify(client_2fa, first["challenge"]["id"], code)
    assert without_location(only_error(replay)) == CODE_REFUSED
    assert await db_snapshot() == before


async def test_two_factor_wrong_expired_and_unknown_challenges_answer_alike(
    client_2fa: httpx.AsyncClient, mailbox: CaughtMail
) -> None:
    # given two pending challenges, one of them past its 10 minutes
    alice = await make_patient()
    assert alice.email
    fresh = (await login(client_2fa, alice.email, PASSWORD)).ok()["login"]["challenge"]
    fresh_code = login_code_from(mailbox, alice.email)
    stale = (await login(client_2fa, alice.email, PASSWORD)).ok()["login"]["challenge"]
    stale_code = login_code_from(mailbox, alice.email)
    challenges = await LoginChallenge.all().order_by("created_at")
    stale_row = challenges[-1]
    stale_row.expires_at = stale_row.created_at - timedelta(seconds=1)
    await stale_row.save(update_fields=["expires_at"])
    wrong = "000000" if fresh_code != "000000" else "111111"
    before = await db_snapshot()

    # when a wrong code, an expired challenge and an unknown challenge are tried
    results = [
        await _verify(client_2fa, fresh["id"], wrong),
        await _verify(client_2fa, stale["id"], stale_code),
        await _verify(client_2fa, "TG9naW5DaGFsbGVuZ2U6MA", fresh_code),
    ]

    # then all get the same UNAUTHENTICATED answer and no session opens
    assert [without_location(only_error(r)) for r in results] == [CODE_REFUSED] * 3
    after = await db_snapshot()
    assert after["sessions"] == before["sessions"]
    # and the right code still works on the fresh challenge
    assert (await _verify(client_2fa, fresh["id"], fresh_code)).ok()["verifyLogin"]["token"]


async def test_logout_revokes_the_token(client: httpx.AsyncClient) -> None:
    alice = await make_patient()

    result = await gql(client, "mutation { logout }", token=alice.token)

    assert result.ok() == {"logout": True}
    assert (await gql(client, "{ viewer { __typename } }", token=alice.token)).codes == [
        "UNAUTHENTICATED"
    ]
    assert await Session.filter(revoked_at__isnull=True).count() == 0


async def test_logout_needs_a_session(client: httpx.AsyncClient) -> None:
    result = await gql(client, "mutation { logout }")

    assert only_error(result)["extensions"] == {"code": "UNAUTHENTICATED"}
