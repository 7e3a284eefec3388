"""The access log is tamper-evident: a hash chain per space, written with each event, safe
under concurrent writers, checked by `verifyAccessLog` and `espace-sante audit verify`."""

from __future__ import annotations

import asyncio
import importlib
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
from tortoise import Tortoise, connections
from tortoise.backends.base.executor import EXECUTOR_CACHE
from tortoise.config import TortoiseConfig
from tortoise.migrations.api import migrate as migrate_api

from api.config import Settings
from api.db import tortoise_config
from models.audit import GENESIS, AccessEvent, AccessLogHead, link, verify_chain
from models.base import parameter_prefix, utcnow
from models.consent import ConsentAccess
from tests.factories import Person, Staff, make_minor, make_patient, make_professional
from tests.graphql import gql
from tests.test_documents import add, grant

VERIFY = """query($id: ID) { verifyAccessLog(patientId: $id) { valid events firstBrokenAt } }"""
READ = "query($id: ID!) { patient(id: $id) { firstName } }"
LOG = """query($id: ID!) { patient(id: $id) { accessLog(first: 100) {
  edges { node { id at } } } } }"""


async def space_read(client: httpx.AsyncClient, reads: int) -> tuple[Person, Staff]:
    """A holder whose dossier a professional under consent read `reads` times: as many
    access events, one per request."""
    holder = await make_patient("Alice", "Lefebvre")
    doctor = await make_professional("Garnier")
    await grant(holder, doctor)
    for _ in range(reads):
        (await gql(client, READ, {"id": holder.id}, token=str(doctor.token))).ok()
    return holder, doctor


async def verify(client: httpx.AsyncClient, person: Person, space: str | None = None) -> Any:
    return (await gql(client, VERIFY, {"id": space}, token=person.token)).ok()["verifyAccessLog"]


async def chain(person: Person) -> list[AccessEvent]:
    return list(await AccessEvent.filter(patient_id=person.patient.id).order_by("seq"))


async def moment_of(client: httpx.AsyncClient, holder: Person, event: AccessEvent) -> str:
    """The event's `at`, as the API answers it (what `firstBrokenAt` must repeat)."""
    data = (await gql(client, LOG, {"id": holder.id}, token=holder.token)).ok()
    from resolvers.ids import encode

    wanted = encode("AccessEvent", event.id)
    (found,) = [
        e["node"]["at"] for e in data["patient"]["accessLog"]["edges"] if e["node"]["id"] == wanted
    ]
    return str(found)


async def execute(sql: str, *params: Any) -> None:
    db = connections.get("default")
    p = parameter_prefix(db)
    await db.execute_query(
        sql.format(*(f"{p}{n}" for n in range(1, len(params) + 1))), list(params)
    )


def audit_verify(settings: Settings) -> subprocess.CompletedProcess[str]:
    """`espace-sante audit verify`, the real command in a process of its own."""
    env = {
        **os.environ,
        "DATA_DIR": str(settings.data_dir),
        "DATABASE_URL": settings.database_url,
        "SECRET_KEY": settings.secret_key,
        "ENVIRONMENT": "development",
        "TWO_FACTOR": "false",
        "SCHEDULER_ENABLED": "false",
    }
    return subprocess.run(
        [sys.executable, "-m", "api.cli", "audit", "verify"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# --- written with each event ------------------------------------------------------------


async def test_each_event_carries_the_hash_of_the_one_before_and_the_log_verifies(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    # given a dossier read four times by a professional
    holder, _ = await space_read(client, 4)

    # when the holder checks the log
    answer = await verify(client, holder)

    # then each event is at its place, linked to the one before, and the head names the last
    events = await chain(holder)
    assert [e.seq for e in events] == [1, 2, 3, 4]
    previous = GENESIS
    for event in events:
        values = {name: getattr(event, name) for name in ("id", "seq", "patient_id", "at")}
        values.update(
            created_at=event.created_at,
            actor_id=event.actor_id,
            actor_role=event.actor_role,
            action=event.action,
            basis=event.basis,
            document_id=event.document_id,
            request_id=event.request_id,
        )
        assert event.chain_hash == link(previous, values)
        previous = event.chain_hash
    head = await AccessLogHead.get(patient_id=holder.patient.id)
    assert (head.seq, head.chain_hash) == (4, previous)
    assert answer == {"valid": True, "events": 4, "firstBrokenAt": None}
    # and the command agrees
    done = audit_verify(settings)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1].endswith(": all chains verify")


async def test_a_changed_event_is_detected_at_that_event(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    # given a log of five events, the third one's basis changed in the database
    holder, _ = await space_read(client, 5)
    third = (await chain(holder))[2]
    at = await moment_of(client, holder, third)

    await execute("UPDATE access_event SET basis = {} WHERE id = {}", "EMERGENCY", str(third.id))

    # then the check says where
    assert await verify(client, holder) == {"valid": False, "events": 5, "firstBrokenAt": at}
    done = audit_verify(settings)
    assert done.returncode == 1
    assert f"BROKEN patient {holder.patient.id}: at position 3 (event {third.id}," in done.stdout
    assert "this event was altered" in done.stdout
    assert done.stdout.splitlines()[-1].endswith(": 1 broken")


async def test_a_changed_moment_is_detected_too(client: httpx.AsyncClient) -> None:
    holder, _ = await space_read(client, 3)
    second = (await chain(holder))[1]

    await execute(
        "UPDATE access_event SET at = {} WHERE id = {}", utcnow().replace(year=2020), str(second.id)
    )

    answer = await verify(client, holder)
    assert (answer["valid"], answer["firstBrokenAt"][:4]) == (False, "2020")


async def test_a_deleted_event_is_detected_at_the_one_after_it(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    holder, _ = await space_read(client, 5)
    events = await chain(holder)
    fourth_at = await moment_of(client, holder, events[3])

    await execute("DELETE FROM access_event WHERE id = {}", str(events[2].id))

    assert await verify(client, holder) == {
        "valid": False,
        "events": 4,
        "firstBrokenAt": fourth_at,
    }
    done = audit_verify(settings)
    assert done.returncode == 1
    assert "at position 4" in done.stdout and "an event is missing before this one" in done.stdout


async def test_a_deleted_last_event_is_detected_at_the_end(client: httpx.AsyncClient) -> None:
    holder, _ = await space_read(client, 3)
    last = (await chain(holder))[2]
    last_at = await moment_of(client, holder, last)

    await execute("DELETE FROM access_event WHERE id = {}", str(last.id))

    # the head still names the third event: the chain ends short of it
    assert await verify(client, holder) == {"valid": False, "events": 2, "firstBrokenAt": last_at}


async def test_an_inserted_event_is_detected_at_it(client: httpx.AsyncClient) -> None:
    # given a log of four events, and a forged one slipped in at the third place (the
    # later ones moved down, as the positions are unique)
    holder, doctor = await space_read(client, 4)
    events = await chain(holder)
    for event in reversed(events[2:]):
        await execute(
            "UPDATE access_event SET seq = {} WHERE id = {}", event.seq + 1, str(event.id)
        )
    forged_at = events[1].at + (events[2].at - events[1].at) / 2
    await AccessEvent.create(
        id=uuid.uuid4(),
        at=forged_at,
        patient_id=holder.patient.id,
        actor_id=doctor.pk,
        actor_role="PROFESSIONAL",
        action="READ",
        basis="CONSENT",
        request_id="forged",
        seq=3,
        chain_hash=events[2].chain_hash,
    )
    forged = await AccessEvent.get(request_id="forged")
    at = await moment_of(client, holder, forged)

    assert await verify(client, holder) == {"valid": False, "events": 5, "firstBrokenAt": at}


async def test_an_event_appended_past_the_head_is_detected_at_it_even_well_linked(
    client: httpx.AsyncClient,
) -> None:
    # given a forger who links the extra event properly but cannot move the head
    holder, doctor = await space_read(client, 2)
    last = (await chain(holder))[-1]
    values = {
        "id": uuid.uuid4(),
        "seq": 3,
        "patient_id": holder.patient.id,
        "at": utcnow(),
        "created_at": utcnow(),
        "actor_id": doctor.pk,
        "actor_role": "PROFESSIONAL",
        "action": "READ",
        "basis": "CONSENT",
        "document_id": None,
        "request_id": "appended",
    }
    await AccessEvent.create(**values, chain_hash=link(last.chain_hash, values))
    at = await moment_of(client, holder, await AccessEvent.get(request_id="appended"))

    assert await verify(client, holder) == {"valid": False, "events": 3, "firstBrokenAt": at}


# --- concurrent writers -----------------------------------------------------------------


async def test_fifty_concurrent_events_on_one_space_leave_one_valid_chain(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    # given a dossier that 50 professionals may read
    holder = await make_patient("Alice", "Lefebvre")
    doctors = [await make_professional(f"Docteur{n}") for n in range(50)]
    for doctor in doctors:
        await grant(holder, doctor)

    # when they all read it at once (each request writes its event in its transaction)
    results = await asyncio.gather(
        *(gql(client, READ, {"id": holder.id}, token=str(d.token)) for d in doctors)
    )

    # then the chain has no fork and no gap
    assert all(r.ok() == {"patient": {"firstName": "Alice"}} for r in results)
    assert [e.seq for e in await chain(holder)] == list(range(1, 51))
    assert {e.actor_id for e in await chain(holder)} == {d.pk for d in doctors}
    assert await verify(client, holder) == {"valid": True, "events": 50, "firstBrokenAt": None}
    checked = await verify_chain(holder.patient.id)
    assert (checked.valid, checked.head_seq) == (True, 50)


async def test_concurrent_events_on_many_spaces_each_keep_their_own_chain(
    client: httpx.AsyncClient,
) -> None:
    doctor = await make_professional("Garnier")
    holders = [await make_patient(f"Alice{n}", "Lefebvre") for n in range(5)]
    for holder in holders:
        await grant(holder, doctor)

    await asyncio.gather(
        *(gql(client, READ, {"id": h.id}, token=str(doctor.token)) for h in holders * 4)
    )

    for holder in holders:
        # a request dedupes nothing across requests: four reads, four events each
        assert [e.seq for e in await chain(holder)] == [1, 2, 3, 4]
        assert (await verify_chain(holder.patient.id)).valid


# --- who may check ----------------------------------------------------------------------


async def test_only_the_holder_and_representatives_check_a_log(client: httpx.AsyncClient) -> None:
    holder, doctor = await space_read(client, 2)
    other = await make_patient("Bruno", "Moreau")
    before = await AccessEvent.all().count()

    as_doctor = await gql(client, VERIFY, {"id": holder.id}, token=str(doctor.token))
    as_other = await gql(client, VERIFY, {"id": holder.id}, token=other.token)
    anonymous = await gql(client, VERIFY, {"id": holder.id})

    assert as_doctor.codes == ["FORBIDDEN"]  # sees the space, does not manage it
    assert as_other.codes == ["NOT_FOUND"]
    assert anonymous.codes == ["UNAUTHENTICATED"]
    assert await AccessEvent.all().count() == before
    # the holder's own check is no access event
    await verify(client, holder)
    assert await AccessEvent.all().count() == before


async def test_a_representative_counts_only_what_they_read_and_no_break_among_the_rest(
    client: httpx.AsyncClient,
) -> None:
    # given a minor's dossier with a document a professional hid from representatives
    parent = await make_patient("Nadia", "Moreau")
    child = await make_minor(parent)
    doctor = await make_professional("Garnier")
    await grant(child, doctor, ConsentAccess.READ_WRITE)
    await add(
        client, doctor.token, patientId=child.id, title="Secret", hiddenFromRepresentatives=True
    )
    (await gql(client, READ, {"id": child.id}, token=str(doctor.token))).ok()
    hidden, visible = await chain(child)  # the deposit (hidden), then the read

    # when the parent checks the log: only the read is theirs to count (and their check is
    # a read of the log, logged after the count)
    first = await verify(client, parent, child.id)

    assert first == {"valid": True, "events": 1, "firstBrokenAt": None}
    # and when the hidden deposit's event is altered, the parent learns the log is broken,
    # and where first among what they read: at the next event they read
    await execute("UPDATE access_event SET basis = {} WHERE id = {}", "AUTHOR", str(hidden.id))
    broken = await verify(client, parent, child.id)
    assert broken["valid"] is False and broken["events"] == 2
    assert broken["firstBrokenAt"] == await moment_of(client, parent_view(parent, child), visible)


def parent_view(parent: Person, child: Person) -> Person:
    """The parent, asking about the child's space."""
    return Person(patient=child.patient, nir=child.nir, email=None, token=parent.token)


# --- closures, purges, oppositions ------------------------------------------------------


async def test_a_closed_then_reopened_space_keeps_one_chain(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    from models.patient import Patient, SpaceStatus

    holder, doctor = await space_read(client, 2)
    await Patient.filter(id=holder.patient.id).update(status=SpaceStatus.CLOSED)
    assert audit_verify(settings).returncode == 0  # a closed space's log stays as it was
    await Patient.filter(id=holder.patient.id).update(status=SpaceStatus.ACTIVE)

    (await gql(client, READ, {"id": holder.id}, token=str(doctor.token))).ok()

    assert [e.seq for e in await chain(holder)] == [1, 2, 3]
    assert await verify(client, holder) == {"valid": True, "events": 3, "firstBrokenAt": None}


async def test_a_space_erased_takes_its_chain_and_a_new_one_starts_from_the_first(
    client: httpx.AsyncClient,
) -> None:
    from models.patient import Patient

    holder, _ = await space_read(client, 2)
    other, _ = await space_read(client, 1)

    await Patient.filter(id=holder.patient.id).delete()  # as the purge of a closed space does

    assert await AccessLogHead.filter(patient_id=holder.patient.id).count() == 0
    assert await AccessEvent.filter(patient_id=holder.patient.id).count() == 0
    assert (await verify_chain(other.patient.id)).valid


# --- the migration ----------------------------------------------------------------------


def test_the_migration_chains_the_events_already_logged(tmp_path: Path) -> None:
    """On SQLite in this process, whatever database the suite runs on."""
    migration = importlib.import_module("models.migrations.0008_access_log_chain")
    (_, before) = migration.Migration.dependencies[0]
    url = f"sqlite://{tmp_path / 'old.sqlite3'}"
    config = TortoiseConfig.from_dict(tortoise_config(url))
    patient = uuid.uuid4()
    rows = [
        (uuid.uuid4(), f"2026-01-0{day} 10:00:00.{micro}+00:00")
        for day, micro in ((3, "000001"), (1, "250000"), (2, "999999"))
    ]

    async def run() -> None:
        await Tortoise.init(config=tortoise_config(url))
        try:
            await migrate_api(config=config, app_labels=["models"], target=f"models.{before}")
            db = connections.get("default")
            await db.execute_query(
                "INSERT INTO patient (id, created_at, nir_hash, first_name, last_name, birth_date,"
                " sex, status, emergency_access_opposed) VALUES (?, ?, ?, 'A', 'B', '1980-01-01',"
                " 'FEMALE', 'ACTIVE', 0)",
                [str(patient), utcnow(), "h" * 64],
            )
            for event_id, at in rows:
                await db.execute_query(
                    "INSERT INTO access_event (id, created_at, at, patient_id, actor_id,"
                    " actor_role, action, basis, document_id, request_id) VALUES"
                    " (?, ?, ?, ?, ?, 'PROFESSIONAL', 'READ', 'CONSENT', NULL, 'r')",
                    [str(event_id), at, at, str(patient), str(uuid.uuid4())],
                )
            await migrate_api(config=config, app_labels=["models"], target=None)
            chained = await AccessEvent.filter(patient_id=patient).order_by("seq")
            checked = await verify_chain(patient)
            assert [e.id for e in chained] == [rows[1][0], rows[2][0], rows[0][0]]  # by moment
            assert [e.seq for e in chained] == [1, 2, 3]
            assert (checked.valid, checked.events, checked.head_seq) == (True, 3, 3)
        finally:
            await Tortoise.close_connections()

    EXECUTOR_CACHE.clear()
    try:
        asyncio.run(run())
    finally:
        EXECUTOR_CACHE.clear()
