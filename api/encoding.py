"""Compact JSON by orjson, meaning what `json.dumps` meant: HTTP answers, a websocket's text
frames, a stream's events (api/view.py) and the event bus's messages
(subscriptions/broadcast.py)."""

from __future__ import annotations

import json

import orjson

_PASSED_THROUGH = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME


def encode_answer(data: object) -> bytes:
    """`data` as compact JSON: by orjson, 5 to 10 times faster than `json.dumps` (which
    strawberry uses). Non-ASCII text goes out as UTF-8 rather than as \\u escapes (the media
    type says charset=utf-8; websocket text frames are UTF-8). What orjson refuses,
    `json.dumps` encodes (or refuses) as before: an integer past 64 bits, a key that is not a
    string; dates, times and dataclasses, which `json.dumps` refuses, are passed to it rather
    than encoded (TypeError)."""
    try:
        return orjson.dumps(data, option=_PASSED_THROUGH)
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(data, separators=(",", ":")).encode()
