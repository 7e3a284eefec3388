"""On `memory://` an event for a channel nobody in the process listens to has no listener at
all: `publish` drops it at once instead of queueing it for the pump to discard; what is
listened to still arrives, in order, and a later subscriber gets only what follows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from subscriptions.broadcast import EventBus

TIMEOUT = 5.0


@pytest.fixture
async def bus() -> AsyncIterator[EventBus]:
    bus = EventBus("memory://", queue_size=8)
    await bus.connect()
    yield bus
    await bus.disconnect()


async def test_an_unheard_event_is_dropped_and_a_heard_one_delivered(bus: EventBus) -> None:
    # given nobody listening to "quiet"
    assert await bus.publish("quiet", {"n": 0}) is True
    assert bus._backend is not None
    assert bus._backend._published.qsize() == 0  # type: ignore[attr-defined]

    # when someone listens to "loud", and events go to both channels
    async with bus.subscribe("loud") as loud:
        assert await bus.publish_many(["quiet", "loud"], {"n": 1}) is True
        assert await bus.publish("quiet", {"n": 2}) is True
        assert await bus.publish("loud", {"n": 3}) is True

        # then "loud" gets its two, in order
        assert await asyncio.wait_for(anext(loud), TIMEOUT) == {"n": 1}
        assert await asyncio.wait_for(anext(loud), TIMEOUT) == {"n": 3}

        # and a later subscriber of "quiet" gets only what follows its subscription
        async with bus.subscribe("quiet") as quiet:
            assert await bus.publish("quiet", {"n": 4}) is True
            assert await asyncio.wait_for(anext(quiet), TIMEOUT) == {"n": 4}


async def test_a_bus_that_is_down_still_says_so(bus: EventBus) -> None:
    await bus.disconnect()
    assert await bus.publish("quiet", {"n": 0}) is False
