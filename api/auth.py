"""Who is calling: the bearer token of an HTTP request or of a websocket's connection_init."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

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
    """The caller's address, for the per-address limits.

    X-Forwarded-For is honoured only from a trusted proxy, and read from the right: each
    proxy appends the address it got the request from, so only the right-most entries were
    written by our proxies, and whatever lies further left came from the client and may be
    forged. Walking from the right past the trusted proxies, the first other entry is the
    client (a malformed entry is never a trusted proxy); when every entry is a trusted proxy,
    the left-most one is.
    """
    peer = conn.client.host if conn.client else "unknown"
    proxies = _networks(settings.trusted_proxies)
    if not proxies or not _trusted(peer, proxies):
        return peer
    # Several header lines make one list, in order (RFC 9110, section 5.3).
    hops = [
        hop.strip()
        for line in conn.headers.getlist("x-forwarded-for")
        for hop in line.split(",")
        if hop.strip()
    ]
    for hop in reversed(hops):
        if not _trusted(hop, proxies):
            return _canonical(hop)
    return _canonical(hops[0]) if hops else peer


Network = IPv4Network | IPv6Network


@functools.lru_cache(maxsize=8)
def _networks(proxies: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ip_network(proxy, strict=False) for proxy in proxies)


def _parse(address: str) -> IPv4Address | IPv6Address | None:
    try:
        parsed = ip_address(address)
    except ValueError:
        return None
    # A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d.
    if isinstance(parsed, IPv6Address) and parsed.ipv4_mapped is not None:
        return parsed.ipv4_mapped
    return parsed


def _trusted(address: str, proxies: tuple[Network, ...]) -> bool:
    parsed = _parse(address)
    return parsed is not None and any(parsed in proxy for proxy in proxies)


def _canonical(address: str) -> str:
    """One spelling per address ("2001:DB8::0:1" is "2001:db8::1"), so each has one counter."""
    parsed = _parse(address)
    return address if parsed is None else str(parsed)
