"""The schema's scalars as the contract describes them (API.md, "dates"): strawberry's own
parsing, with descriptions a client can rely on and the specifications they follow
(`@specifiedBy`). A `DateTime` is answered in UTC whatever offset the value carries."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime

from strawberry.file_uploads import Upload
from strawberry.file_uploads.scalars import UploadDefinition
from strawberry.schema.types.base_scalars import DateDefinition, DateTimeDefinition
from strawberry.types.scalar import ScalarDefinition


def utc_isoformat(value: datetime) -> str:
    """ISO 8601 in UTC (`+00:00`); a naive moment is already UTC, as the database keeps it."""
    if value.tzinfo is None or value.utcoffset() is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


DATE_TIME = dataclasses.replace(
    DateTimeDefinition,
    description=(
        "An instant: ISO 8601 (RFC 3339) date and time with its offset, e.g. "
        "`2026-03-14T09:30:00+01:00` or `2026-03-14T08:30:00Z`; a time sent without an "
        "offset is refused (BAD_USER_INPUT). Answered in UTC (`+00:00`). Day-based rules "
        "(age, due dates) are computed in Europe/Paris."
    ),
    specified_by_url="https://scalars.graphql.org/andimarek/date-time",
    serialize=utc_isoformat,
)

DATE = dataclasses.replace(
    DateDefinition,
    description=(
        "A calendar day without time or offset: RFC 3339 full-date (`YYYY-MM-DD`), e.g. "
        "`1980-03-14`; answered in that form."
    ),
    specified_by_url="https://www.rfc-editor.org/rfc/rfc3339#section-5.6",
)

UPLOAD = dataclasses.replace(
    UploadDefinition,
    description=(
        "A file sent in a multipart request (GraphQL multipart request specification), "
        "never in JSON: its variable is null in `operations` and named in `map`. The "
        "request needs `Apollo-Require-Preflight: true` (or a non-empty "
        "`X-Apollo-Operation-Name`); each field that takes one says its size limit."
    ),
    specified_by_url="https://github.com/jaydenseric/graphql-multipart-request-spec",
)

SCALAR_OVERRIDES: dict[object, ScalarDefinition] = {
    datetime: DATE_TIME,
    date: DATE,
    Upload: UPLOAD,
}


__all__ = ["DATE", "DATE_TIME", "SCALAR_OVERRIDES", "UPLOAD", "utc_isoformat"]
