"""Who is calling: the bearer token of an HTTP request or of a websocket's connection_init."""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import ip_address, ip_network

from starlette.requests import HTTPConnection

from api.config import Settings
from api.errors import Unauthenticated


def bearer_from_header(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("Use an Authorization: Bearer <token> header.")
    return token.strip()


def bearer_from_params(params: Mapping[str, object] | None) -> str | None:
    """The websocket init payload: {"Authorization": "Bearer …"}, key matched in any case."""
    for key, value in (params or {}).items():
        if key.lower() == "authorization" and isinstance(value, str):
            return bearer_from_header(value)
    return None


def client_address(conn: HTTPConnection, settings: Settings) -> str:
    """The caller's address; X-Forwarded-For is honoured only from a trusted proxy."""
    peer = conn.client.host if conn.client else "unknown"
    forwarded = conn.headers.get("x-forwarded-for")
    if forwarded and settings.trusted_proxies and _trusted(peer, settings.trusted_proxies):
        return forwarded.split(",")[0].strip()
    return peer


def _trusted(peer: str, proxies: tuple[str, ...]) -> bool:
    try:
        address = ip_address(peer)
    except ValueError:
        return False
    return any(address in ip_network(proxy, strict=False) for proxy in proxies)
