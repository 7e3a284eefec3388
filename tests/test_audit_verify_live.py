"""Checking the access log's chain while it grows: an event committed during a check is no
break. The head and the events are read by separate statements; an event that commits
between them (with its head) must be taken as the chain's new end, not as a forgery past it,
nor the head found ahead of the events read as events missing at the end."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from api.config import Settings
from models.audit import AccessEvent, verify_chain
from tests.factories import make_patient, make_professional
from tests.graphql import gql
from tests.test_audit_chain import READ, audit_verify, execute, verify
from tests.test_documents import grant


@pytest.mark.parametrize("logged_before", [0, 1], ids=["new chain", "chain with a head"])
async def test_a_check_running_while_events_are_written_finds_no_break(
    client: httpx.AsyncClient, settings: Settings, logged_before: int
) -> None:
    # given a dossier that 40 professionals may read (and read already, or never)
    holder = await make_patient("Alice", "Lefebvre")
    doctors = [await make_professional(f"Docteur{n}") for n in range(40)]
    for doctor in doctors:
        await grant(holder, doctor)
    for _ in range(logged_before):
        (await gql(client, READ, {"id": holder.id}, token=str(doctors[0].token))).ok()

    # when they all read it at once, while the chain is checked again and again
    done = asyncio.Event()
    checks = []

    async def check_until_done() -> None:
        runs = 0
        while not done.is_set() or runs < 3:
            checks.append(await verify_chain(holder.patient.id))
            runs += 1
            await asyncio.sleep(0)

    async def reads() -> None:
        try:
            await asyncio.gather(
                *(gql(client, READ, {"id": holder.id}, token=str(d.token)) for d in doctors)
            )
        finally:
            done.set()

    await asyncio.gather(reads(), check_until_done(), check_until_done())

    # then no check saw a break, and each saw a chain as long as its head said
    assert len(checks) >= 6
    assert [c.broken for c in checks if c.broken is not None] == []
    assert all(c.events == c.head_seq for c in checks)
    final = await verify_chain(holder.patient.id)
    total = 40 + logged_before
    assert (final.valid, final.events, final.head_seq) == (True, total, total)
    # and the command agrees once it is still
    assert audit_verify(settings).returncode == 0


async def test_an_event_past_the_head_is_still_a_break_after_the_head_is_read_again(
    client: httpx.AsyncClient,
) -> None:
    # given a log of three events whose head a forger moved back by one, as if the third
    # event were appended past the end of the chain
    holder = await make_patient("Alice", "Lefebvre")
    doctor = await make_professional("Garnier")
    await grant(holder, doctor)
    for _ in range(3):
        (await gql(client, READ, {"id": holder.id}, token=str(doctor.token))).ok()
    second, third = list(await AccessEvent.filter(patient_id=holder.patient.id).order_by("seq"))[1:]
    await execute(
        "UPDATE access_log_head SET seq = 2, chain_hash = {} WHERE patient_id = {}",
        second.chain_hash,
        str(holder.patient.id),
    )

    # then the check, reading the head again, still finds the third past the end
    checked = await verify_chain(holder.patient.id)
    assert checked.broken is not None
    assert (checked.broken.seq, checked.broken.event_id) == (3, third.id)
    assert checked.broken.reason == "an event past the end of the chain"
    answer = await verify(client, holder)
    assert answer["valid"] is False and answer["events"] == 3
