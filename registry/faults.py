"""Fault injection for the crash tests: die at a named step of a registration.

``PROTOREG_CRASH_AT=<step>`` makes the process kill itself with SIGKILL, as abruptly as a power
cut, when it reaches that step. Steps: ``locked``, ``numbered``, ``release_written``,
``ledger_written``, ``before_commit``, ``committed``, ``rendering``. Only tests set it; the crash
tests prove that a registration killed at any step leaves the registry consistent
(``protoreg verify``) and that the next registration succeeds.
"""

from __future__ import annotations

import os
import signal

CRASH_ENV = "PROTOREG_CRASH_AT"
STEPS = ("locked", "numbered", "release_written", "ledger_written", "before_commit", "committed", "rendering")


def crash_point(step: str) -> None:
    if os.environ.get(CRASH_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)
