"""Adaptive micro-batching: one queue and one model thread per served model line.

A served model line (one release of a model, ``<model>.v<major>``) answers many concurrent calls.
Most models cost about as much for eight inputs as for one (scikit-learn's ``predict`` spends its
time validating its arguments, not computing), so a model that defines
``predict_batch(inputs) -> outputs`` is called once for all the calls waiting at that moment.

The queue lives on the server's event loop; the model runs in the line's own thread, so a slow
or stuck model never blocks the loop, and health, reflection and the other models keep
answering. A call that finds the model idle is handed to it at once. Calls that arrive while the
model runs queue, and all go in the next batch (at most ``max_batch_size``).

Waiting for a fuller batch is adaptive. Before it starts a batch, the line waits (at most
``max_batch_delay``) only while fewer calls are queued than were in flight at once in the recent
past (the peak of the last 16 batches): a line with one caller never waits; a line with eight
callers calling in a loop waits for the other seven, which are on their way (each sends its next
request as soon as it has its answer); a line whose traffic fell off waits the delay a few more
times, then stops. Without this the model, being faster than the server's per-call work, would
run almost every call alone.

Every call keeps its own fate:

- inputs are validated before they are queued, so a bad one is refused alone;
- a call whose client cancels, or whose deadline passes, while it is queued leaves the queue
  without running;
- when ``predict_batch`` raises, its inputs are retried one by one with ``predict``, so only the
  input that fails gets an error; a ``predict_batch`` that returns the wrong number of outputs
  fails its whole batch;
- whatever the model raises (``SystemExit`` and ``KeyboardInterrupt`` included) fails that call,
  never the server.

A model without ``predict_batch`` goes through the same queue; its line has ``threads`` model
threads. While its calls are cheaper than handing work to a thread (under a millisecond), a
thread takes every queued call and runs them one ``predict`` after another; slower calls are
handed out one per thread, so that the threads run them side by side.

A model call (a batch) that runs longer than ``predict_timeout`` fails its calls with
``DEADLINE_EXCEEDED``; when every thread of a line is held by such a call the line *stalls*: the
queued and new calls get ``UNAVAILABLE`` at once, and the server reports the line ``NOT_SERVING``
until a thread comes back. Python cannot interrupt the stuck call, so its thread stays with it.

This module knows nothing of gRPC: an error carries the name of the gRPC status code it ends
with, which every transport maps.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("protoreg.service")

DEFAULT_MAX_BATCH_SIZE = 32
DEFAULT_MAX_BATCH_DELAY = 0.002  # seconds
DEFAULT_PREDICT_TIMEOUT = 30.0  # seconds
DEFAULT_MAX_QUEUE = 1024  # calls queued per line; one more is RESOURCE_EXHAUSTED
PEAK_WINDOW = 16  # batches whose in-flight peak decides how many calls a batch waits for
# A model without predict_batch gains nothing from a batch but one thread hand-off for several
# calls; that is worth it only while its calls are cheaper than a hand-off. Slower calls are
# handed out one at a time, so that every model thread gets one.
GROUP_BELOW = 0.001  # seconds a call of such a model may take and still be grouped


@dataclass(frozen=True)
class BatchPolicy:
    """How a line batches and what it refuses (``protoreg serve`` options)."""

    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    max_batch_delay: float = DEFAULT_MAX_BATCH_DELAY
    predict_timeout: float = DEFAULT_PREDICT_TIMEOUT
    max_queue: int = DEFAULT_MAX_QUEUE


class CallError(Exception):
    """A call the line did not answer; ``code`` names the gRPC status code it ends with."""

    code = "UNKNOWN"

    def __init__(self, message: str, error: BaseException | None = None) -> None:
        super().__init__(message)
        self.error = error  # the model's exception, for the log


class ModelFailed(CallError):
    code = "INTERNAL"


class LineFull(CallError):
    code = "RESOURCE_EXHAUSTED"


class LineStalled(CallError):
    code = "UNAVAILABLE"


class PredictTimedOut(CallError):
    code = "DEADLINE_EXCEEDED"


class DeadlinePassed(CallError):
    code = "DEADLINE_EXCEEDED"


# -- running the model (in a model thread) --------------------------------------------------


def _run_one(predict: Callable[[Any], Any], data: Any) -> Any:
    try:
        return predict(data)
    except BaseException as error:  # the model's failure, whatever it raised, is this call's
        return ModelFailed("predict raised", error)


def run_model(model: Any, inputs: Sequence[Any], batch: bool) -> list[Any]:
    """Outputs (or :class:`ModelFailed`) for ``inputs``, in order, one per input; never raises."""
    if not batch:
        return [_run_one(model.predict, data) for data in inputs]
    try:
        outputs = list(model.predict_batch(list(inputs)))
    except BaseException as error:  # retry one by one: only the input that fails should fail
        log.info("predict_batch of %d inputs raised %s; retrying them one by one",
                 len(inputs), type(error).__name__)
        return [_run_one(model.predict, data) for data in inputs]
    if len(outputs) == len(inputs):
        return outputs
    problem = ValueError(
        f"predict_batch returned {len(outputs)} outputs for {len(inputs)} inputs; it must return "
        "one output per input, in order"
    )
    log.error("%s", problem)
    return [ModelFailed("predict_batch returned a wrong answer", problem)] * len(inputs)


# -- the line (on the event loop) ------------------------------------------------------------


class _Item:
    """One queued call: its input, its deadline, and the future its handler awaits."""

    __slots__ = ("data", "deadline", "future", "settled")

    def __init__(self, data: Any, deadline: float | None, future: asyncio.Future[Any]) -> None:
        self.data = data
        self.deadline = deadline  # time.monotonic() seconds, or None
        self.future = future
        self.settled = False  # no longer counted in flight


@dataclass
class LineStats:
    """What a line has done; logged by ``protoreg serve`` at shutdown and read by the benchmarks."""

    calls: int = 0
    batches: int = 0
    sizes: Counter[int] = field(default_factory=Counter)

    def summary(self) -> str:
        if not self.batches:
            return f"{self.calls} calls"
        mean = sum(size * n for size, n in self.sizes.items()) / self.batches
        shown = ", ".join(f"{size}: {n}" for size, n in sorted(self.sizes.items()))
        return f"{self.calls} calls in {self.batches} batches (mean size {mean:.2f}; sizes {shown})"


class _Thread:
    """One model thread of a line: takes a batch, runs it, posts the outcomes to the loop."""

    def __init__(self, line: ModelLine, index: int) -> None:
        self.line = line
        self.jobs: queue.SimpleQueue[list[_Item] | None] = queue.SimpleQueue()
        self.batch: list[_Item] | None = None
        self.overdue = False
        self.timer: asyncio.TimerHandle | None = None
        self.thread = threading.Thread(target=self._work, name=f"protoreg-model-{line.name}-{index}", daemon=True)
        self.thread.start()

    def _work(self) -> None:
        line = self.line
        while True:
            batch = self.jobs.get()
            if batch is None:
                return
            started = time.perf_counter()
            outcomes = run_model(line.model, [item.data for item in batch], line.batch)
            elapsed = time.perf_counter() - started
            try:
                line.loop.call_soon_threadsafe(line._finished, self, batch, outcomes, elapsed)
            except RuntimeError:  # the loop is closed: the server stopped while this ran
                return


class ModelLine:
    """The queue, the model threads and the limits of one served model line.

    :meth:`call` runs on the event loop and returns the model's output for ``data`` or raises
    :class:`CallError`. ``on_stall(stalled)`` is called (on the loop) when the line stalls or
    answers again, ``on_batch(inputs, seconds)`` after every model call.
    """

    def __init__(
        self,
        name: str,
        model: Any,
        policy: BatchPolicy,
        loop: asyncio.AbstractEventLoop,
        threads: int = 1,
        on_stall: Callable[[bool], None] | None = None,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self.name = name
        self.model = model
        self.policy = policy
        self.loop = loop
        self.batch = callable(getattr(model, "predict_batch", None))
        self.on_stall = on_stall
        self.on_batch = on_batch  # (inputs, seconds) of every model call, for the metrics
        self.stats = LineStats()
        self._queue: deque[_Item] = deque()
        self._in_flight = 0  # queued or running, not yet answered
        self._peak = 1
        self._peaks: deque[int] = deque([1], maxlen=PEAK_WINDOW)
        self._wait: asyncio.TimerHandle | None = None
        self._threads = [_Thread(self, i) for i in range(max(1, threads))]
        self._idle = list(self._threads)
        # moving average of a model call's time per input; unknown at first, so not grouped
        self._call_seconds = GROUP_BELOW
        self.stalled = False

    @property
    def queued(self) -> int:
        """Calls waiting for the model."""
        return len(self._queue)

    @property
    def in_flight(self) -> int:
        """Calls queued or in the model, not yet answered."""
        return self._in_flight

    # -- a call ----------------------------------------------------------------------------

    def submit(self, data: Any, deadline: float | None = None) -> asyncio.Future[Any]:
        """Queue ``data``; the future resolves to the model's output or fails with :class:`CallError`.

        ``deadline`` is on the ``time.monotonic()`` clock. A caller that no longer wants the
        answer cancels the future and calls :meth:`withdraw`.
        """
        if self.stalled:
            raise self._stalled_error()
        if len(self._queue) >= self.policy.max_queue:
            raise LineFull(
                f"model {self.name} has {len(self._queue)} calls queued, its limit; retry later or add servers"
            )
        future = self.loop.create_future()
        self._queue.append(_Item(data, deadline, future))
        self._in_flight += 1
        self.stats.calls += 1
        if self._in_flight > self._peak:
            self._peak = self._in_flight
        if self._idle:
            self._dispatch()
        return future

    async def call(self, data: Any, deadline: float | None = None) -> Any:
        """The model's output for ``data`` (a client that cancels leaves the queue)."""
        future = self.submit(data, deadline)
        try:
            return await future
        except asyncio.CancelledError:
            self.withdraw(future)
            raise

    def withdraw(self, future: asyncio.Future[Any]) -> None:
        """The caller is gone: a queued call leaves the queue; a running one's answer is dropped."""
        if not future.done():
            future.cancel()
        for item in self._queue:
            if item.future is future:
                self._queue.remove(item)
                self._settle(item)
                return

    def _stalled_error(self) -> LineStalled:
        return LineStalled(
            f"model {self.name} is not answering: its model calls have been running for more than "
            f"{self.policy.predict_timeout:g} s (--predict-timeout); it takes calls again once one returns"
        )

    def _settle(self, item: _Item) -> None:
        if not item.settled:
            item.settled = True
            self._in_flight -= 1

    # -- batches ----------------------------------------------------------------------------

    def _dispatch(self, waited: bool = False) -> None:
        """Hand queued calls to idle threads, waiting (adaptively) for a fuller batch first."""
        policy = self.policy
        group = self.batch or self._call_seconds < GROUP_BELOW
        size = policy.max_batch_size if group else 1
        while self._idle and self._queue:
            want = min(size, max(self._peaks))
            if not waited and len(self._queue) < want and policy.max_batch_delay > 0:
                if self._wait is None:
                    self._wait = self.loop.call_later(policy.max_batch_delay, self._waited)
                return
            if self._wait is not None:
                self._wait.cancel()
                self._wait = None
            waited = False
            batch = self._take(size)
            if batch:
                self._start(self._idle.pop(), batch)

    def _waited(self) -> None:
        self._wait = None
        self._dispatch(waited=True)

    def _take(self, size: int) -> list[_Item]:
        now = time.monotonic()
        batch: list[_Item] = []
        queue_ = self._queue
        while queue_ and len(batch) < size:
            item = queue_.popleft()
            if item.future.done():  # cancelled while queued
                self._settle(item)
                continue
            if item.deadline is not None and now >= item.deadline:
                self._answer(item, DeadlinePassed("the deadline passed while the call waited for the model"))
                continue
            batch.append(item)
        return batch

    def _start(self, thread: _Thread, batch: list[_Item]) -> None:
        self._peaks.append(self._peak)
        self._peak = self._in_flight
        self.stats.batches += 1
        self.stats.sizes[len(batch)] += 1
        thread.batch = batch
        thread.timer = self.loop.call_later(self.policy.predict_timeout, self._overdue, thread)
        thread.jobs.put(batch)

    def _answer(self, item: _Item, outcome: Any) -> None:
        self._settle(item)
        future = item.future
        if future.done():
            return  # its caller left, or the line gave up on it
        if isinstance(outcome, CallError):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    def _finished(self, thread: _Thread, batch: list[_Item], outcomes: list[Any], elapsed: float) -> None:
        """A model thread is done with ``batch`` (called on the loop)."""
        self._call_seconds = 0.8 * self._call_seconds + 0.2 * elapsed / len(batch)
        if self.on_batch is not None:
            self.on_batch(len(batch), elapsed)
        if thread.timer is not None:
            thread.timer.cancel()
            thread.timer = None
        for item, outcome in zip(batch, outcomes, strict=True):
            self._answer(item, outcome)
        thread.batch = None
        if thread.overdue:
            thread.overdue = False
            log.warning("model %s returned from a call that outlived --predict-timeout", self.name)
        self._idle.append(thread)
        if self.stalled:
            self.stalled = False
            if self.on_stall is not None:
                self.on_stall(False)
        self._dispatch()

    def _overdue(self, thread: _Thread) -> None:
        """A batch outlived ``predict_timeout``: fail its calls; stall the line if no thread is left."""
        thread.timer = None
        thread.overdue = True
        timeout = self.policy.predict_timeout
        for item in thread.batch or ():
            self._answer(item, PredictTimedOut(f"model {self.name} did not answer within {timeout:g} s "
                                               "(--predict-timeout)"))
        if all(t.overdue for t in self._threads) and not self.stalled:
            self.stalled = True
            log.error("model %s has not answered for more than %g s (--predict-timeout); its calls are "
                      "refused until it does", self.name, timeout)
            while self._queue:
                self._answer(self._queue.popleft(), self._stalled_error())
            if self.on_stall is not None:
                self.on_stall(True)

    def close(self) -> None:
        """Let the model threads end once idle (they are daemon threads: a stuck one is left)."""
        if self._wait is not None:
            self._wait.cancel()
        for thread in self._threads:
            if thread.timer is not None:
                thread.timer.cancel()
            thread.jobs.put(None)
