"""schema.graphql is the published contract: it must be exactly what the code serves."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from api.schema import schema_sdl

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "schema.graphql"


def test_schema_graphql_matches_the_code() -> None:
    committed = SCHEMA_FILE.read_text(encoding="utf-8")
    served = schema_sdl()

    diff = "".join(
        difflib.unified_diff(
            committed.splitlines(keepends=True),
            served.splitlines(keepends=True),
            "schema.graphql",
            "api.schema.schema_sdl()",
            n=1,
        )
    )
    if committed != served:  # pytest.fail, so that the message is the diff and not a repr
        pytest.fail(
            "schema.graphql is out of date: run `espace-sante export-schema` and commit it.\n"
            + diff,
            pytrace=False,
        )
