from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis

from subscriptions.broadcast import RESYNC, EventBus, SubscriberDropped, Subscription
from tests.redis_server import RedisServer, free_port, redis_reachable

TIMEOUT = 5.0


def unavailable(reason: str) -> None:
    # In CI a missing Redis must fail the build: a skipped guard protects nothing.
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def channel_name() -> str:
    return f"test.{uuid.uuid4().hex}"


async def receive(subscription: Subscription) -> dict[str, Any]:
    return await asyncio.wait_for(anext(subscription), TIMEOUT)


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
    if not redis_reachable(url):
        unavailable(f"no Redis at {url}")
    return url


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    try:
        server = RedisServer()
    except FileNotFoundError:
        unavailable("redis-server is not installed")
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[EventBus]:
    url = "memory://" if request.param == "memory" else request.getfixturevalue("redis_url")
    bus = EventBus(url, queue_size=2)
    await bus.connect()
    yield bus
    await bus.disconnect()


async def test_event_round_trips_as_json_like_on_redis(bus: EventBus) -> None:
    channel = channel_name()
    async with bus.subscribe(channel) as subscription:
        published = await bus.publish(channel, {"id": 7, "ids": (1, 2)})

        assert published is True
        assert await receive(subscription) == {"id": 7, "ids": [1, 2]}


async def test_every_subscriber_receives_every_event_in_order(bus: EventBus) -> None:
    channel = channel_name()
    async with (
        bus.subscribe(channel) as first,
        bus.subscribe(channel) as second,
        bus.subscribe(channel) as third,
    ):
        await bus.publish(channel, {"n": 1})
        await bus.publish(channel, {"n": 2})

        for subscription in (first, second, third):
            assert [await receive(subscription), await receive(subscription)] == [
                {"n": 1},
                {"n": 2},
            ]


async def test_other_channels_are_not_delivered(bus: EventBus) -> None:
    channel = channel_name()
    async with bus.subscribe(channel) as subscription:
        await bus.publish(channel_name(), {"n": 1})
        await bus.publish(channel, {"n": 2})

        assert await receive(subscription) == {"n": 2}


async def test_slow_subscriber_is_dropped_and_fast_one_keeps_receiving(bus: EventBus) -> None:
    channel = channel_name()
    async with bus.subscribe(channel) as slow, bus.subscribe(channel) as fast:
        for n in range(5):  # queue_size is 2: the third event overflows `slow`
            await bus.publish(channel, {"n": n})
            assert await receive(fast) == {"n": n}

        with pytest.raises(SubscriberDropped):
            await receive(slow)
        with pytest.raises(SubscriberDropped):
            await receive(slow)
        await bus.publish(channel, {"n": 5})
        assert await receive(fast) == {"n": 5}


async def test_concurrent_first_subscribes_all_receive(bus: EventBus) -> None:
    channel = channel_name()
    ready = asyncio.Barrier(6)

    async def consume() -> dict[str, Any]:
        async with bus.subscribe(channel) as subscription:
            await ready.wait()
            return await receive(subscription)

    consumers = [asyncio.create_task(consume()) for _ in range(5)]
    await ready.wait()
    await bus.publish(channel, {"n": 1})

    assert await asyncio.gather(*consumers) == [{"n": 1}] * 5


async def test_iteration_ends_when_the_bus_disconnects() -> None:
    bus = EventBus("memory://")
    await bus.connect()
    async with bus.subscribe(channel_name()) as subscription:
        await bus.disconnect()

        assert [event async for event in subscription] == []


async def test_ping_round_trips_right_after_connect(bus: EventBus) -> None:
    # Guards trap 1: with the ready flag set before SUBSCRIBE, the listener is already gone.
    assert await bus.ping() is True


async def test_ping_is_false_once_disconnected() -> None:
    bus = EventBus("memory://")
    await bus.connect()
    await bus.disconnect()

    assert await bus.ping() is False


async def test_unreachable_redis_publish_returns_false_quickly() -> None:
    bus = EventBus(f"redis://127.0.0.1:{free_port()}/0")
    await bus.connect()
    started = time.monotonic()

    assert await bus.publish(channel_name(), {"n": 1}) is False
    assert await bus.ping() is False
    assert time.monotonic() - started < 1.0
    await bus.disconnect()


@pytest.mark.redis
async def test_one_redis_subscription_per_channel_released_by_last_subscriber(
    redis_url: str,
) -> None:
    channel = channel_name()
    bus = EventBus(redis_url)
    await bus.connect()
    observer = redis.asyncio.Redis.from_url(redis_url)

    async def redis_subscribers() -> int:
        [(_, count)] = await observer.pubsub_numsub(channel)
        return int(count)

    try:
        async with bus.subscribe(channel), bus.subscribe(channel):
            assert await redis_subscribers() == 1
        for _ in range(50):  # UNSUBSCRIBE was sent; give the server a moment to apply it
            if await redis_subscribers() == 0:
                break
            await asyncio.sleep(0.02)
        assert await redis_subscribers() == 0
    finally:
        await observer.aclose()
        await bus.disconnect()


@pytest.mark.redis
async def test_event_published_by_another_process_is_received(redis_url: str) -> None:
    channel = channel_name()
    bus = EventBus(redis_url)
    await bus.connect()
    script = (
        "import json, sys, redis\n"
        "client = redis.Redis.from_url(sys.argv[1])\n"
        "print(client.publish(sys.argv[2], json.dumps({'id': 42})))\n"
        "client.close()\n"
    )
    try:
        async with bus.subscribe(channel) as subscription:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-c", script, redis_url, channel, stdout=asyncio.subprocess.PIPE
            )
            stdout, _ = await process.communicate()

            assert process.returncode == 0
            assert stdout.decode().strip() == "1"  # exactly one receiver: this process
            assert await receive(subscription) == {"id": 42}
    finally:
        await bus.disconnect()


@pytest.mark.redis
async def test_foreign_non_object_messages_are_skipped(redis_url: str) -> None:
    channel = channel_name()
    bus = EventBus(redis_url)
    await bus.connect()
    foreign = redis.asyncio.Redis.from_url(redis_url)
    try:
        async with bus.subscribe(channel) as subscription:
            await foreign.publish(channel, "not json")
            await foreign.publish(channel, "[1, 2]")
            await foreign.publish(channel, '{"id": 1}')

            assert await receive(subscription) == {"id": 1}
    finally:
        await foreign.aclose()
        await bus.disconnect()


@pytest.mark.redis
async def test_redis_restart_sends_resync_then_new_events(redis_server: RedisServer) -> None:
    channel = channel_name()
    bus = EventBus(redis_server.url, reconnect_min=0.05, reconnect_max=0.2)
    await bus.connect()
    try:
        async with bus.subscribe(channel) as subscription:
            assert await bus.publish(channel, {"n": 1}) is True
            assert await receive(subscription) == {"n": 1}

            redis_server.stop()
            started = time.monotonic()
            published_during_outage = await bus.publish(channel, {"n": 2})
            assert time.monotonic() - started < 2.0
            assert published_during_outage is False
            assert await bus.ping() is False

            redis_server.start()
            assert await receive(subscription) == RESYNC
            assert await bus.publish(channel, {"n": 3}) is True
            assert await receive(subscription) == {"n": 3}
            assert await bus.ping() is True
    finally:
        await bus.disconnect()
