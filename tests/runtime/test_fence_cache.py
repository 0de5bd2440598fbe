"""Fenced writes through a store that remembers tenures, while other stores move the lease.

Each test has two stores on the same etcd prefix, as two API server processes would. `writer`
makes the fenced writes and remembers the tenure it saw, and `other` moves the lease behind its back.
"""

from __future__ import annotations

import pytest

from skyshift_core.errors import LeaseLostError
from skyshift_core.objects import Event, Job
from skyshift_core.store import Fence, Store

FENCE = Fence("cm", "leader")


def job_model(name: str, run: str = "true") -> Job:
    return Job.model_validate({"kind": "Job", "metadata": {"name": name}, "spec": {"run": run}})


def event_model(name: str) -> Event:
    return Event.model_validate(
        {
            "kind": "Event",
            "metadata": {"name": name},
            "involved_object": {"kind": "Job", "name": "j1"},
            "reason": "Scheduled",
            "message": "placed",
            "type": "Normal",
            "source": "scheduler",
        }
    )


@pytest.fixture
async def writer(etcd_server, etcd_root):
    store = Store([etcd_server.endpoint], root=etcd_root)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def other(etcd_server, etcd_root):
    store = Store([etcd_server.endpoint], root=etcd_root)
    try:
        yield store
    finally:
        await store.close()


def count_lease_reads(store: Store) -> list[str]:
    """Record the name of every lease record `store` reads from now on."""
    reads: list[str] = []
    original = store._read_lease

    async def counting(name: str):
        reads.append(name)
        return await original(name)

    store._read_lease = counting
    return reads


async def test_remembered_tenure_skips_lease_read(writer, other):
    await other.acquire_lease("cm", "leader", 30)
    await writer.create(job_model("j1"), fence=FENCE)
    reads = count_lease_reads(writer)

    await writer.create(job_model("j2"), fence=FENCE)
    await writer.update(job_model("j1", run="echo v2"), fence=FENCE)
    await writer.create(event_model("e1"), fence=FENCE)

    assert reads == []


async def test_deposed_holder_rejected_despite_memory(writer, other):
    await other.acquire_lease("cm", "leader", 30)
    created = await writer.create(job_model("j1"), fence=FENCE)
    await other.release_lease("cm", "leader")
    await other.acquire_lease("cm", "successor", 30)

    with pytest.raises(LeaseLostError) as create_error:
        await writer.create(job_model("j2"), fence=FENCE)
    with pytest.raises(LeaseLostError):
        await writer.update(job_model("j1", run="echo deposed"), fence=FENCE)
    with pytest.raises(LeaseLostError):
        await writer.delete(Job, "default", "j1", fence=FENCE)

    assert "held by 'successor'" in create_error.value.message
    assert (await other.get(Job, "default", "j1")).metadata.resource_version == created.metadata.resource_version
    assert [job.metadata.name for job in (await other.list(Job)).items] == ["j1"]


async def test_expired_tenure_rejected_despite_memory(writer, other):
    await other.acquire_lease("cm", "leader", 30)
    await writer.create(job_model("j1"), fence=FENCE)
    await other.release_lease("cm", "leader")

    with pytest.raises(LeaseLostError) as error:
        await writer.create(job_model("j2"), fence=FENCE)

    assert "nobody holds it now" in error.value.message
    assert [job.metadata.name for job in (await other.list(Job)).items] == ["j1"]


async def test_new_tenure_of_same_holder_accepted(writer, other):
    await other.acquire_lease("cm", "leader", 30)
    await writer.create(job_model("j1"), fence=FENCE)
    await other.release_lease("cm", "leader")
    renewed = await other.acquire_lease("cm", "leader", 30)

    # The remembered tenure has ended, so the first transaction fails. The holder has a new tenure,
    # which the write reads and retries with, as a store without memory would have read it.
    created = await writer.create(job_model("j2"), fence=FENCE)
    updated = await writer.update(job_model("j1", run="echo v2"), fence=FENCE)

    assert int(created.metadata.resource_version) > renewed.revision
    assert updated.spec.run == "echo v2"
    assert writer._fence_revisions[FENCE] == renewed.revision


async def test_recheck_fence_retries_once(writer, other):
    await other.acquire_lease("cm", "leader", 30)
    stale = await writer.fence_compare(FENCE)
    await other.release_lease("cm", "leader")
    await other.acquire_lease("cm", "leader", 30)

    refreshed = await writer.recheck_fence(FENCE, stale, retried=False)
    with pytest.raises(LeaseLostError):
        await writer.recheck_fence(FENCE, stale, retried=True)

    assert refreshed is not None
    assert refreshed[0].create_revision > stale[0].create_revision


async def test_recheck_fence_none_when_fence_held(writer, other):
    await other.acquire_lease("cm", "leader", 30)
    compares = await writer.fence_compare(FENCE)

    assert await writer.recheck_fence(FENCE, compares, retried=True) is None


async def test_acquire_forgets_tenures_of_lease(writer):
    await writer.acquire_lease("cm", "leader", 30)
    await writer.create(job_model("j1"), fence=FENCE)
    assert FENCE in writer._fence_revisions

    await writer.release_lease("cm", "leader")

    assert FENCE not in writer._fence_revisions
