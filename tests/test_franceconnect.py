"""FranceConnect login end to end, against a real OpenID Provider on loopback (npm
`oidc-provider` configured like FranceConnect v2: tests/oidc/provider.js), through a plain
HTTP client that follows the redirects and fills the provider's forms as a browser would.

The tokens the real provider never sends (a wrong nonce, another key, expired, another
audience) are in test_franceconnect_tokens.py; the matching rules one by one in
test_franceconnect_matching.py."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.applications import Starlette

from api.app import create_app
from api.config import ConfigError, Settings
from models.account import Account
from models.franceconnect import AuthorizationRequest, LoginTicket
from models.patient import Patient, Sex, SpaceStatus
from models.session import Session
from tests.conftest import CaughtMail
from tests.factories import PASSWORD, make_operator, make_patient
from tests.graphql import gql
from tests.lifecycle_support import OPPOSE, activation_code_from, enroll, enrolment, login
from tests.oidc.support import (
    CLIENT_SECRET,
    FRONTEND_URL,
    REDIRECT_URI,
    NodeProvider,
    browse,
    claims_of,
    enrolled,
    landing,
    nir_for,
    node_provider,
    pending_requests,
    rows,
)

ES256_CLIENT = "espace-sante-es256"
RS256_CLIENT = "espace-sante-rs256"
LOGIN_URL = "/auth/franceconnect/login"
EXCHANGE = """
mutation($input: ExchangeLoginTicketInput!) {
  exchangeLoginTicket(input: $input) {
    token expiresAt challenge { id }
    viewer { __typename ... on Patient { id firstName lastName status } }
  }
}"""
END_PROVIDER_SESSION = "mutation { endProviderSession }"
VIEWER = "{ viewer { ... on Patient { id firstName status } } }"


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProvider]:
    clients = [
        {
            "client_id": client_id,
            "client_secret": CLIENT_SECRET,
            "redirect_uris": [REDIRECT_URI],
            "post_logout_redirect_uris": [FRONTEND_URL],
            "alg": alg,
        }
        for client_id, alg in ((ES256_CLIENT, "ES256"), (RS256_CLIENT, "RS256"))
    ]
    with node_provider(tmp_path_factory.mktemp("oidc-provider"), clients) as running:
        yield running


@pytest.fixture
def client_id() -> str:
    return ES256_CLIENT


@pytest.fixture
async def app(
    settings: Settings, provider: NodeProvider, client_id: str
) -> AsyncIterator[Starlette]:
    configured = replace(
        settings,
        two_factor=True,  # a password login would ask for an e-mail code; FranceConnect does not
        franceconnect_issuer=provider.issuer,
        franceconnect_client_id=client_id,
        franceconnect_client_secret=CLIENT_SECRET,
        frontend_url=FRONTEND_URL,
    )
    application = create_app(configured)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def new_browser(app: Starlette) -> AsyncIterator[Callable[[], httpx.AsyncClient]]:
    """Browsers with cookie jars of their own: the app at http://testserver (in process),
    the provider on its loopback port."""
    opened: list[httpx.AsyncClient] = []

    def open_one() -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.9", 4242))
        browser = httpx.AsyncClient(
            mounts={"http://testserver": transport}, base_url="http://testserver", timeout=10
        )
        opened.append(browser)
        return browser

    yield open_one
    for browser in opened:
        await browser.aclose()


@pytest.fixture
def browser(new_browser: Callable[[], httpx.AsyncClient]) -> httpx.AsyncClient:
    return new_browser()


async def exchange(browser: httpx.AsyncClient, ticket: str) -> Any:
    return await gql(browser, EXCHANGE, {"input": {"ticket": ticket}})


async def log_in(browser: httpx.AsyncClient, login_name: str) -> dict[str, str]:
    return landing(await browse(browser, LOGIN_URL, login=login_name))


def jwt_part(token: str, index: int) -> dict[str, Any]:
    part = token.split(".")[index]
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


# --- the flow ---------------------------------------------------------------------------


async def test_login_sends_the_browser_to_the_provider_with_state_nonce_and_pkce(
    browser: httpx.AsyncClient, provider: NodeProvider
) -> None:
    # when the front end sends the browser to the login route
    response = await browser.get(LOGIN_URL)

    # then it is redirected to the provider's authorisation endpoint, FranceConnect-style
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert f"{location.scheme}://{location.netloc}{location.path}" == provider.issuer + "/auth"
    assert {k: query[k] for k in ("response_type", "client_id", "redirect_uri", "acr_values")} == {
        "response_type": "code",
        "client_id": ES256_CLIENT,
        "redirect_uri": REDIRECT_URI,
        "acr_values": "eidas1",
    }
    assert set(query["scope"].split()) == {
        "openid",
        "given_name",
        "family_name",
        "birthdate",
        "gender",
        "birthplace",
        "birthcountry",
        "email",
    }
    assert query["code_challenge_method"] == "S256"
    assert len(query["state"]) >= 32 and len(query["nonce"]) >= 32
    assert query["state"] != query["nonce"]
    # the state is remembered server-side, as a hash only, and bound to this browser
    assert await pending_requests() == 1
    stored = json.dumps(await AuthorizationRequest.all().values(), default=str)
    assert query["state"] not in stored and query["nonce"] not in stored
    assert response.headers["cache-control"] == "no-store"
    assert "HttpOnly" in response.headers["set-cookie"]


@pytest.mark.parametrize("client_id", [ES256_CLIENT, RS256_CLIENT])
async def test_a_person_logs_in_through_the_provider_with_the_session_of_a_password_login(
    browser: httpx.AsyncClient, provider: NodeProvider, client_id: str
) -> None:
    # given an enrolled person with a password account, whom the provider knows
    person = await enrolled("Hélène", "Le Gall", email="helene@example.org")
    login_name = provider.add(f"helene-{client_id}", **claims_of("Hélène Marie", "LE GALL"))
    before = await rows()

    # when they log in through FranceConnect and the front end exchanges the ticket
    landed = await log_in(browser, login_name)
    result = await exchange(browser, landed["ticket"])

    # then they hold a session at once (no e-mail code), the one a password login gives
    payload = result.ok()["exchangeLoginTicket"]
    assert payload["challenge"] is None
    assert payload["viewer"] == {
        "__typename": "Patient",
        "id": payload["viewer"]["id"],
        "firstName": "Hélène",
        "lastName": "Le Gall",
        "status": "ACTIVE",
    }
    viewer = await gql(browser, VIEWER, token=payload["token"])
    assert viewer.ok()["viewer"]["firstName"] == "Hélène"
    after = await rows()
    account = await Account.get(patient_id=person.id)
    assert [s["account_id"] for s in after["sessions"]] == [account.id]
    assert len(after["provider_sessions"]) == 1
    unchanged = ("patients", "accounts", "codes", "challenges", "outbox", "tickets")
    assert {k: after[k] for k in unchanged} == {k: before[k] for k in unchanged}
    # and a password login of the same person still asks for its e-mail code
    password_login = await login(browser, "helene@example.org", PASSWORD)
    assert password_login.ok()["login"]["token"] is None


async def test_a_pending_space_is_activated_and_given_an_account(
    browser: httpx.AsyncClient, provider: NodeProvider
) -> None:
    # given a person enrolled, whose space is pending, without credentials
    person = await enrolled("Marc", "Dupuis", sex=Sex.MALE, status=SpaceStatus.PENDING)
    login_name = provider.add(
        "marc", **claims_of("Marc", "DUPUIS", gender="male", email="marc@fc.example")
    )

    # when they log in through FranceConnect
    result = await exchange(browser, (await log_in(browser, login_name))["ticket"])

    # then the space is active, with an account of the provider's e-mail and no password
    payload = result.ok()["exchangeLoginTicket"]
    assert payload["viewer"]["status"] == "ACTIVE"
    patient = await Patient.get(id=person.id)
    assert patient.status is SpaceStatus.ACTIVE and patient.activated_at is not None
    account = await Account.get(patient_id=person.id)
    assert (account.email, account.password_hash) == ("marc@fc.example", None)
    assert (await gql(browser, VIEWER, token=payload["token"])).ok()["viewer"]["status"] == "ACTIVE"


async def test_end_provider_session_logs_out_here_and_at_the_provider(
    browser: httpx.AsyncClient, provider: NodeProvider
) -> None:
    # given a person logged in through FranceConnect
    await enrolled("Inès", "Roux", email="ines@example.org")
    login_name = provider.add("ines", **claims_of("Inès", "ROUX"))
    token = (await exchange(browser, (await log_in(browser, login_name))["ticket"])).ok()[
        "exchangeLoginTicket"
    ]["token"]

    # when the front end asks to end the provider session
    result = await gql(browser, END_PROVIDER_SESSION, token=token)

    # then it gets the provider's end-session URL with the ID token as hint
    url = urlsplit(result.ok()["endProviderSession"])
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert f"{url.scheme}://{url.netloc}{url.path}" == provider.issuer + "/session/end"
    assert query["post_logout_redirect_uri"] == FRONTEND_URL
    assert len(query["state"]) >= 32
    hint = query["id_token_hint"]
    assert jwt_part(hint, 0)["alg"] == "ES256"
    assert (jwt_part(hint, 1)["sub"], jwt_part(hint, 1)["aud"]) == ("ines", ES256_CLIENT)
    # our session is over, and its ID token is no longer kept
    assert (await gql(browser, VIEWER, token=token)).codes == ["UNAUTHENTICATED"]
    assert (await rows())["provider_sessions"] == []
    # and the provider takes the hint: its logout comes back to the front end
    back = await browse(browser, result.ok()["endProviderSession"])
    assert back.startswith(FRONTEND_URL)


async def test_end_provider_session_of_a_password_login_logs_out_and_answers_null(
    browser: httpx.AsyncClient,
) -> None:
    person = await make_patient()
    assert person.token is not None

    result = await gql(browser, END_PROVIDER_SESSION, token=person.token)

    assert result.ok() == {"endProviderSession": None}
    assert (await gql(browser, VIEWER, token=person.token)).codes == ["UNAUTHENTICATED"]


async def test_logout_of_a_franceconnect_session_forgets_its_id_token(
    browser: httpx.AsyncClient, provider: NodeProvider
) -> None:
    await enrolled("Yann", "Le Bihan", sex=Sex.MALE, email="yann@example.org")
    login_name = provider.add("yann", **claims_of("Yann", "LE BIHAN", gender="male"))
    ticket = (await log_in(browser, login_name))["ticket"]
    token = (await exchange(browser, ticket)).ok()["exchangeLoginTicket"]["token"]
    assert len((await rows())["provider_sessions"]) == 1

    assert (await gql(browser, "mutation { logout }", token=token)).ok() == {"logout": True}

    assert (await rows())["provider_sessions"] == []
    anonymous = await gql(browser, END_PROVIDER_SESSION)
    assert anonymous.codes == ["UNAUTHENTICATED"]


# --- refused: nothing is created, nobody is logged in ------------------------------------


async def test_a_replayed_callback_logs_nobody_in(
    browser: httpx.AsyncClient, provider: NodeProvider
) -> None:
    # given a login that went through, and the callback URL it used
    await enrolled("Paul", "Martin", sex=Sex.MALE)
    login_name = provider.add("paul", **claims_of("Paul", "MARTIN", gender="male"))
    response = await browser.get(LOGIN_URL)
    at_provider = await browse(
        browser, response.headers["location"], login=login_name, until=REDIRECT_URI
    )
    first = await browser.get(at_provider)
    assert set(landing(first.headers["location"])) == {"ticket"}
    before = await rows()

    # when the same callback (state and code) comes again
    again = await browser.get(at_provider)

    # then it lands on PROVIDER_ERROR and writes nothing
    assert landing(again.headers["location"]) == {"error": "PROVIDER_ERROR"}
    assert await rows() == before


async def test_a_replayed_code_logs_nobody_in(
    browser: httpx.AsyncClient, provider: NodeProvider
) -> None:
    # given a code already redeemed, and a fresh login of the same browser
    await enrolled("Léa", "Garnier")
    login_name = provider.add("lea", **claims_of("Léa", "GARNIER"))
    response = await browser.get(LOGIN_URL)
    used = await browse(browser, response.headers["location"], login=login_name, until=REDIRECT_URI)
    assert set(landing((await browser.get(used)).headers["location"])) == {"ticket"}
    fresh = parse_qs(urlsplit((await browser.get(LOGIN_URL)).headers["location"]).query)
    before = await rows()

    # when the old code comes back with the fresh, valid state
    code = parse_qs(urlsplit(used).query)["code"][0]
    replay = await browser.get(
        "/auth/franceconnect/callback",
        params={"code": code, "state": fresh["state"][0], "iss": provider.issuer},
    )

    # then the provider refuses the code: PROVIDER_ERROR, nothing written
    assert landing(replay.headers["location"]) == {"error": "PROVIDER_ERROR"}
    assert await rows() == before


async def test_a_forged_state_logs_nobody_in(browser: httpx.AsyncClient) -> None:
    before = await rows()

    response = await browser.get(
        "/auth/franceconnect/callback", params={"code": "a-code", "state": "forged-" + "x" * 40}
    )

    assert response.status_code == 302
    assert landing(response.headers["location"]) == {"error": "PROVIDER_ERROR"}
    assert await rows() == before


async def test_a_callback_carried_to_another_browser_logs_nobody_in(
    new_browser: Callable[[], httpx.AsyncClient], provider: NodeProvider
) -> None:
    # given an attacker's own login, stopped at the callback
    await enrolled("Eve", "Mallet")
    login_name = provider.add("eve", **claims_of("Eve", "MALLET"))
    attacker, victim = new_browser(), new_browser()
    start = await attacker.get(LOGIN_URL)
    callback = await browse(
        attacker, start.headers["location"], login=login_name, until=REDIRECT_URI
    )
    before = await rows()

    # when the victim's browser is made to open that callback URL
    response = await victim.get(callback)

    # then nobody is logged in: the state belongs to the attacker's browser
    assert landing(response.headers["location"]) == {"error": "PROVIDER_ERROR"}
    assert await rows() == before


async def test_the_provider_refusing_lands_on_provider_error(browser: httpx.AsyncClient) -> None:
    state = parse_qs(urlsplit((await browser.get(LOGIN_URL)).headers["location"]).query)["state"]
    before = await rows()

    response = await browser.get(
        "/auth/franceconnect/callback", params={"error": "access_denied", "state": state[0]}
    )

    assert landing(response.headers["location"]) == {"error": "PROVIDER_ERROR"}
    assert await rows() == before
    assert await pending_requests() == 0  # the state is used up


async def test_an_unknown_identity_creates_nothing(
    browser: httpx.AsyncClient, provider: NodeProvider
) -> None:
    await enrolled("Julie", "Perrin", status=SpaceStatus.PENDING)
    login_name = provider.add("stranger", **claims_of("Julie", "PERRIN", born=date(1984, 7, 22)))
    before = await rows()

    landed = await log_in(browser, login_name)

    assert landed == {"error": "IDENTITY_NOT_FOUND"}
    assert await rows() == before


async def test_an_ambiguous_identity_creates_nothing(
    browser: httpx.AsyncClient, provider: NodeProvider
) -> None:
    # given two enrolled people that the provider's identity both matches
    await enrolled("Anne", "Lemoine", status=SpaceStatus.PENDING)
    await enrolled("Anne", "Le Moine", status=SpaceStatus.PENDING)
    login_name = provider.add("anne", **claims_of("ANNE", "LEMOINE"))
    before = await rows()

    landed = await log_in(browser, login_name)

    assert landed == {"error": "IDENTITY_AMBIGUOUS"}
    assert await rows() == before


async def test_an_opposed_space_cannot_log_in(
    browser: httpx.AsyncClient, provider: NodeProvider, mailbox: CaughtMail
) -> None:
    # given a person who opposed the creation of their space (their identity erased, the
    # keyed hash of their NIR kept as the proof)
    operator = await make_operator()
    born = date(1979, 11, 5)
    data = enrolment(
        first_name="Olivier",
        last_name="Faure",
        birth_date=born,
        sex=Sex.MALE,
        email="olivier@example.org",
        nir=nir_for(Sex.MALE, born, "69123"),
    )
    await enroll(browser, operator.token, data)
    code = activation_code_from(mailbox, "olivier@example.org")
    proof = {"code": code, "nir": data["nir"], "birthDate": born.isoformat()}
    assert (await gql(browser, OPPOSE, {"input": proof})).ok() == {"opposeSpace": {"opposed": True}}
    login_name = provider.add(
        "olivier",
        **claims_of("Olivier", "FAURE", born=born, gender="male", birthplace="69123"),
    )
    before = await rows()

    # when they log in through FranceConnect
    landed = await log_in(browser, login_name)

    # then the space is unavailable, and nothing is written
    assert landed == {"error": "SPACE_UNAVAILABLE"}
    assert await rows() == before


async def test_a_closed_space_cannot_log_in(
    browser: httpx.AsyncClient, provider: NodeProvider
) -> None:
    await enrolled("Chloé", "Noël", status=SpaceStatus.CLOSED, email="chloe@example.org")
    login_name = provider.add("chloe", **claims_of("Chloé", "NOËL"))
    before = await rows()

    landed = await log_in(browser, login_name)

    assert landed == {"error": "SPACE_UNAVAILABLE"}
    assert await rows() == before


async def test_a_minor_never_logs_in_this_way(
    browser: httpx.AsyncClient, provider: NodeProvider
) -> None:
    born = date.today() - timedelta(days=365 * 15)
    await enrolled("Tom", "Girard", born=born, sex=Sex.MALE, status=SpaceStatus.PENDING)
    login_name = provider.add("tom", **claims_of("Tom", "GIRARD", born=born, gender="male"))
    before = await rows()

    landed = await log_in(browser, login_name)

    assert landed == {"error": "SPACE_UNAVAILABLE"}
    assert await rows() == before


async def test_a_ticket_logs_in_once(browser: httpx.AsyncClient, provider: NodeProvider) -> None:
    await enrolled("Rose", "Blanc", email="rose@example.org")
    ticket = (await log_in(browser, provider.add("rose", **claims_of("Rose", "BLANC"))))["ticket"]
    assert (await exchange(browser, ticket)).ok()["exchangeLoginTicket"]["token"]
    before = await rows()

    again = await exchange(browser, ticket)

    assert again.codes == ["UNAUTHENTICATED"]
    assert again.data is None
    assert await rows() == before


async def test_a_ticket_after_60_seconds_logs_nobody_in(
    browser: httpx.AsyncClient, provider: NodeProvider
) -> None:
    # given a ticket issued 61 seconds ago (valid 60)
    await enrolled("Lucas", "Fabre", sex=Sex.MALE, email="lucas@example.org")
    login_name = provider.add("lucas", **claims_of("Lucas", "FABRE", gender="male"))
    ticket = (await log_in(browser, login_name))["ticket"]
    row = await LoginTicket.get()
    assert abs(row.expires_at - row.created_at - timedelta(seconds=60)) < timedelta(seconds=1)
    row.created_at -= timedelta(seconds=61)
    row.expires_at -= timedelta(seconds=61)
    await row.save(update_fields=["created_at", "expires_at"])
    before = await rows()

    # when the front end exchanges it
    result = await exchange(browser, ticket)

    # then nobody is logged in
    assert result.codes == ["UNAUTHENTICATED"]
    assert await rows() == before
    assert await Session.all().count() == 0


async def test_a_patient_hint_admits_that_person_only(
    browser: httpx.AsyncClient, provider: NodeProvider
) -> None:
    from resolvers.ids import encode

    hinted = await enrolled("Nina", "Carré", status=SpaceStatus.PENDING)
    other = await enrolled("Zoé", "Carré", status=SpaceStatus.PENDING)
    login_name = provider.add("zoe", **claims_of("Zoé", "CARRÉ"))
    before = await rows()

    url = f"{LOGIN_URL}?patientHint={encode('Patient', hinted.id)}"
    landed = landing(await browse(browser, url, login=login_name))
    malformed = await browser.get(LOGIN_URL, params={"patientHint": "not-an-id"})

    assert landed == {"error": "IDENTITY_NOT_FOUND"}
    assert await rows() == before
    assert malformed.status_code == 400
    assert malformed.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    hint_of_zoe = f"{LOGIN_URL}?patientHint={encode('Patient', other.id)}"
    assert set(landing(await browse(browser, hint_of_zoe, login=login_name))) == {"ticket"}


# --- matching ---------------------------------------------------------------------------

MATCHING = {
    # name: (enrolled first name, last name, NIR place, born) and the provider's claims
    "accents, case and hyphens": (
        ("Éloïse", "Saint-Étienne", "75107", date(1990, 2, 3)),
        claims_of("ELOISE Anne", "SAINT ETIENNE", born=date(1990, 2, 3)),
    ),
    "a compound first name": (
        ("Marie Claire", "d'Arc", "13055", date(1975, 9, 9)),
        claims_of("Marie-Claire Jeanne", "D'ARC", birthplace="13055", born=date(1975, 9, 9)),
    ),
    "born abroad (99 + country code)": (
        ("Lucía", "García", "99134", date(1988, 12, 1)),
        claims_of("Lucía", "GARCÍA", birthplace="", birthcountry="99134", born=date(1988, 12, 1)),
    ),
    "born in Corse-du-Sud (2A)": (
        ("Ange", "Colonna", "2A004", date(1980, 4, 4)),
        claims_of("Ange", "COLONNA", birthplace="2A004", born=date(1980, 4, 4)),
    ),
    "born in Haute-Corse (2B)": (
        ("Letizia", "Santoni", "2B033", date(1992, 6, 6)),
        claims_of("Letizia", "SANTONI", birthplace="2B033", born=date(1992, 6, 6)),
    ),
    "born in Corsica before 1976 (NIR department 20)": (
        ("Maria", "Peretti", "20004", date(1960, 8, 15)),
        claims_of("Maria", "PERETTI", birthplace="2A004", born=date(1960, 8, 15)),
    ),
}

NOT_MATCHING = {
    "another commune": (
        ("Claire", "Morel", "75107", date(1990, 2, 3)),
        claims_of("Claire", "MOREL", birthplace="75108", born=date(1990, 2, 3)),
    ),
    "born in France, enrolled as born abroad": (
        ("Sofia", "Rossi", "99127", date(1991, 3, 3)),
        claims_of("Sofia", "ROSSI", birthplace="75107", born=date(1991, 3, 3)),
    ),
    "another country": (
        ("Lucía", "Pérez", "99134", date(1988, 12, 1)),
        claims_of("Lucía", "PÉREZ", birthplace="", birthcountry="99139", born=date(1988, 12, 1)),
    ),
    "the enrolled first name is not the first given name": (
        ("Anne", "Simon", "75107", date(1990, 2, 3)),
        claims_of("Marie Anne", "SIMON", born=date(1990, 2, 3)),
    ),
    "another family name": (
        ("Anne", "Simon", "75107", date(1990, 2, 3)),
        claims_of("Anne", "SIMONE", born=date(1990, 2, 3)),
    ),
    "another sex": (
        ("Camille", "Roy", "75107", date(1990, 2, 3)),
        claims_of("Camille", "ROY", gender="male", born=date(1990, 2, 3)),
    ),
}


@pytest.mark.parametrize("case", MATCHING)
async def test_matching_logs_in_the_enrolled_person(
    browser: httpx.AsyncClient, provider: NodeProvider, case: str
) -> None:
    (first, last, place, born), claims = MATCHING[case]
    person = await enrolled(first, last, born=born, place=place, status=SpaceStatus.PENDING)
    login_name = provider.add(f"match-{sorted(MATCHING).index(case)}", **claims)

    landed = await log_in(browser, login_name)

    payload = (await exchange(browser, landed["ticket"])).ok()["exchangeLoginTicket"]
    assert (payload["viewer"]["firstName"], payload["viewer"]["lastName"]) == (first, last)
    assert (await Patient.get(id=person.id)).status is SpaceStatus.ACTIVE


@pytest.mark.parametrize("case", NOT_MATCHING)
async def test_matching_refuses_an_identity_that_differs(
    browser: httpx.AsyncClient, provider: NodeProvider, case: str
) -> None:
    (first, last, place, born), claims = NOT_MATCHING[case]
    sex = Sex.FEMALE
    await enrolled(first, last, born=born, place=place, sex=sex, status=SpaceStatus.PENDING)
    login_name = provider.add(f"no-match-{sorted(NOT_MATCHING).index(case)}", **claims)
    before = await rows()

    landed = await log_in(browser, login_name)

    assert landed == {"error": "IDENTITY_NOT_FOUND"}
    assert await rows() == before


# --- switched off -----------------------------------------------------------------------


async def test_without_settings_the_endpoints_answer_404(client: httpx.AsyncClient) -> None:
    for path in (LOGIN_URL, "/auth/franceconnect/callback?code=c&state=s"):
        response = await client.get(path)
        assert response.status_code == 404
        assert response.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    result = await gql(client, EXCHANGE, {"input": {"ticket": "t"}})
    assert result.codes == ["UNAUTHENTICATED"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"FRANCECONNECT_ISSUER": "https://fc.example/api/v2"},
            "FranceConnect is half configured: set FRANCECONNECT_CLIENT_ID, "
            "FRANCECONNECT_CLIENT_SECRET too",
        ),
        (
            {
                "FRANCECONNECT_ISSUER": "https://fc.example/api/v2",
                "FRANCECONNECT_CLIENT_ID": "id",
                "FRANCECONNECT_CLIENT_SECRET": "secret",
            },
            "FRONTEND_URL must be set with FranceConnect (where its logins land)",
        ),
        ({"FRANCECONNECT_ISSUER": "fc.example"}, "FRANCECONNECT_ISSUER must be an http(s) URL"),
    ],
)
def test_settings_refuse_a_half_configured_franceconnect(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    base = {"ENVIRONMENT": "test", "SECRET_KEY": "k" * 40, "DATA_DIR": str(tmp_path)}

    with pytest.raises(ConfigError) as refused:
        Settings.from_env({**base, **env})

    assert str(refused.value) == message


def test_settings_want_https_in_production(tmp_path: Path) -> None:
    production = {
        "SECRET_KEY": "k" * 40,
        "DATA_DIR": str(tmp_path),
        "SMTP_URL": "smtp://127.0.0.1:25",
        "FRANCECONNECT_CLIENT_ID": "id",
        "FRANCECONNECT_CLIENT_SECRET": "the-client-secret-value",
        "FRONTEND_URL": "https://app.example/connexion",
    }

    with pytest.raises(ConfigError) as refused:
        Settings.from_env({**production, "FRANCECONNECT_ISSUER": "http://fc.example/api/v2"})
    settings = Settings.from_env(
        {**production, "FRANCECONNECT_ISSUER": "https://oidc.franceconnect.gouv.fr/api/v2/"}
    )

    assert str(refused.value) == "FRANCECONNECT_ISSUER must be an https URL"
    assert settings.franceconnect_enabled
    assert settings.franceconnect_issuer == "https://oidc.franceconnect.gouv.fr/api/v2"
    assert "the-client-secret-value" not in repr(settings)
