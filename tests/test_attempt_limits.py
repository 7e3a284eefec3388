"""Attempt limits hold under concurrency: a burst of wrong passwords or codes sent at once is
evaluated at most up to the limit; password re-entry is limited like a login and never tells a
right password from a wrong one before the state allows the operation; re-activating an
account ends its sessions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher

import models.lifecycle
import models.passwords
import models.session
from api.app import create_app
from api.config import Settings
from models.lifecycle import GENERIC_CODE_ERROR
from models.patient import Patient
from models.session import CODE_FAILED, LOGIN_FAILED, LoginChallenge, Session
from tests.conftest import CaughtMail
from tests.factories import PASSWORD, make_operator, make_patient
from tests.graphql import GraphQLResult, gql
from tests.lifecycle_support import (
    CLOSE,
    OPPOSE,
    REISSUE,
    REQUEST_DELETION,
    STRONG_PASSWORD,
    VERIFY_LOGIN,
    activate,
    activation_code_from,
    cheap_dummy_hash,  # noqa: F401  (autouse)
    db_snapshot,
    enroll,
    enrolment,
    login,
    login_code_from,
    only_error,
    without_location,
)

BURST = 30
LOGIN_REFUSED = {"message": LOGIN_FAILED, "extensions": {"code": "UNAUTHENTICATED"}}
CODE_REFUSED = {"message": CODE_FAILED, "extensions": {"code": "UNAUTHENTICATED"}}
GENERIC = {"message": GENERIC_CODE_ERROR, "extensions": {"code": "BAD_USER_INPUT"}}
WRONG_PASSWORD = {
    "message": "The password is incorrect.",
    "extensions": {"code": "BAD_USER_INPUT", "field": "password"},
}
WRONG_CODE = "2345-6789-AB"


class _CountingHasher(PasswordHasher):
    """The tests' cheap argon2 hasher, counting the verifications that really ran."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=64, parallelism=1)
        self.verified = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        self.verified += 1  # under the GIL: the workers' increments are not lost
        return super().verify(hash, password)


@pytest.fixture
def hasher(monkeypatch: pytest.MonkeyPatch) -> _CountingHasher:
    counting = _CountingHasher()
    monkeypatch.setattr(models.passwords, "_hasher", counting)
    return counting


def _count_calls(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[None]:
    """Wrap `module.name`; the returned list grows by one at each call."""
    calls: list[None] = []
    original: Callable[..., Any] = getattr(module, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(None)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


@pytest.fixture
async def client_2fa(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(replace(settings, two_factor=True))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.9", 4242))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


def _answers(results: list[GraphQLResult]) -> dict[str, int]:
    """How many answers of each kind a burst got (retryAfter values aside)."""
    counted: dict[str, int] = {}
    for result in results:
        error = without_location(only_error(result))
        kind = "RATE_LIMITED" if error["extensions"]["code"] == "RATE_LIMITED" else str(error)
        counted[kind] = counted.get(kind, 0) + 1
    return counted


def _rate_limited(result: GraphQLResult) -> None:
    error = only_error(result)
    assert set(error["extensions"]) == {"code", "retryAfter"}
    assert error["extensions"]["code"] == "RATE_LIMITED"
    assert error["extensions"]["retryAfter"] >= 1


async def _pending(
    client: httpx.AsyncClient, mailbox: CaughtMail
) -> tuple[dict[str, Any], dict[str, Any], str, str]:
    """An enrolled adult: (enrolment input, patient, code, operator token)."""
    operator = await make_operator()
    data = enrolment()
    patient = await enroll(client, operator.token, data)
    return data, patient, activation_code_from(mailbox, data["email"]), operator.token


def _proof(data: dict[str, Any], code: str) -> dict[str, Any]:
    return {"code": code, "nir": data["nir"], "birthDate": data["birthDate"]}


# --- login ------------------------------------------------------------------------------


async def test_a_burst_of_wrong_passwords_for_one_e_mail_is_evaluated_five_times_at_most(
    client: httpx.AsyncClient, hasher: _CountingHasher
) -> None:
    # given an account
    alice = await make_patient()
    assert alice.email
    before = await db_snapshot()

    # when 30 wrong passwords for its e-mail arrive at once
    results = await asyncio.gather(
        *(login(client, alice.email, f"wrong-{n}") for n in range(BURST))
    )

    # then only five were checked, the others answer RATE_LIMITED
    assert hasher.verified == 5
    assert _answers(results) == {str(LOGIN_REFUSED): 5, "RATE_LIMITED": BURST - 5}
    # and the right password is refused too, with nothing opened
    _rate_limited(await login(client, alice.email, PASSWORD))
    assert hasher.verified == 5
    assert await db_snapshot() == before


async def test_a_burst_of_failures_from_one_address_is_evaluated_twenty_times_at_most(
    client: httpx.AsyncClient, hasher: _CountingHasher
) -> None:
    # given an account
    alice = await make_patient()
    assert alice.email
    before = await db_snapshot()

    # when 30 logins on 30 unknown e-mails arrive at once from one address
    results = await asyncio.gather(
        *(login(client, f"someone{n}@example.org", "wrong") for n in range(BURST))
    )

    # then only twenty were checked
    assert hasher.verified == 20
    assert _answers(results) == {str(LOGIN_REFUSED): 20, "RATE_LIMITED": BURST - 20}
    # and a valid login from that address is refused too
    _rate_limited(await login(client, alice.email, PASSWORD))
    assert hasher.verified == 20
    assert await db_snapshot() == before


async def test_a_burst_of_wrong_codes_on_one_login_challenge_is_evaluated_five_times_at_most(
    client_2fa: httpx.AsyncClient, mailbox: CaughtMail, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a login that passed its password step
    alice = await make_patient()
    assert alice.email
    challenge = (await login(client_2fa, alice.email, PASSWORD)).ok()["login"]["challenge"]
    code = login_code_from(mailbox, alice.email)
    wrong = "000000" if code != "000000" else "111111"
    compared = _count_calls(monkeypatch, models.session, "constant_time_equals")
    sessions = await Session.all().count()

    # when 30 wrong codes for its challenge arrive at once
    results = await asyncio.gather(
        *(
            gql(
                client_2fa, VERIFY_LOGIN, {"input": {"challengeId": challenge["id"], "code": wrong}}
            )
            for _ in range(BURST)
        )
    )

    # then only five were compared, and counted on the challenge
    assert len(compared) == 5
    assert _answers(results) == {str(CODE_REFUSED): 5, "RATE_LIMITED": BURST - 5}
    assert [row.failures for row in await LoginChallenge.all()] == [5]
    # and the right code is refused too
    right = await gql(
        client_2fa, VERIFY_LOGIN, {"input": {"challengeId": challenge["id"], "code": code}}
    )
    assert right.data is None and right.errors
    assert len(compared) == 5
    assert await Session.all().count() == sessions


async def test_a_challenge_stops_a_burst_of_wrong_codes_by_itself(
    client_2fa: httpx.AsyncClient, mailbox: CaughtMail, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a pending challenge, and e-mail and address limits too high to be reached
    alice = await make_patient()
    assert alice.email
    challenge = (await login(client_2fa, alice.email, PASSWORD)).ok()["login"]["challenge"]
    code = login_code_from(mailbox, alice.email)
    wrong = "000000" if code != "000000" else "111111"
    monkeypatch.setattr(models.session, "MAX_FAILURES_PER_EMAIL", 1000)
    monkeypatch.setattr(models.session, "MAX_FAILURES_PER_CLIENT", 1000)
    compared = _count_calls(monkeypatch, models.session, "constant_time_equals")
    sessions = await Session.all().count()

    # when 30 wrong codes for it arrive at once
    results = await asyncio.gather(
        *(
            gql(
                client_2fa, VERIFY_LOGIN, {"input": {"challengeId": challenge["id"], "code": wrong}}
            )
            for _ in range(BURST)
        )
    )

    # then the challenge let five be compared, and refused the others alike
    assert len(compared) == 5
    assert _answers(results) == {str(CODE_REFUSED): BURST}
    assert [row.failures for row in await LoginChallenge.all()] == [5]
    # and the right code no longer opens it
    right = await gql(
        client_2fa, VERIFY_LOGIN, {"input": {"challengeId": challenge["id"], "code": code}}
    )
    assert without_location(only_error(right)) == CODE_REFUSED
    assert len(compared) == 5
    assert await Session.all().count() == sessions


# --- activation codes -------------------------------------------------------------------


@pytest.mark.parametrize("operation", ["activate", "oppose"])
async def test_a_burst_of_wrong_activation_codes_is_evaluated_five_times_at_most(
    client: httpx.AsyncClient,
    mailbox: CaughtMail,
    monkeypatch: pytest.MonkeyPatch,
    operation: str,
) -> None:
    # given an enrolled person
    data, _, code, _ = await _pending(client, mailbox)
    looked_up = _count_calls(monkeypatch, models.lifecycle, "code_hash")
    before = await db_snapshot()

    async def attempt(code: str) -> GraphQLResult:
        if operation == "activate":
            credentials = {"email": "c.m@example.net", "password": STRONG_PASSWORD}
            return await activate(client, {**_proof(data, code), **credentials})
        return await gql(client, OPPOSE, {"input": _proof(data, code)})

    # when 30 wrong codes for their NIR arrive at once
    results = await asyncio.gather(*(attempt(WRONG_CODE) for _ in range(BURST)))

    # then only five were looked up, the others answer RATE_LIMITED
    assert len(looked_up) == 5
    assert _answers(results) == {str(GENERIC): 5, "RATE_LIMITED": BURST - 5}
    # and the right code is refused too, until a code is re-issued
    _rate_limited(await attempt(code))
    assert len(looked_up) == 5
    assert await db_snapshot() == before


# --- password re-entry ------------------------------------------------------------------


async def test_a_burst_of_wrong_passwords_to_close_a_space_is_evaluated_five_times_at_most(
    client: httpx.AsyncClient, hasher: _CountingHasher
) -> None:
    # given a logged-in holder
    alice = await make_patient()
    assert alice.email
    before = await db_snapshot()

    # when 30 wrong passwords to close the space arrive at once
    results = await asyncio.gather(
        *(
            gql(client, CLOSE, {"input": {"password": f"wrong-{n}"}}, token=alice.token)
            for n in range(BURST)
        )
    )

    # then only five were checked
    assert hasher.verified == 5
    assert _answers(results) == {str(WRONG_PASSWORD): 5, "RATE_LIMITED": BURST - 5}
    # and the right password is refused too, to close or to log in: it is the account's limit
    _rate_limited(await gql(client, CLOSE, {"input": {"password": PASSWORD}}, token=alice.token))
    _rate_limited(await login(client, alice.email, PASSWORD))
    assert hasher.verified == 5
    assert await db_snapshot() == before


async def test_a_burst_of_wrong_passwords_to_request_deletion_is_evaluated_five_times_at_most(
    client: httpx.AsyncClient, hasher: _CountingHasher
) -> None:
    # given a holder who closed her space and logged in again
    alice = await make_patient()
    assert alice.email
    (await gql(client, CLOSE, {"input": {"password": PASSWORD}}, token=alice.token)).ok()
    token = (await login(client, alice.email, PASSWORD)).ok()["login"]["token"]
    checked = hasher.verified
    before = await db_snapshot()

    # when 30 wrong passwords to request deletion arrive at once
    results = await asyncio.gather(
        *(
            gql(client, REQUEST_DELETION, {"input": {"password": f"wrong-{n}"}}, token=token)
            for n in range(BURST)
        )
    )

    # then only five were checked
    assert hasher.verified - checked == 5
    assert _answers(results) == {str(WRONG_PASSWORD): 5, "RATE_LIMITED": BURST - 5}
    # and the right password is refused too
    _rate_limited(
        await gql(client, REQUEST_DELETION, {"input": {"password": PASSWORD}}, token=token)
    )
    assert hasher.verified - checked == 5
    assert await db_snapshot() == before
    assert (await Patient.get(id=alice.patient.id)).delete_by is None


async def test_request_deletion_of_an_active_space_answers_alike_for_any_password(
    client: httpx.AsyncClient, hasher: _CountingHasher
) -> None:
    # given an active space
    alice = await make_patient()
    before = await db_snapshot()

    # when deletion is requested with the right password, then with a wrong one
    right = await gql(
        client, REQUEST_DELETION, {"input": {"password": PASSWORD}}, token=alice.token
    )
    wrong = await gql(client, REQUEST_DELETION, {"input": {"password": "nope"}}, token=alice.token)

    # then both answer the same CONFLICT, without the password being checked
    assert without_location(only_error(right)) == without_location(only_error(wrong))
    assert only_error(right)["extensions"] == {"code": "CONFLICT"}
    assert hasher.verified == 0
    assert await db_snapshot() == before


async def test_closing_a_closed_space_answers_alike_for_any_password(
    client: httpx.AsyncClient, hasher: _CountingHasher
) -> None:
    # given a holder who closed her space and logged in again
    alice = await make_patient()
    assert alice.email
    (await gql(client, CLOSE, {"input": {"password": PASSWORD}}, token=alice.token)).ok()
    token = (await login(client, alice.email, PASSWORD)).ok()["login"]["token"]
    checked = hasher.verified
    before = await db_snapshot()

    # when she closes it again, with the right password and with a wrong one
    right = await gql(client, CLOSE, {"input": {"password": PASSWORD}}, token=token)
    wrong = await gql(client, CLOSE, {"input": {"password": "nope"}}, token=token)

    # then both answer the same CONFLICT, without the password being checked
    assert without_location(only_error(right)) == without_location(only_error(wrong))
    assert only_error(right)["extensions"] == {"code": "CONFLICT"}
    assert hasher.verified == checked
    assert await db_snapshot() == before


# --- re-activation ----------------------------------------------------------------------


async def test_re_activating_an_active_space_ends_its_sessions(
    client: httpx.AsyncClient, mailbox: CaughtMail
) -> None:
    # given an activated space whose holder is logged in, and a code re-issued to them
    data, patient, code, operator_token = await _pending(client, mailbox)
    credentials = {"email": "c.m@example.net", "password": STRONG_PASSWORD}
    (await activate(client, {**_proof(data, code), **credentials})).ok()
    old_token = (await login(client, "c.m@example.net", STRONG_PASSWORD)).ok()["login"]["token"]
    reissued = await gql(
        client, REISSUE, {"input": {"patientId": patient["id"]}}, token=operator_token
    )
    reissued.ok()
    new_code = activation_code_from(mailbox, data["email"])

    # when the space is activated again with new credentials
    new_password = "quartz-meadow-beacon-58"
    result = await activate(
        client, {**_proof(data, new_code), "email": "new@example.net", "password": new_password}
    )

    # then the old session is over, and only the new credentials log in
    assert result.ok()["activateSpace"]["patient"]["status"] == "ACTIVE"
    viewer = await gql(client, "{ viewer { __typename } }", token=old_token)
    assert viewer.codes == ["UNAUTHENTICATED"]
    assert await Session.filter(revoked_at=None, account__patient_id__isnull=False).count() == 0
    assert (await login(client, "new@example.net", new_password)).ok()["login"]["token"]
    old = await login(client, "c.m@example.net", STRONG_PASSWORD)
    assert without_location(only_error(old)) == LOGIN_REFUSED
