"""The store's cache of recently seen values: it may spare the read before a write, never change its outcome."""

from __future__ import annotations

import pytest

from skyshift_core.errors import ConflictError
from skyshift_core.objects import Job
from skyshift_core.store import Store
from skyshift_core.store.value_cache import ValueCache


def job_model(name: str, run: str = "true", resource_version: str | None = None) -> Job:
    metadata = {"name": name, "resource_version": resource_version}
    return Job.model_validate({"kind": "Job", "metadata": metadata, "spec": {"run": run}})


def with_placement(job: Job, cluster: str) -> Job:
    placed = job.model_copy(deep=True)
    placed.status.placement = {cluster: 1}
    return placed


@pytest.fixture
async def other(etcd_server, etcd_root):
    store = Store([etcd_server.endpoint], root=etcd_root)
    try:
        yield store
    finally:
        await store.close()


def count_ranges(store: Store) -> list[bytes]:
    """Record the key of every range read `store` sends from now on."""
    keys: list[bytes] = []
    original = store._range

    async def counting(key: bytes, *args, **kwargs):
        keys.append(key)
        return await original(key, *args, **kwargs)

    store._range = counting
    return keys


def test_cache_hit_needs_same_revision():
    cache = ValueCache(1024)
    cache.put(b"k", b"v5", 5)

    assert cache.get(b"k", 5).value == b"v5"
    assert cache.get(b"k", 4) is None
    assert cache.get(b"other", 5) is None


def test_cache_keeps_newest_revision():
    cache = ValueCache(1024)
    cache.put(b"k", b"v7", 7)
    cache.put(b"k", b"v6", 6)

    assert cache.get(b"k", 7).value == b"v7"
    assert cache.get(b"k", 6) is None


def test_cache_evicts_least_recently_used():
    # Three values of 4 bytes fit in 10 bytes only two at a time; "a" was used last, so "b" goes.
    cache = ValueCache(10)
    cache.put(b"a", b"aaaa", 1)
    cache.put(b"b", b"bbbb", 2)
    cache.get(b"a", 1)
    cache.put(b"c", b"cccc", 3)

    assert cache.get(b"b", 2) is None
    assert cache.get(b"a", 1) is not None
    assert cache.size_bytes == 8


def test_cache_of_zero_bytes_keeps_nothing():
    cache = ValueCache(0)
    cache.put(b"k", b"v", 1)

    assert len(cache) == 0


async def test_status_write_at_cached_version_skips_read(store):
    created = await store.create(job_model("j1"))
    reads = count_ranges(store)

    updated = await store.update(with_placement(created, "c1"), subresource="status")

    assert reads == []
    assert updated.status.placement == {"c1": 1}
    assert (await store.get(Job, "default", "j1")).status.placement == {"c1": 1}


async def test_cached_version_overwritten_elsewhere_conflicts(store, other):
    created = await store.create(job_model("j1"))
    await other.update(job_model("j1", run="echo elsewhere"))

    with pytest.raises(ConflictError):
        await store.update(with_placement(created, "c1"), subresource="status")

    stored = await other.get(Job, "default", "j1")
    assert stored.spec.run == "echo elsewhere"
    assert stored.status.placement == {}


async def test_cached_value_differing_from_stored_not_used(store, other):
    created = await store.create(job_model("j1"))
    key = store._key(Job, "default", "j1")
    revision = int(created.metadata.resource_version)
    # A cache entry at the stored revision but with other content, as after etcd was replaced by
    # another cluster: the transaction compares the value too, so the write is based on the stored one.
    store._values.put(key, store._encode(job_model("j1", run="echo stale")), revision)

    updated = await store.update(with_placement(created, "c1"), subresource="status")

    assert updated.spec.run == "true"
    assert (await other.get(Job, "default", "j1")).spec.run == "true"


async def test_unchanged_write_at_stale_cached_version_conflicts(store, other):
    created = await store.create(job_model("j1"))
    await other.update(job_model("j1", run="echo elsewhere"))

    # Writing the same status again changes nothing, so no transaction proves the version; the
    # store must read the object, which has moved on.
    with pytest.raises(ConflictError):
        await store.update(created, subresource="status")
