"""The error vocabulary of the API: one class per `extensions.code`.

Domain code raises these; anything else that escapes a resolver is masked as
INTERNAL_SERVER_ERROR and logged with the request id (see api/extensions/errors.py).
"""

from __future__ import annotations

from typing import Any

from graphql import GraphQLError


class ApiError(GraphQLError):
    code = "INTERNAL_SERVER_ERROR"
    default_message = "Internal server error."
    http_status = 200

    def __init__(self, message: str | None = None, **extensions: Any) -> None:
        super().__init__(
            message or self.default_message,
            extensions={
                "code": self.code,
                **{k: v for k, v in extensions.items() if v is not None},
            },
        )


class Unauthenticated(ApiError):
    code = "UNAUTHENTICATED"
    default_message = "Authentication required."


class Forbidden(ApiError):
    code = "FORBIDDEN"
    default_message = "You are not allowed to do this."


class NotFound(ApiError):
    code = "NOT_FOUND"
    default_message = "Not found."


class BadUserInput(ApiError):
    code = "BAD_USER_INPUT"
    default_message = "Invalid input."

    def __init__(self, message: str | None = None, *, field: str | None = None) -> None:
        super().__init__(message, field=field)


class RateLimited(ApiError):
    code = "RATE_LIMITED"
    default_message = "Too many attempts; try again later."

    def __init__(self, message: str | None = None, *, retry_after: int) -> None:
        super().__init__(message, retryAfter=max(1, int(retry_after)))


class Conflict(ApiError):
    code = "CONFLICT"
    default_message = "Conflicts with the current state."


class PayloadTooLarge(ApiError):
    code = "PAYLOAD_TOO_LARGE"
    default_message = "Payload too large."


class PersistedQueryNotFound(ApiError):
    code = "PERSISTED_QUERY_NOT_FOUND"
    default_message = "PersistedQueryNotFound"


class PersistedQueryNotSupported(ApiError):
    code = "PERSISTED_QUERY_NOT_SUPPORTED"
    default_message = "PersistedQueryNotSupported"


class QueryTooComplex(ApiError):
    code = "QUERY_TOO_COMPLEX"
    default_message = "Query too complex."


class InternalError(ApiError):
    code = "INTERNAL_SERVER_ERROR"
