"""reminderAlerts(after:): a client away while reminders fell due gets each of them once, in
the order they were raised, from the `alertCursor` of the last alert it received, then the
next ones live; never another space's."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from api.jobs import alert
from models.base import utcnow
from models.reminder import Reminder, ReminderKind, ReminderStatus, raise_due
from resolvers.positions import position_cursor
from tests.factories import Person, make_patient
from tests.test_ws_reauth import PROTOCOLS, socket_of

ALERTS = """subscription($after: String) {
  reminderAlerts(after: $after) { title alertCursor } }"""


async def due(person: Person, title: str) -> Reminder:
    return await Reminder.create(
        patient_id=person.patient.id,
        kind=ReminderKind.VACCINATION,
        key=f"test:{title}",
        rule="test",
        title=title,
        reason="",
        due_at=utcnow() - timedelta(minutes=1),
        status=ReminderStatus.PENDING,
    )


async def raised(app: Starlette, *titles_of: tuple[Person, str], push: bool) -> None:
    for person, title in titles_of:
        await due(person, title)
    rows = await raise_due(utcnow())
    assert sorted(r.title for r in rows) == sorted(t for _, t in titles_of)
    if push:
        await alert(app.state.services.bus, rows, utcnow())


def alert_cursor(row: Reminder) -> str:
    assert row.alert_seq is not None
    return position_cursor(row.alert_seq)


async def titles(socket: Any, op_id: str, count: int) -> list[dict[str, Any]]:
    got = []
    for _ in range(count):
        message = await socket.receive()
        assert message["id"] == op_id, message
        got.append(message["payload"]["data"]["reminderAlerts"])
    return got


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_what_fell_due_while_away_is_replayed_once_in_order_then_live(
    http: httpx.AsyncClient, app: Starlette, protocol: str
) -> None:
    alice, bob = await make_patient("Alice"), await make_patient("Bob")
    await raised(app, (alice, "first"), push=False)
    first = await Reminder.get(title="first")
    assert first.alert_seq is not None
    async with socket_of(app, protocol, alice.token) as socket:
        op_id = await socket.start(ALERTS, {"after": alert_cursor(first)})
        await raised(app, (alice, "seen"), push=True)  # replayed or live: whichever comes first
        (seen,) = await titles(socket, op_id, 1)
    assert seen["title"] == "seen"

    # Away: three fall due for her, one for Bob; then she comes back with her last cursor.
    for title in ("away1", "away2"):
        await raised(app, (alice, title), push=True)
    await raised(app, (bob, "not hers"), (alice, "away3"), push=False)
    async with socket_of(app, protocol, alice.token) as socket:
        op_id = await socket.start(ALERTS, {"after": seen["alertCursor"]})
        replayed = await titles(socket, op_id, 3)
        await raised(app, (alice, "live"), push=True)
        (live,) = await titles(socket, op_id, 1)
        assert await socket.silent_for(0.2) == []

    assert [r["title"] for r in replayed] == ["away1", "away2", "away3"]
    assert live["title"] == "live"
    cursors = [seen["alertCursor"], *(r["alertCursor"] for r in replayed), live["alertCursor"]]
    assert len(set(cursors)) == len(cursors) and None not in cursors


async def test_without_after_only_what_falls_due_from_now_and_a_bad_cursor_is_bad_input(
    http: httpx.AsyncClient, app: Starlette
) -> None:
    alice = await make_patient("Alice")
    await raised(app, (alice, "before"), push=True)
    async with socket_of(app, PROTOCOLS[0], alice.token) as socket:
        op_id = await socket.start(ALERTS, {"after": None})
        # The protocol never says when a subscription is live: probes until one arrives
        # (those raised before it started are before its position, never sent).
        for n in range(50):
            await raised(app, (alice, f"probe{n}"), push=True)
            message = await socket.silent_for(0.1)
            if message:
                break
        got = [m["payload"]["data"]["reminderAlerts"]["title"] for m in message]
        assert got and all(title.startswith("probe") for title in got)  # never "before"
        await raised(app, (alice, "after"), push=True)
        assert [r["title"] for r in await titles(socket, op_id, 1)] == ["after"]
        bad = await socket.start(ALERTS, {"after": "not-a-cursor"})
        refused = await socket.receive()
    assert refused["id"] == bad
    errors = refused["payload"] if refused["type"] == "error" else refused["payload"]["errors"]
    assert [e["extensions"]["code"] for e in errors] == ["BAD_USER_INPUT"]
