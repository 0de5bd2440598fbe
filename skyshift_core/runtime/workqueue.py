"""Work queues for controllers: deduplicating, one worker per key at a time, with delayed and rate-limited adds.

Informers add keys and controller workers take them, as with client-go's workqueue. A key added
while it waits is merged with the waiting one. A key added while a worker processes it waits
until that worker calls `done`, so no two workers hold the same key at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

from prometheus_client import Counter, Gauge, Histogram

logger = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)

# Retry delays of ExponentialBackoff: the first retry after 0.1 s, doubling up to 5 minutes.
DEFAULT_BASE_DELAY = 0.1
DEFAULT_MAX_DELAY = 300.0


# The work queue metrics of Kubernetes' client-go, under the same names and with the queue's name as
# the `name` label, so that dashboards made for Kubernetes controllers work unchanged.
_LATENCY_BUCKETS = (1e-5, 1e-4, 0.001, 0.01, 0.1, 1.0, 10.0, 60.0, 300.0)
DEPTH = Gauge("workqueue_depth", "Keys waiting in the work queue for a worker.", ["name"])
ADDS = Counter("workqueue_adds", "Keys added to the work queue, not counting keys that were already waiting.", ["name"])
QUEUE_SECONDS = Histogram(
    "workqueue_queue_duration_seconds", "Seconds a key waited in the work queue before a worker took it.", ["name"],
    buckets=_LATENCY_BUCKETS,
)  # fmt: skip
WORK_SECONDS = Histogram(
    "workqueue_work_duration_seconds", "Seconds a worker spent on a key.", ["name"], buckets=_LATENCY_BUCKETS
)
RETRIES = Counter("workqueue_retries", "Rate-limited adds, that is retries of keys whose processing failed.", ["name"])
UNFINISHED_SECONDS = Gauge(
    "workqueue_unfinished_work_seconds", "Seconds that the keys being processed have been worked on, summed.", ["name"]
)
LONGEST_RUNNING_SECONDS = Gauge(
    "workqueue_longest_running_processor_seconds", "Seconds that the longest-running worker has spent on its key.",
    ["name"],
)  # fmt: skip


class QueueShutDownError(Exception):
    """`WorkQueue.get` was called on, or woken by, a queue that is shutting down."""


class ExponentialBackoff(Generic[K]):
    """Per-key retry delays: `base * 2**failures`, capped at `max_delay`, reset by `forget`."""

    def __init__(self, base: float = DEFAULT_BASE_DELAY, max_delay: float = DEFAULT_MAX_DELAY):
        if base <= 0 or max_delay < base:
            raise ValueError(f"invalid backoff: base {base!r} must be positive and max_delay {max_delay!r} at least base")
        self.base = base
        self.max_delay = max_delay
        self._failures: dict[K, int] = {}

    def when(self, key: K) -> float:
        """Return the delay in seconds before the next retry of `key`, and count one more failure."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        # 2**failures overflows a float after about 1000 failures; the cap is reached long before.
        if failures > 64:
            return self.max_delay
        return min(self.base * 2**failures, self.max_delay)

    def forget(self, key: K) -> None:
        self._failures.pop(key, None)

    def failures(self, key: K) -> int:
        return self._failures.get(key, 0)


class WorkQueue(Generic[K]):
    """A FIFO of distinct keys, processed by at most one worker per key at a time.

    Workers loop on `key = await queue.get()`, process the key, and must then call
    `queue.done(key)`. A failed key goes back with `add_rate_limited(key)`; a key processed
    successfully calls `forget(key)` to reset its backoff. Must be used from one event loop.
    """

    def __init__(self, name: str = "", rate_limiter: ExponentialBackoff[K] | None = None):
        self.name = name
        self.rate_limiter: ExponentialBackoff[K] = rate_limiter or ExponentialBackoff()
        self._queue: deque[K] = deque()
        # Keys that must be processed (again): waiting in _queue, or re-added while processing.
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        # Delayed adds: key -> (due time on the loop clock, timer handle).
        self._waiting: dict[K, tuple[float, asyncio.TimerHandle]] = {}
        # Workers blocked in `get`, woken one per queued key as in asyncio.Queue.
        self._getters: deque[asyncio.Future[None]] = deque()
        self._shutting_down = False
        # Monotonic times at which each queued key was queued and each processed key was taken.
        self._queued_at: dict[K, float] = {}
        self._started_at: dict[K, float] = {}
        label = name or "unnamed"
        self._depth = DEPTH.labels(label)
        self._adds = ADDS.labels(label)
        self._queue_seconds = QUEUE_SECONDS.labels(label)
        self._work_seconds = WORK_SECONDS.labels(label)
        self._retries = RETRIES.labels(label)
        UNFINISHED_SECONDS.labels(label).set_function(self._unfinished_seconds)
        LONGEST_RUNNING_SECONDS.labels(label).set_function(self._longest_seconds)

    def __len__(self) -> int:
        """Return the number of keys waiting for a worker, not counting delayed adds."""
        return len(self._queue)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def is_processing(self, key: K) -> bool:
        return key in self._processing

    def add(self, key: K) -> None:
        """Queue `key` unless it is already waiting; after shutdown, do nothing."""
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        self._adds.inc()
        if key in self._processing:
            return  # `done` queues it again when the current worker finishes.
        self._enqueue(key)

    def _enqueue(self, key: K) -> None:
        self._queue.append(key)
        self._queued_at[key] = time.monotonic()
        self._depth.set(len(self._queue))
        self._wake_one()

    def add_after(self, key: K, delay: float) -> None:
        """Queue `key` after `delay` seconds; an earlier pending add of the same key wins."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        due = loop.time() + delay
        pending = self._waiting.get(key)
        if pending is not None:
            if pending[0] <= due:
                return
            pending[1].cancel()
        handle = loop.call_at(due, self._add_delayed, key)
        self._waiting[key] = (due, handle)

    def _add_delayed(self, key: K) -> None:
        self._waiting.pop(key, None)
        self.add(key)

    def add_rate_limited(self, key: K) -> float:
        """Queue `key` after its next backoff delay; return that delay in seconds."""
        delay = self.rate_limiter.when(key)
        self._retries.inc()
        self.add_after(key, delay)
        return delay

    def forget(self, key: K) -> None:
        """Reset the backoff of `key`, after it was processed successfully or given up on."""
        self.rate_limiter.forget(key)

    def num_requeues(self, key: K) -> int:
        """Return the number of rate-limited adds of `key` since it was last forgotten."""
        return self.rate_limiter.failures(key)

    async def get(self) -> K:
        """Wait for a key and mark it as processing; raise QueueShutDownError once the queue shuts down."""
        while not self._queue and not self._shutting_down:
            getter = asyncio.get_running_loop().create_future()
            self._getters.append(getter)
            try:
                await getter
            except asyncio.CancelledError:
                getter.cancel()
                with contextlib.suppress(ValueError):
                    self._getters.remove(getter)
                # This worker may have been woken for a key just before it was cancelled.
                if self._queue:
                    self._wake_one()
                raise
        if self._shutting_down:
            raise QueueShutDownError(f"work queue {self.name!r} is shutting down")
        key = self._queue.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        now = time.monotonic()
        queued_at = self._queued_at.pop(key, None)
        if queued_at is not None:
            self._queue_seconds.observe(now - queued_at)
        self._started_at[key] = now
        self._depth.set(len(self._queue))
        return key

    def done(self, key: K) -> None:
        """Mark `key` as processed; if it was added meanwhile, queue it again."""
        self._processing.discard(key)
        started_at = self._started_at.pop(key, None)
        if started_at is not None:
            self._work_seconds.observe(time.monotonic() - started_at)
        if key in self._dirty and not self._shutting_down:
            self._enqueue(key)

    def shutdown(self) -> None:
        """Stop the queue: adds are ignored, pending and delayed keys are dropped, and `get` raises.

        Keys are level-based requests, so a dropped key loses nothing: the next start lists and
        queues every object again.
        """
        if self._shutting_down:
            return
        self._shutting_down = True
        for _, handle in self._waiting.values():
            handle.cancel()
        self._waiting.clear()
        self._queue.clear()
        self._dirty.clear()
        self._queued_at.clear()
        self._depth.set(0)
        self._wake_all()

    def _unfinished_seconds(self) -> float:
        now = time.monotonic()
        return sum(now - started_at for started_at in self._started_at.values())

    def _longest_seconds(self) -> float:
        if not self._started_at:
            return 0.0
        return time.monotonic() - min(self._started_at.values())

    def _wake_one(self) -> None:
        while self._getters:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)
                return

    def _wake_all(self) -> None:
        while self._getters:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)
