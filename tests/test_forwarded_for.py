"""The client address behind reverse proxies: X-Forwarded-For is walked from the right."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import httpx
import pytest
from starlette.requests import Request

from api.app import create_app
from api.auth import client_address
from api.config import ConfigError, Settings
from models.session import LOGIN_FAILED, MAX_FAILURES_PER_CLIENT
from tests.factories import PASSWORD, make_patient
from tests.graphql import GraphQLResult
from tests.lifecycle_support import LOGIN, db_snapshot, only_error, without_location

PROXY = "127.0.0.9"  # the test transport's peer address: the reverse proxy in front of us
REFUSED = {"message": LOGIN_FAILED, "extensions": {"code": "UNAUTHENTICATED"}}


@pytest.fixture
async def behind_proxy(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(replace(settings, trusted_proxies=(PROXY, "10.0.0.0/8")))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(PROXY, 4242))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


async def login_via(
    client: httpx.AsyncClient, forwarded_for: str, email: str, password: str
) -> GraphQLResult:
    response = await client.post(
        "/graphql",
        json={"query": LOGIN, "variables": {"input": {"email": email, "password": password}}},
        headers={"X-Forwarded-For": forwarded_for},
    )
    return GraphQLResult(response)


def _rate_limited(result: GraphQLResult) -> bool:
    return bool(only_error(result)["extensions"]["code"] == "RATE_LIMITED")


async def test_a_forged_left_most_entry_does_not_escape_the_per_address_limit(
    behind_proxy: httpx.AsyncClient,
) -> None:
    # given a client at 203.0.113.7 that failed the limit of logins through the proxy, each
    # time forging a fresh left-most X-Forwarded-For entry (the proxy appends the real one)
    alice = await make_patient()
    assert alice.email
    for n in range(MAX_FAILURES_PER_CLIENT):
        forged = f"198.51.100.{n + 1}, 203.0.113.7"
        result = await login_via(behind_proxy, forged, f"someone{n}@example.org", "nope")
        assert without_location(only_error(result)) == REFUSED
    before = await db_snapshot()

    # when it logs in with a right password, forging yet another address
    result = await login_via(behind_proxy, "198.51.100.200, 203.0.113.7", alice.email, PASSWORD)

    # then its real address is rate-limited, and nothing is opened
    assert _rate_limited(result)
    assert await db_snapshot() == before
    # while another client behind the same proxy still logs in
    other = await login_via(behind_proxy, "203.0.113.8", alice.email, PASSWORD)
    assert other.data["login"]["token"]


async def test_the_limit_follows_the_client_through_a_chain_of_trusted_proxies(
    behind_proxy: httpx.AsyncClient,
) -> None:
    # given failures of 203.0.113.7 through two proxies (10.0.0.2, then the peer), each with
    # a forged left-most entry
    alice = await make_patient()
    assert alice.email
    for n in range(MAX_FAILURES_PER_CLIENT):
        chain = f"198.51.100.{n + 1}, 203.0.113.7, 10.0.0.2"
        result = await login_via(behind_proxy, chain, f"someone{n}@example.org", "nope")
        assert without_location(only_error(result)) == REFUSED

    # when the same client comes through one proxy only, forging another address
    result = await login_via(behind_proxy, "192.0.2.1, 203.0.113.7", alice.email, PASSWORD)

    # then it is the same address, rate-limited
    assert _rate_limited(result)


def _request(peer: str, *forwarded_for: str) -> Request:
    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded_for]
    return Request({"type": "http", "client": (peer, 4242), "headers": headers})


TRUSTED = Settings(trusted_proxies=("127.0.0.9", "10.0.0.0/8", "2001:db8:1::/48"))


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "expected"),
    [
        # a direct client: the header, forged or not, is ignored
        ("203.0.113.7", ("198.51.100.1",), "203.0.113.7"),
        ("10.1.2.3", (), "10.1.2.3"),
        # one proxy: the entry it appended, whatever the client put before it
        ("127.0.0.9", ("203.0.113.7",), "203.0.113.7"),
        ("127.0.0.9", ("198.51.100.1, 203.0.113.7",), "203.0.113.7"),
        ("127.0.0.9", ("198.51.100.1,203.0.113.7",), "203.0.113.7"),
        # a chain of trusted proxies is skipped from the right
        ("127.0.0.9", ("198.51.100.1, 203.0.113.7, 10.0.0.2, 10.0.0.3",), "203.0.113.7"),
        # a forged entry inside our network range, left of the real client, is not reached
        ("127.0.0.9", ("10.9.9.9, 203.0.113.7, 10.0.0.2",), "203.0.113.7"),
        # the proxy added its own header line instead of appending: one list, in order
        ("127.0.0.9", ("198.51.100.1", "203.0.113.7"), "203.0.113.7"),
        # every entry a trusted proxy: the left-most one
        ("127.0.0.9", ("10.0.0.5, 10.0.0.2",), "10.0.0.5"),
        # no header from the proxy (or an empty one): the proxy itself
        ("127.0.0.9", (), "127.0.0.9"),
        ("127.0.0.9", (" , ",), "127.0.0.9"),
        # a malformed entry is never a trusted proxy: the walk stops there
        ("127.0.0.9", ("203.0.113.7, unknown, 10.0.0.2",), "unknown"),
        ("127.0.0.9", ("203.0.113.7, 10.0.0.2:8080",), "10.0.0.2:8080"),
        # IPv6: networks, one spelling per address, IPv4-mapped peers
        ("2001:db8:1::9", ("198.51.100.1, 2001:DB8:2::0:1",), "2001:db8:2::1"),
        ("2001:db8:1::9", ("2001:db8:2::1, 2001:db8:1::5",), "2001:db8:2::1"),
        ("::ffff:127.0.0.9", ("198.51.100.1, 203.0.113.7",), "203.0.113.7"),
        ("127.0.0.9", ("::ffff:203.0.113.7",), "203.0.113.7"),
    ],
)
def test_client_address_walks_x_forwarded_for_from_the_right(
    peer: str, forwarded_for: tuple[str, ...], expected: str
) -> None:
    assert client_address(_request(peer, *forwarded_for), TRUSTED) == expected


def test_without_trusted_proxies_the_header_is_ignored() -> None:
    assert client_address(_request("127.0.0.9", "203.0.113.7"), Settings()) == "127.0.0.9"


@pytest.mark.parametrize("value", ["10.0.0.0/33", "proxy.example.org", "10.0.0.1, nope"])
def test_trusted_proxies_are_checked_at_start(value: str) -> None:
    env = {"ENVIRONMENT": "test", "SECRET_KEY": "k" * 40}

    # a malformed entry refuses to start, rather than failing every request
    with pytest.raises(
        ConfigError, match=r"^TRUSTED_PROXIES: '.+' is not an address or a network$"
    ):
        Settings.from_env({**env, "TRUSTED_PROXIES": value})
    # while addresses and networks, IPv4 or IPv6, are read as given
    valid = {**env, "TRUSTED_PROXIES": " 10.0.0.0/8 ,::1,192.0.2.7"}
    assert Settings.from_env(valid).trusted_proxies == ("10.0.0.0/8", "::1", "192.0.2.7")
