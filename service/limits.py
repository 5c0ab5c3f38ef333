"""How much of an ``INVALID_ARGUMENT`` status the server sends back.

A status (its message and its ``google.rpc.BadRequest`` details) travels in the call's trailing
metadata, and gRPC clients refuse trailers over 8 KiB by default: a small request with hundreds
of bad items (or one bad item at the bottom of a deep tree) would reach its client as
``RESOURCE_EXHAUSTED`` instead of the ``INVALID_ARGUMENT`` it earned. So the message and the list
of violations are cut to a budget well inside that limit, and a last violation says how many were
left out. The first violations are kept: they are the ones a client fixes first.
"""

from __future__ import annotations

from collections.abc import Sequence

from .convert import Violation

MAX_MESSAGE_CHARS = 1024
MAX_VIOLATIONS = 20
MAX_VIOLATION_CHARS = 2048  # field paths and descriptions together, before base64
MAX_PART_CHARS = 256  # one field path or one description


def cut(text: str, limit: int) -> str:
    """``text``, or its start and a note that it was truncated when longer than ``limit``."""
    return text if len(text) <= limit else f"{text[: limit - 15]}... (truncated)"


def bounded_status(message: str, violations: Sequence[Violation]) -> tuple[str, list[Violation]]:
    """``message`` and ``violations`` cut to what fits in a client's trailers."""
    kept: list[Violation] = []
    used = 0
    for violation in violations:
        item = Violation(cut(violation.field, MAX_PART_CHARS), cut(violation.description, MAX_PART_CHARS))
        used += len(item.field) + len(item.description)
        if len(kept) == MAX_VIOLATIONS or used > MAX_VIOLATION_CHARS:
            break
        kept.append(item)
    if len(kept) < len(violations):
        kept.append(Violation("(request)", f"{len(violations) - len(kept)} more violations not shown"))
    return cut(message, MAX_MESSAGE_CHARS), kept


class Slots:
    """A count of open long-lived calls with a limit; one more is refused, not queued.

    Used on the server's event loop only, so a plain counter is enough.
    """

    def __init__(self, limit: int, what: str, option: str) -> None:
        self.limit = limit
        self.refusal = f"too many {what}: at most {limit} at once ({option}); retry later"
        self.open = 0

    def acquire(self) -> bool:
        if self.open >= self.limit:
            return False
        self.open += 1
        return True

    def release(self) -> None:
        self.open -= 1
