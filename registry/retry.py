"""Retrying a transaction that lost a race with another writer.

Concurrent registrations serialise on the model's write lock; the loser of a race sees a lock
timeout, a serialisation failure or a unique-key violation (two writers creating one model row).
Those are *transient*: running the whole transaction again succeeds. :func:`is_transient` decides
which errors are; :func:`retry` runs an action again after a randomised back-off.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError

T = TypeVar("T")

ATTEMPTS = 30

_TRANSIENT = (
    "database is locked",
    "database table is locked",
    "could not serialize",
    "deadlock detected",
    "duplicate key value",
    "unique constraint failed",
)


def is_transient(error: DBAPIError) -> bool:
    """Whether running the transaction again may succeed (a lock, serialisation or insert race)."""
    message = str(getattr(error, "orig", error)).lower()
    return any(t in message for t in _TRANSIENT)


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
