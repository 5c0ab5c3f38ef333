"""The server's defaults and limits (one home for both).

The server runs on one event loop; what holds resources there is open streams and queued calls,
so those are what is limited. Each model runs in threads of its own: one for a batch-aware model
(a batch at a time, which is what makes batches), ``--workers`` for a model without
``predict_batch``, so that a model that waits on I/O can have several calls in progress.

This module imports nothing heavy, so that ``protoreg serve --help`` stays fast.
"""

from __future__ import annotations

DEFAULT_ADDRESS = "127.0.0.1:50051"
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
DEFAULT_WORKERS = 4  # model threads per line of a model without predict_batch
DEFAULT_MAX_STREAMS = 1000  # open PredictStream, reflection and health Watch streams


def watcher_limit(max_streams: int) -> int:
    """Open health ``Watch`` streams allowed: an eighth of ``--max-streams`` (they need no token)."""
    return max(1, max_streams // 8)
LOG_FORMATS = ("text", "json")  # --log-format
