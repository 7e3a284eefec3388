"""An event and the end of its chain are written in the transaction of the access they log:
when that transaction rolls back, neither the event nor the head's move is left, and the next
event takes the position the rolled-back one would have had, the chain valid throughout."""

from __future__ import annotations

import uuid

import httpx
import pytest
from tortoise.transactions import in_transaction

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
from tests.test_audit_chain import chain, space_read


class Refused(Exception):
    pass


async def test_a_rolled_back_access_leaves_neither_its_event_nor_the_heads_move(
    client: httpx.AsyncClient,
) -> None:
    # given a log of two events
    holder, doctor = await space_read(client, 2)
    head = await AccessLogHead.get(patient_id=holder.patient.id)
    trail = AuditTrail(
        request_id=uuid.uuid4().hex,
        actor_id=uuid.UUID(str(doctor.pk)),
        actor_role=ActorRole.PROFESSIONAL,
        now=utcnow(),
    )

    # when a write logs its event inside its transaction, then fails
    with pytest.raises(Refused):
        async with in_transaction():
            await trail.record(
                patient_id=holder.patient.id, action=AccessAction.WRITE, basis=AccessBasis.CONSENT
            )
            inside = await AccessEvent.filter(patient_id=holder.patient.id).count()
            assert inside == 3  # written in this transaction, seen by it
            raise Refused

    # then nothing of it is left: not the event, not the head's move
    assert [e.seq for e in await chain(holder)] == [1, 2]
    after = await AccessLogHead.get(patient_id=holder.patient.id)
    assert (after.seq, after.chain_hash) == (head.seq, head.chain_hash)
    assert (await verify_chain(holder.patient.id)).valid
    # and the next event takes the third position
    later = AuditTrail(
        request_id=uuid.uuid4().hex,
        actor_id=uuid.UUID(str(doctor.pk)),
        actor_role=ActorRole.PROFESSIONAL,
        now=utcnow(),
    )
    await later.record(
        patient_id=holder.patient.id, action=AccessAction.READ, basis=AccessBasis.CONSENT
    )
    assert [e.seq for e in await chain(holder)] == [1, 2, 3]
    checked = await verify_chain(holder.patient.id)
    assert (checked.valid, checked.events, checked.head_seq) == (True, 3, 3)
