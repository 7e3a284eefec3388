"""The access log's chains through the life of a space, by the real paths: a space closed by
its holder keeps its chain (still checked by the holder and the command), a deletion carried
out by the jobs takes the space's events and head and leaves every other chain valid, and an
opposition erases the log so that what is logged afterwards starts a chain of its own."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
from dateutil.relativedelta import relativedelta
from tortoise.transactions import in_transaction

from api.config import Settings
from api.jobs import run_jobs
from models.audit import (
    AccessAction,
    AccessBasis,
    AccessEvent,
    AccessLogHead,
    ActorRole,
    AuditTrail,
    verify_chain,
)
from models.base import utcnow
from models.erasure import erase_space_rows
from models.patient import Patient, SpaceStatus
from tests.factories import PASSWORD, make_patient, make_professional
from tests.graphql import gql
from tests.lifecycle_support import CLOSE, REQUEST_DELETION, login
from tests.test_audit_chain import audit_verify, chain, space_read

VERIFY = "{ verifyAccessLog { valid events firstBrokenAt } }"


async def test_closing_keeps_the_chain_and_the_purge_takes_it_leaving_the_others_valid(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    # given two spaces a professional read, three times and twice
    leaving, _ = await space_read(client, 3)
    staying, _ = await space_read(client, 2)
    assert leaving.email is not None

    # when the first holder closes her space
    closed = await gql(client, CLOSE, {"input": {"password": PASSWORD}}, token=leaving.token)
    assert closed.ok()["closeSpace"]["patient"]["status"] == "CLOSED"

    # then its log is kept as it was, and still verifies, for her and for the command
    assert [e.seq for e in await chain(leaving)] == [1, 2, 3]
    token = (await login(client, leaving.email, PASSWORD)).ok()["login"]["token"]
    answer = (await gql(client, VERIFY, token=token)).ok()["verifyAccessLog"]
    assert answer == {"valid": True, "events": 3, "firstBrokenAt": None}
    done = audit_verify(settings)
    assert done.returncode == 0, done.stdout + done.stderr

    # when she asks for its deletion, and the jobs run past the deadline
    asked = await gql(client, REQUEST_DELETION, {"input": {"password": PASSWORD}}, token=token)
    assert asked.ok()["requestDeletion"]["deleteBy"]
    ran = await run_jobs(settings, now=utcnow() + relativedelta(months=3) + timedelta(days=1))
    assert ran["spaces_purged"] == 1

    # then the space is gone with its events and its head: nothing of it is kept
    assert not await Patient.exists(id=leaving.patient.id)
    assert await AccessEvent.filter(patient_id=leaving.patient.id).count() == 0
    assert await AccessLogHead.filter(patient_id=leaving.patient.id).count() == 0
    # and every other chain is untouched and verifies
    assert [e.seq for e in await chain(staying)] == [1, 2]
    assert (await verify_chain(staying.patient.id)).valid
    done = audit_verify(settings)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1].endswith(": all chains verify")
    assert str(leaving.patient.id) not in done.stdout


async def test_after_an_opposition_what_is_logged_starts_a_chain_of_its_own(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    # given a pending space with a log (a professional identified the person), then
    # opposed: its rows erased as models/erasure.py erases them, the proof row kept
    pending = await make_patient("Alice", "Lefebvre", status=SpaceStatus.PENDING)
    doctor = await make_professional("Garnier")
    trail = AuditTrail(
        request_id=uuid.uuid4().hex,
        actor_id=uuid.UUID(str(doctor.pk)),
        actor_role=ActorRole.PROFESSIONAL,
        now=utcnow(),
    )
    await trail.record(
        patient_id=pending.patient.id, action=AccessAction.LOOKUP, basis=AccessBasis.LOOKUP
    )
    await trail.record(
        patient_id=pending.patient.id, action=AccessAction.READ, basis=AccessBasis.LOOKUP
    )
    assert [e.seq for e in await chain(pending)] == [1, 2]
    async with in_transaction() as conn:
        await (
            Patient.filter(id=pending.patient.id)
            .using_db(conn)
            .update(status=SpaceStatus.OPPOSED, opposed_at=utcnow())
        )
        await erase_space_rows(pending.patient.id, using_db=conn)
    assert await AccessLogHead.filter(patient_id=pending.patient.id).count() == 0
    assert (await verify_chain(pending.patient.id)).valid  # nothing left, nothing broken

    # when something is logged about the proof row afterwards
    later = AuditTrail(
        request_id=uuid.uuid4().hex,
        actor_id=uuid.UUID(str(doctor.pk)),
        actor_role=ActorRole.PROFESSIONAL,
        now=utcnow(),
    )
    await later.record(
        patient_id=pending.patient.id, action=AccessAction.LOOKUP, basis=AccessBasis.LOOKUP
    )

    # then its chain starts again from the first position, and verifies
    assert [e.seq for e in await chain(pending)] == [1]
    checked = await verify_chain(pending.patient.id)
    assert (checked.valid, checked.events, checked.head_seq) == (True, 1, 1)
    done = audit_verify(settings)
    assert done.returncode == 0, done.stdout + done.stderr
