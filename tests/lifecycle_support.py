"""Shared by the lifecycle, login and jobs tests: the operations, mail reading, DB snapshots."""

from __future__ import annotations

import re
from datetime import date
from email import message_from_string
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

import httpx
import pytest

import models.passwords
from models.account import Account, Operator
from models.lifecycle import ActivationCode
from models.outbox import OutboxMessage
from models.patient import Patient, Representation, Sex
from models.professional import Establishment, Professional
from models.ratelimit import FailedAttempt
from models.session import LoginChallenge, Session
from tests.conftest import CaughtMail
from tests.factories import make_nir
from tests.graphql import GraphQLResult, gql

ENROLL = """
mutation($input: EnrollPatientInput!) {
  enrollPatient(input: $input) { patient { id firstName lastName status } }
}"""
REISSUE = """
mutation($input: ReissueActivationCodeInput!) {
  reissueActivationCode(input: $input) { patient { id status } }
}"""
ACTIVATE = """
mutation($input: ActivateSpaceInput!) {
  activateSpace(input: $input) { patient { id firstName lastName status } }
}"""
OPPOSE = """
mutation($input: OpposeSpaceInput!) { opposeSpace(input: $input) { opposed } }"""
CLOSE = """
mutation($input: CloseSpaceInput!) { closeSpace(input: $input) { patient { id status } } }"""
REQUEST_DELETION = """
mutation($input: RequestDeletionInput!) { requestDeletion(input: $input) { deleteBy } }"""
LOGIN = """
mutation($input: LoginInput!) {
  login(input: $input) {
    token expiresAt challenge { id expiresAt }
    viewer { __typename ... on Patient { id firstName } }
  }
}"""
VERIFY_LOGIN = """
mutation($input: VerifyLoginInput!) {
  verifyLogin(input: $input) {
    token expiresAt challenge { id }
    viewer { __typename ... on Patient { id firstName } }
  }
}"""
REGISTER_PROFESSIONAL = """
mutation($input: RegisterProfessionalInput!) {
  registerProfessional(input: $input) {
    professional { id rpps firstName lastName profession sector establishment { finess } }
  }
}"""
ADD_DEPENDENT = """
mutation($input: AddDependentInput!) {
  addDependent(input: $input) { representative { id } }
}"""
VIEWER = """
{ viewer { ... on Patient { id firstName lastName status nir
  dependents { id } representatives { id } } } }"""

STRONG_PASSWORD = "violet-harbour-lantern-93"
ACTIVATION_CODE = re.compile(r"\b([2-9A-Z]{4}-[2-9A-Z]{4}-[2-9A-Z]{2})\b")
LOGIN_CODE = re.compile(r"unique : (\d{6})")


def mail_text(mailbox: CaughtMail, address: str) -> str:
    """The decoded text of the last mail the real SMTP server caught for `address`."""
    message = message_from_string(mailbox.last_to(address), policy=default_policy)
    assert isinstance(message, EmailMessage)
    return str(message.get_content())


def activation_code_from(mailbox: CaughtMail, address: str) -> str:
    found = ACTIVATION_CODE.search(mail_text(mailbox, address))
    assert found, "no activation code in the mail"
    return found.group(1)


def login_code_from(mailbox: CaughtMail, address: str) -> str:
    found = LOGIN_CODE.search(mail_text(mailbox, address))
    assert found, "no login code in the mail"
    return found.group(1)


def enrolment(
    *,
    first_name: str = "Camille",
    last_name: str = "Moreau",
    birth_date: date = date(1985, 6, 2),
    sex: Sex = Sex.FEMALE,
    email: str | None = "camille@example.org",
    **extra: Any,
) -> dict[str, Any]:
    """An enrollPatient input with a fresh valid NIR."""
    return {
        "nir": make_nir(sex, birth_date),
        "firstName": first_name,
        "lastName": last_name,
        "birthDate": birth_date.isoformat(),
        "sex": sex.value,
        "channel": "EMAIL",
        "email": email,
        **extra,
    }


async def enroll(
    client: httpx.AsyncClient, operator_token: str, data: dict[str, Any]
) -> dict[str, Any]:
    result = await gql(client, ENROLL, {"input": data}, token=operator_token)
    patient: dict[str, Any] = result.ok()["enrollPatient"]["patient"]
    return patient


async def activate(
    client: httpx.AsyncClient, input: dict[str, Any], *, token: str | None = None
) -> GraphQLResult:
    return await gql(client, ACTIVATE, {"input": input}, token=token)


async def login(client: httpx.AsyncClient, email: str, password: str) -> GraphQLResult:
    return await gql(client, LOGIN, {"input": {"email": email, "password": password}})


def only_error(result: GraphQLResult) -> dict[str, Any]:
    assert result.data is None, result.data
    assert len(result.errors) == 1, result.errors
    return result.errors[0]


def without_location(error: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in error.items() if k not in ("path", "locations")}


async def db_snapshot() -> dict[str, Any]:
    """Every row a lifecycle or login operation could write (failure counters aside)."""
    return {
        "patients": await Patient.all().order_by("id").values(),
        "accounts": await Account.all().order_by("id").values(),
        "codes": await ActivationCode.all().order_by("id").values(),
        "representations": await Representation.all().order_by("id").values(),
        "sessions": await Session.all().order_by("id").values(),
        "challenges": await LoginChallenge.all().order_by("id").values(),
        "outbox": await OutboxMessage.all().order_by("id").values(),
        "professionals": await Professional.all().order_by("id").values(),
        "establishments": await Establishment.all().order_by("id").values(),
        "operators": await Operator.all().order_by("id").values(),
    }


async def failed_attempts() -> int:
    return await FailedAttempt.all().count()


@pytest.fixture(autouse=True)
def cheap_dummy_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unknown e-mails are checked against a dummy hash made at import, at the real cost;
    the conftest's cheap hasher does not reach it. Import this fixture to make it autouse."""
    monkeypatch.setattr(
        models.passwords, "_DUMMY_HASH", models.passwords._hasher.hash("dummy-password")
    )
