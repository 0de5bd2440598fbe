"""The scheduler's reservations when its placement write fails: a rejected write frees the room,
and a write that failed without a verdict (a timeout) keeps it, because etcd may have applied it.
Reserve plugins are unreserved after either failure, as Kubernetes unreserves when binding fails."""

from __future__ import annotations

import pytest
from scheduler_fakes import fill_profile

from skyshift_core.controllers.scheduler import SchedulerReconciler
from skyshift_core.errors import ConflictError, UnavailableError
from skyshift_core.objects import Cluster, Job
from skyshift_core.runtime.reconcile import Request
from skyshift_core.scheduler.framework import SUCCESS, ReservePlugin


class StaticInformer:
    """Stands in for an informer that has synced `items`."""

    resource_version = "100"

    def __init__(self, items: list):
        self.items = items

    def add_event_handler(self, **handlers) -> None:
        pass

    def list(self) -> list:
        return list(self.items)

    def get(self, name: str, namespace: str | None = None):
        return next((item for item in self.items if item.metadata.name == name), None)


class FailingClient:
    """Stands in for the API client: every status write raises `error`."""

    def __init__(self, error: Exception):
        self.error = error

    async def update_status(self, job: Job) -> dict:
        raise self.error

    async def create(self, obj) -> dict:
        return {}


class RecordingReserve(ReservePlugin):
    name = "recording"

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[str, str, dict]] = []

    def reserve(self, state, job, placement):
        self.calls.append(("reserve", job.metadata.name, placement))
        return SUCCESS

    def unreserve(self, state, job, placement):
        self.calls.append(("unreserve", job.metadata.name, placement))


def reconciler_for(error: Exception, reserve: ReservePlugin | None = None) -> SchedulerReconciler:
    cluster = Cluster.model_validate({
        "kind": "Cluster", "metadata": {"name": "a"}, "spec": {"manager": "simulated"},
        "status": {"phase": "READY", "nodes": {"n1": {"capacity": {"cpus": 4}, "allocatable": {"cpus": 4}}}},
    })  # fmt: skip
    job = Job.model_validate({
        "metadata": {"name": "train", "namespace": "default", "resource_version": "7"},
        "spec": {"run": "x", "replicas": 3, "resources": {"cpus": 1}},
    })  # fmt: skip
    profiles = {"default": fill_profile("default")}
    if reserve is not None:
        profiles["default"].reservers.append(reserve)
    informers = (StaticInformer([job]), StaticInformer([cluster]), StaticInformer([]))
    reconciler = SchedulerReconciler(FailingClient(error), *informers, profiles)  # type: ignore[arg-type]
    reconciler.cache.set_cluster(cluster)
    reconciler.cache.set_job(job)
    return reconciler


def free_cpus(reconciler: SchedulerReconciler) -> float:
    return reconciler.cache.cluster_infos()[0].nodes[0].allocatable.cpus


async def test_timed_out_placement_write_keeps_reservation():
    reconciler = reconciler_for(TimeoutError())

    with pytest.raises(TimeoutError):
        await reconciler.reconcile(Request("Job", "default", "train"))

    assert free_cpus(reconciler) == 1


async def test_unavailable_server_keeps_reservation():
    reconciler = reconciler_for(UnavailableError("etcd is unreachable"))

    with pytest.raises(UnavailableError):
        await reconciler.reconcile(Request("Job", "default", "train"))

    assert free_cpus(reconciler) == 1


async def test_rejected_placement_write_frees_room():
    reconciler = reconciler_for(ConflictError("the Job changed"))

    with pytest.raises(ConflictError):
        await reconciler.reconcile(Request("Job", "default", "train"))

    assert free_cpus(reconciler) == 4


@pytest.mark.parametrize(
    "error", [ConflictError("the Job changed"), TimeoutError()], ids=["rejected", "timed-out"]
)
async def test_failed_placement_write_unreserves(error):
    plugin = RecordingReserve()
    reconciler = reconciler_for(error, plugin)

    with pytest.raises(type(error)):
        await reconciler.reconcile(Request("Job", "default", "train"))

    assert plugin.calls == [("reserve", "train", {"a": 3}), ("unreserve", "train", {"a": 3})]
