"""WorkQueue and ExponentialBackoff: deduplication, one worker per key, delayed and rate-limited adds, shutdown."""

from __future__ import annotations

import asyncio

import pytest

from skyshift_core.runtime import ExponentialBackoff, QueueShutDownError, WorkQueue


async def get_soon(queue: WorkQueue, timeout: float = 5.0):
    return await asyncio.wait_for(queue.get(), timeout)


async def test_waiting_duplicates_merged():
    queue: WorkQueue[str] = WorkQueue("test")

    queue.add("a")
    queue.add("b")
    queue.add("a")

    assert len(queue) == 2
    assert await get_soon(queue) == "a"
    assert await get_soon(queue) == "b"
    assert len(queue) == 0


async def test_key_in_processing_waits_for_done():
    queue: WorkQueue[str] = WorkQueue("test")
    queue.add("a")
    first = await get_soon(queue)

    queue.add("a")
    queue.add("a")
    assert len(queue) == 0  # Held back while a worker has it.
    second_worker = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0.05)
    assert not second_worker.done()

    queue.done(first)
    assert await asyncio.wait_for(second_worker, 5) == "a"
    queue.done("a")
    assert len(queue) == 0


async def test_workers_never_share_key():
    queue: WorkQueue[int] = WorkQueue("test")
    active: set[int] = set()
    overlaps: list[int] = []
    processed: list[int] = []

    async def worker() -> None:
        while True:
            try:
                key = await queue.get()
            except QueueShutDownError:
                return
            if key in active:
                overlaps.append(key)
            active.add(key)
            await asyncio.sleep(0.001)
            processed.append(key)
            active.discard(key)
            queue.done(key)

    workers = [asyncio.ensure_future(worker()) for _ in range(4)]
    for round_number in range(50):
        for key in range(3):
            queue.add(key)
        await asyncio.sleep(0.0005 * (round_number % 3))
    while len(queue) or any(queue.is_processing(key) for key in range(3)):
        await asyncio.sleep(0.01)
    queue.shutdown()
    await asyncio.wait_for(asyncio.gather(*workers), 5)

    assert overlaps == []
    assert set(processed) == {0, 1, 2}


def test_backoff_doubles_to_cap():
    backoff: ExponentialBackoff[str] = ExponentialBackoff(base=0.5, max_delay=3.0)

    delays = [backoff.when("a") for _ in range(5)]

    # 0.5 * 2**n for n = 0..4 is 0.5, 1, 2, 4, 8; the last two are capped at 3.
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff.failures("a") == 5
    assert backoff.when("b") == 0.5  # Keys back off independently.


def test_forget_resets_backoff():
    backoff: ExponentialBackoff[str] = ExponentialBackoff(base=0.5, max_delay=3.0)
    backoff.when("a")
    backoff.when("a")

    backoff.forget("a")

    assert backoff.failures("a") == 0
    assert backoff.when("a") == 0.5


async def test_rate_limited_add_grows_and_forget_resets():
    queue: WorkQueue[str] = WorkQueue("test", ExponentialBackoff(base=0.01, max_delay=1.0))

    delays = []
    for _ in range(3):
        delays.append(queue.add_rate_limited("a"))
        key = await get_soon(queue)
        queue.done(key)

    assert delays == [0.01, 0.02, 0.04]
    assert queue.num_requeues("a") == 3
    queue.forget("a")
    assert queue.num_requeues("a") == 0
    assert queue.add_rate_limited("a") == 0.01


async def test_add_after_delays_key():
    queue: WorkQueue[str] = WorkQueue("test")

    queue.add_after("a", 0.2)

    assert len(queue) == 0
    assert await get_soon(queue) == "a"


async def test_add_after_earlier_wins():
    queue: WorkQueue[str] = WorkQueue("test")

    queue.add_after("a", 60)
    queue.add_after("a", 0.05)
    queue.add_after("a", 30)

    assert await get_soon(queue) == "a"
    queue.done("a")
    assert len(queue) == 0


async def test_shutdown_wakes_getters_and_ignores_adds():
    queue: WorkQueue[str] = WorkQueue("test")
    blocked = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0.01)
    queue.add_after("later", 0.05)

    queue.shutdown()
    queue.add("a")

    with pytest.raises(QueueShutDownError):
        await asyncio.wait_for(blocked, 5)
    with pytest.raises(QueueShutDownError):
        await queue.get()
    await asyncio.sleep(0.1)
    assert len(queue) == 0


async def test_cancelled_getter_passes_key_on():
    queue: WorkQueue[str] = WorkQueue("test")
    first = asyncio.ensure_future(queue.get())
    second = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0.01)

    queue.add("a")
    first.cancel()

    assert await asyncio.wait_for(second, 5) == "a"
    assert first.cancelled()


def sample(metric: str, queue_name: str) -> float:
    from prometheus_client import REGISTRY

    value = REGISTRY.get_sample_value(metric, {"name": queue_name})
    return 0.0 if value is None else value


async def test_metrics_follow_keys():
    name = "metrics-follow-keys"
    queue: WorkQueue[str] = WorkQueue(name)

    queue.add("a")
    queue.add("b")
    queue.add("a")  # Merged with the waiting "a": not an add.
    depth_before = sample("workqueue_depth", name)
    key = await get_soon(queue)
    unfinished = sample("workqueue_unfinished_work_seconds", name)
    queue.add_rate_limited(key)
    queue.done(key)

    assert depth_before == 2
    assert sample("workqueue_depth", name) == 1
    assert sample("workqueue_adds_total", name) == 2
    assert sample("workqueue_retries_total", name) == 1
    assert sample("workqueue_queue_duration_seconds_count", name) == 1
    assert sample("workqueue_work_duration_seconds_count", name) == 1
    assert unfinished >= 0
    assert sample("workqueue_unfinished_work_seconds", name) == 0
    assert sample("workqueue_longest_running_processor_seconds", name) == 0


async def test_metrics_shutdown_empties_depth():
    name = "metrics-shutdown"
    queue: WorkQueue[str] = WorkQueue(name)
    queue.add("a")

    queue.shutdown()

    assert sample("workqueue_depth", name) == 0
