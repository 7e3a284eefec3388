"""The space lifecycle through HTTP: enrolment, activation, opposition, closing, deletion."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import date, datetime, timedelta
from email import message_from_string
from email.policy import default as default_policy
from typing import Any

import httpx
import pytest
from dateutil.relativedelta import relativedelta

from api.app import create_app
from api.config import Settings
from models.account import Account
from models.base import utcnow
from models.lifecycle import GENERIC_CODE_ERROR, ActivationCode
from models.outbox import OutboxMessage
from models.patient import Patient, SpaceStatus
from models.session import LOGIN_FAILED
from tests.conftest import CaughtMail
from tests.factories import PASSWORD, make_operator, make_patient, make_professional
from tests.graphql import gql
from tests.lifecycle_support import (
    ACTIVATE,
    CLOSE,
    OPPOSE,
    REGISTER_PROFESSIONAL,
    REISSUE,
    REQUEST_DELETION,
    STRONG_PASSWORD,
    VERIFY_LOGIN,
    VIEWER,
    activate,
    activation_code_from,
    cheap_dummy_hash,  # noqa: F401  (autouse)
    db_snapshot,
    enroll,
    enrolment,
    failed_attempts,
    login,
    login_code_from,
    only_error,
    without_location,
)

GENERIC = {"message": GENERIC_CODE_ERROR, "extensions": {"code": "BAD_USER_INPUT"}}


@pytest.fixture
async def client_2fa(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(replace(settings, two_factor=True))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.9", 4242))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


async def _pending(
    client: httpx.AsyncClient, mailbox: CaughtMail, **overrides: Any
) -> tuple[dict[str, Any], dict[str, Any], str, str]:
    """An enrolled adult: (enrolment input, patient, code, operator token)."""
    operator = await make_operator()
    data = enrolment(**overrides)
    patient = await enroll(client, operator.token, data)
    return data, patient, activation_code_from(mailbox, data["email"]), operator.token


def _proof(data: dict[str, Any], code: str) -> dict[str, Any]:
    return {"code": code, "nir": data["nir"], "birthDate": data["birthDate"]}


def _credentials(data: dict[str, Any], code: str, email: str = "c.m@example.net") -> dict[str, Any]:
    return {**_proof(data, code), "email": email, "password": STRONG_PASSWORD}


async def _token(client: httpx.AsyncClient, email: str, password: str) -> str:
    token = (await login(client, email, password)).ok()["login"]["token"]
    assert isinstance(token, str)
    return token


# --- the whole lifecycle --------------------------------------------------------------------


async def test_whole_lifecycle_by_email_with_two_factor(
    client_2fa: httpx.AsyncClient, mailbox: CaughtMail
) -> None:
    client = client_2fa
    # given an operator enrols an adult by e-mail
    data, patient, code, operator_token = await _pending(client, mailbox)
    assert patient["status"] == "PENDING"
    assert await OutboxMessage.filter(secret__isnull=False).count() == 0  # redacted once sent

    # when she activates her space with the code from the mail
    activated = await activate(client, _credentials(data, code))

    # then it is active, and she logs in with the one-time code of a second mail
    assert activated.ok() == {
        "activateSpace": {
            "patient": {
                "id": patient["id"],
                "firstName": "Camille",
                "lastName": "Moreau",
                "status": "ACTIVE",
            }
        }
    }
    first_step = (await login(client, "c.m@example.net", STRONG_PASSWORD)).ok()["login"]
    assert first_step["token"] is None
    assert first_step["viewer"] is None
    verified = await gql(
        client,
        VERIFY_LOGIN,
        {
            "input": {
                "challengeId": first_step["challenge"]["id"],
                "code": login_code_from(mailbox, "c.m@example.net"),
            }
        },
    )
    session = verified.ok()["verifyLogin"]
    assert session["challenge"] is None
    assert session["viewer"] == {
        "__typename": "Patient",
        "id": patient["id"],
        "firstName": "Camille",
    }
    token = session["token"]
    viewer = (await gql(client, VIEWER, token=token)).ok()["viewer"]
    assert viewer == {
        "id": patient["id"],
        "firstName": "Camille",
        "lastName": "Moreau",
        "status": "ACTIVE",
        "nir": data["nir"],
        "dependents": [],
        "representatives": [],
    }

    # when she closes it, her token dies at once
    closed = await gql(client, CLOSE, {"input": {"password": STRONG_PASSWORD}}, token=token)
    assert closed.ok() == {"closeSpace": {"patient": {"id": patient["id"], "status": "CLOSED"}}}
    refused = await gql(client, VIEWER, token=token)
    assert refused.codes == ["UNAUTHENTICATED"]

    # when the operator re-issues a code and she activates with it, the space reopens
    reissued = await gql(
        client, REISSUE, {"input": {"patientId": patient["id"]}}, token=operator_token
    )
    assert reissued.ok() == {
        "reissueActivationCode": {"patient": {"id": patient["id"], "status": "CLOSED"}}
    }
    new_code = activation_code_from(mailbox, data["email"])
    assert new_code != code
    reopened = await activate(client, _proof(data, new_code))
    assert reopened.ok()["activateSpace"]["patient"]["status"] == "ACTIVE"

    # then her data are kept: same credentials, same space, same NIR
    challenge = (await login(client, "c.m@example.net", STRONG_PASSWORD)).ok()["login"]
    again = await gql(
        client,
        VERIFY_LOGIN,
        {
            "input": {
                "challengeId": challenge["challenge"]["id"],
                "code": login_code_from(mailbox, "c.m@example.net"),
            }
        },
    )
    new_token = again.ok()["verifyLogin"]["token"]
    assert (await gql(client, VIEWER, token=new_token)).ok()["viewer"] == viewer
    row = await Patient.get(id=_pk(patient["id"]))
    assert (row.status, row.closed_at, row.archived_until) == (SpaceStatus.ACTIVE, None, None)


def _pk(global_id: str) -> Any:
    from resolvers.ids import decode_as

    return decode_as(global_id, "Patient")


async def test_request_deletion_of_a_closed_space_is_due_within_three_months(
    client: httpx.AsyncClient,
) -> None:
    # given a holder who closed her space and logged in again
    alice = await make_patient()
    assert alice.email and alice.token
    await gql(client, CLOSE, {"input": {"password": PASSWORD}}, token=alice.token)
    token = await _token(client, alice.email, PASSWORD)

    # when she asks for deletion
    before = utcnow()
    result = await gql(client, REQUEST_DELETION, {"input": {"password": PASSWORD}}, token=token)

    # then the deadline is three months away, and asking again keeps it
    delete_by = datetime.fromisoformat(result.ok()["requestDeletion"]["deleteBy"])
    expected = before + relativedelta(months=3)
    assert timedelta(0) <= delete_by - expected < timedelta(seconds=30)
    again = await gql(client, REQUEST_DELETION, {"input": {"password": PASSWORD}}, token=token)
    assert again.ok() == result.ok()
    row = await Patient.get(id=alice.patient.id)
    assert (row.status, row.delete_by) == (SpaceStatus.CLOSED, delete_by)


async def test_request_deletion_of_an_active_space_is_a_conflict(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_patient()
    before = await db_snapshot()

    result = await gql(
        client, REQUEST_DELETION, {"input": {"password": PASSWORD}}, token=alice.token
    )

    assert result.codes == ["CONFLICT"]
    assert await db_snapshot() == before


async def test_post_channel_renders_a_letter_with_the_code(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    # given an operator enrols someone by post
    operator = await make_operator()
    address = {"line1": "12 rue des Lilas", "postalCode": "69003", "city": "Lyon"}
    data = enrolment(email=None, channel="POST", postalAddress=address)

    # when the enrolment returns
    patient = await enroll(client, operator.token, data)

    # then a letter with the code waits in the outbox, and that code activates the space
    letters = list((settings.outbox_dir / "letters").iterdir())
    assert len(letters) == 1
    text = letters[0].read_text()
    assert "Camille Moreau\n12 rue des Lilas\n69003 Lyon" in text
    found = [word for word in text.split() if len(word) == 12 and word.count("-") == 2]
    assert len(found) == 1
    activated = await activate(client, _credentials(data, found[0]))
    assert activated.ok()["activateSpace"]["patient"]["id"] == patient["id"]


async def test_oppose_space_keeps_only_the_proof_and_blocks_the_person(
    client: httpx.AsyncClient, mailbox: CaughtMail
) -> None:
    # given a pending space
    data, patient, code, operator_token = await _pending(client, mailbox)
    assert await OutboxMessage.filter(patient_id=_pk(patient["id"])).count() == 1

    # when its holder opposes with the code
    result = await gql(client, OPPOSE, {"input": _proof(data, code)})

    # then it is opposed and nothing identifying is left in the database
    assert result.ok() == {"opposeSpace": {"opposed": True}}
    row = await Patient.get(id=_pk(patient["id"]))
    assert row.status is SpaceStatus.OPPOSED
    assert row.opposed_at is not None
    assert (row.first_name, row.last_name, row.nir_encrypted) == ("", "", None)
    assert (row.contact_email, row.postal_address) == (None, None)
    assert await ActivationCode.filter(patient_id=row.id).count() == 0
    # nor in the outbox that carried the code: not the address, not the name
    assert await OutboxMessage.filter(patient_id=row.id).count() == 0
    assert await OutboxMessage.filter(recipient=data["email"]).count() == 0
    # and the person can neither activate nor log in, nor be enrolled again
    assert only_error(await activate(client, _credentials(data, code, data["email"]))) == {
        **GENERIC,
        "locations": [{"line": 3, "column": 3}],
        "path": ["activateSpace"],
    }
    refused = only_error(await login(client, data["email"], STRONG_PASSWORD))
    assert (refused["message"], refused["extensions"]) == (
        LOGIN_FAILED,
        {"code": "UNAUTHENTICATED"},
    )
    again = await gql(
        client,
        "mutation($i: EnrollPatientInput!) { enrollPatient(input: $i) { patient { id } } }",
        {"i": data},
        token=operator_token,
    )
    assert again.codes == ["CONFLICT"]
    seen = await gql(
        client,
        "query($id: ID!) { patient(id: $id) { id } }",
        {"id": patient["id"]},
        token=operator_token,
    )
    assert seen.codes == ["NOT_FOUND"]


# --- bad inputs: the prescribed answer, and nothing written -----------------------------------


async def test_enroll_with_a_wrong_nir_key_names_the_field_not_the_number(
    client: httpx.AsyncClient,
) -> None:
    # given a NIR whose key is off by one
    operator = await make_operator()
    data = enrolment()
    data["nir"] = data["nir"][:13] + f"{(int(data['nir'][13:]) % 97) + 1:02d}"
    before = await db_snapshot()

    # when an operator enrols it
    result = await gql(
        client,
        "mutation($i: EnrollPatientInput!) { enrollPatient(input: $i) { patient { id } } }",
        {"i": data},
        token=operator.token,
    )

    # then the field is named, the number never echoed, and nothing is written
    error = only_error(result)
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "nir"}
    assert error["message"] == "Invalid NIR."
    assert data["nir"] not in result.response.text
    assert data["nir"][:13] not in result.response.text
    assert await db_snapshot() == before


async def test_enroll_twice_the_same_nir_is_a_conflict(
    client: httpx.AsyncClient, mailbox: CaughtMail
) -> None:
    data, _, _, operator_token = await _pending(client, mailbox)
    before = await db_snapshot()

    result = await gql(
        client,
        "mutation($i: EnrollPatientInput!) { enrollPatient(input: $i) { patient { id } } }",
        {"i": {**data, "firstName": "Other"}},
        token=operator_token,
    )

    assert result.codes == ["CONFLICT"]
    assert await db_snapshot() == before


async def test_activate_with_a_wrong_code(client: httpx.AsyncClient, mailbox: CaughtMail) -> None:
    data, _, code, _ = await _pending(client, mailbox)
    wrong = "2345-6789-AB" if code != "2345-6789-AB" else "2345-6789-AC"
    before = await db_snapshot()

    result = await activate(client, _credentials(data, wrong))

    assert without_location(only_error(result)) == GENERIC
    assert await db_snapshot() == before
    assert await failed_attempts() == 1


async def test_activate_with_an_expired_code(
    client: httpx.AsyncClient, mailbox: CaughtMail
) -> None:
    # given a code sent 43 days ago
    data, patient, code, _ = await _pending(client, mailbox)
    now = utcnow()
    await ActivationCode.filter(patient_id=_pk(patient["id"])).update(
        sent_at=now - timedelta(days=43), expires_at=now - timedelta(days=1)
    )
    before = await db_snapshot()

    # when it is used
    result = await activate(client, _credentials(data, code))

    # then it is refused like any wrong code
    assert without_location(only_error(result)) == GENERIC
    assert await db_snapshot() == before


async def test_activate_with_a_code_already_used(
    client: httpx.AsyncClient, mailbox: CaughtMail
) -> None:
    data, _, code, _ = await _pending(client, mailbox)
    (await activate(client, _credentials(data, code))).ok()
    before = await db_snapshot()

    result = await activate(client, _credentials(data, code, "another@example.net"))

    assert without_location(only_error(result)) == GENERIC
    assert await db_snapshot() == before


async def test_activate_with_a_wrong_birth_date(
    client: httpx.AsyncClient, mailbox: CaughtMail
) -> None:
    data, _, code, _ = await _pending(client, mailbox)
    before = await db_snapshot()

    result = await activate(client, {**_credentials(data, code), "birthDate": "1985-06-03"})

    assert without_location(only_error(result)) == GENERIC
    assert await db_snapshot() == before


async def test_five_failures_lock_the_code_until_it_is_reissued(
    client: httpx.AsyncClient, mailbox: CaughtMail
) -> None:
    # given five wrong attempts on one NIR
    data, patient, code, operator_token = await _pending(client, mailbox)
    for wrong in ("2345-6789-AB", "2345-6789-AC", "2345-6789-AD", "2345-6789-AE", "ZZZZ"):
        failed = await activate(client, _credentials(data, wrong))
        assert without_location(only_error(failed)) == GENERIC
    before = await db_snapshot()

    # when the sixth comes, even with the right code
    locked = await activate(client, _credentials(data, code))
    opposed = await gql(client, OPPOSE, {"input": _proof(data, code)})

    # then both answer RATE_LIMITED and nothing changes
    for result in (locked, opposed):
        error = only_error(result)
        assert error["extensions"]["code"] == "RATE_LIMITED"
        assert error["extensions"]["retryAfter"] > 0
    assert await db_snapshot() == before

    # when the operator re-issues a code, the new one works
    await gql(client, REISSUE, {"input": {"patientId": patient["id"]}}, token=operator_token)
    new_code = activation_code_from(mailbox, data["email"])
    stale = await activate(client, _credentials(data, code))
    assert without_location(only_error(stale)) == GENERIC
    fresh = await activate(client, _credentials(data, new_code))
    assert fresh.ok()["activateSpace"]["patient"]["status"] == "ACTIVE"


@pytest.mark.parametrize(
    ("email", "password", "message"),
    [
        ("c.m@example.net", "short-pw-11", "The password must be at least 12 characters long."),
        (
            "zephyrine@example.net",
            "my-ZEPHYRINE-is-long",
            "The password must not contain your e-mail address.",
        ),
        ("c.m@example.net", "moreau-forever-2024", "The password must not contain your name."),
        ("c.m@example.net", "Camille-forever-2024", "The password must not contain your name."),
    ],
)
async def test_activate_with_a_weak_password(
    client: httpx.AsyncClient, mailbox: CaughtMail, email: str, password: str, message: str
) -> None:
    data, _, code, _ = await _pending(client, mailbox)
    before = await db_snapshot()

    result = await activate(client, {**_proof(data, code), "email": email, "password": password})

    assert without_location(only_error(result)) == {
        "message": message,
        "extensions": {"code": "BAD_USER_INPUT", "field": "password"},
    }
    assert await db_snapshot() == before
    assert await failed_attempts() == 0


async def test_activate_an_adult_without_credentials(
    client: httpx.AsyncClient, mailbox: CaughtMail
) -> None:
    data, _, code, _ = await _pending(client, mailbox)
    before = await db_snapshot()

    no_email = await activate(client, _proof(data, code))
    no_password = await activate(client, {**_proof(data, code), "email": "c.m@example.net"})

    assert only_error(no_email)["extensions"] == {"code": "BAD_USER_INPUT", "field": "email"}
    assert only_error(no_password)["extensions"] == {"code": "BAD_USER_INPUT", "field": "password"}
    assert await db_snapshot() == before


async def test_activate_with_an_e_mail_another_account_uses(
    client: httpx.AsyncClient, mailbox: CaughtMail
) -> None:
    # given an operator account holds an e-mail address
    data, _, code, _ = await _pending(client, mailbox)
    operator = await make_operator()
    before = await db_snapshot()

    # when a new holder chooses it
    result = await activate(client, _credentials(data, code, operator.email))

    # then it is refused on that field, and the code is still usable
    assert without_location(only_error(result)) == {
        "message": "This e-mail address is already in use.",
        "extensions": {"code": "BAD_USER_INPUT", "field": "email"},
    }
    assert await db_snapshot() == before
    (await activate(client, _credentials(data, code))).ok()


@pytest.mark.parametrize("operation", ["activate", "oppose"])
async def test_an_unknown_nir_answers_exactly_like_an_enrolled_one(
    client: httpx.AsyncClient, mailbox: CaughtMail, operation: str
) -> None:
    # given an enrolled NIR and one never enrolled
    data, _, _, _ = await _pending(client, mailbox)
    stranger = enrolment()
    query = ACTIVATE if operation == "activate" else OPPOSE
    extra = {"email": "c.m@example.net", "password": STRONG_PASSWORD}
    if operation == "oppose":
        extra = {}
    before = await db_snapshot()

    # when both are tried with a wrong code
    enrolled = await gql(client, query, {"input": {**_proof(data, "2345-6789-AB"), **extra}})
    unknown = await gql(client, query, {"input": {**_proof(stranger, "2345-6789-AB"), **extra}})

    # then the answers are the same, with no field to tell them apart
    assert without_location(only_error(enrolled)) == without_location(only_error(unknown))
    assert without_location(only_error(unknown)) == GENERIC
    assert enrolled.response.status_code == unknown.response.status_code
    assert await db_snapshot() == before


async def test_close_space_twice_is_a_conflict(client: httpx.AsyncClient) -> None:
    # given a holder who closed her space, then logged in again
    alice = await make_patient()
    assert alice.email
    first = await gql(client, CLOSE, {"input": {"password": PASSWORD}}, token=alice.token)
    assert first.ok()["closeSpace"]["patient"]["status"] == "CLOSED"
    token = await _token(client, alice.email, PASSWORD)
    before = await db_snapshot()

    # when she closes it again
    result = await gql(client, CLOSE, {"input": {"password": PASSWORD}}, token=token)

    # then it is a conflict, and nothing changes
    assert only_error(result)["extensions"] == {"code": "CONFLICT"}
    assert await db_snapshot() == before


async def test_close_space_with_a_wrong_password(client: httpx.AsyncClient) -> None:
    alice = await make_patient()
    before = await db_snapshot()

    result = await gql(client, CLOSE, {"input": {"password": "not-my-password"}}, token=alice.token)

    assert only_error(result)["extensions"] == {"code": "BAD_USER_INPUT", "field": "password"}
    assert await db_snapshot() == before


async def test_an_old_code_does_not_reopen_a_closed_space(
    client: httpx.AsyncClient, mailbox: CaughtMail
) -> None:
    # given a space activated with a code, then closed
    data, _, code, _ = await _pending(client, mailbox)
    (await activate(client, _credentials(data, code))).ok()
    token = await _token(client, "c.m@example.net", STRONG_PASSWORD)
    (await gql(client, CLOSE, {"input": {"password": STRONG_PASSWORD}}, token=token)).ok()
    before = await db_snapshot()

    # when the old code is tried again
    result = await activate(client, _proof(data, code))

    # then it answers like any wrong code
    assert without_location(only_error(result)) == GENERIC
    assert await db_snapshot() == before


async def test_an_active_space_cannot_be_opposed(
    client: httpx.AsyncClient, mailbox: CaughtMail, settings: Settings
) -> None:
    # given an active space whose holder was sent a fresh code
    data, patient, code, operator_token = await _pending(client, mailbox)
    (await activate(client, _credentials(data, code))).ok()
    await gql(client, REISSUE, {"input": {"patientId": patient["id"]}}, token=operator_token)
    new_code = activation_code_from(mailbox, data["email"])
    before = await db_snapshot()

    result = await gql(client, OPPOSE, {"input": _proof(data, new_code)})

    assert without_location(only_error(result)) == GENERIC
    assert await db_snapshot() == before


# --- minors -------------------------------------------------------------------------------


def _years_ago(years: int, days: int = 0) -> date:
    today = date.today()
    return today - relativedelta(years=years) - timedelta(days=days)


async def _enrol_minor(
    client: httpx.AsyncClient, representative_id: str, **overrides: Any
) -> tuple[dict[str, Any], dict[str, Any], str]:
    operator = await make_operator()
    fields: dict[str, Any] = {
        "first_name": "Théo",
        "birth_date": _years_ago(8, 30),
        "email": None,
        "representativeId": representative_id,
    }
    data = enrolment(**{**fields, **overrides})
    return data, await enroll(client, operator.token, data), operator.token


async def test_a_minor_is_activated_by_the_logged_in_representative(
    client: httpx.AsyncClient, mailbox: CaughtMail
) -> None:
    # given a minor enrolled with a representative: the code goes to the representative
    parent = await make_patient("Nadia", "Moreau")
    assert parent.email
    data, child, _ = await _enrol_minor(client, parent.id)
    code = activation_code_from(mailbox, parent.email)

    # when the representative activates while logged in, without credentials
    result = await activate(client, _proof(data, code), token=parent.token)

    # then the minor's space is active, has no account, and is listed as a dependent
    assert result.ok()["activateSpace"]["patient"] == {
        "id": child["id"],
        "firstName": "Théo",
        "lastName": "Moreau",
        "status": "ACTIVE",
    }
    viewer = (await gql(client, VIEWER, token=parent.token)).ok()["viewer"]
    assert viewer["dependents"] == [{"id": child["id"]}]
    assert await Account.filter(patient_id=_pk(child["id"])).count() == 0


async def test_a_minor_enrolled_with_an_e_mail_still_has_the_code_sent_to_the_representative(
    client: httpx.AsyncClient, mailbox: CaughtMail
) -> None:
    parent = await make_patient("Nadia", "Moreau")
    assert parent.email

    data, _, _ = await _enrol_minor(client, parent.id, email="theo@example.org")

    assert [m.rcpt_tos for m in mailbox.messages] == [[parent.email]]
    (
        await activate(
            client, _proof(data, activation_code_from(mailbox, parent.email)), token=parent.token
        )
    ).ok()


async def test_a_minors_code_is_written_to_the_representative_by_mail_and_by_post(
    client: httpx.AsyncClient, mailbox: CaughtMail, settings: Settings
) -> None:
    parent = await make_patient("Nadia", "Moreau")
    assert parent.email
    address = {"line1": "3 rue du Port", "postalCode": "13002", "city": "Marseille"}

    await _enrol_minor(client, parent.id)
    await _enrol_minor(
        client,
        parent.id,
        first_name="Léa",
        channel="POST",
        postalAddress=address,
    )

    mail = message_from_string(mailbox.last_to(parent.email), policy=default_policy)
    assert mail["Subject"] == "Le code confidentiel Mon espace santé de Théo Moreau"
    text = mail.get_content()  # type: ignore[attr-defined]
    assert "Bonjour Nadia Moreau," in text
    assert "représentant légal de Théo Moreau" in text
    assert "choisissant votre adresse" not in text  # the child chooses no credentials
    [letter] = (settings.outbox_dir / "letters").iterdir()
    printed = letter.read_text()
    assert printed.startswith("Mon espace santé\n")
    assert "Nadia Moreau\n3 rue du Port\n13002 Marseille" in printed
    assert "Bonjour Nadia Moreau," in printed
    assert "représentant légal de Léa Moreau" in printed
    assert "connectez-vous à votre propre espace" in printed


@pytest.mark.parametrize("caller", ["anonymous", "stranger"])
async def test_only_a_representative_activates_a_minor(
    client: httpx.AsyncClient, mailbox: CaughtMail, caller: str
) -> None:
    # given a minor's right code in the hands of someone else
    parent = await make_patient("Nadia", "Moreau")
    assert parent.email
    data, _, _ = await _enrol_minor(client, parent.id)
    code = activation_code_from(mailbox, parent.email)
    token = None if caller == "anonymous" else (await make_patient("Eve")).token
    before = await db_snapshot()

    # when they activate or oppose with it
    activated = await activate(
        client, {**_proof(data, code), "password": STRONG_PASSWORD}, token=token
    )
    opposed = await gql(client, OPPOSE, {"input": _proof(data, code)}, token=token)

    # then both are refused like a wrong code, and the representative still can
    assert without_location(only_error(activated)) == GENERIC
    assert without_location(only_error(opposed)) == GENERIC
    assert await db_snapshot() == before
    (await activate(client, _proof(data, code), token=parent.token)).ok()


async def test_enrolling_a_minor_needs_a_representative_and_an_adult_none(
    client: httpx.AsyncClient,
) -> None:
    operator = await make_operator()
    parent = await make_patient("Nadia", "Moreau")
    minor = enrolment(birth_date=_years_ago(8), email=None)
    adult = enrolment(representativeId=parent.id)
    before = await db_snapshot()

    results = [
        await gql(
            client,
            "mutation($i: EnrollPatientInput!) { enrollPatient(input: $i) { patient { id } } }",
            {"i": data},
            token=operator.token,
        )
        for data in (minor, adult)
    ]

    assert [only_error(r)["extensions"] for r in results] == [
        {"code": "BAD_USER_INPUT", "field": "representativeId"},
        {"code": "BAD_USER_INPUT", "field": "representativeId"},
    ]
    assert await db_snapshot() == before


async def test_an_operator_adds_a_second_representative(
    client: httpx.AsyncClient, mailbox: CaughtMail
) -> None:
    # given a minor with one representative, and another adult
    mother = await make_patient("Nadia", "Moreau")
    father = await make_patient("Bruno", "Moreau")
    _, child, operator_token = await _enrol_minor(client, mother.id)

    # when an operator links the other adult
    result = await gql(
        client,
        "mutation($i: AddDependentInput!) { addDependent(input: $i) { representative { id } } }",
        {"i": {"representativeId": father.id, "dependentId": child["id"]}},
        token=operator_token,
    )

    # then both represent the minor
    assert result.ok() == {"addDependent": {"representative": {"id": father.id}}}
    viewer = (await gql(client, VIEWER, token=father.token)).ok()["viewer"]
    assert viewer["dependents"] == [{"id": child["id"]}]
    reps = await gql(
        client,
        "query($id: ID!) { patient(id: $id) { representatives { id } } }",
        {"id": child["id"]},
        token=father.token,
    )
    assert sorted(r["id"] for r in reps.ok()["patient"]["representatives"]) == sorted(
        [mother.id, father.id]
    )


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("adult dependent", {"code": "BAD_USER_INPUT", "field": "dependentId"}),
        ("minor representative", {"code": "BAD_USER_INPUT", "field": "representativeId"}),
        ("duplicate", {"code": "CONFLICT"}),
        ("unknown representative", {"code": "BAD_USER_INPUT", "field": "representativeId"}),
    ],
)
async def test_add_dependent_bad_inputs(
    client: httpx.AsyncClient, case: str, expected: dict[str, str]
) -> None:
    # given an adult, her minor and another adult
    mother = await make_patient("Nadia", "Moreau")
    adult = await make_patient("Bruno", "Moreau")
    _, child, operator_token = await _enrol_minor(client, mother.id)
    other_child = (await _enrol_minor(client, adult.id))[1]
    pairs = {
        "adult dependent": (mother.id, adult.id),
        "minor representative": (other_child["id"], child["id"]),
        "duplicate": (mother.id, child["id"]),
        "unknown representative": ("not-an-id", child["id"]),
    }
    representative, dependent = pairs[case]
    before = await db_snapshot()

    result = await gql(
        client,
        "mutation($i: AddDependentInput!) { addDependent(input: $i) { representative { id } } }",
        {"i": {"representativeId": representative, "dependentId": dependent}},
        token=operator_token,
    )

    assert only_error(result)["extensions"] == expected
    assert await db_snapshot() == before


async def test_a_representative_closes_the_minor_space_with_patient_id(
    client: httpx.AsyncClient, mailbox: CaughtMail
) -> None:
    # given an active minor's space, its representative and a stranger
    parent = await make_patient("Nadia", "Moreau")
    assert parent.email
    data, child, _ = await _enrol_minor(client, parent.id)
    code = activation_code_from(mailbox, parent.email)
    (await activate(client, _proof(data, code), token=parent.token)).ok()
    stranger = await make_patient("Eve")
    before = await db_snapshot()

    # when the stranger, then the representative with a wrong password, try to close it
    by_stranger = await gql(
        client,
        CLOSE,
        {"input": {"password": PASSWORD, "patientId": child["id"]}},
        token=stranger.token,
    )
    wrong_password = await gql(
        client,
        CLOSE,
        {"input": {"password": "not-my-password", "patientId": child["id"]}},
        token=parent.token,
    )

    # then NOT_FOUND and BAD_USER_INPUT, and nothing changes
    assert only_error(by_stranger)["extensions"] == {"code": "NOT_FOUND"}
    assert only_error(wrong_password)["extensions"] == {
        "code": "BAD_USER_INPUT",
        "field": "password",
    }
    assert await db_snapshot() == before

    # when the representative closes it with their own password
    closed = await gql(
        client,
        CLOSE,
        {"input": {"password": PASSWORD, "patientId": child["id"]}},
        token=parent.token,
    )

    # then the minor's space is closed and the representative's own stays open
    assert closed.ok() == {"closeSpace": {"patient": {"id": child["id"], "status": "CLOSED"}}}
    viewer = (await gql(client, VIEWER, token=parent.token)).ok()["viewer"]
    assert viewer["status"] == "ACTIVE"


async def test_a_representative_manages_a_closed_minor_space_as_its_holder_would(
    client: httpx.AsyncClient, mailbox: CaughtMail
) -> None:
    # given a minor's space, active, with a document, then closed by its representative
    parent = await make_patient("Nadia", "Moreau")
    assert parent.email
    data, child, operator_token = await _enrol_minor(client, parent.id)
    code = activation_code_from(mailbox, parent.email)
    (await activate(client, _proof(data, code), token=parent.token)).ok()
    for_child = {"patientId": child["id"]}
    closing = {"input": {"password": PASSWORD, **for_child}}
    (await gql(client, CLOSE, closing, token=parent.token)).ok()

    # then she still sees it, closed, but its dossier is archived and nothing is changed
    seen = await gql(
        client,
        "query($id: ID!) { patient(id: $id) { status vaccinations { vaccine } } }",
        {"id": child["id"]},
        token=parent.token,
    )
    assert seen.data == {"patient": {"status": "CLOSED", "vaccinations": None}}
    assert seen.codes == ["FORBIDDEN"]
    doctor = await make_professional()
    before = await db_snapshot()
    grant = await gql(
        client,
        "mutation($i: BlockProfessionalInput!) { blockProfessional(input: $i) { patient { id } } }",
        {"i": {"professionalId": doctor.id, **for_child}},
        token=parent.token,
    )
    assert only_error(grant)["extensions"] == {"code": "FORBIDDEN"}
    assert await db_snapshot() == before

    # when she asks for its deletion, then reopens it with a re-issued code
    deletion = await gql(
        client, REQUEST_DELETION, {"input": {"password": PASSWORD, **for_child}}, token=parent.token
    )
    assert deletion.ok()["requestDeletion"]["deleteBy"]
    reissued = await gql(
        client, REISSUE, {"input": {"patientId": child["id"]}}, token=operator_token
    )
    assert reissued.ok()["reissueActivationCode"]["patient"]["status"] == "CLOSED"
    new_code = activation_code_from(mailbox, parent.email)
    reopened = await activate(client, _proof(data, new_code), token=parent.token)

    # then the space is active again, its deletion called off
    assert reopened.ok()["activateSpace"]["patient"]["status"] == "ACTIVE"
    row = await Patient.get(id=_pk(child["id"]))
    assert row.delete_by is None


# --- operator-only operations --------------------------------------------------------------

_VALID_FINESS = "750000010"


def _registration(**overrides: Any) -> dict[str, Any]:
    return {
        "rpps": "10101010101",
        "firstName": "Inès",
        "lastName": "Garnier",
        "profession": "INFIRMIER",
        "sector": "HEALTH",
        "email": "ines.garnier@example.org",
        "password": STRONG_PASSWORD,
        **overrides,
    }


async def _operator_calls(client: httpx.AsyncClient) -> dict[str, tuple[str, dict[str, Any]]]:
    """One valid call of each operator-only mutation."""
    parent = await make_patient("Nadia", "Moreau")
    child = await make_patient("Théo", "Moreau", birth_date=_years_ago(8), email=None)
    pending = await make_patient("Paul", status=SpaceStatus.PENDING, email=None)
    return {
        "enrollPatient": (
            "mutation($i: EnrollPatientInput!) { enrollPatient(input: $i) { patient { id } } }",
            enrolment(),
        ),
        "reissueActivationCode": (
            "mutation($i: ReissueActivationCodeInput!) "
            "{ reissueActivationCode(input: $i) { patient { id } } }",
            {"patientId": pending.id, "channel": "EMAIL"},
        ),
        "registerProfessional": (
            "mutation($i: RegisterProfessionalInput!) "
            "{ registerProfessional(input: $i) { professional { id } } }",
            _registration(),
        ),
        "addDependent": (
            "mutation($i: AddDependentInput!) "
            "{ addDependent(input: $i) { representative { id } } }",
            {"representativeId": parent.id, "dependentId": child.id},
        ),
    }


@pytest.mark.parametrize(
    "operation", ["enrollPatient", "reissueActivationCode", "registerProfessional", "addDependent"]
)
@pytest.mark.parametrize(
    ("caller", "code"),
    [("anonymous", "UNAUTHENTICATED"), ("patient", "FORBIDDEN"), ("professional", "FORBIDDEN")],
)
async def test_operator_only_operations_refuse_everyone_else(
    client: httpx.AsyncClient, mailbox: CaughtMail, operation: str, caller: str, code: str
) -> None:
    # given a valid call and a caller who is not an operator
    query, data = (await _operator_calls(client))[operation]
    token = {
        "anonymous": None,
        "patient": (await make_patient("Eve")).token,
        "professional": (await make_professional()).token,
    }[caller]
    before = await db_snapshot()

    # when they make it
    result = await gql(client, query, {"i": data}, token=token)

    # then it is refused and nothing is written or sent
    assert only_error(result)["extensions"] == {"code": code}
    assert await db_snapshot() == before
    assert mailbox.messages == []


async def test_register_professional(client: httpx.AsyncClient) -> None:
    # given an operator
    operator = await make_operator()

    # when they register a nurse of an establishment
    result = await gql(
        client,
        REGISTER_PROFESSIONAL,
        {"input": _registration(rpps="101 0101 0101", finess=_VALID_FINESS)},
        token=operator.token,
    )

    # then the professional exists and logs in with the chosen credentials
    professional = result.ok()["registerProfessional"]["professional"]
    assert professional == {
        "id": professional["id"],
        "rpps": "10101010101",
        "firstName": "Inès",
        "lastName": "Garnier",
        "profession": "INFIRMIER",
        "sector": "HEALTH",
        "establishment": {"finess": _VALID_FINESS},
    }
    token = await _token(client, "ines.garnier@example.org", STRONG_PASSWORD)
    viewer = await gql(client, "{ viewer { ... on Professional { id rpps } } }", token=token)
    assert viewer.ok() == {"viewer": {"id": professional["id"], "rpps": "10101010101"}}


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"rpps": "1010101010"}, {"code": "BAD_USER_INPUT", "field": "rpps"}),
        ({"rpps": "1010101010A"}, {"code": "BAD_USER_INPUT", "field": "rpps"}),
        ({"finess": "750000011"}, {"code": "BAD_USER_INPUT", "field": "finess"}),
        ({"finess": "75000001"}, {"code": "BAD_USER_INPUT", "field": "finess"}),
        ({"password": "garnier-2024-secure"}, {"code": "BAD_USER_INPUT", "field": "password"}),
        ({"email": "not an e-mail"}, {"code": "BAD_USER_INPUT", "field": "email"}),
        ({"firstName": "  "}, {"code": "BAD_USER_INPUT", "field": "firstName"}),
        ({"email": "other@example.org"}, {"code": "CONFLICT"}),
        ({"rpps": "20202020202"}, {"code": "CONFLICT"}),
    ],
)
async def test_register_professional_bad_inputs(
    client: httpx.AsyncClient, overrides: dict[str, Any], expected: dict[str, str]
) -> None:
    # given an operator, and a professional already registered (RPPS 10101010101)
    operator = await make_operator()
    first = await gql(
        client, REGISTER_PROFESSIONAL, {"input": _registration()}, token=operator.token
    )
    first.ok()
    duplicate = "rpps" not in overrides if expected["code"] == "CONFLICT" else False
    data = _registration(**overrides)
    if expected["code"] == "CONFLICT" and not duplicate:
        data["email"] = "ines.garnier@example.org"  # same e-mail, new RPPS
    before = await db_snapshot()

    result = await gql(client, REGISTER_PROFESSIONAL, {"input": data}, token=operator.token)

    assert only_error(result)["extensions"] == expected
    assert await db_snapshot() == before


async def test_a_representative_opposes_for_a_minor(
    client: httpx.AsyncClient, mailbox: CaughtMail
) -> None:
    parent = await make_patient("Nadia", "Moreau")
    assert parent.email
    data, child, _ = await _enrol_minor(client, parent.id)
    code = activation_code_from(mailbox, parent.email)

    result = await gql(client, OPPOSE, {"input": _proof(data, code)}, token=parent.token)

    assert result.ok() == {"opposeSpace": {"opposed": True}}
    row = await Patient.get(id=_pk(child["id"]))
    assert (row.status, row.first_name, row.nir_encrypted) == (SpaceStatus.OPPOSED, "", None)
    viewer = (await gql(client, VIEWER, token=parent.token)).ok()["viewer"]
    assert viewer["dependents"] == []


async def test_an_unknown_nir_is_locked_after_five_failures_too(
    client: httpx.AsyncClient,
) -> None:
    # given five failures on a NIR nobody enrolled
    stranger = enrolment()
    for _ in range(5):
        failed = await gql(client, OPPOSE, {"input": _proof(stranger, "2345-6789-AB")})
        assert without_location(only_error(failed)) == GENERIC
    before = await db_snapshot()

    # when a sixth comes, written differently
    spaced = " ".join([stranger["nir"][:7], stranger["nir"][7:]])
    result = await gql(
        client, OPPOSE, {"input": {**_proof(stranger, "2345-6789-AC"), "nir": spaced}}
    )

    # then it is locked exactly as an enrolled NIR would be
    assert only_error(result)["extensions"] == {"code": "RATE_LIMITED", "retryAfter": 3600}
    assert await db_snapshot() == before


@pytest.mark.parametrize("nir", ["", "123", "2850675123001AB", "not a nir at all"])
async def test_a_malformed_nir_gets_the_generic_answer(
    client: httpx.AsyncClient, mailbox: CaughtMail, nir: str
) -> None:
    _, _, code, _ = await _pending(client, mailbox)
    before = await db_snapshot()

    result = await activate(
        client, {"code": code, "nir": nir, "birthDate": "1985-06-02", "password": "x"}
    )

    assert without_location(only_error(result)) == GENERIC
    assert await db_snapshot() == before


async def test_reissue_by_post_without_an_address_changes_nothing(
    client: httpx.AsyncClient, mailbox: CaughtMail
) -> None:
    # given a pending space enrolled by e-mail (no postal address)
    data, patient, code, operator_token = await _pending(client, mailbox)
    before = await db_snapshot()

    # when a code is re-issued by post
    result = await gql(
        client,
        REISSUE,
        {"input": {"patientId": patient["id"], "channel": "POST"}},
        token=operator_token,
    )

    # then it is refused, and the old code was not superseded
    assert only_error(result)["extensions"] == {"code": "BAD_USER_INPUT", "field": "postalAddress"}
    assert await db_snapshot() == before
    (await activate(client, _credentials(data, code))).ok()


async def test_reissue_for_an_opposed_or_unknown_space_is_not_found(
    client: httpx.AsyncClient, mailbox: CaughtMail
) -> None:
    data, patient, code, operator_token = await _pending(client, mailbox)
    (await gql(client, OPPOSE, {"input": _proof(data, code)})).ok()
    before = await db_snapshot()

    results = [
        await gql(client, REISSUE, {"input": {"patientId": pid}}, token=operator_token)
        for pid in (patient["id"], "UGF0aWVudDowMDAwMDAwMC0wMDAwLTAwMDAtMDAwMC0wMDAwMDAwMDAwMDA")
    ]

    assert [only_error(r)["extensions"] for r in results] == [{"code": "NOT_FOUND"}] * 2
    assert await db_snapshot() == before
