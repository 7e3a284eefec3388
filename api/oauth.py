"""OAuth 2.1 for partner apps: the token, revocation and metadata endpoints, and the
authorisation `grantAppAccess` gives (resolvers/catalogue.py).

The protocol's rules are Authlib's (its framework-independent `AuthorizationServer`): which
client authenticates how, the code bound to its client and redirect URI, PKCE, refresh
tokens, RFC 6749's error answers and RFC 7009's revocation. Restricted here to what
../shared/API.md asks: the authorisation code (response type `code`) with PKCE `S256` for
every client (`plain` refused), exact redirect URIs, refresh tokens rotated at each use.

Authlib's server is synchronous; the database is not. Each request therefore runs in three
steps: load what the request names (its client, its code or token: `Exchange`), let Authlib
decide in memory with those rows (no I/O: microseconds), then write what it decided in one
transaction whose updates are conditional on what was read (models/catalogue.py): a code
is exchanged once and a refresh token rotated once, however many requests race. A reused
refresh token ends its whole grant.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    ClientMixin,
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
    OAuth2Payload,
    OAuth2Request,
)
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant, RefreshTokenGrant
from authlib.oauth2.rfc6749.util import extract_basic_authorization, list_to_scope, scope_to_list
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from api.config import Settings
from api.context import Services
from api.view import json_error_response
from models import catalogue
from models.base import utcnow
from models.catalogue import AppScope, AppToken, AuthorizationCode, PartnerApp
from models.crypto import Vault
from models.errors import Conflict

logger = logging.getLogger(__name__)

AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
GRANT_TYPES = ("authorization_code", "refresh_token")
MAX_FORM_BYTES = 16 * 1024
JSON_HEADERS = {"Cache-Control": "no-store", "Pragma": "no-cache"}


# --- Authlib's models over our rows -----------------------------------------------------


class AppClient(ClientMixin):
    """A partner app as an OAuth client: confidential (a secret, sent by HTTP Basic or in the
    form) or public (no secret: PKCE alone)."""

    def __init__(self, app: PartnerApp, vault: Vault) -> None:
        self.app = app
        self.vault = vault

    def get_client_id(self) -> str:
        return self.app.client_id

    def get_default_redirect_uri(self) -> None:
        return None  # the redirect URI is always given, and compared exactly

    def get_allowed_scope(self, scope: str | None) -> str | None:
        """The scopes asked for, all of them among the app's; else None (invalid_scope)."""
        wanted = scope_to_list(scope) or []
        if not wanted or not set(wanted) <= set(self.app.scopes):
            return None
        return str(list_to_scope(sorted(set(wanted), key=list(AppScope).index)))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.app.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return catalogue.check_client_secret(self.vault, self.app, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.app.confidential:
            return method in ("client_secret_basic", "client_secret_post")
        return method == "none"

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in GRANT_TYPES


@dataclass(frozen=True)
class GrantUser:
    """Whom a code or token acts for, and who granted it (the holder, or a representative)."""

    patient_id: Any
    granted_by_id: Any


class IssuedCode:
    """An authorisation code as Authlib reads it (AuthorizationCodeMixin, CodeChallenge)."""

    def __init__(self, row: AuthorizationCode) -> None:
        self.row = row
        self.code_challenge = row.code_challenge
        self.code_challenge_method = row.code_challenge_method

    def get_redirect_uri(self) -> str:
        return self.row.redirect_uri

    def get_scope(self) -> str:
        return " ".join(self.row.scopes)

    @property
    def user(self) -> GrantUser:
        return GrantUser(self.row.patient_id, self.row.granted_by_id)


class IssuedToken:
    """A token row as Authlib reads it (TokenMixin)."""

    def __init__(self, row: AppToken) -> None:
        self.row = row

    def check_client(self, client: AppClient) -> bool:
        return bool(client.get_client_id() == self.row.grant.app.client_id)

    def get_scope(self) -> str:
        return " ".join(self.row.scopes)

    def get_expires_in(self) -> int:
        return int(catalogue.ACCESS_TOKEN_TTL.total_seconds())

    @property
    def user(self) -> GrantUser:
        grant = self.row.grant
        return GrantUser(grant.patient_id, grant.granted_by_id)


@dataclass
class Exchange:
    """One request: the rows it names, loaded before Authlib runs, and what Authlib decided,
    written after."""

    now: datetime
    vault: Vault
    client: AppClient | None = None
    code: IssuedCode | None = None
    token: IssuedToken | None = None
    # Decisions.
    issued: dict[str, Any] | None = None  # the tokens of a 200 answer
    code_used: IssuedCode | None = None
    rotated: IssuedToken | None = None
    reused: IssuedToken | None = None  # a rotated refresh token came back: the grant dies
    code_reused: IssuedCode | None = None  # a used code came back: its grant dies
    revoked: IssuedToken | None = None
    new_code: str | None = None
    new_code_request: OAuth2Request | None = None


# --- requests ---------------------------------------------------------------------------


class FormPayload(OAuth2Payload):
    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._data: dict[str, str] = {}
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for key, value in pairs:
            self._data.setdefault(key, value)
            self._datalist[key].append(value)

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class FormRequest(OAuth2Request):
    def __init__(self, uri: str, pairs: list[tuple[str, str]], headers: Any) -> None:
        super().__init__("POST", uri, headers=headers)
        self.payload = FormPayload(pairs)

    @property
    def form(self) -> dict[str, str]:
        return self.payload.data

    @property
    def args(self) -> dict[str, str]:
        return {}


def endpoint_uri(settings: Settings, path: str) -> str:
    """The public address of an endpoint, as Authlib checks its transport. TLS ends at the
    proxy in front of the server: in production PUBLIC_URL is the https address users reach.
    Elsewhere (a laptop, the tests) a plain-http PUBLIC_URL is taken as it is."""
    uri = settings.public_url + path
    if settings.environment != "production" and uri.startswith("http://"):
        uri = "https://" + uri.removeprefix("http://")
    return uri


# --- the server -------------------------------------------------------------------------


class FieldError(InvalidRequestError):
    """A refusal of the authorisation request that names the input at fault."""

    def __init__(self, description: str, *, field: str) -> None:
        super().__init__(description)
        self.field = field


class S256Challenge(CodeChallenge):
    """PKCE for every client, S256 only: an authorisation without a challenge, or with
    `plain`, is refused; every code then has a challenge, so every exchange needs its
    verifier."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise FieldError("Missing 'code_challenge'.", field="codeChallenge")
        if data.get("code_challenge_method") != "S256":
            raise FieldError(
                "Only the S256 code challenge method is supported.", field="codeChallengeMethod"
            )
        try:
            super().validate_code_challenge(grant, redirect_uri)
        except InvalidRequestError as error:
            raise FieldError(error.description, field="codeChallenge") from None


class CodeGrant(AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    @property
    def exchange(self) -> Exchange:
        return self.server.exchange  # type: ignore[no-any-return]

    @staticmethod
    def validate_authorization_redirect_uri(request: OAuth2Request, client: AppClient) -> str:
        if not request.payload.redirect_uri:
            raise FieldError("Missing 'redirect_uri'.", field="redirectUri")
        if not client.check_redirect_uri(request.payload.redirect_uri):
            raise FieldError(
                "The redirect URI is not one the app registered (compared exactly).",
                field="redirectUri",
            )
        return str(request.payload.redirect_uri)

    def generate_authorization_code(self) -> str:
        return catalogue.new_code()

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        self.exchange.new_code = code
        self.exchange.new_code_request = request

    def query_authorization_code(self, code: str, client: AppClient) -> IssuedCode | None:
        found = self.exchange.code
        if found is None or found.row.app_id != client.app.id:
            return None
        if found.row.used_at is not None:
            self.exchange.code_reused = found  # what it gave is revoked (OAuth 2.1 §4.1.3)
            return None
        if found.row.expires_at <= self.exchange.now:
            return None
        return found

    def delete_authorization_code(self, authorization_code: IssuedCode) -> None:
        self.exchange.code_used = authorization_code

    def authenticate_user(self, authorization_code: IssuedCode) -> GrantUser:
        return authorization_code.user


class RefreshGrant(RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotated at each use

    @property
    def exchange(self) -> Exchange:
        return self.server.exchange  # type: ignore[no-any-return]

    def authenticate_refresh_token(self, refresh_token: str) -> IssuedToken | None:
        found = self.exchange.token
        if found is None or not refresh_token.startswith(catalogue.REFRESH_PREFIX):
            return None
        row = found.row
        if row.rotated_at is not None:
            if found.check_client(self.request.client):
                self.exchange.reused = found  # a stolen copy, or the app's: either way
            return None
        if row.revoked_at is not None or row.grant.revoked_at is not None:
            return None
        if row.refresh_expires_at <= self.exchange.now:
            return None
        return found

    def authenticate_user(self, refresh_token: IssuedToken) -> GrantUser:
        return refresh_token.user

    def revoke_old_credential(self, refresh_token: IssuedToken) -> None:
        self.exchange.rotated = refresh_token


class Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = AUTH_METHODS

    def authenticate_token(self, request: OAuth2Request, client: AppClient) -> IssuedToken | None:
        self.check_params(request, client)
        token: IssuedToken | None = self.server.exchange.token
        if token is not None and not token.check_client(client):
            raise InvalidGrantError()
        return token

    def query_token(self, token_string: str, token_type_hint: str | None) -> IssuedToken | None:
        return self.server.exchange.token  # type: ignore[no-any-return]

    def revoke_token(self, token: IssuedToken, request: OAuth2Request) -> None:
        self.server.exchange.revoked = token


class AppServer(AuthorizationServer):
    """Authlib's server over one request's `Exchange` (made per request: cheap, and its
    hooks, which take no request, then reach the request's rows)."""

    def __init__(self, exchange: Exchange) -> None:
        super().__init__(scopes_supported=[scope.value for scope in AppScope])
        self.exchange = exchange
        self.register_grant(CodeGrant, [S256Challenge(required=True)])
        self.register_grant(RefreshGrant)
        self.register_endpoint(Revocation)
        self.register_token_generator("default", self._tokens)

    def query_client(self, client_id: str) -> AppClient | None:
        client = self.exchange.client
        return client if client is not None and client.get_client_id() == client_id else None

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        self.exchange.issued = token

    def create_oauth2_request(self, request: OAuth2Request) -> OAuth2Request:
        return request

    def handle_response(self, status: int, body: Any, headers: Any) -> tuple[int, Any, Any]:
        return status, body, headers

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None

    @staticmethod
    def _tokens(
        grant_type: str,
        client: AppClient,
        user: Any = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        return {
            "token_type": "Bearer",
            "access_token": catalogue.new_access_token(),
            "expires_in": int(catalogue.ACCESS_TOKEN_TTL.total_seconds()),
            "refresh_token": catalogue.new_refresh_token(),
            "scope": scope or "",
        }


# --- the endpoints ----------------------------------------------------------------------

Answer = tuple[int, Any, Any]


class _BadForm(Exception):
    def __init__(self, description: str) -> None:
        self.description = description


async def _form(request: Request) -> list[tuple[str, str]]:
    """RFC 6749 §3.2: form-encoded, each parameter at most once."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        raise _BadForm("Send the parameters as application/x-www-form-urlencoded.")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise _BadForm("The request is too large.")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=50)
    except (UnicodeDecodeError, ValueError):
        raise _BadForm("The request body is not a form.") from None
    names = [name for name, _ in pairs]
    if len(names) != len(set(names)):
        raise _BadForm("A parameter was sent more than once.")
    # RFC 6749, Appendix A: every parameter is printable (VSCHAR, NQCHAR, a URI); a NUL
    # would also be refused by PostgreSQL's text type deep in a lookup (a 500).
    if not all(name.isprintable() and value.isprintable() for name, value in pairs):
        raise _BadForm("A parameter holds a control character.")
    return pairs


def _answer(status: int, body: Any, headers: Any) -> Response:
    response = JSONResponse(body if isinstance(body, dict) else {}, status_code=status)
    for name, value in headers or []:
        if name.lower() != "content-type":
            response.headers[name] = value
    response.headers.update(JSON_HEADERS)
    return response


async def _exchange(
    request: Request, pairs: list[tuple[str, str]], *, token_field: str
) -> Exchange:
    services: Services = request.app.state.services
    vault = services.vault
    exchange = Exchange(now=utcnow(), vault=vault)
    form = dict(pairs)
    client_id, _ = extract_basic_authorization(request.headers)
    app = await catalogue.find_client(client_id or form.get("client_id"))
    exchange.client = AppClient(app, vault) if app is not None else None
    if token_field == "code":
        row = await catalogue.find_code(form.get("code"), vault=vault)
        exchange.code = IssuedCode(row) if row is not None else None
    else:
        token = await catalogue.find_token(form.get(token_field), vault=vault)
        exchange.token = IssuedToken(token) if token is not None else None
    return exchange


async def token_endpoint(request: Request) -> Response:
    """POST /oauth/token (RFC 6749 §4.1.3 and §6)."""
    try:
        pairs = await _form(request)
    except _BadForm as bad:
        return _answer(*InvalidRequestError(bad.description)())
    grant_type = dict(pairs).get("grant_type")
    token_field = "code" if grant_type == "authorization_code" else "refresh_token"
    exchange = await _exchange(request, pairs, token_field=token_field)
    settings = request.app.state.services.settings
    try:
        oauth_request = FormRequest(endpoint_uri(settings, "/oauth/token"), pairs, request.headers)
    except OAuth2Error as error:
        return _answer(*error())
    answer = AppServer(exchange).create_token_response(oauth_request)
    return _answer(*await _write_tokens(exchange, answer))


async def _write_tokens(exchange: Exchange, answer: Answer) -> Answer:
    """What Authlib decided, written; a code or refresh token someone used in the meantime
    turns the answer into invalid_grant (and a refresh token used twice ends its grant)."""
    now, vault = exchange.now, exchange.vault
    status, body, _ = answer
    if exchange.reused is not None:
        await catalogue.end_grant(exchange.reused.row.grant_id, now=now)
        logger.warning(
            "partner app %s reused a rotated refresh token: grant %s ended",
            exchange.reused.row.grant.app.client_id,
            exchange.reused.row.grant_id,
        )
    if exchange.code_reused is not None:
        ended = await catalogue.refuse_reused_code(exchange.code_reused.row.id, now=now)
        logger.warning(
            "partner app %s reused an authorisation code: %d grant(s) ended",
            exchange.client.get_client_id() if exchange.client else "?",
            ended,
        )
    if status != 200 or exchange.issued is None:
        return answer
    issued = catalogue.IssuedTokens(
        access_token=body["access_token"],
        refresh_token=body["refresh_token"],
        scopes=scope_to_list(body["scope"]) or [],
    )
    try:
        if exchange.code_used is not None:
            await catalogue.exchange_code(exchange.code_used.row.id, issued, vault=vault, now=now)
        elif exchange.rotated is not None:
            await catalogue.rotate_refresh(exchange.rotated.row.id, issued, vault=vault, now=now)
        else:
            raise RuntimeError("tokens issued without a code or a refresh token")
    except Conflict:
        if exchange.rotated is not None:
            await catalogue.end_grant(exchange.rotated.row.grant_id, now=now)
        return InvalidGrantError("The code or refresh token was already used.")()  # type: ignore[no-any-return]
    return answer


async def revocation_endpoint(request: Request) -> Response:
    """POST /oauth/revoke (RFC 7009): 200 whether or not the token was known. Revoking a
    refresh token ends its grant; an access token, that token (and its refresh token)."""
    try:
        pairs = await _form(request)
    except _BadForm as bad:
        return _answer(*InvalidRequestError(bad.description)())
    exchange = await _exchange(request, pairs, token_field="token")
    settings = request.app.state.services.settings
    try:
        oauth_request = FormRequest(endpoint_uri(settings, "/oauth/revoke"), pairs, request.headers)
    except OAuth2Error as error:
        return _answer(*error())
    answer = AppServer(exchange).create_endpoint_response("revocation", oauth_request)
    revoked = exchange.revoked
    if answer[0] == 200 and revoked is not None and revoked.row.revoked_at is None:
        if dict(pairs).get("token", "").startswith(catalogue.REFRESH_PREFIX):
            await catalogue.end_grant(revoked.row.grant_id, now=exchange.now)
        else:
            await catalogue.revoke_token(revoked.row.id, now=exchange.now)
    return _answer(*answer)


def metadata(settings: Settings) -> dict[str, Any]:
    """RFC 8414: what a client library needs to find its way."""
    base = settings.public_url
    methods = ["client_secret_basic", "client_secret_post", "none"]
    return {
        "issuer": base,
        "authorization_endpoint": f"{base}/oauth/authorize",
        "token_endpoint": f"{base}/oauth/token",
        "revocation_endpoint": f"{base}/oauth/revoke",
        "scopes_supported": [scope.value for scope in AppScope],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": list(GRANT_TYPES),
        "token_endpoint_auth_methods_supported": methods,
        "revocation_endpoint_auth_methods_supported": methods,
        "code_challenge_methods_supported": ["S256"],
        "service_documentation": f"{base}/graphql",
    }


async def metadata_endpoint(request: Request) -> Response:
    """GET /.well-known/oauth-authorization-server."""
    response = JSONResponse(metadata(request.app.state.services.settings))
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


async def authorize_endpoint(request: Request) -> Response:
    """GET /oauth/authorize: the consent screen is the first-party front end's (it calls
    grantAppAccess once the patient agrees); this address sends the browser there with the
    app's parameters. 404 without a FRONTEND_URL."""
    settings: Settings = request.app.state.services.settings
    if not settings.frontend_url:
        return json_error_response(404, "NOT_FOUND", "No consent screen is configured here.")
    query = urlencode(list(request.query_params.multi_items()))
    return RedirectResponse(f"{settings.frontend_url.rstrip('/')}/oauth/authorize?{query}", 302)


def oauth_routes() -> list[BaseRoute]:
    return [
        Route("/oauth/token", token_endpoint, methods=["POST"]),
        Route("/oauth/revoke", revocation_endpoint, methods=["POST"]),
        Route("/oauth/authorize", authorize_endpoint, methods=["GET"]),
        Route("/.well-known/oauth-authorization-server", metadata_endpoint, methods=["GET"]),
    ]


# --- the authorisation (grantAppAccess) -------------------------------------------------


@dataclass(frozen=True)
class Authorization:
    client_id: str
    redirect_uri: str
    scopes: list[str]
    state: str
    code_challenge: str
    code_challenge_method: str


class AuthorizationRefused(Exception):
    def __init__(self, message: str, field: str | None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def _field_of(error: OAuth2Error) -> str | None:
    if isinstance(error, FieldError):
        return error.field
    if isinstance(error, InvalidClientError):
        return "clientId"
    if isinstance(error, InvalidScopeError):
        return "scopes"
    return None


async def authorize(
    wanted: Authorization,
    *,
    patient_id: Any,
    granted_by_id: Any,
    vault: Vault,
    settings: Settings,
    now: datetime,
) -> str:
    """The patient's consent to an app's request, as RFC 6749 §4.1.2 answers it: the app's
    redirect URI with a fresh code and the state. AuthorizationRefused (naming the input at
    fault) when the request is not one the app may make: nothing is stored then."""
    exchange = Exchange(now=now, vault=vault)
    app = await catalogue.find_client(wanted.client_id)
    exchange.client = AppClient(app, vault) if app is not None else None
    pairs = [
        ("response_type", "code"),
        ("client_id", wanted.client_id),
        ("redirect_uri", wanted.redirect_uri),
        ("scope", " ".join(wanted.scopes)),
        ("code_challenge", wanted.code_challenge),
        ("code_challenge_method", wanted.code_challenge_method),
    ]
    if wanted.state:
        pairs.append(("state", wanted.state))
    server = AppServer(exchange)
    user = GrantUser(patient_id, granted_by_id)
    try:
        request = FormRequest(endpoint_uri(settings, "/oauth/authorize"), pairs, {})
        grant = server.get_consent_grant(request, end_user=user)
    except OAuth2Error as error:
        raise AuthorizationRefused(
            error.description or "The app may not ask for this.", _field_of(error)
        ) from None
    status, _, headers = server.create_authorization_response(request, grant_user=user, grant=grant)
    location = dict(headers or []).get("Location")
    saved = exchange.new_code_request
    if status != 302 or not location or exchange.new_code is None or saved is None or app is None:
        raise RuntimeError("the authorisation was refused after its validation")
    await catalogue.issue_code(
        exchange.new_code,
        catalogue.NewCode(
            app_id=app.id,
            patient_id=patient_id,
            granted_by_id=granted_by_id,
            redirect_uri=wanted.redirect_uri,
            scopes=scope_to_list(saved.scope) or [],
            code_challenge=wanted.code_challenge,
            code_challenge_method=wanted.code_challenge_method,
        ),
        vault=vault,
        now=now,
    )
    return str(location)


__all__ = [
    "Authorization",
    "AuthorizationRefused",
    "authorize",
    "metadata",
    "oauth_routes",
]
