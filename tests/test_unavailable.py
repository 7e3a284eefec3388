"""Which failures of a dependency answer SERVICE_UNAVAILABLE (503, Retry-After) rather than
an internal error: those a database, Redis or object store that is down or going down
raises, directly or as the cause of another; never a bug's."""

from __future__ import annotations

import asyncpg
import pytest
from redis import exceptions as redis_errors

from api.errors import ServiceUnavailable, unavailable
from models.blobs import StoreUnavailable


def caused(outer: BaseException, cause: BaseException) -> BaseException:
    outer.__cause__ = cause
    return outer


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(111, "refused"),
        ConnectionResetError(104, "reset"),
        TimeoutError(),
        asyncpg.exceptions.CannotConnectNowError("the database system is shutting down"),
        asyncpg.exceptions.AdminShutdownError("terminating connection"),
        asyncpg.InterfaceError("connection is closed"),
        # A pooled connection whose server went away mid-operation (the fault suite saw it).
        asyncpg.InternalClientError(
            "cannot switch to state 12; another operation (2) is in progress"
        ),
        redis_errors.ConnectionError("down"),
        StoreUnavailable("s3 down"),
        caused(RuntimeError("wrapped"), ConnectionResetError(104, "reset")),
    ],
    ids=repr,
)
def test_a_dependency_down_is_service_unavailable(exc: BaseException) -> None:
    assert isinstance(unavailable(exc), ServiceUnavailable)


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("a bug"),
        KeyError("x"),
        asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
        asyncpg.InternalClientError("something else"),
        asyncpg.exceptions.UniqueViolationError("duplicate key"),
        None,
    ],
    ids=repr,
)
def test_anything_else_is_not(exc: BaseException | None) -> None:
    assert unavailable(exc) is None
