"""Login through FranceConnect: its two routes (API.md, "FranceConnect").

`GET /auth/franceconnect/login[?patientHint=…]` sends the browser to the provider (the
authorisation code flow with `state`, `nonce`, PKCE S256 when the provider offers it,
`acr_values=eidas1` and the identity scopes); `GET /auth/franceconnect/callback` has the
code redeemed and what comes back verified (api/franceconnect_client.py), the identity
matched (models/franceconnect.py), then lands on FRONTEND_URL with `?ticket=` or `?error=`.
Both answer 404 while the settings are unset.

The state is also bound to the browser that asked for it (a cookie named after its hash):
a callback URL carried to another browser logs nobody in there.

Starting a login writes a row (and its callback makes requests to the provider), so it costs
the caller's request budget (api/budget.py) LOGIN_REQUESTS requests, not the 1 of any
other request: the per-address budget bounds how many pending logins an address makes.
"""

from __future__ import annotations

import hashlib
import logging
from uuid import UUID

from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from api.budget import STATE_KEY, Caller, rate_limited_response
from api.errors import NotFound, RateLimited
from api.franceconnect_client import CALLBACK_PATH, FranceConnect, ProviderError
from models.base import utcnow
from models.franceconnect import REQUEST_VALIDITY, complete_login, start_login, take_request
from models.franceconnect_matching import LoginRefused, ProvenIdentity, Refusal
from resolvers import ids

logger = logging.getLogger(__name__)

PREFIX = "/auth/franceconnect"
# What starting a login costs the caller's request budget, BudgetMiddleware's 1 included.
LOGIN_REQUESTS = 10


def franceconnect_of(conn: HTTPConnection) -> FranceConnect | None:
    return getattr(conn.app.state, "franceconnect", None)


def _enabled(request: Request) -> FranceConnect:
    client = franceconnect_of(request)
    if client is None:
        raise HTTPException(404, "Not Found")
    return client


def _cookie(state: str) -> str:
    """The cookie that binds a state to its browser, named after the state's hash."""
    return "fc-" + hashlib.sha256(state.encode()).hexdigest()[:24]


def _redirect(url: str) -> RedirectResponse:
    response = RedirectResponse(url, status_code=302)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _patient_hint(request: Request) -> UUID | None:
    raw = request.query_params.get("patientHint")
    if not raw:
        return None
    try:
        return ids.decode_as(raw, "Patient")
    except NotFound:
        raise HTTPException(400, "patientHint is not a patient id.") from None


async def _charge_login(request: Request) -> None:
    """The rest of LOGIN_REQUESTS (the middleware charged 1), or RATE_LIMITED."""
    budget = request.app.state.services.budget
    caller = request.scope.get("state", {}).get(STATE_KEY)
    if not isinstance(caller, Caller):
        caller = budget.caller_of(request)
    await budget.charge(caller, requests=LOGIN_REQUESTS - 1)


async def login(request: Request) -> Response:
    client = _enabled(request)
    try:
        await _charge_login(request)
    except RateLimited as refused:
        return rate_limited_response(refused)
    hint = _patient_hint(request)
    try:
        metadata = await client.metadata()
    except ProviderError as exc:
        logger.warning("FranceConnect login not started: %s", exc)
        return _redirect(client.landing(error=Refusal.PROVIDER_ERROR))
    started = await start_login(
        vault=request.app.state.services.vault,
        pkce=metadata.pkce,
        patient_hint=hint,
        now=utcnow(),
    )
    response = _redirect(client.authorization_url(metadata, started))
    response.set_cookie(
        _cookie(started.state),
        "1",
        max_age=int(REQUEST_VALIDITY.total_seconds()),
        path=PREFIX,
        secure=client.secure_cookie,
        httponly=True,
        samesite="lax",  # sent on the provider's top-level redirect back to us
    )
    return response


async def callback(request: Request) -> Response:
    client = _enabled(request)
    state = request.query_params.get("state", "")
    try:
        ticket = await _complete(request, client, state)
        response = _redirect(client.landing(ticket=ticket))
    except LoginRefused as refused:
        logger.info("FranceConnect login refused: %s", refused)
        response = _redirect(client.landing(error=refused.reason))
    if state:
        response.delete_cookie(_cookie(state), path=PREFIX)
    return response


async def _complete(request: Request, client: FranceConnect, state: str) -> str:
    params = request.query_params
    now = utcnow()
    vault = request.app.state.services.vault
    if not state or request.cookies.get(_cookie(state)) != "1":
        raise LoginRefused(Refusal.PROVIDER_ERROR, "state unknown to this browser")
    pending = await take_request(state, vault=vault, now=now)
    if "error" in params:
        raise LoginRefused(Refusal.PROVIDER_ERROR, f"provider: {params['error'][:64]!r}")
    try:
        metadata = await client.metadata()
        issuer = params.get("iss")
        if (issuer is not None or metadata.iss_in_response) and issuer != metadata.issuer:
            raise ProviderError("callback: another issuer")  # RFC 9207, mix-up
        code = params.get("code")
        if not code:
            raise ProviderError("callback: no code")
        id_token, access_token = await client.redeem(metadata, code, pending.code_verifier)
        claims = await client.id_token_claims(id_token, pending, now)
        userinfo = await client.userinfo(metadata, access_token, claims["sub"], now)
    except ProviderError as exc:
        raise LoginRefused(Refusal.PROVIDER_ERROR, str(exc)) from exc
    return await complete_login(
        ProvenIdentity.from_claims(userinfo),
        id_token=id_token,
        patient_hint=pending.patient_hint,
        vault=vault,
        now=utcnow(),  # the ticket's 60 seconds start now, after the provider's answers
    )


def franceconnect_routes() -> list[Route]:
    return [
        Route(PREFIX + "/login", login, methods=["GET"]),
        Route(CALLBACK_PATH, callback, methods=["GET"]),
    ]
