"""The lifecycle jobs: automatic creation, majority, purges, and the outbox retry."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from dateutil.relativedelta import relativedelta
from tortoise import Tortoise

from api.app import create_app
from api.cli import main
from api.config import Settings
from api.db import tortoise_config
from api.jobs import run_jobs
from models.base import paris_today, utcnow
from models.crypto import Vault
from models.lifecycle import Channel, Enrolment, enroll_patient
from models.outbox import OutboxMessage, Status, reveal
from models.patient import Patient, Representation, Sex, SpaceStatus
from resolvers.ids import decode_as
from tests.conftest import SECRET, CaughtMail, _settings, free_port
from tests.factories import PASSWORD, make_nir, make_operator, make_patient
from tests.graphql import gql
from tests.lifecycle_support import (
    REISSUE,
    STRONG_PASSWORD,
    VIEWER,
    activate,
    activation_code_from,
    cheap_dummy_hash,  # noqa: F401  (autouse)
    enroll,
    enrolment,
    login,
)


async def _status(patient: dict[str, Any]) -> SpaceStatus:
    row = await Patient.get(id=decode_as(patient["id"], "Patient"))
    return row.status


async def test_a_space_is_created_42_days_after_sending_exactly_once(
    client: httpx.AsyncClient, settings: Settings, mailbox: CaughtMail
) -> None:
    # given a space enrolled now, with no answer from its holder
    operator = await make_operator()
    data = enrolment()
    patient = await enroll(client, operator.token, data)
    sent = utcnow()

    # when the jobs run 41 days later, then 42 days later, twice
    day_41 = await run_jobs(settings, now=sent + timedelta(days=41))
    status_41 = await _status(patient)
    day_42 = await run_jobs(settings, now=sent + timedelta(days=42, seconds=1))
    again = await run_jobs(settings, now=sent + timedelta(days=42, seconds=2))

    # then it is created on the 42nd day, once
    assert (day_41["spaces_created"], status_41) == (0, SpaceStatus.PENDING)
    assert (day_42["spaces_created"], await _status(patient)) == (1, SpaceStatus.ACTIVE)
    assert again["spaces_created"] == 0
    assert -1 not in (*day_41.values(), *day_42.values(), *again.values())

    # and the holder sets credentials later with a re-issued code (the operator logs in again:
    # the jobs ran 42 days ahead, and purged the one-hour session the factory opened)
    staff = (await login(client, operator.email, PASSWORD)).ok()["login"]["token"]
    reissued = await gql(client, REISSUE, {"input": {"patientId": patient["id"]}}, token=staff)
    assert reissued.ok()["reissueActivationCode"]["patient"]["status"] == "ACTIVE"
    code = activation_code_from(mailbox, data["email"])
    proof = {"code": code, "nir": data["nir"], "birthDate": data["birthDate"]}
    result = await activate(
        client, {**proof, "email": "c.m@example.net", "password": STRONG_PASSWORD}
    )
    assert result.ok()["activateSpace"]["patient"]["status"] == "ACTIVE"
    assert (await login(client, "c.m@example.net", STRONG_PASSWORD)).ok()["login"]["token"]


async def test_answered_spaces_are_not_created_automatically(
    client: httpx.AsyncClient, settings: Settings, mailbox: CaughtMail
) -> None:
    # given one space opposed and one activated within the 42 days
    operator = await make_operator()
    opposed, activated = enrolment(email="a@example.org"), enrolment(email="b@example.org")
    patients = [await enroll(client, operator.token, d) for d in (opposed, activated)]
    for data in (opposed, activated):
        data["code"] = activation_code_from(mailbox, data["email"])
    proof = {k: opposed[k] for k in ("code", "nir", "birthDate")}
    await gql(
        client,
        "mutation($i: OpposeSpaceInput!) { opposeSpace(input: $i) { opposed } }",
        {"i": proof},
    )
    (
        await activate(
            client,
            {
                **{k: activated[k] for k in ("code", "nir", "birthDate")},
                "email": "b@example.org",
                "password": STRONG_PASSWORD,
            },
        )
    ).ok()

    # when the jobs run after 42 days
    report = await run_jobs(settings, now=utcnow() + timedelta(days=43))

    # then neither changes
    assert report["spaces_created"] == 0
    assert [await _status(p) for p in patients] == [SpaceStatus.OPPOSED, SpaceStatus.ACTIVE]


def test_run_jobs_cli_with_now(
    tmp_path: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # given a space whose code went out 42 days ago, in a database the CLI is pointed at
    settings = _settings(tmp_path, database_url)
    sent = utcnow() - timedelta(days=42)

    async def given() -> None:
        await Tortoise.init(config=tortoise_config(database_url))
        try:
            await enroll_patient(
                Enrolment(
                    nir=make_nir(),
                    first_name="Camille",
                    last_name="Moreau",
                    birth_date=date(1985, 6, 2),
                    sex=Sex.FEMALE,
                    channel=Channel.EMAIL,
                    email="camille@example.org",
                ),
                vault=Vault(SECRET),
                mailer=settings.mailer,
                now=sent,
            )
        finally:
            await Tortoise.close_connections()

    async def statuses() -> list[SpaceStatus]:
        await Tortoise.init(config=tortoise_config(database_url))
        try:
            return list(await Patient.all().values_list("status", flat=True))  # type: ignore[arg-type]
        finally:
            await Tortoise.close_connections()

    asyncio.run(given())
    for name, value in {
        "ENVIRONMENT": "test",
        "DATA_DIR": str(tmp_path),
        "DATABASE_URL": database_url,
        "SECRET_KEY": SECRET,
        "TWO_FACTOR": "false",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SMTP_URL", raising=False)
    root_handlers = logging.getLogger().handlers[:]
    try:
        # when the CLI runs the jobs one day early, then on the day (with an offset)
        early = main(["run-jobs", "--now", (sent + timedelta(days=41)).isoformat()])
        early_out = capsys.readouterr().out
        status_early = asyncio.run(statuses())
        on_time = main(["run-jobs", "--now", (sent + timedelta(days=42)).isoformat()])
        on_time_out = capsys.readouterr().out
        naive = main(["run-jobs", "--now", "2026-01-01T09:00:00"])
    finally:
        logging.getLogger().handlers[:] = root_handlers

    # then it is created on the day only, and a moment without an offset is refused
    assert (early, "spaces_created: 0" in early_out, status_early) == (0, True, ["PENDING"])
    assert (on_time, "spaces_created: 1" in on_time_out) == (0, True)
    assert asyncio.run(statuses()) == ["ACTIVE"]
    assert naive == 2


async def test_a_code_queued_while_smtp_is_down_is_delivered_later(
    settings: Settings, mailbox: CaughtMail
) -> None:
    # given the SMTP server is unreachable at enrolment
    down = replace(settings, smtp_url=f"smtp://127.0.0.1:{free_port()}")
    app = create_app(down)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.9", 4242))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            operator = await make_operator()
            data = enrolment()

            # when an operator enrols someone
            patient = await enroll(client, operator.token, data)

            # then the enrolment succeeds and the message waits, code included
            assert patient["status"] == "PENDING"
            queued = await OutboxMessage.get(kind="activation_code")
            assert (queued.status, queued.attempts, mailbox.messages) == (Status.PENDING, 1, [])
            assert queued.secret is not None

            # when the jobs run later with the server back
            report = await run_jobs(settings, now=utcnow() + timedelta(minutes=5))

            # then the code arrives, is wiped from the outbox, and activates the space
            assert report["messages_delivered"] == 1
            code = activation_code_from(mailbox, data["email"])
            assert code == reveal(queued, Vault(settings.secret_key))
            sent = await OutboxMessage.get(id=queued.id)
            assert (sent.status, sent.secret) == (Status.SENT, None)
            result = await activate(
                client,
                {
                    "code": code,
                    "nir": data["nir"],
                    "birthDate": data["birthDate"],
                    "email": "c.m@example.net",
                    "password": STRONG_PASSWORD,
                },
            )
            assert result.ok()["activateSpace"]["patient"]["status"] == "ACTIVE"


async def test_the_links_of_a_minor_end_at_18_and_a_code_goes_to_the_new_adult(
    client: httpx.AsyncClient, settings: Settings, mailbox: CaughtMail
) -> None:
    # given a minor with an e-mail of their own, activated by their representative
    parent = await make_patient("Nadia", "Moreau")
    assert parent.email
    operator = await make_operator()
    today = paris_today()
    data = enrolment(
        first_name="Théo",
        birth_date=today - relativedelta(years=17),
        sex=Sex.MALE,
        email="theo@example.org",
        representativeId=parent.id,
    )
    child = await enroll(client, operator.token, data)
    code = activation_code_from(mailbox, parent.email)
    proof = {"code": code, "nir": data["nir"], "birthDate": data["birthDate"]}
    (await activate(client, proof, token=parent.token)).ok()
    assert (await gql(client, VIEWER, token=parent.token)).ok()["viewer"]["dependents"] == [
        {"id": child["id"]}
    ]

    # when the minor turns 18 today
    adult_birth = today - relativedelta(years=18)
    await Patient.filter(id=decode_as(child["id"], "Patient")).update(birth_date=adult_birth)

    # then the representative no longer sees them, even before the jobs run
    assert (await gql(client, VIEWER, token=parent.token)).ok()["viewer"]["dependents"] == []
    reps = await gql(
        client,
        "query($id: ID!) { patient(id: $id) { representatives { id } } }",
        {"id": child["id"]},
        token=parent.token,
    )
    assert reps.codes == ["NOT_FOUND"]

    # when the jobs run, twice
    first = await run_jobs(settings)
    second = await run_jobs(settings)

    # then the link ends once, and a code goes to the new adult, who activates alone
    assert (first["representations_ended"], second["representations_ended"]) == (1, 0)
    assert await Representation.filter(dependent_id=decode_as(child["id"], "Patient")).count() == 0
    new_code = activation_code_from(mailbox, "theo@example.org")
    result = await activate(
        client,
        {
            "code": new_code,
            "nir": data["nir"],
            "birthDate": adult_birth.isoformat(),
            "email": "theo@example.org",
            "password": STRONG_PASSWORD,
        },
    )
    assert result.ok()["activateSpace"]["patient"]["status"] == "ACTIVE"
    token = (await login(client, "theo@example.org", STRONG_PASSWORD)).ok()["login"]["token"]
    viewer = (await gql(client, VIEWER, token=token)).ok()["viewer"]
    assert (viewer["id"], viewer["nir"], viewer["representatives"]) == (
        child["id"],
        data["nir"],
        [],
    )


async def test_closed_spaces_are_purged_at_their_deadline(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    # given a space closed with a deletion request, another closed without one
    now = utcnow()
    asked = await make_patient("Alice", status=SpaceStatus.CLOSED)
    kept = await make_patient("Bob", status=SpaceStatus.CLOSED)
    await Patient.filter(id=asked.patient.id).update(
        closed_at=now,
        archived_until=now + relativedelta(years=10),
        delete_by=now + relativedelta(months=3),
    )
    await Patient.filter(id=kept.patient.id).update(
        closed_at=now, archived_until=now + relativedelta(years=10)
    )

    # when the jobs run before, then after the deadline
    before = await run_jobs(settings, now=now + relativedelta(months=3) - timedelta(days=1))
    after = await run_jobs(settings, now=now + relativedelta(months=3) + timedelta(days=1))

    # then only the requested deletion happens, on time
    assert (before["spaces_purged"], after["spaces_purged"]) == (0, 1)
    assert await Patient.filter(id=asked.patient.id).exists() is False
    assert await Patient.filter(id=kept.patient.id).exists() is True


async def test_at_18_a_code_never_goes_to_the_former_representative(
    client: httpx.AsyncClient, settings: Settings, mailbox: CaughtMail
) -> None:
    # given a minor with no contact of their own: their code went to the representative
    parent = await make_patient("Nadia", "Moreau")
    assert parent.email
    operator = await make_operator()
    data = enrolment(
        first_name="Théo",
        birth_date=paris_today() - relativedelta(years=10),
        email=None,
        representativeId=parent.id,
    )
    child = await enroll(client, operator.token, data)
    assert len(mailbox.messages) == 1
    old_code = activation_code_from(mailbox, parent.email)
    pk = decode_as(child["id"], "Patient")
    adult_birth = paris_today() - relativedelta(years=18)
    await Patient.filter(id=pk).update(birth_date=adult_birth)

    # when the jobs run on their 18th birthday
    report = await run_jobs(settings)

    # then the link ends, and no code of the new adult reaches the former representative
    assert report["representations_ended"] == 1
    assert await Representation.filter(dependent_id=pk).count() == 0
    assert len(mailbox.messages) == 1
    assert await OutboxMessage.all().count() == 1
    # and the code the representative holds no longer opens the adult's space
    proof = {"code": old_code, "nir": data["nir"], "birthDate": adult_birth.isoformat()}
    taken = await activate(
        client, {**proof, "email": "nadia.new@example.org", "password": STRONG_PASSWORD}
    )
    assert taken.codes == ["BAD_USER_INPUT"]
    assert await _status(child) == SpaceStatus.PENDING


async def test_reissue_with_a_new_contact_reaches_an_automatically_created_space(
    client: httpx.AsyncClient, mailbox: CaughtMail
) -> None:
    # Given a space created automatically, whose person never gave an e-mail
    operator = await make_operator()
    person = await make_patient("Zoé", "Martin", email=None)
    # When the operator re-issues the code with a new contact address
    result = await gql(
        client,
        "mutation($p: ID!) { reissueActivationCode(input: {patientId: $p, channel: EMAIL, "
        'email: "zoe.martin@example.org"}) { patient { status } } }',
        {"p": person.id},
        token=operator.token,
    )
    # Then the code goes there, and the address is kept for the next codes
    assert result.ok() == {"reissueActivationCode": {"patient": {"status": "ACTIVE"}}}
    assert "Mon espace sant" in mailbox.last_to("zoe.martin@example.org")
    await person.patient.refresh_from_db()
    assert person.patient.contact_email == "zoe.martin@example.org"
