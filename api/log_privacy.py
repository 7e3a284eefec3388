"""What the server writes to its logs never holds what a client sent.

Logs travel to third-party stores, are kept longer and read by more people than the
database: a NIR, a name, a message or a health value a client sent must not reach them.

- uvicorn's access log (and its websocket handshake lines) print the request target: a
  GET's query string carries a GraphQL request's `variables`, and `/calendar/{token}.ics`
  holds the credential of a private feed. `RequestTargets` keeps the path without the query
  string (`?…` says there was one) and without the feed's token.
- GraphQL errors are logged by `api.extensions.errors` from their code, path and field only
  (`error_summary`); an internal error's message and traceback go through `redact`, which
  removes what can be recognised as an identifier (12 digits or more: a NIR, a phone
  number, an RPPS with its key); a row's UUID, even one whose last group is all digits,
  is kept.

`install()` puts the filters on the loggers themselves, so that every handler (uvicorn's,
a log shipper's, pytest's) gets the redacted record; `create_app` calls it, so that every
way of serving the app (`espace-sante serve`, uvicorn or gunicorn directly, each worker
process) has it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import TypeGuard

# Loggers that print request targets (uvicorn's HTTP access log; its websocket lines).
REQUEST_LOGGERS = ("uvicorn.access", "uvicorn.error")
# Loggers that log an error's message and traceback: ours, uvicorn's "Exception in ASGI
# application" (Starlette re-raises what the 500 handler answered), strawberry's for a
# websocket operation that crashed.
ERROR_LOGGERS = (
    "api.extensions.errors",
    "api.view",
    "api.app",
    "uvicorn.error",
    "strawberry.ws.task",
)

# Secrets in a path: the private calendar feed's token is its credential.
_SECRET_PATHS = ((re.compile(r"^/calendar/[^/?]*\.ics$"), "/calendar/{token}.ics"),)
# A number as long as an identifier (a NIR has 15 digits, spaced sometimes), standing on
# its own: not inside a hexadecimal request id, not an IPv4 address (dots). A row's UUID
# is matched first and kept whole: it names a row, not a person, and its last group is
# 12 decimal digits in about one UUID in 280.
_IDENTIFIER = re.compile(
    r"(?P<uuid>(?<![0-9A-Za-z_-])[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}"
    r"(?![0-9A-Za-z_-]))"
    r"|(?<![0-9A-Za-z_])\d(?:[ -]?\d){11,}(?![0-9A-Za-z_])"
)


def _kept_or_redacted(match: re.Match[str]) -> str:
    return match.group("uuid") or "…"


def redact(text: str) -> str:
    """`text` without anything that looks like an identifier (row UUIDs kept)."""
    return _IDENTIFIER.sub(_kept_or_redacted, text)


def request_target(target: str) -> str:
    """A request target fit for a log: the path, no query string, no secret segment."""
    path, question, _ = target.partition("?")
    for pattern, replacement in _SECRET_PATHS:
        if pattern.match(path):
            path = replacement
            break
    return redact(path) + ("?…" if question else "")


class RequestTargets(logging.Filter):
    """uvicorn's lines with request targets (`'%s - "%s %s HTTP/%s" %d'`,
    `'%s - "WebSocket %s" [accepted]'`): each argument that is a target (it starts with
    `/`) made fit for a log; the client address, method and status are kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and any(_is_target(arg) for arg in args):
            record.args = tuple(request_target(a) if _is_target(a) else a for a in args)
        return True


def _is_target(arg: object) -> TypeGuard[str]:
    return isinstance(arg, str) and arg.startswith("/")


class RedactedTracebacks(logging.Filter):
    """A record's traceback rendered now, with identifiers removed (a standard `Formatter`
    prints `exc_text` when it is set), and its message when it holds one."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(self._formatter.formatException(record.exc_info))
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:  # else left as it was, arguments and all
            record.msg, record.args = redacted, None
            record.__dict__.pop("color_message", None)  # uvicorn's, formatted with the args
        return True


def _add_once(names: Iterable[str], kind: type[logging.Filter]) -> None:
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, kind) for existing in logger.filters):
            logger.addFilter(kind())


def install() -> None:
    """Put the filters on their loggers (once: calling it again changes nothing)."""
    _add_once(REQUEST_LOGGERS, RequestTargets)
    _add_once(ERROR_LOGGERS, RedactedTracebacks)


__all__ = ["RedactedTracebacks", "RequestTargets", "install", "redact", "request_target"]
