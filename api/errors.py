"""The error vocabulary of the API: one class per `extensions.code`.

The edge raises these; the domain raises models/errors.py's, which `from_domain` maps here
(each edge class also subclasses its domain twin, so `except models.errors.NotFound` catches
both). Anything else that escapes a resolver is masked as INTERNAL_SERVER_ERROR and logged
with the request id (see api/extensions/errors.py).
"""

from __future__ import annotations

from typing import Any

from graphql import GraphQLError
from strawberry.utils.str_converters import to_camel_case

from models import errors as domain


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


class Unauthenticated(ApiError, domain.Unauthenticated):
    code = "UNAUTHENTICATED"
    default_message = "Authentication required."


class Forbidden(ApiError, domain.Forbidden):
    code = "FORBIDDEN"
    default_message = "You are not allowed to do this."


class NotFound(ApiError, domain.NotFound):
    code = "NOT_FOUND"
    default_message = "Not found."


class BadUserInput(ApiError, domain.Invalid):
    code = "BAD_USER_INPUT"
    default_message = "Invalid input."

    def __init__(self, message: str | None = None, *, field: str | None = None) -> None:
        super().__init__(message, field=field)


class RateLimited(ApiError):
    code = "RATE_LIMITED"
    default_message = "Too many attempts; try again later."

    def __init__(self, message: str | None = None, *, retry_after: int) -> None:
        super().__init__(message, retryAfter=max(1, int(retry_after)))


class Conflict(ApiError, domain.Conflict):
    code = "CONFLICT"
    default_message = "Conflicts with the current state."


class PayloadTooLarge(ApiError, domain.TooLarge):
    code = "PAYLOAD_TOO_LARGE"
    default_message = "Payload too large."


class PersistedQueryNotFound(ApiError):
    code = "PERSISTED_QUERY_NOT_FOUND"
    default_message = "PersistedQueryNotFound"


class PersistedQueryNotSupported(ApiError):
    code = "PERSISTED_QUERY_NOT_SUPPORTED"
    default_message = "PersistedQueryNotSupported"


class PersistedQueryNotInList(ApiError):
    code = "PERSISTED_QUERY_NOT_IN_LIST"
    default_message = "PersistedQueryNotInList"


class PersistedQueryIdRequired(ApiError):
    code = "PERSISTED_QUERY_ID_REQUIRED"
    default_message = "PersistedQueryIdRequired"


class QueryTooComplex(ApiError):
    code = "QUERY_TOO_COMPLEX"
    default_message = "Query too complex."


class ServiceUnavailable(ApiError):
    """The database, Redis or the object store is unreachable (or too slow to answer): HTTP
    503 with `Retry-After`; the request's transaction did not commit."""

    code = "SERVICE_UNAVAILABLE"
    default_message = "A service this request needs is unreachable; try again shortly."
    http_status = 503

    def __init__(self, message: str | None = None, *, retry_after: int = 5) -> None:
        self.retry_after = max(1, int(retry_after))
        super().__init__(message, retryAfter=self.retry_after)


def infrastructure_errors() -> tuple[type[BaseException], ...]:
    """What a dependency that is down raises: connection failures and timeouts of PostgreSQL
    (asyncpg, Tortoise), Redis and the object store (models/blobs.py)."""
    import asyncpg
    from redis import exceptions as redis_errors
    from tortoise.exceptions import DBConnectionError

    from models.blobs import StoreUnavailable

    return (
        ConnectionError,  # refused, reset, aborted, broken pipe
        TimeoutError,  # asyncpg's command_timeout, connect timeouts
        asyncpg.PostgresConnectionError,
        asyncpg.exceptions.OperatorInterventionError,  # shutting down, starting up, canceled
        asyncpg.exceptions.TooManyConnectionsError,
        DBConnectionError,
        redis_errors.ConnectionError,
        redis_errors.TimeoutError,
        StoreUnavailable,
    )


def unavailable(exc: BaseException | None) -> ServiceUnavailable | None:
    """SERVICE_UNAVAILABLE if `exc`, or what caused it, is a dependency being unreachable."""
    import asyncpg

    kinds = infrastructure_errors()
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, kinds):
            return ServiceUnavailable()
        if isinstance(exc, asyncpg.InterfaceError) and "connection" in str(exc):
            return ServiceUnavailable()  # "connection is closed", after a server restart
        if isinstance(exc, asyncpg.InternalClientError) and "another operation" in str(exc):
            # A pooled connection whose server went away mid-operation (seen while PostgreSQL
            # shut down: "cannot switch to state 12; another operation (2) is in progress").
            return ServiceUnavailable()
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


class InternalError(ApiError):
    code = "INTERNAL_SERVER_ERROR"


def input_name(field: str) -> str:
    """The name a client sent for a domain field: `postal_address.postal_code` ->
    `postalAddress.postalCode` (indexes and names already in camel case are kept)."""
    return ".".join(to_camel_case(part) for part in field.split("."))


def from_domain(exc: domain.DomainError) -> ApiError:
    """The coded error a client gets for a domain error."""
    if isinstance(exc, ApiError):
        return exc
    field = input_name(exc.field) if isinstance(exc, domain.Invalid) and exc.field else None
    if isinstance(exc, domain.TooLarge):
        return PayloadTooLarge(exc.message, field=field)
    if isinstance(exc, domain.Invalid):
        return BadUserInput(exc.message, field=field)
    if isinstance(exc, domain.RateLimited):
        return RateLimited(exc.message, retry_after=exc.retry_after)
    for domain_class, edge_class in _BY_DOMAIN_CLASS:
        if isinstance(exc, domain_class):
            return edge_class(exc.message)
    return InternalError()


_BY_DOMAIN_CLASS: tuple[tuple[type[domain.DomainError], type[ApiError]], ...] = (
    (domain.Unauthenticated, Unauthenticated),
    (domain.Forbidden, Forbidden),
    (domain.NotFound, NotFound),
    (domain.Conflict, Conflict),
)
