"""A context's request id: a random UUID's hex, built without the UUID object."""

from __future__ import annotations

import os
import uuid
from unittest import mock

from api.context import new_request_id


def test_request_id_is_uuid4_hex_of_the_same_bytes() -> None:
    for _ in range(500):
        raw = os.urandom(16)
        with mock.patch("os.urandom", return_value=raw):
            made = new_request_id()
        assert made == uuid.UUID(bytes=raw, version=4).hex


def test_request_ids_are_version_4_and_distinct() -> None:
    made = {new_request_id() for _ in range(200)}
    assert len(made) == 200
    for request_id in made:
        parsed = uuid.UUID(hex=request_id)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert parsed.hex == request_id
