"""The request budget (api/budget.py): token buckets per token and per address, over
requests and over query cost, in memory or shared through Redis, failing open when Redis is
down. Two real server processes sharing Redis: tests/e2e/test_budget_two_workers.py."""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import AsyncIterator, Iterator, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from starlette.applications import Starlette

from api.app import create_app
from api.budget import KEY_PREFIX, Charge, MemoryBuckets, RedisBuckets, RequestBudget
from api.config import ConfigError, Settings
from api.errors import RateLimited
from models.audit import AccessEvent
from models.crypto import Vault
from tests.asgi_websocket import asgi_websocket
from tests.conftest import SECRET
from tests.factories import make_patient
from tests.redis_server import RedisServer, free_port, redis_reachable
from tests.sql_counter import count_statements
from tests.test_ws_reauth import MESSAGE_RECEIVED, PROTOCOLS, socket_of

VIEWER = "{ viewer { __typename } }"
PAGE = """query($n: Int) {
  viewer { ... on Patient { documents(first: $n) { edges { node { id } } } } } }"""
ORIGIN = "https://app.espace-sante.example"
OFF = {
    "rate_limit_requests_per_minute": 0,
    "rate_limit_cost_per_minute": 0,
    "rate_limit_address_requests_per_minute": 0,
    "rate_limit_address_cost_per_minute": 0,
}
# One request a minute, 300 seconds of burst: a bucket of 5 that refills one a minute (no
# refill during a test).
FIVE_PER_TOKEN = {**OFF, "rate_limit_requests_per_minute": 1, "rate_limit_burst_seconds": 300}


def refused(seconds: int) -> dict[str, Any]:
    return {
        "errors": [
            {
                "message": f"The request budget is spent; try again in {seconds} s.",
                "extensions": {"code": "RATE_LIMITED", "retryAfter": seconds},
            }
        ]
    }


def unavailable(reason: str) -> None:
    # In CI a missing Redis must fail the build: a skipped guard protects nothing.
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@asynccontextmanager
async def serving(settings: Settings, **overrides: Any) -> AsyncIterator[Starlette]:
    """The app, its budget counting in memory on a clock that stands still: no refill while
    a test runs, so that each `retryAfter` is exact."""
    app = create_app(replace(settings, **overrides))
    app.state.services.budget.buckets = MemoryBuckets(clock=lambda: 1000.0)
    async with app.router.lifespan_context(app):
        yield app


@asynccontextmanager
async def client_of(app: Starlette, address: str = "127.0.0.9") -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=(address, 4242))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def post(
    http: httpx.AsyncClient,
    query: str = VIEWER,
    variables: dict[str, Any] | None = None,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    headers = dict(headers or {})
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return await http.post(
        "/graphql", json={"query": query, "variables": variables}, headers=headers
    )


# --- over HTTP ----------------------------------------------------------------------------


async def test_a_token_spends_its_burst_then_is_refused_with_retry_after(
    settings: Settings,
) -> None:
    async with serving(settings, **FIVE_PER_TOKEN) as app, client_of(app) as http:
        alice = await make_patient()
        bob = await make_patient("Bob")
        served = [await post(http, token=alice.token) for _ in range(5)]
        with count_statements() as statements:
            sixth = await post(http, token=alice.token)
        others = [await post(http, token=bob.token), await post(http)]

    assert [r.status_code for r in served] == [200] * 5
    assert sixth.status_code == 429
    assert sixth.headers["retry-after"] == "60"
    assert sixth.headers["cache-control"] == "no-store"
    assert sixth.json() == refused(60)
    assert statements == []  # refused before the token is even looked up
    # Another token, and no token at all, have budgets of their own.
    assert [r.json() for r in others] == [
        {"data": {"viewer": {"__typename": "Patient"}}},
        {"data": {"viewer": None}},
    ]


async def test_an_address_spends_its_budget_whatever_the_tokens_it_sends(
    settings: Settings,
) -> None:
    per_address = {
        **OFF,
        "rate_limit_address_requests_per_minute": 1,
        "rate_limit_burst_seconds": 180,  # 3 requests
        "trusted_proxies": ("127.0.0.9",),
    }
    async with serving(settings, **per_address) as app, client_of(app) as http:
        alice = await make_patient()
        anonymous = [await post(http, headers={"X-Forwarded-For": "203.0.113.7"}) for _ in range(3)]
        with_a_token = await post(
            http, token=alice.token, headers={"X-Forwarded-For": "203.0.113.7"}
        )
        elsewhere = await post(http, token=alice.token, headers={"X-Forwarded-For": "198.51.100.2"})

    assert [r.status_code for r in anonymous] == [200] * 3
    assert with_a_token.status_code == 429
    assert with_a_token.json() == refused(60)
    assert elsewhere.json() == {"data": {"viewer": {"__typename": "Patient"}}}


async def test_the_cost_of_a_query_is_charged_before_it_runs(settings: Settings) -> None:
    # A bucket of 100 (cost), refilled one a minute; the page of 40 documents costs 43.
    cost_budget = {
        **OFF,
        "rate_limit_cost_per_minute": 1,
        "rate_limit_burst_seconds": 6000,
        "max_query_cost": 100,
    }
    async with serving(settings, **cost_budget) as app, client_of(app) as http:
        alice = await make_patient()
        served = [await post(http, PAGE, {"n": 40}, token=alice.token) for _ in range(2)]
        with count_statements() as never_executed:  # the reference: an invalid document
            invalid = await post(http, "{ nope }", token=alice.token)
        with count_statements() as refused_statements:
            third = await post(http, PAGE, {"n": 40}, token=alice.token)
        cheaper = await post(http, PAGE, {"n": 11}, token=alice.token)  # 14 left: costs 14
        then = await post(http, VIEWER, token=alice.token)  # 0 left: costs 1
        free = await post(http, "{ __typename }", token=alice.token)  # costs nothing
        access_events = await AccessEvent.all().count()

    assert [r.status_code for r in served] == [200, 200]
    assert invalid.status_code == 422
    assert third.status_code == 429
    assert third.headers["retry-after"] == "1740"  # 29 more units, one a minute
    assert third.json() == refused(1740)
    assert refused_statements == never_executed  # the token's look-up: nothing ran
    assert cheaper.json() == {"data": {"viewer": {"documents": {"edges": []}}}}
    assert then.status_code == 429
    assert free.json() == {"data": {"__typename": "Query"}}
    assert access_events == 0


async def test_a_refusal_reaches_a_browser_with_its_cors_headers(settings: Settings) -> None:
    budget = {**FIVE_PER_TOKEN, "allowed_origins": (ORIGIN,)}
    async with serving(settings, **budget) as app, client_of(app) as http:
        alice = await make_patient()
        for _ in range(5):
            await post(http, token=alice.token, headers={"Origin": ORIGIN})
        response = await post(http, token=alice.token, headers={"Origin": ORIGIN})

    assert response.status_code == 429
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert response.headers["access-control-expose-headers"] == "Retry-After"
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_health_probes_and_cors_preflights_are_never_charged(settings: Settings) -> None:
    one = {
        **OFF,
        "rate_limit_address_requests_per_minute": 1,
        "rate_limit_burst_seconds": 60,
        "allowed_origins": (ORIGIN,),
    }
    async with serving(settings, **one) as app, client_of(app) as http:
        probes = [await http.get(path) for path in ("/healthz", "/readyz") * 5]
        preflights = [
            await http.options(
                "/graphql", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
            )
            for _ in range(5)
        ]
        first = await post(http)
        second = await post(http)

    assert {r.status_code for r in probes + preflights} == {200}
    assert first.status_code == 200
    assert second.status_code == 429


async def test_other_routes_are_charged_too(settings: Settings) -> None:
    async with serving(settings, **FIVE_PER_TOKEN) as app, client_of(app) as http:
        alice = await make_patient()
        bearer = {"Authorization": f"Bearer {alice.token}"}
        downloads = [await http.get("/documents/nope/content", headers=bearer) for _ in range(5)]
        graphql = await post(http, token=alice.token)

    assert [r.status_code for r in downloads] == [404] * 5
    assert graphql.status_code == 429


# --- over the websocket ---------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_websocket_operation_spends_the_same_budget_as_http(
    settings: Settings, protocol: str
) -> None:
    async with serving(settings, **FIVE_PER_TOKEN) as app, client_of(app) as http:
        alice = await make_patient()
        for _ in range(4):
            assert (await post(http, token=alice.token)).status_code == 200
        async with socket_of(app, protocol, alice.token) as socket:
            live = await socket.start(MESSAGE_RECEIVED, {"after": None})
            over = await socket.start(MESSAGE_RECEIVED, {"after": None})
            answered = await socket.receive()
            quiet = await socket.silent_for(0.3)

    error = refused(60)["errors"][0]
    assert answered == socket.error(over, error)
    assert quiet == []  # the first subscription is live, and silent
    assert live != over


async def test_a_subscriptions_cost_is_charged_before_its_stream_starts(
    settings: Settings,
) -> None:
    # messageReceived costs 1 (a Message) and more per field below it; a bucket of 3.
    cost_budget = {**OFF, "rate_limit_cost_per_minute": 1, "rate_limit_burst_seconds": 180}
    query = "subscription { messageReceived { id conversation { id patient { id } } } }"
    async with serving(settings, max_query_cost=3, **cost_budget) as app:
        alice = await make_patient()
        async with socket_of(app, PROTOCOLS[0], alice.token) as socket:
            live = await socket.start(query)
            over = await socket.start(query)
            answered = await socket.receive()

    assert live == "1"
    assert answered == socket.error(over, refused(180)["errors"][0])


@pytest.mark.parametrize("denial", [True, False], ids=["denial response", "close"])
async def test_a_websocket_handshake_spends_its_addresss_budget(
    settings: Settings, denial: bool
) -> None:
    one = {**OFF, "rate_limit_address_requests_per_minute": 1, "rate_limit_burst_seconds": 60}
    async with serving(settings, **one) as app:
        async with asgi_websocket(app) as (_, accepted):
            assert accepted["type"] == "websocket.accept"
        sent: list[dict[str, Any]] = []
        scope = {
            "type": "websocket",
            "path": "/graphql",
            "headers": [],
            "query_string": b"",
            "subprotocols": ["graphql-transport-ws"],
            "client": ("unknown", 0),
            "extensions": {"websocket.http.response": {}} if denial else {},
        }

        async def receive() -> dict[str, Any]:
            return {"type": "websocket.connect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(dict(message))

        await app(scope, receive, send)

    if denial:
        start, body = sent
        assert start["type"] == "websocket.http.response.start"
        assert start["status"] == 429
        assert (b"retry-after", b"60") in start["headers"]
        assert json.loads(body["body"]) == refused(60)
    else:
        assert sent == [{"type": "websocket.close", "code": 1013, "reason": "Try again later."}]


# --- the buckets --------------------------------------------------------------------------


def charge(key: str = "k", amount: int = 1, capacity: float = 3, per_minute: float = 60) -> Charge:
    return Charge(key=key, capacity=capacity, per_ms=per_minute / 60_000, amount=amount)


def test_a_bucket_holds_its_capacity_and_refills_at_its_rate() -> None:
    buckets = MemoryBuckets()

    taken = [buckets.take_now([charge()], now=0) for _ in range(3)]
    empty = buckets.take_now([charge()], now=0)
    half_a_second = buckets.take_now([charge()], now=500)
    one_second = buckets.take_now([charge()], now=1000)
    long_after = [buckets.take_now([charge()], now=3_600_000) for _ in range(4)]

    assert taken == [0, 0, 0]
    assert empty == 1000  # one token a second
    assert half_a_second == 500
    assert one_second == 0
    assert long_after == [0, 0, 0, 1000]  # refilled to its capacity, never beyond


def test_a_charge_takes_from_every_bucket_or_from_none() -> None:
    buckets = MemoryBuckets()
    requests = charge("requests", amount=1, capacity=10)
    cost = charge("cost", amount=4, capacity=10)

    assert buckets.take_now([requests, cost], now=0) == 0
    assert buckets.take_now([requests, cost], now=0) == 0
    refused_cost = buckets.take_now([requests, cost], now=0)  # cost: 2 left, 4 asked
    assert refused_cost == 2000
    assert buckets.take_now([charge("requests", amount=8, capacity=10)], now=0) == 0  # 8 left


def test_memory_keeps_a_bounded_number_of_buckets() -> None:
    buckets = MemoryBuckets(max_buckets=2)

    for key in ("a", "b", "c"):
        buckets.take_now([charge(key, amount=3)], now=0)

    assert buckets.take_now([charge("a", amount=3)], now=0) == 0  # forgotten: full again
    assert buckets.take_now([charge("c", amount=3)], now=0) > 0


async def test_a_budget_keys_its_buckets_by_hashes_never_by_the_token_or_the_address() -> None:
    settings = Settings(environment="test", secret_key=SECRET, rate_limit_burst_seconds=60)
    budget = RequestBudget(settings, Vault(SECRET), MemoryBuckets())
    caller = budget.caller("the-raw-token", "203.0.113.7")

    keys = [c.key for c in budget.charges(caller, requests=1, cost=5)]

    assert keys == [
        f"{KEY_PREFIX}:session:requests:{caller.session}",
        f"{KEY_PREFIX}:session:cost:{caller.session}",
        f"{KEY_PREFIX}:address:requests:{caller.address}",
        f"{KEY_PREFIX}:address:cost:{caller.address}",
    ]
    assert all("the-raw-token" not in key and "203.0.113.7" not in key for key in keys)
    assert caller.session != caller.address
    # Another SECRET_KEY, other keys: two deployments on one Redis never meet.
    other = RequestBudget(settings, Vault("another-secret-" + "y" * 32), MemoryBuckets())
    assert other.caller("the-raw-token", "203.0.113.7") != caller


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RATE_LIMIT_REQUESTS_PER_MINUTE": "-1"}, "must be 0 (off) or a positive integer"),
        ({"RATE_LIMIT_BURST_SECONDS": "0"}, "must be a positive integer"),
        (
            {"RATE_LIMIT_COST_PER_MINUTE": "29999"},
            "RATE_LIMIT_COST_PER_MINUTE x RATE_LIMIT_BURST_SECONDS / 60 must be at least"
            " MAX_QUERY_COST (5000)",
        ),
        (
            {"RATE_LIMIT_ADDRESS_COST_PER_MINUTE": "600", "RATE_LIMIT_BURST_SECONDS": "9"},
            "RATE_LIMIT_ADDRESS_COST_PER_MINUTE x RATE_LIMIT_BURST_SECONDS / 60",
        ),
    ],
)
def test_budget_settings_are_checked_at_start(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings.from_env({"ENVIRONMENT": "test", "SECRET_KEY": SECRET, **env})


def test_budget_settings_default_and_switch_off() -> None:
    defaults = Settings.from_env({"ENVIRONMENT": "test", "SECRET_KEY": SECRET})
    off = Settings.from_env(
        {"ENVIRONMENT": "test", "SECRET_KEY": SECRET, "RATE_LIMIT_COST_PER_MINUTE": "0"}
    )

    assert (
        defaults.rate_limit_requests_per_minute,
        defaults.rate_limit_cost_per_minute,
        defaults.rate_limit_address_requests_per_minute,
        defaults.rate_limit_address_cost_per_minute,
        defaults.rate_limit_burst_seconds,
    ) == (600, 60_000, 3000, 300_000, 10)
    assert off.rate_limit_cost_per_minute == 0


# --- Redis ----------------------------------------------------------------------------------


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


def budget_on(url: str, secret: str, *, per_minute: int, burst_seconds: int) -> RequestBudget:
    """A worker's budget: `per_minute` requests per token, nothing else limited."""
    settings = Settings(
        environment="test",
        secret_key=secret,
        rate_limit_requests_per_minute=per_minute,
        rate_limit_cost_per_minute=0,
        rate_limit_address_requests_per_minute=0,
        rate_limit_address_cost_per_minute=0,
        rate_limit_burst_seconds=burst_seconds,
    )
    return RequestBudget(settings, Vault(secret), RedisBuckets(url))


@pytest.mark.redis
async def test_two_workers_sharing_redis_spend_one_budget(redis_url: str) -> None:
    secret = f"budget-test-{uuid.uuid4().hex}-" + "s" * 16  # keys of this test alone
    first = budget_on(redis_url, secret, per_minute=1, burst_seconds=240)  # a bucket of 4
    second = budget_on(redis_url, secret, per_minute=1, burst_seconds=240)
    caller = first.caller("a-token", "203.0.113.7")
    observer = aioredis.Redis.from_url(redis_url)
    try:
        for budget in (first, second, first, second):
            await budget.charge(caller, requests=1)
        with pytest.raises(RateLimited) as spent:
            await second.charge(caller, requests=1)
        with pytest.raises(RateLimited):
            await first.charge(caller, requests=1)
        [key] = [k.decode() async for k in observer.scan_iter(f"{KEY_PREFIX}:*:{caller.session}")]
        ttl = await observer.pttl(key)
        stored = await observer.hgetall(key)
    finally:
        await observer.delete(
            *[k async for k in observer.scan_iter(f"{KEY_PREFIX}:*{caller.session}")]
        )
        await observer.aclose()
        await first.close()
        await second.close()

    # A minute to refill one request, less what refilled while the test ran (Redis's clock).
    assert spent.value.extensions is not None
    assert spent.value.extensions["code"] == "RATE_LIMITED"
    assert 30 < spent.value.extensions["retryAfter"] <= 60
    assert key == f"{KEY_PREFIX}:session:requests:{caller.session}"
    assert 0 < ttl <= 241_000  # gone once it would be full again
    assert float(stored[b"tokens"]) < 1


async def test_the_budget_fails_open_to_memory_while_redis_is_down(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    budget = budget_on(redis_server.url, SECRET, per_minute=1, burst_seconds=120)  # 2
    assert isinstance(budget.buckets, RedisBuckets)
    budget.buckets.retry_after = 0  # try Redis again at once (5 s in production)
    caller = budget.caller("a-token", "203.0.113.7")
    try:
        await budget.charge(caller, requests=1)  # in Redis: 1 left
        redis_server.stop()
        with caplog.at_level(logging.WARNING, logger="api.budget"):
            await budget.charge(caller, requests=1)  # in memory: 1 left of its own 2
            await budget.charge(caller, requests=1)
            with pytest.raises(RateLimited):  # memory still bounds a flood
                await budget.charge(caller, requests=1)
            down = [r.getMessage() for r in caplog.records]
            caplog.clear()
            redis_server.start()  # empty: a restarted cache
            await budget.charge(caller, requests=1)
            await budget.charge(caller, requests=1)
            with pytest.raises(RateLimited):
                await budget.charge(caller, requests=1)
            back = [r.getMessage() for r in caplog.records]
    finally:
        await budget.close()

    assert len(down) == 1  # once per outage, not once per request
    assert down[0].startswith("request budget: Redis unreachable (")
    assert down[0].endswith("); this worker counts in memory until it answers (failing open)")
    assert back == ["request budget: Redis answers again; budgets are shared again"]


async def test_an_unreachable_redis_never_fails_a_request(settings: Settings) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    async with serving(settings, **FIVE_PER_TOKEN) as app:
        app.state.services.budget.buckets = RedisBuckets(nowhere, fallback=MemoryBuckets())
        async with client_of(app) as http:
            alice = await make_patient()
            served = [await post(http, token=alice.token) for _ in range(5)]
            sixth = await post(http, token=alice.token)

    assert [r.status_code for r in served] == [200] * 5
    assert sixth.status_code == 429  # counted in memory meanwhile
