"""A reconciler's `shutdown`, and the scheduler's Events written in the background until it."""

from __future__ import annotations

import asyncio

import pytest

from skyshift_core.controllers import scheduler as scheduler_module
from skyshift_core.controllers.scheduler import SchedulerReconciler
from skyshift_core.objects import Job
from skyshift_core.runtime import Controller, Informer, Request


class BlockingClient:
    """Stands in for the API client of `record_event`: creates wait until `release` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.created: list[dict] = []

    async def create(self, obj, namespace=None) -> dict:
        await self.release.wait()
        self.created.append(obj)
        return {}


def scheduler_with(client: BlockingClient) -> SchedulerReconciler:
    informers = [Informer(client, kind, resync_period=None) for kind in ("jobs", "clusters", "filterpolicies")]
    return SchedulerReconciler(client, *informers, profiles={})


def job_model(name: str) -> Job:
    return Job.model_validate({"kind": "Job", "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"}})


async def test_event_written_after_decision_returns():
    client = BlockingClient()
    reconciler = scheduler_with(client)

    await asyncio.wait_for(reconciler._record_event(job_model("j1"), "Normal", "Scheduled", "placed 1 on c1"), 5)
    assert client.created == []

    client.release.set()
    await reconciler.shutdown()

    assert [event.reason for event in client.created] == ["Scheduled"]


async def test_event_waits_inline_at_pending_limit(monkeypatch):
    monkeypatch.setattr(scheduler_module, "MAX_PENDING_EVENTS", 1)
    client = BlockingClient()
    reconciler = scheduler_with(client)
    await reconciler._record_event(job_model("j1"), "Normal", "Scheduled", "placed 1 on c1")

    second = asyncio.ensure_future(reconciler._record_event(job_model("j2"), "Normal", "Scheduled", "placed 1 on c2"))
    await asyncio.sleep(0.05)
    assert not second.done()

    client.release.set()
    await asyncio.wait_for(second, 5)
    await reconciler.shutdown()
    assert sorted(event.involved_object.name for event in client.created) == ["j1", "j2"]


async def test_shutdown_cancels_unwritten_events(monkeypatch, caplog):
    monkeypatch.setattr(scheduler_module, "EVENT_DRAIN_SECONDS", 0.05)
    client = BlockingClient()
    reconciler = scheduler_with(client)
    await reconciler._record_event(job_model("j1"), "Normal", "Scheduled", "placed 1 on c1")

    await asyncio.wait_for(reconciler.shutdown(), 5)

    assert client.created == []
    assert not reconciler._event_tasks
    assert "1 Events not written" in caplog.text


async def test_controller_runs_shutdown_on_stop(client, job, wait_until):
    await client.create(job("j1"))
    reconciled: list[Request] = []
    stopped: list[bool] = []

    class Reconciler:
        async def reconcile(self, request: Request) -> None:
            reconciled.append(request)

        async def shutdown(self) -> None:
            stopped.append(True)

    controller = Controller("shutdown-test", Reconciler(), [Informer(client, "jobs", resync_period=None)])
    task = asyncio.ensure_future(controller.run())
    await wait_until(lambda: len(reconciled) == 1, message="the Job was not reconciled")
    assert stopped == []

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert stopped == [True]
