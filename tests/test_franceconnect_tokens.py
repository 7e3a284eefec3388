"""What the callback refuses in the provider's answers: tokens the real provider never sends,
minted here with joserfc by a stand-in provider on loopback (tests/oidc/support.py) that
otherwise speaks like FranceConnect v2. Each refusal lands on PROVIDER_ERROR and writes
nothing; the provider's keys are cached and fetched again for an unknown key id."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from joserfc.jwk import OctKey
from starlette.applications import Starlette

from api.app import create_app
from api.budget import MemoryBuckets
from api.config import Settings
from models.franceconnect import AuthorizationRequest, LoginTicket
from models.patient import Patient, SpaceStatus
from tests.conftest import UNLIMITED_BUDGET, free_port
from tests.graphql import gql
from tests.oidc.support import (
    CLIENT_SECRET,
    FRONTEND_URL,
    StandInProvider,
    browse,
    claims_of,
    enrolled,
    landing,
    rows,
    signing_key,
    stand_in_provider,
)

CLIENT_ID = "espace-sante-stand-in"
LOGIN_URL = "/auth/franceconnect/login"
EXCHANGE = """
mutation($input: ExchangeLoginTicketInput!) {
  exchangeLoginTicket(input: $input) { token viewer { ... on Patient { firstName } } }
}"""


@pytest.fixture
def provider() -> Iterator[StandInProvider]:
    with stand_in_provider(CLIENT_ID) as running:
        running.identity = claims_of("Irène", "VIDAL")
        yield running


def configured(settings: Settings, issuer: str) -> Settings:
    return replace(
        settings,
        franceconnect_issuer=issuer,
        franceconnect_client_id=CLIENT_ID,
        franceconnect_client_secret=CLIENT_SECRET,
        frontend_url=FRONTEND_URL,
    )


@pytest.fixture
async def browser(
    settings: Settings, provider: StandInProvider
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(configured(settings, provider.issuer))
    async with app.router.lifespan_context(app), _browser(app) as browser:
        yield browser


def _browser(app: Starlette) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=("127.0.0.9", 4242))
    return httpx.AsyncClient(
        mounts={"http://testserver": transport}, base_url="http://testserver", timeout=10
    )


@pytest.fixture
async def person() -> Patient:
    return await enrolled("Irène", "Vidal", status=SpaceStatus.PENDING)


async def test_the_stand_in_provider_logs_in_when_nothing_is_wrong(
    browser: httpx.AsyncClient, provider: StandInProvider, person: Patient
) -> None:
    landed = landing(await browse(browser, LOGIN_URL))

    result = await gql(browser, EXCHANGE, {"input": {"ticket": landed["ticket"]}})

    assert result.ok()["exchangeLoginTicket"]["viewer"] == {"firstName": "Irène"}
    assert (await Patient.get(id=person.id)).status is SpaceStatus.ACTIVE


def _now() -> int:
    return int(datetime.now(UTC).timestamp())


def _changed(**changes: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda claims: {**claims, **changes}


def _without(name: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda claims: {k: v for k, v in claims.items() if k != name}


def _wrong(provider: StandInProvider, case: str) -> None:
    """Make the provider answer wrong in one way."""
    if case == "a wrong nonce":
        provider.id_token_changes = _changed(nonce="not-the-nonce-we-sent-" + "x" * 20)
    elif case == "no nonce":
        provider.id_token_changes = _without("nonce")
    elif case == "a key the provider does not publish":
        provider.id_token_key = signing_key("an-intruder")
    elif case == "another key under the published key id":
        provider.id_token_key = signing_key(str(provider.key.kid))
    elif case == "an RSA key for ES256":
        provider.id_token_key, provider.id_token_alg = signing_key("rsa", "RSA"), "RS256"
    elif case == "HS256 with the client secret":
        provider.id_token_key = OctKey.import_key(CLIENT_SECRET.encode())
        provider.id_token_alg = "HS256"
    elif case == "no signature (alg none)":
        provider.id_token_alg = "none"
    elif case == "an expired token":
        provider.id_token_changes = _changed(iat=_now() - 660, exp=_now() - 600)
    elif case == "no expiry":
        provider.id_token_changes = _without("exp")
    elif case == "a token issued in the future":
        provider.id_token_changes = _changed(iat=_now() + 600, exp=_now() + 660)
    elif case == "a wrong audience":
        provider.id_token_changes = _changed(aud="another-service")
    elif case == "another party among the audiences":
        provider.id_token_changes = _changed(aud=[CLIENT_ID, "another-service"])
    elif case == "a wrong issuer":
        provider.id_token_changes = _changed(iss="https://impostor.example/api/v2")
    elif case == "an unknown eIDAS level":
        provider.id_token_changes = _changed(acr="eidas0")
    elif case == "an unsigned userinfo":
        provider.userinfo_signed = False
    elif case == "a userinfo about another subject":
        provider.userinfo_changes = {"sub": "someone-else"}
    elif case == "a userinfo for another audience":
        provider.userinfo_changes = {"aud": "another-service"}
    elif case == "a userinfo from another issuer":
        provider.userinfo_changes = {"iss": "https://impostor.example/api/v2"}
    elif case == "a userinfo without the birth date":
        provider.userinfo_changes = {"birthdate": None}
    elif case == "a userinfo signed by another key":
        provider.userinfo_key = signing_key(str(provider.key.kid))
    elif case == "a userinfo signed by a key the provider does not publish":
        provider.userinfo_key = signing_key("an-intruder")
    elif case == "a userinfo without signature (alg none)":
        provider.userinfo_alg = "none"
    elif case == "a userinfo signed HS256 with the client secret":
        provider.userinfo_key = OctKey.import_key(CLIENT_SECRET.encode())
        provider.userinfo_alg = "HS256"
    elif case == "an expired userinfo":
        provider.userinfo_changes = {"iat": _now() - 660, "exp": _now() - 600}
    else:
        raise AssertionError(case)


WRONG = [
    "a wrong nonce",
    "no nonce",
    "a key the provider does not publish",
    "another key under the published key id",
    "an RSA key for ES256",
    "HS256 with the client secret",
    "no signature (alg none)",
    "an expired token",
    "no expiry",
    "a token issued in the future",
    "a wrong audience",
    "another party among the audiences",
    "a wrong issuer",
    "an unknown eIDAS level",
    "an unsigned userinfo",
    "a userinfo about another subject",
    "a userinfo for another audience",
    "a userinfo from another issuer",
    "a userinfo without the birth date",
    "a userinfo signed by another key",
    "a userinfo signed by a key the provider does not publish",
    "a userinfo without signature (alg none)",
    "a userinfo signed HS256 with the client secret",
    "an expired userinfo",
]


@pytest.mark.parametrize("case", WRONG)
async def test_a_provider_answer_that_does_not_verify_logs_nobody_in(
    browser: httpx.AsyncClient, provider: StandInProvider, person: Patient, case: str
) -> None:
    # given a provider answering wrong in one way
    _wrong(provider, case)
    before = await rows()

    # when the person logs in
    landed = landing(await browse(browser, LOGIN_URL))

    # then nobody is logged in and nothing is written
    assert landed == {"error": "PROVIDER_ERROR"}
    assert await rows() == before
    assert len(provider.tokens_issued) == 1  # the code was redeemed: what came back was refused


async def test_a_callback_naming_another_issuer_logs_nobody_in(
    browser: httpx.AsyncClient, provider: StandInProvider, person: Patient
) -> None:
    # given the provider's redirect back, its `iss` changed (RFC 9207: a mix-up attack)
    to_provider = (await browser.get(LOGIN_URL)).headers["location"]
    back = urlsplit((await browser.get(to_provider)).headers["location"])
    query = {k: v[0] for k, v in parse_qs(back.query).items()}
    query["iss"] = "https://impostor.example/api/v2"
    before = await rows()

    response = await browser.get(f"{back.path}?{urlencode(query)}")

    assert landing(response.headers["location"]) == {"error": "PROVIDER_ERROR"}
    assert await rows() == before
    assert provider.tokens_issued == []  # the code was never sent anywhere


async def test_the_keys_are_cached_and_fetched_again_for_a_key_id_they_lack(
    browser: httpx.AsyncClient, provider: StandInProvider, person: Patient
) -> None:
    # given two logins: the provider's keys are fetched once
    for _ in range(2):
        assert set(landing(await browse(browser, LOGIN_URL))) == {"ticket"}
    assert provider.jwks_fetches == 1

    # when the provider rotates to a new key
    provider.key = signing_key("stand-in-2")
    provider.published = [provider.key]
    landed = landing(await browse(browser, LOGIN_URL))

    # then the keys are fetched again, once, and the login goes through
    assert set(landed) == {"ticket"}
    assert provider.jwks_fetches == 2


async def test_a_provider_that_cannot_be_reached_lands_on_provider_error(
    settings: Settings,
) -> None:
    app = create_app(configured(settings, f"http://127.0.0.1:{free_port()}/api/v2"))
    async with app.router.lifespan_context(app), _browser(app) as browser:
        before = await rows()

        response = await browser.get(LOGIN_URL)

        assert response.status_code == 302
        assert landing(response.headers["location"]) == {"error": "PROVIDER_ERROR"}
        assert await rows() == before


async def test_a_state_older_than_10_minutes_logs_nobody_in(
    browser: httpx.AsyncClient, provider: StandInProvider, person: Patient
) -> None:
    # given a login sent to the provider 10 minutes ago, its callback only now
    to_provider = (await browser.get(LOGIN_URL)).headers["location"]
    back = (await browser.get(to_provider)).headers["location"]
    request = await AuthorizationRequest.get()
    lifetime = request.expires_at - request.created_at
    assert abs(lifetime - timedelta(minutes=10)) < timedelta(seconds=1)
    await AuthorizationRequest.filter(id=request.id).update(
        created_at=request.created_at - timedelta(minutes=10),
        expires_at=request.expires_at - timedelta(minutes=10),
    )
    before = await rows()

    response = await browser.get(back)

    assert landing(response.headers["location"]) == {"error": "PROVIDER_ERROR"}
    assert await rows() == before
    assert provider.tokens_issued == []


async def test_any_worker_takes_the_callback_of_a_login_another_one_started(
    settings: Settings, provider: StandInProvider
) -> None:
    # given two processes' apps on one database, the login started by the first
    first = create_app(configured(settings, provider.issuer))
    second = create_app(configured(settings, provider.issuer))
    async with (
        first.router.lifespan_context(first),
        second.router.lifespan_context(second),
        _browser(first) as on_first,
        _browser(second) as on_second,
    ):
        await enrolled("Irène", "Vidal", status=SpaceStatus.PENDING)
        to_provider = (await on_first.get(LOGIN_URL)).headers["location"]
        back = (await on_first.get(to_provider)).headers["location"]

        # when the provider's redirect reaches the second, with the same browser's cookies
        on_second.cookies = on_first.cookies
        response = await on_second.get(back)

        # then the second completes the login
        assert set(landing(response.headers["location"])) == {"ticket"}


async def test_an_id_token_and_userinfo_signed_rs256_with_a_published_key_log_in(
    browser: httpx.AsyncClient, provider: StandInProvider, person: Patient
) -> None:
    # given a provider that signs with RS256, its RSA key published beside its EC one
    rsa = signing_key("stand-in-rsa", "RSA")
    provider.published = [provider.key, rsa]
    provider.id_token_key, provider.id_token_alg = rsa, "RS256"
    provider.userinfo_key, provider.userinfo_alg = rsa, "RS256"

    landed = landing(await browse(browser, LOGIN_URL))

    assert set(landed) == {"ticket"}
    assert _header(provider.tokens_issued[0]) == {
        "alg": "RS256",
        "kid": "stand-in-rsa",
        "typ": "JWT",
    }


def _header(token: str) -> dict[str, Any]:
    part = token.split(".")[0]
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


async def test_a_discovery_document_naming_another_issuer_starts_no_login(
    browser: httpx.AsyncClient, provider: StandInProvider
) -> None:
    # given a provider whose discovery document names another issuer (OIDC Discovery, 4.3)
    provider.metadata_changes = {"issuer": "https://impostor.example/api/v2"}
    before = await rows()

    response = await browser.get(LOGIN_URL)

    # then the browser is never sent there, and nothing is written
    assert response.status_code == 302
    assert landing(response.headers["location"]) == {"error": "PROVIDER_ERROR"}
    assert await rows() == before
    assert await AuthorizationRequest.all().count() == 0


async def test_a_state_is_used_once_even_by_the_browser_that_holds_its_cookie(
    browser: httpx.AsyncClient, provider: StandInProvider, person: Patient
) -> None:
    # given one login, for which the provider gave two codes (the same authorisation
    # request sent twice), and the browser's cookie kept aside
    to_provider = (await browser.get(LOGIN_URL)).headers["location"]
    first = (await browser.get(to_provider)).headers["location"]
    second = (await browser.get(to_provider)).headers["location"]
    cookies = httpx.Cookies(browser.cookies)
    assert set(landing((await browser.get(first)).headers["location"])) == {"ticket"}
    before = await rows()

    # when the second code comes back with the same state, the cookie restored
    browser.cookies = cookies
    replay = await browser.get(second)

    # then the state is spent: nobody is logged in, and the code is never redeemed
    assert landing(replay.headers["location"]) == {"error": "PROVIDER_ERROR"}
    assert await rows() == before
    assert len(provider.tokens_issued) == 1


async def test_of_two_concurrent_callbacks_with_one_state_one_logs_in(
    browser: httpx.AsyncClient, provider: StandInProvider, person: Patient
) -> None:
    to_provider = (await browser.get(LOGIN_URL)).headers["location"]
    backs = [(await browser.get(to_provider)).headers["location"] for _ in range(2)]

    responses = await asyncio.gather(*(browser.get(back) for back in backs))

    landed = sorted(next(iter(landing(r.headers["location"]))) for r in responses)
    assert landed == ["error", "ticket"]
    assert await LoginTicket.all().count() == 1


async def test_a_provider_without_pkce_is_sent_no_challenge_and_no_verifier(
    browser: httpx.AsyncClient, provider: StandInProvider, person: Patient
) -> None:
    # given a provider whose discovery offers no PKCE
    provider.metadata_changes = {"code_challenge_methods_supported": None}

    to_provider = (await browser.get(LOGIN_URL)).headers["location"]
    landed = landing(await browse(browser, to_provider))

    # then the login goes through without either half of PKCE
    query = parse_qs(urlsplit(to_provider).query)
    assert "code_challenge" not in query and "code_challenge_method" not in query
    assert set(landed) == {"ticket"}
    assert "code_verifier" not in provider.token_requests[0]


async def test_the_code_is_redeemed_with_pkce_and_client_secret_post(
    browser: httpx.AsyncClient, provider: StandInProvider, person: Patient
) -> None:
    to_provider = (await browser.get(LOGIN_URL)).headers["location"]

    assert set(landing(await browse(browser, to_provider))) == {"ticket"}

    (form,) = provider.token_requests
    assert len(form["code_verifier"]) >= 43
    assert (form["client_id"], form["client_secret"]) == (CLIENT_ID, CLIENT_SECRET)
    assert form["authorization"] == ""


async def test_a_provider_offering_only_http_basic_gets_the_secret_that_way(
    browser: httpx.AsyncClient, provider: StandInProvider, person: Patient
) -> None:
    provider.metadata_changes = {"token_endpoint_auth_methods_supported": ["client_secret_basic"]}

    landed = landing(await browse(browser, LOGIN_URL))

    assert set(landed) == {"ticket"}
    (form,) = provider.token_requests
    assert "client_secret" not in form and form["authorization"].startswith("Basic ")


async def test_starting_a_login_spends_ten_requests_of_the_address_budget(
    settings: Settings, provider: StandInProvider
) -> None:
    # given an address allowed 25 requests (no refill during the test)
    budget: dict[str, Any] = {
        **UNLIMITED_BUDGET,
        "rate_limit_address_requests_per_minute": 1,
        "rate_limit_burst_seconds": 25 * 60,
    }
    app = create_app(replace(configured(settings, provider.issuer), **budget))
    app.state.services.budget.buckets = MemoryBuckets(clock=lambda: 1000.0)
    async with app.router.lifespan_context(app), _browser(app) as browser:
        # when it starts logins: two pass (20 requests); the third's 1 request passes the
        # middleware, its other 9 would need 5 more than the 4 left
        started = [await browser.get(LOGIN_URL) for _ in range(3)]
        other_requests = [await gql(browser, "{ __typename }") for _ in range(5)]
        written = await AuthorizationRequest.all().count()

    # then the third is refused before anything is written, with the budget's answer
    assert [r.status_code for r in started] == [302, 302, 429]
    assert started[2].json()["errors"][0]["extensions"] == {
        "code": "RATE_LIMITED",
        "retryAfter": 300,
    }
    assert started[2].headers["retry-after"] == "300"
    assert "set-cookie" not in started[2].headers
    assert written == 2
    # and the 4 requests left still serve other requests, then nothing does
    assert [r.data for r in other_requests[:4]] == [{"__typename": "Query"}] * 4
    assert other_requests[4].codes == ["RATE_LIMITED"]
