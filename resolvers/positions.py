"""Cursors that stand for a position in commit order (models/clock.py): a message's, or a
reminder alert's. Opaque to clients, like every cursor (resolvers/pagination.py's form: a
base64 JSON list, here of one number)."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from api.errors import BadUserInput
from resolvers.pagination import encode_cursor


def position_cursor(position: int) -> str:
    return encode_cursor([position])


def decoded(cursor: str) -> Any:
    """The JSON a cursor holds; None if it holds none."""
    try:
        return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError, binascii.Error):
        return None


def position_of(cursor: str, field: str = "after") -> int:
    """The position a cursor stands for; BAD_USER_INPUT for anything else."""
    values = decoded(cursor)
    if isinstance(values, list) and len(values) == 1:
        try:
            position = int(values[0])
        except (ValueError, TypeError):
            position = -1
        if 0 <= position < 2**63:
            return position
    raise BadUserInput("Invalid cursor.", field=field)
