"""Opaque global ids: base64url of "<Type>:<uuid>". Clients must treat them as opaque."""

from __future__ import annotations

import base64
import binascii
from uuid import UUID

from api.errors import NotFound

# base64.urlsafe_b64encode's own steps, without its two calls: a page encodes an id a row.
_URLSAFE = bytes.maketrans(b"+/", b"-_")


def encode(type_name: str, pk: UUID) -> str:
    raw = f"{type_name}:{pk}".encode()
    return binascii.b2a_base64(raw, newline=False).translate(_URLSAFE).decode().rstrip("=")


def decode(global_id: str) -> tuple[str, UUID]:
    """The type name and key; NOT_FOUND for anything malformed (no parse oracle)."""
    try:
        padded = global_id + "=" * (-len(global_id) % 4)
        type_name, _, raw = base64.urlsafe_b64decode(padded.encode()).decode().partition(":")
        return type_name, UUID(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise NotFound() from exc


def decode_as(global_id: str, type_name: str) -> UUID:
    found, pk = decode(global_id)
    if found != type_name:
        raise NotFound()
    return pk
