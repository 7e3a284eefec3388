"""The OpenID Connect relying party of FranceConnect login (api/franceconnect.py has the
routes): discovery, the authorisation request, the code's redemption, and the checks, with
joserfc, of what comes back: the ID token (signature against the provider's JWKS, ES256 or
RS256 only; issuer, audience, expiry, nonce) and the signed userinfo (the same keys, issuer,
audience and subject). Metadata and keys are cached per process; the keys are fetched again
when a token names a key id they lack (the provider rotated them)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import httpx
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from api.config import Settings
from models.franceconnect import PendingLogin, StartedLogin

logger = logging.getLogger(__name__)

ALGORITHMS = ["ES256", "RS256"]
SCOPES = "openid given_name family_name birthdate gender birthplace birthcountry email"
ACR_VALUES = "eidas1"
ACCEPTED_ACR = {"eidas1", "eidas2", "eidas3"}
LEEWAY_SECONDS = 30  # clock skew between the provider and us
METADATA_TTL_SECONDS = 3600
JWKS_TTL_SECONDS = 24 * 3600  # and at once for a key id it does not hold
HTTP_TIMEOUT_SECONDS = 10
CALLBACK_PATH = "/auth/franceconnect/callback"  # the redirect URI's, after PUBLIC_URL


class ProviderError(Exception):
    """The provider answered something we cannot trust or use."""


@dataclass(frozen=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    userinfo_endpoint: str
    jwks_uri: str
    end_session_endpoint: str | None
    pkce: bool
    client_secret_post: bool
    iss_in_response: bool  # RFC 9207: the callback then must carry the issuer

    @classmethod
    def parse(cls, body: object, issuer: str) -> ProviderMetadata:
        if not isinstance(body, dict):
            raise ProviderError("discovery: not a JSON object")

        def optional(name: str) -> str | None:
            value = body.get(name)
            return value if isinstance(value, str) and value.startswith("http") else None

        def required(name: str) -> str:
            value = optional(name)
            if value is None:
                raise ProviderError(f"discovery: {name} missing")
            return value

        # OpenID Connect Discovery 1.0, section 4.3: exactly the issuer that was asked.
        if body.get("issuer") != issuer:
            raise ProviderError("discovery: the issuer differs from FRANCECONNECT_ISSUER")
        return cls(
            issuer=issuer,
            authorization_endpoint=required("authorization_endpoint"),
            token_endpoint=required("token_endpoint"),
            userinfo_endpoint=required("userinfo_endpoint"),
            jwks_uri=required("jwks_uri"),
            end_session_endpoint=optional("end_session_endpoint"),
            pkce="S256" in (body.get("code_challenge_methods_supported") or []),
            client_secret_post="client_secret_post"
            in (body.get("token_endpoint_auth_methods_supported") or []),
            iss_in_response=body.get("authorization_response_iss_parameter_supported") is True,
        )


def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = [*parse_qsl(parts.query, keep_blank_values=True), *params.items()]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


class FranceConnect:
    """The relying party: one per process, its metadata and keys cached."""

    def __init__(
        self,
        *,
        issuer: str,
        client_id: str,
        client_secret: str,
        redirect_uri: str,
        frontend_url: str,
    ) -> None:
        self.issuer = issuer
        self.client_id = client_id
        self._client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.frontend_url = frontend_url
        self.secure_cookie = redirect_uri.startswith("https://")
        self._http = httpx.AsyncClient(timeout=HTTP_TIMEOUT_SECONDS, follow_redirects=False)
        self._lock = asyncio.Lock()
        self._metadata: tuple[float, ProviderMetadata] | None = None
        self._keys: tuple[float, KeySet] | None = None

    def __repr__(self) -> str:
        return f"FranceConnect(issuer={self.issuer!r}, client_id={self.client_id!r})"

    @classmethod
    def from_settings(cls, settings: Settings) -> FranceConnect | None:
        if not settings.franceconnect_enabled:
            return None
        assert settings.franceconnect_issuer and settings.franceconnect_client_id
        assert settings.franceconnect_client_secret and settings.frontend_url
        return cls(
            issuer=settings.franceconnect_issuer,
            client_id=settings.franceconnect_client_id,
            client_secret=settings.franceconnect_client_secret,
            redirect_uri=settings.public_url + CALLBACK_PATH,
            frontend_url=settings.frontend_url,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    def landing(self, **params: str) -> str:
        return _with_query(self.frontend_url, **params)

    # --- what the provider publishes ----------------------------------------------------

    async def _get_json(self, url: str) -> Any:
        try:
            response = await self._http.get(url, headers={"Accept": "application/json"})
            response.raise_for_status()
            return response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise ProviderError(f"GET {url}: {type(exc).__name__}") from exc

    async def metadata(self) -> ProviderMetadata:
        async with self._lock:
            cached = self._metadata
            if cached is None or time.monotonic() - cached[0] > METADATA_TTL_SECONDS:
                body = await self._get_json(self.issuer + "/.well-known/openid-configuration")
                cached = (time.monotonic(), ProviderMetadata.parse(body, self.issuer))
                self._metadata = cached
            return cached[1]

    async def _key_set(self, stale: KeySet | None = None) -> KeySet:
        """The provider's keys, cached; fetched again when `stale` (the set that lacked a key
        id) is still the cached one, so concurrent callbacks fetch once."""
        metadata = await self.metadata()
        async with self._lock:
            cached = self._keys
            if (
                cached is None
                or cached[1] is stale
                or time.monotonic() - cached[0] > JWKS_TTL_SECONDS
            ):
                body = await self._get_json(metadata.jwks_uri)
                try:
                    cached = (time.monotonic(), KeySet.import_key_set(body))
                except (JoseError, ValueError, KeyError, TypeError) as exc:
                    raise ProviderError("jwks: unreadable key set") from exc
                self._keys = cached
            return cached[1]

    async def _verified(self, token: str) -> dict[str, Any]:
        """The claims of a JWS signed by one of the provider's keys, ES256 or RS256 only."""
        keys = await self._key_set()
        try:
            try:
                return jwt.decode(token, keys, algorithms=ALGORITHMS).claims
            except InvalidKeyIdError:
                keys = await self._key_set(stale=keys)  # a key the provider rotated in
                return jwt.decode(token, keys, algorithms=ALGORITHMS).claims
        except (JoseError, ValueError) as exc:
            raise ProviderError(f"signature: {type(exc).__name__}") from exc

    # --- the flow -----------------------------------------------------------------------

    def authorization_url(self, metadata: ProviderMetadata, started: StartedLogin) -> str:
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": SCOPES,
            "acr_values": ACR_VALUES,
            "state": started.state,
            "nonce": started.nonce,
        }
        if started.code_verifier is not None:
            params |= {
                "code_challenge": _s256(started.code_verifier),
                "code_challenge_method": "S256",
            }
        return _with_query(metadata.authorization_endpoint, **params)

    async def redeem(
        self, metadata: ProviderMetadata, code: str, verifier: str | None
    ) -> tuple[str, str]:
        """The ID token and access token the code stands for (client_secret_post where
        offered, as FranceConnect does, else HTTP Basic)."""
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": self.redirect_uri}
        if verifier is not None:
            form["code_verifier"] = verifier
        headers = {"Accept": "application/json"}
        if metadata.client_secret_post:
            form |= {"client_id": self.client_id, "client_secret": self._client_secret}
        else:  # RFC 6749, section 2.3.1: both form-encoded, then Basic
            pair = f"{quote(self.client_id, safe='')}:{quote(self._client_secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        try:
            response = await self._http.post(metadata.token_endpoint, data=form, headers=headers)
            body = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError) as exc:
            raise ProviderError(f"token endpoint: {type(exc).__name__}") from exc
        if not isinstance(body, dict):
            raise ProviderError(f"token endpoint answered {response.status_code}")
        id_token, access_token = body.get("id_token"), body.get("access_token")
        token_type = str(body.get("token_type", "")).lower()
        if not isinstance(id_token, str) or not isinstance(access_token, str):
            raise ProviderError("token endpoint: no id_token or access_token")
        if token_type != "bearer":
            raise ProviderError("token endpoint: not a bearer token")
        return id_token, access_token

    async def id_token_claims(
        self, id_token: str, pending: PendingLogin, now: datetime
    ) -> dict[str, Any]:
        claims = await self._verified(id_token)
        registry = jwt.JWTClaimsRegistry(
            now=int(now.timestamp()),
            leeway=LEEWAY_SECONDS,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.client_id},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
        )
        try:
            registry.validate(claims)
        except JoseError as exc:
            raise ProviderError(f"id_token: {exc}") from exc
        audience = claims["aud"]
        if isinstance(audience, list) and len(audience) > 1 and claims.get("azp") != self.client_id:
            raise ProviderError("id_token: another party is among its audiences")
        if not pending.nonce_matches(claims.get("nonce")):
            raise ProviderError("id_token: wrong nonce")
        if "acr" in claims and claims["acr"] not in ACCEPTED_ACR:
            raise ProviderError("id_token: unexpected acr")
        return claims

    async def userinfo(
        self, metadata: ProviderMetadata, access_token: str, subject: str, now: datetime
    ) -> dict[str, Any]:
        """The identity, from the userinfo endpoint: a JWT signed like the ID token, about
        the same subject (OpenID Connect Core, section 5.3.2)."""
        try:
            response = await self._http.get(
                metadata.userinfo_endpoint,
                headers={"Authorization": f"Bearer {access_token}", "Accept": "application/jwt"},
            )
        except httpx.HTTPError as exc:
            raise ProviderError(f"userinfo: {type(exc).__name__}") from exc
        media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if response.status_code != 200 or media_type != "application/jwt":
            raise ProviderError(f"userinfo: no signed answer ({response.status_code} {media_type})")
        claims = await self._verified(response.text.strip())
        registry = jwt.JWTClaimsRegistry(
            now=int(now.timestamp()),
            leeway=LEEWAY_SECONDS,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.client_id},
            sub={"essential": True, "value": subject},
        )
        try:
            registry.validate(claims)
        except JoseError as exc:
            raise ProviderError(f"userinfo: {exc}") from exc
        return claims

    async def end_session_url(self, id_token: str, state: str) -> str | None:
        """Where the browser ends its session at the provider, then comes back to FRONTEND_URL
        (to be declared with the provider as a logout redirect URI)."""
        try:
            metadata = await self.metadata()
        except ProviderError:
            logger.warning("FranceConnect discovery failed: no end-session URL", exc_info=True)
            return None
        if metadata.end_session_endpoint is None:
            return None
        return _with_query(
            metadata.end_session_endpoint,
            id_token_hint=id_token,
            state=state,
            post_logout_redirect_uri=self.frontend_url,
        )
