"""A share that its backend rejects: the skylet records a Warning Event with the backend's text, marks
the replicas Failed, and does not submit the share again, also after a restart.

The skylet's cycles are run one by one here, so each test controls exactly how many run."""

from __future__ import annotations

import pytest

from skyshift_core.cluster_manager import ClusterHealth, ClusterManager, ClusterManagerError, WorkStatus, WorkUnit
from skyshift_core.controllers.skylet import Skylet
from skyshift_core.objects import Job, NodeResources
from skyshift_core.runtime.informer import Informer
from skyshift_core.testing.controlplane import simulated_cluster, wait_for

CLUSTER = "edge"
# Two lines, as sbatch writes them to stderr.
BACKEND_TEXT = "sbatch: error: invalid partition specified: nosuch\nsbatch: error: Batch job submission failed"


class RejectingManager(ClusterManager):
    """A backend that rejects every share with BACKEND_TEXT and lists no work, as Kubernetes does
    for a Job that was never created. `error` makes submit raise it instead."""

    provides = "a backend that rejects every share"

    def __init__(self, name: str, error: ClusterManagerError | None = None):
        super().__init__(name, {})
        self.error = error
        self.submits = 0

    async def health(self) -> ClusterHealth:
        return ClusterHealth(ready=True)

    async def nodes(self) -> dict[str, NodeResources]:
        return {}

    async def submit(self, unit: WorkUnit) -> WorkStatus:
        self.submits += 1
        if self.error is not None:
            raise self.error
        return WorkStatus.rejected(unit, BACKEND_TEXT)

    async def delete(self, key: str) -> None:
        pass

    async def statuses(self) -> dict[str, WorkStatus]:
        return {}


async def has_share(jobs: Informer, name: str) -> bool:
    job = jobs.get(name, "default")
    return job is not None and CLUSTER in job.status.clusters


async def shows_tasks(jobs: Informer, name: str) -> bool:
    job = jobs.get(name, "default")
    return job is not None and bool(job.status.clusters[CLUSTER].tasks)


@pytest.fixture
async def jobs(async_client):
    """A synced Job informer, and the Cluster `edge` for the skylet to report on."""
    await async_client.create(simulated_cluster(CLUSTER))
    informer = Informer(async_client, Job)
    informer.start()
    await wait_for(lambda: _true(informer.has_synced))
    yield informer
    await informer.stop()


async def _true(value) -> bool:
    return bool(value)


@pytest.fixture
async def placed(async_client, jobs):
    """Create the Job `web` with two replicas, place both on `edge` as the scheduler would, and wait
    until the informer shows the share."""
    spec = {"run": "serve", "replicas": 2, "restart_policy": "Always"}
    await async_client.create({"kind": "Job", "metadata": {"name": "web"}, "spec": spec})
    share = {"replicas": 2, "replica_indices": [0, 1], "generation": 1}
    status = {"placement": {CLUSTER: 2}, "placement_generation": 1, "clusters": {CLUSTER: share}}
    await async_client.patch("Job", "web", {"status": status}, "default", subresource="status")
    await wait_for(lambda: has_share(jobs, "web"))
    return "web"


async def skylet_events(client, name: str) -> list[dict]:
    events = (await client.list("Event", "default"))["items"]
    return [event for event in events if event["involved_object"]["name"] == name]


async def test_rejection_recorded_as_warning(async_client, jobs, placed):
    skylet = Skylet(CLUSTER, RejectingManager(CLUSTER), async_client, jobs)

    await skylet.cycle()

    events = await skylet_events(async_client, placed)
    assert [(event["type"], event["reason"]) for event in events] == [("Warning", "SubmitRejected")]
    assert events[0]["message"] == (
        "cluster edge rejected replicas [0, 1]: sbatch: error: invalid partition specified: nosuch; "
        "sbatch: error: Batch job submission failed"
    )
    assert events[0]["source"] == f"skylet/{CLUSTER}"


async def test_rejected_replicas_written_failed(async_client, jobs, placed):
    skylet = Skylet(CLUSTER, RejectingManager(CLUSTER), async_client, jobs)

    await skylet.cycle()

    share = (await async_client.get("Job", placed, "default"))["status"]["clusters"][CLUSTER]
    assert share["manager_job_ids"] == []
    assert sorted(share["tasks"]) == ["0", "1"]
    for task in share["tasks"].values():
        assert task["state"] == "Failed"
        assert task["reason"] == "SubmitRejected"
        assert task["message"] == BACKEND_TEXT


async def test_rejected_share_submitted_once(async_client, jobs, placed):
    manager = RejectingManager(CLUSTER)
    skylet = Skylet(CLUSTER, manager, async_client, jobs)

    # The second cycle may run before the informer shows the Failed replicas, so the skylet must
    # remember the rejection itself.
    await skylet.cycle()
    await skylet.cycle()
    await wait_for(lambda: shows_tasks(jobs, placed))
    await skylet.cycle()

    events = await skylet_events(async_client, placed)
    assert manager.submits == 1
    assert [event["count"] for event in events] == [1]


async def test_restarted_skylet_keeps_rejection(async_client, jobs, placed):
    await Skylet(CLUSTER, RejectingManager(CLUSTER), async_client, jobs).cycle()
    await wait_for(lambda: shows_tasks(jobs, placed))
    restarted = RejectingManager(CLUSTER)

    await Skylet(CLUSTER, restarted, async_client, jobs).cycle()

    assert restarted.submits == 0


async def test_failed_submit_retried_next_cycle(async_client, jobs, placed):
    # An error that may pass is no rejection: the share stays unsubmitted and is tried again.
    manager = RejectingManager(CLUSTER, ClusterManagerError("sbatch timed out after 30 s"))
    skylet = Skylet(CLUSTER, manager, async_client, jobs)

    await skylet.cycle()
    await skylet.cycle()

    events = await skylet_events(async_client, placed)
    share = (await async_client.get("Job", placed, "default"))["status"]["clusters"][CLUSTER]
    assert manager.submits == 2
    assert [(event["type"], event["reason"], event["count"]) for event in events] == [("Warning", "SubmitFailed", 2)]
    assert share["tasks"] == {}
