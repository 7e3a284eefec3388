"""The request budget across workers sharing Redis (api/budget.py): real `espace-sante serve`
processes on one database and one Redis (REDIS_URL, default redis://127.0.0.1:6379/15):
`serve` (one process) and `serve --workers 2`, three workers in all.

Each server holds 10 requests and 10 units of query cost per token, refilled one a minute
(`RATE_LIMIT_…_PER_MINUTE=1`, `RATE_LIMIT_BURST_SECONDS=600`): nothing refills while a test
runs, so what one process spent is exactly what the others see. The servers run with a
SECRET_KEY of their own, under which the buckets' keys are hashed: no other run sharing the
Redis database meets them.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NoReturn

import httpx
import pytest
import redis

from api.budget import KEY_PREFIX
from models.crypto import Vault
from tests.conftest import PG_URL, free_port
from tests.e2e.live_support import WAIT, Actors, ServerProcess, Setup, start_setup
from tests.e2e.test_server import _pg
from tests.redis_server import redis_reachable

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

SECRET_KEY = f"budget-e2e-{secrets.token_urlsafe(32)}"
BUDGET = {
    "SECRET_KEY": SECRET_KEY,
    "RATE_LIMIT_REQUESTS_PER_MINUTE": "1",
    "RATE_LIMIT_COST_PER_MINUTE": "1",
    "RATE_LIMIT_ADDRESS_REQUESTS_PER_MINUTE": "0",  # every request comes from 127.0.0.1
    "RATE_LIMIT_ADDRESS_COST_PER_MINUTE": "0",
    "RATE_LIMIT_BURST_SECONDS": "600",  # buckets of 10
    "MAX_QUERY_COST": "10",  # a cost bucket holds the costliest request allowed
}
FREE = "{ __typename }"  # costs nothing: spends requests only
PAGE = "{ viewer { ... on Patient { documents(first: 4) { edges { node { id } } } } } }"  # 7
VIEWER = "{ viewer { __typename } }"  # costs 1


def unavailable(reason: str) -> NoReturn:
    # In CI a missing Redis must fail the build: a skipped guard protects nothing.
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@dataclass
class Fleet:
    single: ServerProcess  # `serve`: one process
    workers: ServerProcess  # `serve --workers 2`: two more
    actors: Actors
    redis_url: str


@pytest.fixture(scope="module")
def fleet(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
    if not redis_reachable(redis_url):
        unavailable(f"no Redis at {redis_url}")
    folder = tmp_path_factory.mktemp("budget")
    started: list[ServerProcess] = []
    setup: Setup | None = None
    pg_name = None
    actors: Actors | None = None
    try:
        if PG_URL:
            pg_name = f"espace_sante_budget_{uuid.uuid4().hex[:10]}"
            asyncio.run(_pg(f'CREATE DATABASE "{pg_name}"'))
            database_url = f"{PG_URL.rpartition('/')[0]}/{pg_name}"
            setup = start_setup(database_url, folder, 3, migrate=True)
        else:
            path = folder / "budget.sqlite3"
            shutil.copyfile(request.getfixturevalue("db_template"), path)
            database_url = f"sqlite://{path}"
            setup = start_setup(database_url, folder, 3, migrate=False)
        actors = setup.actors()
        for name, workers in (("single", 1), ("workers", 2)):
            started.append(
                ServerProcess(
                    name,
                    folder / name,
                    database_url,
                    redis_url,
                    free_port(),
                    workers=workers,
                    env=BUDGET,
                )
            )
        for server in started:
            server.wait_healthy()
        yield Fleet(started[0], started[1], actors, redis_url)
    finally:
        if setup is not None:
            setup.stop()
        failures = []
        for server in started:
            code = server.stop()
            output = server.output()
            if code not in (0, -signal.SIGTERM) or "Traceback" in output:
                failures.append(f"--- {server.name} exited with {code}:\n{output}")
        if actors is not None:
            _forget(redis_url, [a.token for a in actors.patients])
        if pg_name is not None:
            asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))
        if failures:
            pytest.fail("\n".join(failures))


def _forget(redis_url: str, tokens: list[str]) -> None:
    """The buckets of this module's tokens, deleted (they would expire in 10 minutes)."""
    vault = Vault(SECRET_KEY)
    client = redis.Redis.from_url(redis_url)
    try:
        for token in tokens:
            digest = vault.keyed_hash(token, purpose="request-budget-session")[:32]
            keys = list(client.scan_iter(f"{KEY_PREFIX}:session:*:{digest}"))
            if keys:
                client.delete(*keys)
    finally:
        client.close()


async def call(server: ServerProcess, token: str, query: str) -> httpx.Response:
    """One POST on a fresh connection (so that a server of several workers spreads them)."""
    async with httpx.AsyncClient(timeout=WAIT) as http:
        return await http.post(
            f"{server.url}/graphql",
            json={"query": query},
            headers={"Authorization": f"Bearer {token}"},
        )


def assert_refused(response: httpx.Response, within: tuple[int, int]) -> None:
    """RATE_LIMITED, 429, with a `Retry-After` in `within` and in the body alike."""
    assert response.status_code == 429
    seconds = int(response.headers["retry-after"])
    assert within[0] <= seconds <= within[1]
    assert response.json() == {
        "errors": [
            {
                "message": f"The request budget is spent; try again in {seconds} s.",
                "extensions": {"code": "RATE_LIMITED", "retryAfter": seconds},
            }
        ]
    }


async def test_what_one_process_spent_of_a_tokens_requests_the_others_refuse(
    fleet: Fleet,
) -> None:
    token = fleet.actors.patients[0].token

    spent = [await call(fleet.single, token, FREE) for _ in range(10)]
    elsewhere = await call(fleet.workers, token, FREE)
    back = await call(fleet.single, token, FREE)

    assert [r.status_code for r in spent] == [200] * 10
    for response in (elsewhere, back):
        # A minute to refill one request, less what refilled while the test ran.
        assert_refused(response, within=(1, 60))
    # One bucket in Redis, named by a keyed hash of the token, gone once it would be full.
    digest = Vault(SECRET_KEY).keyed_hash(token, purpose="request-budget-session")[:32]
    client = redis.Redis.from_url(fleet.redis_url)
    try:
        keys = [k.decode() for k in client.scan_iter(f"{KEY_PREFIX}:*{digest}")]
        ttl = client.pttl(f"{KEY_PREFIX}:session:requests:{digest}")
    finally:
        client.close()
    assert keys == [f"{KEY_PREFIX}:session:requests:{digest}"]  # FREE spends no cost
    assert 0 < ttl <= 601_000


async def test_what_one_process_spent_of_a_tokens_query_cost_the_others_refuse(
    fleet: Fleet,
) -> None:
    token = fleet.actors.patients[1].token

    page = await call(fleet.single, token, PAGE)  # 7 of 10
    again = await call(fleet.workers, token, PAGE)  # 3 left: 4 short, 4 minutes
    cheaper = await call(fleet.workers, token, VIEWER)  # 1 of the 3 left

    assert page.json() == {"data": {"viewer": {"documents": {"edges": []}}}}
    assert_refused(again, within=(180, 240))  # 4 units short: 4 minutes, less the refill
    assert cheaper.json() == {"data": {"viewer": {"__typename": "Patient"}}}


async def test_serve_with_two_workers_spends_one_budget(fleet: Fleet) -> None:
    token = fleet.actors.patients[2].token

    answers = [await call(fleet.workers, token, FREE) for _ in range(20)]

    assert [r.status_code for r in answers] == [200] * 10 + [429] * 10
