"""Tampering with any one column of one event row shows, at the right place: every column the
hash covers, changed on the third of five events, breaks the chain at that event (a changed
position or space, at the event after the gap it leaves), and the command says where. The
first event deleted, or the head removed, show too."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest

from api.config import Settings
from models.audit import CHAINED, AccessEvent, verify_chain
from tests.factories import make_patient
from tests.test_audit_chain import audit_verify, chain, execute, space_read

CHANGES: dict[str, Any] = {
    "id": lambda e: str(uuid.uuid4()),
    "seq": lambda e: 99,
    "patient_id": None,  # to another space: filled in by the test
    "at": lambda e: e.at + timedelta(milliseconds=1),
    "created_at": lambda e: e.created_at + timedelta(milliseconds=1),
    "actor_id": lambda e: str(uuid.uuid4()),
    "actor_role": lambda e: "OPERATOR",
    "action": lambda e: "DOWNLOAD",
    "basis": lambda e: "EMERGENCY",
    "document_id": lambda e: str(uuid.uuid4()),
    "request_id": lambda e: "forged",
    "establishment_id": lambda e: str(uuid.uuid4()),
    "chain_hash": lambda e: "0" * 64,
}


def test_every_column_the_hash_covers_is_tried() -> None:
    assert set(CHANGES) == {*CHAINED, "chain_hash"}


@pytest.mark.parametrize("column", list(CHANGES))
async def test_one_column_of_one_event_changed_is_detected_at_that_event(
    client: httpx.AsyncClient, settings: Settings, column: str
) -> None:
    # given a log of five events
    holder, _ = await space_read(client, 5)
    events = await chain(holder)
    third = events[2]
    other = await make_patient("Bruno", "Moreau")
    value = str(other.patient.id) if column == "patient_id" else CHANGES[column](third)

    # when one column of the third is changed in the database
    await execute(f"UPDATE access_event SET {column} = {{}} WHERE id = {{}}", value, str(third.id))

    # then the chain breaks there: at the third event, or, when the change takes it out of
    # its place (its position, its space), at the fourth, which now follows a gap
    checked = await verify_chain(holder.patient.id)
    assert checked.broken is not None
    moved = column in ("seq", "patient_id")
    expected = events[3] if moved else third
    assert checked.broken.seq == expected.seq
    if column != "id":
        assert checked.broken.event_id == expected.id
    assert checked.broken.at == (
        expected.at if column != "at" else third.at + timedelta(milliseconds=1)
    )
    done = audit_verify(settings)
    assert done.returncode == 1
    assert f"BROKEN patient {holder.patient.id}: at position {expected.seq} " in done.stdout
    if column == "patient_id":
        # and the space it was moved to breaks too, at the stray event
        assert f"BROKEN patient {other.patient.id}: at position 3 " in done.stdout


async def test_the_first_event_deleted_or_the_head_removed_is_detected(
    client: httpx.AsyncClient,
) -> None:
    first_gone, _ = await space_read(client, 3)
    headless, _ = await space_read(client, 3)
    events = await chain(first_gone)

    await execute("DELETE FROM access_event WHERE id = {}", str(events[0].id))
    await execute("DELETE FROM access_log_head WHERE patient_id = {}", str(headless.patient.id))

    broken = (await verify_chain(first_gone.patient.id)).broken
    assert broken is not None and (broken.seq, broken.event_id) == (2, events[1].id)
    assert broken.reason == "an event is missing before this one"
    broken = (await verify_chain(headless.patient.id)).broken
    assert broken is not None and (broken.seq, broken.event_id) == (3, None)
    assert broken.reason == "the chain has no head"
    assert await AccessEvent.filter(patient_id=headless.patient.id).count() == 3
