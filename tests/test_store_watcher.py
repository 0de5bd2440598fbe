"""KeyedWatcher against a real etcd: each watch gets etcd's response to its own create request."""

from __future__ import annotations

import asyncio

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
