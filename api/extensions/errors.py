"""Give every error a code from api/errors.py; mask and log anything unexpected.

Errors the API raises on purpose (ApiError, or any GraphQLError that already carries a
code, such as a permission denial or a limit) pass through unchanged. graphql-core's own
errors are coded by the phase that produced them. Everything else is a bug or an
infrastructure failure: its message may hold SQL, paths or personal data, so the client
gets "Internal server error." and a request id, and the log gets the traceback.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterator, Mapping

from graphql import GraphQLError, VariableDefinitionNode
from strawberry.exceptions import MissingQueryError
from strawberry.extensions import SchemaExtension
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import StreamExecutionResult

from api.errors import ApiError, BadUserInput, InternalError, from_domain, unavailable
from api.log_privacy import redact
from models.errors import DomainError

logger = logging.getLogger(__name__)

PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"

# Raised by Schema.execute for the HTTP view to answer; not GraphQL errors.
_TRANSPORT_ERRORS = (MissingQueryError, CannotGetOperationTypeError, InvalidOperationTypeError)

# What a scalar's parse_value raises on a malformed variable: input errors, not bugs.
_INPUT_ERRORS = (GraphQLError, ValueError, TypeError)


def request_id_of(context: object) -> str:
    """The request id the context carries (attribute or key), else a fresh one."""
    if isinstance(context, Mapping):
        request_id = context.get("request_id")
    else:
        request_id = getattr(context, "request_id", None)
    return request_id if isinstance(request_id, str) and request_id else uuid.uuid4().hex


def error_code(error: GraphQLError) -> str | None:
    code = (error.extensions or {}).get("code")
    return code if isinstance(code, str) and code else None


def with_code(error: GraphQLError, code: str) -> GraphQLError:
    """A copy of `error` with `code`; copied because cached validation errors are shared."""
    return GraphQLError(
        error.message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=error.original_error,
        extensions={**(error.extensions or {}), "code": code},
    )


def located(coded: GraphQLError, error: GraphQLError) -> GraphQLError:
    """`coded`'s message and extensions at `error`'s place in the document and the answer."""
    return GraphQLError(
        coded.message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=error.original_error,
        extensions=coded.extensions,
    )


def mask_error(error: GraphQLError, request_id: str) -> GraphQLError:
    """Log `error` with its traceback and return what the client may see of it."""
    original = error.original_error or error
    logger.error(  # redacted, traceback included, by api/log_privacy.py's filter
        "Internal error (request_id=%s, path=%s): %s",
        request_id,
        ".".join(str(key) for key in error.path or ()) or "-",
        redact(error.message),
        exc_info=original,
    )
    return GraphQLError(
        InternalError.default_message,
        nodes=error.nodes,
        path=error.path,
        extensions={"code": InternalError.code, "requestId": request_id},
    )


def _is_api_error(error: GraphQLError) -> bool:
    return isinstance(error, ApiError) or isinstance(error.original_error, ApiError)


def _is_coded_graphql_error(error: GraphQLError) -> bool:
    """A GraphQLError raised on purpose with a code (e.g. a permission's error_extensions)."""
    original = error.original_error
    if original is None or isinstance(original, GraphQLError):
        return error_code(error) is not None
    return False


class MaskInternalErrors(SchemaExtension):
    """Place it first in `extensions=[...]` so its hooks wrap all the others."""

    def __init__(self) -> None:
        self._executing = False
        self._stream_result_processed = False
        self._request_id: str | None = None

    @property
    def request_id(self) -> str:
        if self._request_id is None:
            self._request_id = request_id_of(self.execution_context.context)
        return self._request_id

    def on_operation(self) -> Iterator[None]:
        try:
            yield
        except _TRANSPORT_ERRORS:
            raise
        except Exception as exc:
            # An extension hook failed (ParserCache raises parse errors from on_parse):
            # Schema.execute turns the exception into the result after our hooks ran,
            # so the exception itself must already be safe.
            error = self._process(_as_graphql_error(exc), data_is_null=False)
            self._log([error])
            raise error from None
        if self._stream_result_processed:
            return
        result = self.execution_context.result
        errors = getattr(result, "errors", None)
        if errors:
            data_is_null = getattr(result, "data", None) is None
            result.errors = [self._process(e, data_is_null=data_is_null) for e in errors]  # type: ignore[union-attr]
            self._log(result.errors)  # type: ignore[union-attr]

    def on_execute(self) -> Iterator[None]:
        self._executing = True
        yield

    def on_stream_result(self, result: StreamExecutionResult) -> Iterator[None]:
        self._stream_result_processed = True
        errors = getattr(result, "errors", None)
        if errors:
            data_is_null = getattr(result, "data", None) is None
            processed = [self._process(e, data_is_null=data_is_null) for e in errors]
            result.errors = processed  # type: ignore[union-attr]
            self._log(processed)
        yield

    def _log(self, errors: list[GraphQLError]) -> None:
        """One line for the errors a client gets: codes, paths, fields, never a message (a
        message may repeat what the client sent: api/log_privacy.py)."""
        operation = self.execution_context.operation_name
        logger.info(
            "GraphQL errors (request_id=%s, operation=%s): %s",
            self.request_id,
            redact(operation) if isinstance(operation, str) and operation else "-",
            "; ".join(error_summary(error) for error in errors),
        )

    def _process(self, error: GraphQLError, *, data_is_null: bool) -> GraphQLError:
        if _is_api_error(error) or _is_coded_graphql_error(error):
            return error
        if isinstance(error.original_error, DomainError):
            return located(from_domain(error.original_error), error)
        down = unavailable(error.original_error)
        if down is not None:  # the database, Redis or the object store: SERVICE_UNAVAILABLE
            logger.warning(
                "dependency unreachable (request_id=%s): %r", self.request_id, error.original_error
            )
            return located(down, error)
        if isinstance(error.original_error, _TRANSPORT_ERRORS):
            # Over a websocket, where no HTTP view answers them: an unknown operation name,
            # or an operation type this transport does not run.
            if isinstance(error.original_error, CannotGetOperationTypeError):
                return with_code(error, VALIDATION_FAILED)
            return with_code(error, BadUserInput.code)
        if error.original_error is None and error.path is None:
            if self.execution_context.graphql_document is None:
                return with_code(error, PARSE_FAILED)
            if not self._executing:
                return _without_values(with_code(error, VALIDATION_FAILED))
        # Variable coercion happens at the start of execution, before any resolver.
        if (
            self._executing
            and data_is_null
            and error.path is None
            and (error.original_error is None or isinstance(error.original_error, _INPUT_ERRORS))
        ):
            return _variable_error(error)
        return mask_error(error, self.request_id)


def error_summary(error: GraphQLError) -> str:
    """`CODE at path (field name)`: what a log may hold of an error answered to a client."""
    code = error_code(error) or "-"
    path = ".".join(str(key) for key in error.path or ()) or "-"
    field = (error.extensions or {}).get("field")
    summary = f"{code} at {path}" + (f" (field {field})" if isinstance(field, str) else "")
    return redact(summary)  # an alias or a variable's name is the client's text


def _variable_error(error: GraphQLError) -> GraphQLError:
    """BAD_USER_INPUT naming the offending input: the field inside an input object (as the
    API's own errors name it, e.g. `postalAddress.postalCode`), else the variable."""
    coded = _without_values(with_code(error, BadUserInput.code))
    names = [
        n.variable.name.value for n in error.nodes or () if isinstance(n, VariableDefinitionNode)
    ]
    inside = _VARIABLE_PATH.match(error.message)
    field = inside.group(1) if inside else names[0] if names else None
    if field:
        coded.extensions = {**(coded.extensions or {}), "field": field}
    return coded


# "Variable '$input' has invalid value at .postalAddress.postalCode: …"
_VARIABLE_PATH = re.compile(r"Variable '\$[^']+' has invalid value at \.([\w.\[\]]+):")

# graphql-core and strawberry repeat a rejected value in their messages; a client may have
# put a NIR, a name or a date of birth there, and error messages travel into logs, crash
# reports and screenshots. The value goes; what was wrong with it stays.
_ECHOED_VALUES = (
    # String cannot represent a non string value: 2840575… / Int cannot represent
    # non-integer value: "…" / ID cannot represent value: …: the value ends the message.
    (re.compile(r"(cannot represent (?:an? )?(?:non[- ]?\w+ )?value): .*\Z", re.S), r"\1."),
    # strawberry's scalars: Value cannot represent a Date: "1985-13-01". month must be …
    (re.compile(r"(Value cannot represent an? \w+): (?:\"(?:[^\"\\]|\\.)*\"|\S+)"), r"\1"),
    # Value 'X' does not exist in 'Sex' enum.
    (re.compile(r"\bValue '(?:[^'\\]|\\.)*' (does not exist)"), r"The value \1"),
    # Expected value of type 'Date!', found "…"; …
    (re.compile(r"(Expected value of type '[^']+'), found [^;]*"), r"\1"),
    # Anything else that looks like an identifier: 12 digits or more.
    (re.compile(r"\d(?:[ .-]?\d){11,}"), "…"),
)


def _without_values(error: GraphQLError) -> GraphQLError:
    message = error.message
    for pattern, replacement in _ECHOED_VALUES:
        message = pattern.sub(replacement, message)
    if message != error.message:
        error.message = message
    return error


def _as_graphql_error(exc: Exception) -> GraphQLError:
    if isinstance(exc, GraphQLError):
        return exc
    return GraphQLError(str(exc), original_error=exc)


__all__ = [
    "MaskInternalErrors",
    "error_code",
    "located",
    "mask_error",
    "request_id_of",
    "with_code",
]
