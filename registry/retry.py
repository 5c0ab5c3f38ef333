"""Retrying a transaction that lost a race with another writer, or lost its connection.

Concurrent registrations serialise on the model's write lock; the loser of a race sees a lock
timeout, a serialisation failure or a deadlock, and a server restart or an administrator ends a
backend mid-transaction. Those are *transient*: running the whole transaction again succeeds.
:func:`is_transient` decides which errors are from the database's own codes (PostgreSQL SQLSTATE,
SQLite result codes), never from message text, and never retries an integrity error: a unique or
foreign-key violation is a bug or a real conflict, and must show at once. :func:`retry` runs an
action again after a randomised back-off.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, IntegrityError

T = TypeVar("T")

ATTEMPTS = 30

TRANSIENT_SQLSTATES = frozenset({
    "40001",  # serialization_failure
    "40P01",  # deadlock_detected
    "55P03",  # lock_not_available
    "57P01",  # admin_shutdown (pg_terminate_backend)
    "57P02",  # crash_shutdown
    "57P03",  # cannot_connect_now (the server is starting)
})
"""PostgreSQL error codes after which the same transaction may succeed; class 08 (connection
exceptions) is transient as a whole."""

SQLITE_BUSY = 5
SQLITE_LOCKED = 6
TRANSIENT_SQLITE_CODES = frozenset({SQLITE_BUSY, SQLITE_LOCKED})
"""Primary SQLite result codes (the low byte of an extended code) after which a retry may succeed."""


def sqlstate(error: BaseException) -> str | None:
    """The PostgreSQL SQLSTATE of a driver error (psycopg 3 or psycopg2), or None."""
    code = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
    return str(code) if code else None


def sqlite_code(error: BaseException) -> int | None:
    """The primary SQLite result code of a ``sqlite3`` error, or None."""
    code = getattr(error, "sqlite_errorcode", None)
    return int(code) & 0xFF if isinstance(code, int) else None


def is_transient(error: DBAPIError) -> bool:
    """Whether running the transaction again may succeed (a lock, a serialisation failure, a
    deadlock or a lost connection); never for an integrity error."""
    if isinstance(error, IntegrityError):
        return False
    if error.connection_invalidated:
        return True  # SQLAlchemy recognised a disconnect: the pool reconnects on the next attempt
    original = error.orig if error.orig is not None else error
    state = sqlstate(original)
    if state is not None:
        return state in TRANSIENT_SQLSTATES or state.startswith("08")
    code = sqlite_code(original)
    return code is not None and code in TRANSIENT_SQLITE_CODES


def backoff(attempt: int) -> float:
    """Seconds to wait before attempt ``attempt + 1``: exponential, capped, jittered."""
    return min(2.0, 0.02 * 2.0**attempt) * (0.5 + random.random())


def retry(action: Callable[[], T], attempts: int = ATTEMPTS) -> T:
    """Run ``action``, running it again after transient database errors (see :func:`is_transient`)."""
    for attempt in range(attempts):
        try:
            return action()
        except DBAPIError as error:
            if attempt == attempts - 1 or not is_transient(error):
                raise
            time.sleep(backoff(attempt))
    raise AssertionError("unreachable")
