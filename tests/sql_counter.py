"""Count the SQL statements Tortoise sends, from its own query log.

Every backend client logs each statement it executes on the "tortoise.db_client" logger at
DEBUG, as `log.debug("%s: %s", query, values)` (scripts as `log.debug(query)`); connection
open/close records carry other formats and are not statements.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

_STATEMENT = "%s: %s"


class StatementLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.statements: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args
        if record.msg == _STATEMENT and isinstance(args, tuple) and args:
            self.statements.append(str(args[0]))
        elif not args:
            self.statements.append(str(record.msg))


@contextmanager
def count_statements() -> Iterator[list[str]]:
    """The statements run inside the block, in order."""
    logger = logging.getLogger("tortoise.db_client")
    log = StatementLog()
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(log)
    try:
        yield log.statements
    finally:
        logger.removeHandler(log)
        logger.setLevel(previous)
