"""Partner apps and the live side (issue 11): a platform's booking raises its reminders and
reaches the patient's live alerts like any other appointment; an app token on the GraphQL
websocket is held to its documents, streams nothing of the patient's, and once the patient
revokes the app its socket ends at the next operation (4401), as a logged-out session's."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from api.config import Settings
from api.jobs import run_jobs
from models.audit import AccessEvent
from models.base import utcnow
from models.reminder import Reminder, ReminderStatus
from resolvers.positions import position_cursor
from tests.catalogue_support import BASE, catalogue_state, connect, register_app, run
from tests.factories import make_operator, make_patient
from tests.graphql import gql
from tests.test_ws_reauth import PROTOCOLS, TRANSPORT_WS, Socket, socket_of

BOOK = (
    "mutation Book($input: CreateAppointmentInput!) { createAppointment(input: $input) "
    "{ appointment { id source } } }"
)
APP_ALERTS = "subscription AppAlerts { reminderAlerts { title } }"
ALERTS = """subscription($after: String) {
  reminderAlerts(after: $after) { kind title status appointment { title source } } }"""
REVOKE = "mutation($app: ID!) { revokeAppAccess(input: {appId: $app}) { patient { id } } }"


@pytest.fixture
async def http(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("127.0.0.9", 4242))
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        yield client


async def send_document(socket: Socket, document_id: str) -> str:
    """A subscribe naming a persisted document by id, as an app sends it."""
    socket.ids += 1
    kind = "subscribe" if socket.protocol == TRANSPORT_WS else "start"
    payload = {"documentId": document_id, "variables": {}}
    await socket.raw.send_json({"id": str(socket.ids), "type": kind, "payload": payload})
    return str(socket.ids)


def codes_of(message: dict[str, Any]) -> list[str]:
    payload = message["payload"]
    if message["type"] == "error":
        errors = payload if isinstance(payload, list) else [payload]
    else:
        errors = payload.get("errors") or []
    return [e["extensions"]["code"] for e in errors]


async def test_a_platform_booking_raises_reminders_and_reaches_the_live_alerts(
    app: Starlette, http: httpx.AsyncClient, settings: Settings
) -> None:
    # given a platform granted APPOINTMENTS_WRITE, and the patient listening for alerts
    operator = await make_operator()
    platform = await register_app(
        http, operator.token, scopes=["APPOINTMENTS_WRITE"], documents={"book": BOOK}
    )
    patient = await make_patient("Camille", "Durand")
    assert patient.token is not None
    tokens = await connect(http, patient.token, platform, scopes=["APPOINTMENTS_WRITE"])
    start = utcnow().replace(microsecond=0) + timedelta(hours=2, minutes=1)
    async with socket_of(app, PROTOCOLS[0], patient.token) as socket:
        op_id = await socket.start(ALERTS, {"after": position_cursor(0)})

        # when the platform books an appointment in just over 2 hours, and the jobs run a few
        # minutes later
        booked = await run(
            http,
            tokens["access_token"],
            platform.documents["book"],
            {
                "input": {
                    "title": "Vaccin grippe",
                    "startsAt": start.isoformat(),
                    "endsAt": (start + timedelta(minutes=15)).isoformat(),
                }
            },
        )
        assert booked.ok()["createAppointment"]["appointment"]["source"] == "PLATFORM"
        later = utcnow() + timedelta(minutes=5)
        await run_jobs(settings, now=later, bus=app.state.services.bus)
        alerts: list[dict[str, Any]] = []
        while not any(a["kind"] == "APPOINTMENT" for a in alerts):  # screenings due too
            message = await socket.receive()
            assert message["id"] == op_id, message
            alerts.append(message["payload"]["data"]["reminderAlerts"])

    # then its 2-hour reminder fell due and reached the patient live, with the appointment
    (alert,) = [a for a in alerts if a["kind"] == "APPOINTMENT"]
    assert alert["kind"] == "APPOINTMENT"
    assert alert["status"] == "SENT"
    assert alert["appointment"] == {"title": "Vaccin grippe", "source": "PLATFORM"}
    rows = await Reminder.filter(patient_id=patient.patient.id, appointment_id__isnull=False)
    # one reminder: 48 hours before was already past at the booking
    assert [(r.rule, r.status) for r in rows] == [("APPOINTMENT_2H", ReminderStatus.SENT)]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_an_app_socket_streams_nothing_and_dies_with_its_grant(
    app: Starlette, http: httpx.AsyncClient, protocol: str
) -> None:
    # given an app whose documents include a subscription, and its access token
    operator = await make_operator()
    partner = await register_app(
        http,
        operator.token,
        scopes=["IDENTITY_READ", "APPOINTMENTS_READ"],
        documents={"alerts": APP_ALERTS},
    )
    patient = await make_patient("Camille", "Durand")
    assert patient.token is not None
    tokens = await connect(http, patient.token, partner, scopes=["IDENTITY_READ"])
    access = tokens["access_token"]

    async with socket_of(app, protocol, access) as socket:
        before = (await catalogue_state(), await AccessEvent.all().count())

        # when it subscribes with free text, and with its own registered subscription
        free = await socket.start(APP_ALERTS)
        free_answer = await socket.receive()
        own = await send_document(socket, partner.documents["alerts"])
        own_answer = await socket.receive()

        # then free text is refused as over HTTP, and the patient's alerts are not the
        # app's: FORBIDDEN (its token is valid), no stream, nothing written
        assert free_answer["id"] == free
        assert codes_of(free_answer) == ["PERSISTED_QUERY_ID_REQUIRED"]
        assert own_answer["id"] == own
        assert codes_of(own_answer) == ["FORBIDDEN"], own_answer
        assert await socket.receive() == {"id": own, "type": "complete"}
        assert (await catalogue_state(), await AccessEvent.all().count()) == before

        # when the patient revokes the app while its socket is open
        revoked = await gql(http, REVOKE, {"app": partner.id}, token=patient.token)
        revoked.ok()
        last = await send_document(socket, partner.documents["alerts"])

        # then its next operation is refused as unauthenticated and the socket ends with
        # 4401, as an ended session's
        ended = await socket.until_closed()
        assert ended[-1]["close"] == 4401, ended
        for message in ended[:-1]:
            if "id" in message:
                assert message["id"] == last
            assert "UNAUTHENTICATED" in json.dumps(message), ended

    # and a new socket with that token is refused at the handshake
    from tests.asgi_websocket import asgi_websocket

    async with asgi_websocket(app, protocol) as (raw, _):
        again = Socket(raw, protocol)
        answer = await again.init(access)
        if "close" not in answer:  # the legacy protocol says why first
            answer = await again.receive()
        assert answer.get("close") == 4403, json.dumps(answer)
