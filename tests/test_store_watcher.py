"""KeyedWatcher: each watch gets etcd's response to its own create request, and a watcher shuts down even when its stream fails.

The tests run against a real etcd, except the shutdown race, which needs a stream that fails at
the moment it is cancelled.
"""

from __future__ import annotations

import asyncio
import logging

import aetcd
import pytest
from aetcd import rpc

from skyshift_core.store.keys import prefix_range_end
from skyshift_core.store.watcher import KeyedWatcher


@pytest.fixture
async def etcd_client(etcd_server):
    client = aetcd.Client(host="127.0.0.1", port=etcd_server.client_port, timeout=5)
    await client.connect()
    client._watcher = KeyedWatcher(rpc.WatchStub(client.channel), timeout=5, metadata=client.metadata)
    yield client
    await client.close()


async def first_key(watch) -> bytes:
    async def read() -> bytes:
        async for event in watch:
            return event.kv.key
        raise AssertionError("the watch ended without an event")

    return await asyncio.wait_for(read(), 10)


async def watch_prefix(client, prefix: bytes):
    return await client.watch(prefix, range_end=prefix_range_end(prefix))


async def test_late_response_reaches_no_other_watch(etcd_client, etcd_root):
    """A create that timed out, as while etcd restarts, must not hand its watch to the next one."""
    clusters, jobs = f"{etcd_root}/clusters/".encode(), f"{etcd_root}/jobs/".encode()
    etcd_client._watcher._timeout = 0  # The create times out before etcd confirms it.
    with pytest.raises(aetcd.exceptions.WatchTimeoutError):
        await watch_prefix(etcd_client, clusters)
    etcd_client._watcher._timeout = 5

    watch = await watch_prefix(etcd_client, jobs)
    await etcd_client.put(clusters + b"c1", b"cluster")
    await etcd_client.put(jobs + b"default/j1", b"job")

    assert await first_key(watch) == jobs + b"default/j1"


async def test_concurrent_creates_get_own_prefix(etcd_client, etcd_root):
    prefixes = [f"{etcd_root}/kind{index}/".encode() for index in range(6)]
    watches = await asyncio.gather(*(watch_prefix(etcd_client, prefix) for prefix in prefixes))

    for prefix in reversed(prefixes):
        await etcd_client.put(prefix + b"item", prefix)

    for prefix, watch in zip(prefixes, watches):
        assert await first_key(watch) == prefix + b"item"


async def test_compacted_start_revision_raises(etcd_client, etcd_root):
    key = f"{etcd_root}/compacted".encode()
    for value in (b"1", b"2", b"3"):
        await etcd_client.put(key, value)
    latest = (await etcd_client.get(key)).mod_revision
    await etcd_client.compact(latest)

    watch = await etcd_client.watch(key, start_revision=latest - 1)

    with pytest.raises(aetcd.exceptions.RevisionCompactedError):
        await first_key(watch)


class StreamFailingOnCancel:
    """A watch stub whose stream raises an error when it is cancelled, as gRPC's stream does when it
    fails at that moment (seen while etcd restarts)."""

    def __init__(self):
        self.streaming = asyncio.Event()

    def Watch(self, requests, metadata=None):
        async def responses():
            self.streaming.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                raise RuntimeError("Stream removed") from None
            yield  # An async generator that never yields a response.

        return responses()


async def test_shutdown_with_failing_stream_returns():
    stub = StreamFailingOnCancel()
    watcher = KeyedWatcher(stub, timeout=5)
    await watcher.setup()
    await asyncio.wait_for(stub.streaming.wait(), 5)

    # aetcd's own handler then waits for the lock that `shutdown` holds while it waits for the
    # handler. asyncio.wait, unlike wait_for, does not cancel `shutdown` on timeout, which would
    # cancel the handler again and so break the deadlock.
    shutdown = asyncio.ensure_future(watcher.shutdown())
    try:
        done, _ = await asyncio.wait({shutdown}, timeout=5)
        assert shutdown in done, "shutdown waited for the stream handler, and the handler for shutdown"
        assert watcher._request_handler is None
    finally:
        shutdown.cancel()
        await asyncio.gather(shutdown, return_exceptions=True)


@pytest.fixture
def own_etcd(tmp_path):
    """An etcd of this test's own, which the test stops and starts again."""
    from skyshift_core.local.etcd import EtcdProcess

    etcd = EtcdProcess(data_dir=tmp_path / "data").start()
    yield etcd
    etcd.stop()


async def test_watches_keep_kind_across_etcd_restart(own_etcd, caplog):
    """Watches resumed after etcd restarts deliver their own kind only, and every later change."""
    caplog.set_level(logging.INFO, logger="skyshift_core.store.etcd")
    from skyshift_core.objects import Cluster, Job
    from skyshift_core.store.etcd import Store

    store = Store([own_etcd.endpoint], deadline=30)
    try:
        start = await store.ping()
        watches = {model: store.watch(model, None, resource_version=start) for model in (Job, Cluster)}
        # Each watch subscribes on its first read, so start the reads before etcd goes away.
        reads = {model: asyncio.ensure_future(anext(watch)) for model, watch in watches.items()}
        await asyncio.sleep(0.5)
        own_etcd.stop()
        await asyncio.sleep(1.0)
        own_etcd.start()
        await asyncio.wait_for(
            store.create(Cluster.model_validate({"metadata": {"name": "c1"}, "spec": {"manager": "slurm"}})), 40
        )
        await asyncio.wait_for(store.create(Job.model_validate({"metadata": {"name": "j1"}})), 40)

        for model, read in reads.items():
            event = await asyncio.wait_for(read, 30)
            assert isinstance(event.object, model)
            assert event.type == "ADDED"
        for watch in watches.values():
            await watch.aclose()
    finally:
        await store.close()

    # Each watch logs its outage once (not every 0.2 s attempt), with a reason, and its recovery.
    for plural in ("jobs", "clusters"):
        interrupted = [
            record.getMessage() for record in caplog.records
            if record.levelno == logging.WARNING and f"etcd watch of /skyshift/{plural}/ interrupted" in record.getMessage()
        ]  # fmt: skip
        assert 1 <= len(interrupted) <= 2, interrupted
        assert all(not message.endswith(": ") for message in interrupted)
        assert any(f"etcd watch of /skyshift/{plural}/ resubscribed" in record.getMessage() for record in caplog.records)
