"""``--cpu-affinity``: which CPU each server process runs on.

A server process is bound by Python's interpreter lock to about one core of work, but its
threads (the event loop, gRPC's poller, the model threads) hand the lock to each other many times
per call, and a hand-off between two cores costs far more than one on the same core (the other
core must be woken, and on a virtual machine that is an exit to the hypervisor). Pinning each
process to one CPU keeps the hand-offs on one core and leaves the others to the rest of the
machine (other processes, or a load generator).

``auto`` pins process *i* of ``--processes`` to the *i*-th CPU the process may use, when it may
use more than one; ``none`` leaves the scheduler alone; a comma-separated list of CPU numbers
pins process *i* to the *i*-th of them (round robin).
"""

from __future__ import annotations

import os

from protoreg.registry.errors import UsageError


def parse_cpu_affinity(value: str) -> list[int] | str:
    """``"auto"``, ``"none"`` or the CPU numbers of a list; a bad value is a UsageError."""
    if value in ("auto", "none"):
        return value
    try:
        cpus = [int(part) for part in value.split(",")]
    except ValueError:
        raise UsageError(f'--cpu-affinity "{value}" is not auto, none or a list of CPU numbers like 0,1') from None
    allowed = sorted(os.sched_getaffinity(0))
    missing = [cpu for cpu in cpus if cpu not in allowed]
    if missing or not cpus:
        raise UsageError(f"--cpu-affinity names CPUs {missing or cpus} this process may not use (it may use {allowed})")
    return cpus


def pin(setting: list[int] | str, index: int = 0) -> int | None:
    """Pin the calling process (before it starts threads) as ``setting`` says; the CPU, or None."""
    allowed = sorted(os.sched_getaffinity(0))
    if isinstance(setting, str):
        if setting == "none" or len(allowed) < 2:
            return None
        cpus = allowed
    else:
        cpus = setting
    cpu = cpus[index % len(cpus)]
    os.sched_setaffinity(0, {cpu})
    return cpu
