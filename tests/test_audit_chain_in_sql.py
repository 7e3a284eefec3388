"""The database computes each event's hash in the statement that moves its chain's head
(models/audit.py `append_event`): the hash must be exactly `link`'s, the encoding exactly
the one events were always hashed with, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx

from models.audit import (
    CHAINED,
    GENESIS,
    AccessAction,
    AccessBasis,
    AccessEvent,
    AccessLogHead,
    ActorRole,
    AuditTrail,
    canonical,
    link,
    verify_chain,
)
from models.base import utcnow
from tests.factories import make_patient, make_professional
from tests.sql_counter import count_statements


def reference_canonical(event: dict[str, Any]) -> bytes:
    """The encoding as first written (one JSON object with the position among the keys)."""

    def uid(value: Any) -> str | None:
        return None if value is None else str(uuid.UUID(str(value)))

    def instant(value: datetime) -> str:
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    encoded = {
        "id": uid(event["id"]),
        "seq": int(event["seq"]),
        "patient_id": uid(event["patient_id"]),
        "at": instant(event["at"]),
        "created_at": instant(event["created_at"]),
        "actor_id": uid(event["actor_id"]),
        "actor_role": str(getattr(event["actor_role"], "value", event["actor_role"])),
        "action": str(getattr(event["action"], "value", event["action"])),
        "basis": str(getattr(event["basis"], "value", event["basis"])),
        "document_id": uid(event["document_id"]),
        "request_id": str(event["request_id"]),
    }
    if event.get("establishment_id") is not None:
        encoded["establishment_id"] = uid(event["establishment_id"])
    return json.dumps(encoded, sort_keys=True, separators=(",", ":")).encode("ascii")


def an_event(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": uuid.uuid4(),
        "seq": 1,
        "patient_id": uuid.uuid4(),
        "at": datetime(2026, 3, 1, 12, 30, 5, 123456, tzinfo=UTC),
        "created_at": datetime(2026, 3, 1, 12, 30, 5, 123999, tzinfo=UTC),
        "actor_id": uuid.uuid4(),
        "actor_role": ActorRole.PROFESSIONAL,
        "action": AccessAction.READ,
        "basis": AccessBasis.CONSENT,
        "document_id": None,
        "request_id": uuid.uuid4().hex,
        "establishment_id": None,
    }
    return {**event, **changes}


def test_the_encoding_is_the_one_events_were_always_hashed_with() -> None:
    paris = timezone(timedelta(hours=1))
    variants = [
        an_event(),
        an_event(seq=1234567890123),
        an_event(document_id=uuid.uuid4(), establishment_id=uuid.uuid4()),
        an_event(id=str(uuid.uuid4()).upper(), patient_id=uuid.uuid4().hex),  # as text
        an_event(at=datetime(2026, 3, 1, 13, 0, tzinfo=paris), created_at=datetime(2026, 1, 1)),
        an_event(at=datetime(2026, 3, 1, 12, 0, tzinfo=UTC), created_at=datetime(999, 1, 2, 3, 4)),
        an_event(request_id='quote " backslash \\ accent é \n', action="WRITE", basis="APP"),
    ]
    for event in variants:
        assert canonical(event) == reference_canonical(event)


async def trail_for(actor_id: uuid.UUID, request_id: str) -> AuditTrail:
    return AuditTrail(
        request_id=request_id, actor_id=actor_id, actor_role=ActorRole.PROFESSIONAL, now=utcnow()
    )


async def test_the_database_hashes_each_event_as_link_does(client: httpx.AsyncClient) -> None:
    # given a space and a professional
    holder = await make_patient("Alice", "Lefebvre")
    doctor = await make_professional("Garnier")
    actor = uuid.UUID(str(doctor.pk))
    establishment = uuid.uuid4()

    # when events are logged: the first of the chain, then others, with request ids that
    # JSON escapes and an establishment
    for request_id in ("plain", 'a "quoted" \\ é', "x" * 32):
        trail = await trail_for(actor, request_id)
        await trail.record(
            patient_id=holder.patient.id,
            action=AccessAction.READ,
            basis=AccessBasis.CONSENT,
            establishment_id=establishment if request_id == "plain" else None,
        )

    # then every stored hash is `link` of the previous one and of the event as stored
    rows = (
        await AccessEvent.filter(patient_id=holder.patient.id)
        .order_by("seq")
        .values(*CHAINED, "chain_hash")
    )
    assert [row["seq"] for row in rows] == [1, 2, 3]
    previous = GENESIS
    for row in rows:
        assert row["chain_hash"] == link(previous, row)
        previous = row["chain_hash"]
    head = await AccessLogHead.get(patient_id=holder.patient.id)
    assert (head.seq, head.chain_hash) == (3, previous)
    assert (await verify_chain(holder.patient.id)).valid


async def test_an_event_costs_one_statement_on_postgresql_two_on_sqlite(
    client: httpx.AsyncClient,
) -> None:
    holder = await make_patient("Alice", "Lefebvre")
    doctor = await make_professional("Garnier")
    trail = await trail_for(uuid.UUID(str(doctor.pk)), "counted")
    await (await trail_for(uuid.UUID(str(doctor.pk)), "warm-up")).record(
        patient_id=holder.patient.id, action=AccessAction.READ, basis=AccessBasis.CONSENT
    )

    with count_statements() as statements:
        await trail.record(
            patient_id=holder.patient.id, action=AccessAction.READ, basis=AccessBasis.CONSENT
        )

    postgres = AccessEvent._meta.db.capabilities.dialect == "postgres"
    # PostgreSQL: the head moved and the event written by one statement, atomic by itself;
    # SQLite: the head moved (returning the position and hash), then the event.
    assert len(statements) == (1 if postgres else 2), "\n".join(statements)
    events = AccessEvent.filter(patient_id=holder.patient.id).order_by("seq")
    assert [e.seq for e in await events] == [1, 2]
