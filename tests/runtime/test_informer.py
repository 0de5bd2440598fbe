"""Informer against a real API server and etcd: cache, handlers, resume after a restart, relist after 410 Gone."""

from __future__ import annotations

import asyncio

from skyshift_core.client import AsyncSkyShiftClient
from skyshift_core.objects import Job
from skyshift_core.runtime import Informer, Request, WorkQueue


class Recorder:
    """Event handler that records (event, name, resource_version) in order."""

    def __init__(self, informer: Informer):
        self.events: list[tuple[str, str, str]] = []
        informer.add_event_handler(on_add=self.added, on_update=self.updated, on_delete=self.deleted)

    def added(self, obj) -> None:
        self.events.append(("add", obj.metadata.name, obj.metadata.resource_version))

    def updated(self, old, new) -> None:
        self.events.append(("update", new.metadata.name, new.metadata.resource_version))

    def deleted(self, obj) -> None:
        self.events.append(("delete", obj.metadata.name, obj.metadata.resource_version))

    def names(self) -> list[tuple[str, str]]:
        return [(event, name) for event, name, _ in self.events]


def job_model(name: str, run: str = "true") -> Job:
    return Job.model_validate({"kind": "Job", "metadata": {"name": name}, "spec": {"run": run}})


async def started(informer: Informer) -> Informer:
    informer.start()
    assert await informer.wait_for_sync(timeout=15), f"{informer} did not sync"
    return informer


async def test_cache_follows_list_and_watch(client, job, wait_until):
    await client.create(job("before-1"))
    await client.create(job("before-2"))
    informer = Informer(client, "jobs", resync_period=None)
    recorder = Recorder(informer)

    try:
        await started(informer)
        assert sorted(name for _, name in informer.keys()) == ["before-1", "before-2"]
        assert isinstance(informer.get("before-1", "default"), Job)

        await client.create(job("during"))
        changed = await client.patch("jobs", "before-1", {"spec": {"run": "echo changed"}})
        deleted = await client.delete("jobs", "before-2")
        await wait_until(lambda: len(recorder.events) == 5, message=f"5 events, got {recorder.events}")

        assert recorder.names() == [
            ("add", "before-1"),
            ("add", "before-2"),
            ("add", "during"),
            ("update", "before-1"),
            ("delete", "before-2"),
        ]
        assert sorted(name for _, name in informer.keys()) == ["before-1", "during"]
        assert informer.get("before-1", "default").spec.run == "echo changed"
        assert informer.get("before-1", "default").metadata.resource_version == changed["metadata"]["resource_version"]
        assert informer.get("before-2", "default") is None
        assert int(informer.resource_version) >= int(deleted["metadata"]["resource_version"])
    finally:
        await informer.stop()


async def test_selector_limits_cache(client, job, wait_until):
    await client.create(job("web-1", labels={"app": "web"}))
    await client.create(job("db-1", labels={"app": "db"}))
    informer = Informer(client, "jobs", selector={"app": "web"}, resync_period=None)
    recorder = Recorder(informer)

    try:
        await started(informer)
        await client.patch("jobs", "db-1", {"metadata": {"labels": {"app": "web"}}})
        await client.patch("jobs", "web-1", {"metadata": {"labels": {"app": "db"}}})
        await wait_until(lambda: len(recorder.events) == 3, message=f"3 events, got {recorder.events}")

        # A label change moves an object into or out of the selection, as an add or a delete.
        assert recorder.names() == [("add", "web-1"), ("add", "db-1"), ("delete", "web-1")]
        assert [name for _, name in informer.keys()] == ["db-1"]
    finally:
        await informer.stop()


async def test_queue_gets_mapped_requests(client, job, wait_until):
    cluster = {"kind": "Cluster", "metadata": {"name": "c1"}, "spec": {"manager": "slurm"}}
    await client.create(cluster)
    informer = Informer(client, "clusters", resync_period=None)
    queue: WorkQueue[Request] = WorkQueue("test")
    informer.add_queue(queue, lambda obj: [Request("Job", "default", f"on-{obj.metadata.name}")])
    own_queue: WorkQueue[Request] = WorkQueue("own")
    informer.add_queue(own_queue)

    try:
        await started(informer)
        assert await asyncio.wait_for(queue.get(), 5) == Request("Job", "default", "on-c1")
        assert await asyncio.wait_for(own_queue.get(), 5) == Request("Cluster", None, "c1")
    finally:
        await informer.stop()


async def test_resync_redelivers_cached_objects(client, job, wait_until):
    await client.create(job("steady"))
    informer = Informer(client, "jobs", resync_period=0.2)
    recorder = Recorder(informer)

    try:
        await started(informer)
        await wait_until(lambda: ("update", "steady") in recorder.names(), message="a resync update")

        assert recorder.events[0][0] == "add"
        resyncs = [event for event in recorder.events if event[0] == "update"]
        assert all(version == recorder.events[0][2] for _, _, version in resyncs)
    finally:
        await informer.stop()


async def test_resume_after_api_restart(restartable_api, admin_token, store, job, wait_until):
    async with AsyncSkyShiftClient(restartable_api.url, timeout=5, token=admin_token) as client:
        await client.create(job("kept"))
        await client.create(job("removed"))
        informer = Informer(client, "jobs", resync_period=None)
        recorder = Recorder(informer)
        try:
            await started(informer)
            await restartable_api.stop()

            # Written while the API server is down, so the informer must catch up on resuming.
            await store.create(job_model("new"))
            await store.update(job_model("kept", run="echo v2"))
            await store.delete(Job, "default", "removed")
            await store.update(job_model("kept", run="echo v3"))
            await asyncio.to_thread(restartable_api.start)
            await wait_until(lambda: len(recorder.events) == 6, message=f"6 events, got {recorder.events}")
            await client.create(job("after"))
            await wait_until(lambda: len(recorder.events) == 7, message=f"7 events, got {recorder.events}")

            assert recorder.names() == [
                ("add", "kept"),
                ("add", "removed"),
                ("add", "new"),
                ("update", "kept"),
                ("delete", "removed"),
                ("update", "kept"),
                ("add", "after"),
            ]
            versions = [int(version) for _, _, version in recorder.events[2:]]
            assert versions == sorted(set(versions))  # Each change once, in order.
            assert informer.get("kept", "default").spec.run == "echo v3"
        finally:
            await informer.stop()


async def test_relist_after_gone_emits_deletes(restartable_api, admin_token, store, job, wait_until):
    async with AsyncSkyShiftClient(restartable_api.url, timeout=5, token=admin_token) as client:
        for name in ("stays", "changes", "vanishes"):
            await client.create(job(name))
        informer = Informer(client, "jobs", resync_period=None)
        recorder = Recorder(informer)
        try:
            await started(informer)
            seen_version = int(informer.resource_version)
            await restartable_api.stop()

            await store.delete(Job, "default", "vanishes")
            await store.update(job_model("changes", run="echo v2"))
            await store.create(job_model("appears"))
            # Compacting past the informer's version makes its next watch fail with 410 Gone.
            revision = await store.ping()
            assert revision > seen_version + 1
            await store.compact(revision)
            await asyncio.to_thread(restartable_api.start)
            await wait_until(lambda: len(recorder.events) == 6, message=f"6 events, got {recorder.events}")

            # A list is in key order; the relist reports what changed while the informer was away.
            assert recorder.names()[:3] == [("add", "changes"), ("add", "stays"), ("add", "vanishes")]
            assert sorted(recorder.names()[3:]) == [("add", "appears"), ("delete", "vanishes"), ("update", "changes")]
            assert sorted(name for _, name in informer.keys()) == ["appears", "changes", "stays"]
            assert int(informer.resource_version) >= revision
            await client.create(job("after-relist"))
            await wait_until(lambda: ("add", "after-relist") in recorder.names(), message="watch resumes after the relist")
            assert len(recorder.events) == 7
        finally:
            await informer.stop()


async def test_wait_for_sync_keeps_cancellation(client):
    informer = Informer(client, "jobs")  # Never started: the test sets its sync flag itself.
    waiter = asyncio.create_task(informer.wait_for_sync(timeout=5))
    await asyncio.sleep(0.05)  # The waiter now waits for the first list.

    # The sync and a cancellation in the same turn of the event loop: the cancellation wins.
    informer._synced.set()  # What the informer's task does after its first list.
    waiter.cancel()
    done, _ = await asyncio.wait({waiter}, timeout=5)

    assert waiter in done
    assert waiter.cancelled()
