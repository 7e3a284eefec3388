"""Each operation on a socket runs on a context of its own (review issue 9, finding 1),
seen through the protocol rather than by calling the view: over both graphql-transport-ws
and the legacy graphql-ws, a representative opening `accessLogged` twice on one socket
reads the log twice, and each read is its own access event, with its own request id and
its own time (when it was opened, not when the socket was). With one context per socket,
the second read would share the first's request id and audit trail (deduplicated away), and
the first would bear the connection's time.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from starlette.applications import Starlette

from models.audit import AccessAction, AccessEvent
from models.base import utcnow
from resolvers.ids import encode
from tests.factories import make_minor, make_patient
from tests.test_ws_reauth import PROTOCOLS, socket_of

ACCESS_LOGGED = """subscription($id: ID) { accessLogged(patientId: $id) { id action } }"""
WAIT = 10.0


async def events_about(patient_pk: object, count: int) -> list[AccessEvent]:
    """The log's events about the patient, once there are `count` of them."""
    async with asyncio.timeout(WAIT):
        while True:
            rows = await AccessEvent.filter(patient_id=patient_pk).order_by("at", "seq")
            if len(rows) >= count:
                return list(rows)
            await asyncio.sleep(0.02)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_each_subscription_on_a_socket_is_its_own_read_with_its_own_time(
    app: Starlette, protocol: str
) -> None:
    mother = await make_patient("Claire", "Petit")
    child = await make_minor(mother)
    async with socket_of(app, protocol, mother.token) as socket:
        await asyncio.sleep(0.3)  # what a clock taken at the connection would be late by
        first_sent = utcnow()
        await socket.start(ACCESS_LOGGED, {"id": child.id})
        [first] = await events_about(child.patient.id, 1)
        await asyncio.sleep(0.3)
        second_sent = utcnow()
        await socket.start(ACCESS_LOGGED, {"id": child.id})
        reads = await events_about(child.patient.id, 2)

        assert [(e.action, e.actor_id) for e in reads] == [
            (AccessAction.READ, mother.patient.id),
            (AccessAction.READ, mother.patient.id),
        ]
        assert reads[0].id == first.id
        assert reads[0].request_id != reads[1].request_id
        slack = timedelta(milliseconds=5)
        assert first_sent - slack <= reads[0].at < second_sent - slack <= reads[1].at
        # and what the streams carried is those two reads (each live stream gets the reads
        # logged from its start on), and nothing else: no read logged twice
        streamed = await socket.silent_for(0.5)
        assert streamed and {m["payload"]["data"]["accessLogged"]["id"] for m in streamed} <= {
            encode("AccessEvent", e.id) for e in reads
        }
        assert len(await AccessEvent.filter(patient_id=child.patient.id)) == 2
