"""`EventBus.publish_many`: one event to several channels (a message's recipients), serialised
once and sent within one timeout (on Redis, one round trip), as `publish` to each would."""

from __future__ import annotations

import asyncio
import time
from datetime import date

from subscriptions.broadcast import EventBus
from tests.test_broadcast import bus, channel_name, receive, redis_url  # noqa: F401 (fixtures)


async def test_every_channel_gets_the_event_and_nothing_else(bus: EventBus) -> None:  # noqa: F811
    first, second, other = channel_name(), channel_name(), channel_name()
    async with (
        bus.subscribe(first) as one,
        bus.subscribe(second) as two,
        bus.subscribe(other) as three,
    ):
        assert await bus.publish_many([first, second], {"type": "message", "ids": (1, 2)}) is True

        got = [await receive(one), await receive(two)]
        assert got == [{"type": "message", "ids": [1, 2]}] * 2
        got[0]["type"] = "changed"  # each subscriber decodes its own copy
        assert got[1]["type"] == "message"
        with_nothing = asyncio.wait_for(anext(three), 0.2)
        try:
            await with_nothing
        except TimeoutError:
            pass
        else:
            raise AssertionError("a channel not published to got the event")


async def test_no_channel_publishes_nothing(bus: EventBus) -> None:  # noqa: F811
    assert await bus.publish_many([], {"type": "message"}) is True


async def test_an_event_that_is_not_json_is_refused() -> None:
    memory = EventBus("memory://")
    await memory.connect()
    try:
        assert await memory.publish_many([channel_name()], {"when": time}) is False
    finally:
        await memory.disconnect()


async def test_what_json_dumps_took_is_taken_and_what_it_refused_is_refused(
    bus: EventBus,  # noqa: F811
) -> None:
    """Events are encoded by orjson (api/encoding.py), as `json.dumps` would take them: an
    integer past 64 bits and non-ASCII text arrive; a date, refused by `json.dumps`, still is."""
    channel = channel_name()
    async with bus.subscribe(channel) as listener:
        assert await bus.publish_many([channel], {"big": 2**70, "name": "Zoé"}) is True
        assert await receive(listener) == {"big": 2**70, "name": "Zoé"}
    assert await bus.publish_many([channel], {"when": date(2024, 1, 2)}) is False


async def test_a_bus_that_is_down_says_so_without_waiting() -> None:
    down = EventBus("redis://127.0.0.1:1/0", reconnect_min=60, reconnect_max=60)
    down.op_timeout = 0.2
    await down.connect()
    try:
        start = time.monotonic()
        assert await down.publish_many([channel_name(), channel_name()], {"n": 1}) is False
        assert time.monotonic() - start < 0.2
    finally:
        await down.disconnect()
