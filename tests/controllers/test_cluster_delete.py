"""Deleting a Cluster: its work is stopped before it goes, and its Jobs' replicas move or wait."""

from __future__ import annotations

from skyshift_core.controllers import skylets
from skyshift_core.controllers.skylets import CLEANUP_FINALIZER
from skyshift_core.errors import NotFoundError
from skyshift_core.testing.controlplane import simulated_cluster, wait_for, wait_for_ready_clusters

LONG_JOB = {"kind": "Job", "metadata": {"name": "long"}, "spec": {"run": "serve", "restart_policy": "Always"}}


async def job_status(client, name: str) -> dict:
    return (await client.get("Job", name, "default"))["status"]


async def cluster_gone(client, name: str) -> bool:
    try:
        await client.get("Cluster", name)
    except NotFoundError:
        return True
    return False


async def not_ready(client, name: str) -> bool:
    return (await client.get("Cluster", name))["status"]["phase"] != "READY"


async def running_on(client, name: str, placement: dict) -> dict:
    async def placed():
        status = await job_status(client, name)
        return status if status["phase"] == "Running" and status["placement"] == placement else None

    return await wait_for(placed)


async def job_running_on(client, *, unreachable: bool = False) -> None:
    """Attach simulated cluster a and run LONG_JOB on it; with `unreachable`, then cut a off."""
    await client.create(simulated_cluster("a"))
    await wait_for_ready_clusters(client, 1)
    await client.create(LONG_JOB)
    await running_on(client, "long", {"a": 1})
    if unreachable:
        # Through the config, since every new manager of the cluster applies it again.
        await client.patch("Cluster", "a", {"spec": {"config": {"unreachable": True}}})
        await wait_for(lambda: not_ready(client, "a"))


async def test_cluster_gets_cleanup_finalizer(client, control_plane):
    control_plane()
    await client.create(simulated_cluster("a"))
    await wait_for_ready_clusters(client, 1)

    async def finalized():
        return CLEANUP_FINALIZER in (await client.get("Cluster", "a"))["metadata"]["finalizers"]

    assert await wait_for(finalized)


async def test_delete_stops_work_and_job_waits(client, control_plane):
    from skyshift_simulated import registered_cluster

    control_plane()
    await job_running_on(client)
    assert registered_cluster("a").statuses()

    await client.delete("Cluster", "a")

    assert await wait_for(lambda: cluster_gone(client, "a"))
    assert registered_cluster("a").statuses() == {}

    async def waiting():
        status = await job_status(client, "long")
        return status if status["placement"] == {} and status["phase"] == "Pending" else None

    status = await wait_for(waiting)
    assert status["clusters"] == {}
    events = (await client.list("Event", "default"))["items"]
    stopped = [event for event in events if event["reason"] == "ReplicasStopped"]
    assert [event["message"] for event in stopped] == ["stopped replicas [0] on cluster a, which is being deleted"]
    assert stopped[0]["involved_object"]["name"] == "long"
    scheduled = {condition["type"]: condition for condition in status["conditions"]}["Scheduled"]
    assert scheduled["status"] == "False"


async def test_delete_moves_replicas_elsewhere(client, control_plane):
    from skyshift_simulated import registered_cluster

    control_plane()
    await job_running_on(client)
    await client.create(simulated_cluster("b"))
    await wait_for_ready_clusters(client, 2)

    await client.delete("Cluster", "a")

    status = await running_on(client, "long", {"b": 1})
    assert await wait_for(lambda: cluster_gone(client, "a"))
    assert registered_cluster("a").statuses() == {}
    assert len(registered_cluster("b").statuses()) == 1
    scheduled = {condition["type"]: condition for condition in status["conditions"]}["Scheduled"]
    assert "moved off a" in scheduled["message"]


async def test_unreachable_backend_keeps_cluster(client, control_plane, monkeypatch):
    from skyshift_simulated import registered_cluster

    monkeypatch.setattr(skylets, "CLEANUP_RETRY_MAX", 0.5)

    control_plane()
    await job_running_on(client, unreachable=True)

    await client.delete("Cluster", "a")

    async def cleanup_failed():
        cluster = await client.get("Cluster", "a")
        conditions = {condition["type"]: condition for condition in cluster["status"]["conditions"]}
        return cluster if conditions["Ready"]["reason"] == "CleanupFailed" else None

    cluster = await wait_for(cleanup_failed)
    ready = {condition["type"]: condition for condition in cluster["status"]["conditions"]}["Ready"]
    assert cluster["metadata"]["deletion_timestamp"]
    assert "skyshift patch cluster a -p" in ready["message"]
    assert registered_cluster("a").statuses()

    registered_cluster("a").reachable = True

    assert await wait_for(lambda: cluster_gone(client, "a"))
    assert registered_cluster("a").statuses() == {}


async def test_removed_finalizer_ends_cleanup(client, control_plane):
    from skyshift_simulated import registered_cluster

    control_plane()
    await job_running_on(client, unreachable=True)
    await client.delete("Cluster", "a")

    await client.patch("Cluster", "a", {"metadata": {"finalizers": None}})

    assert await wait_for(lambda: cluster_gone(client, "a"))
    registered_cluster("a").reachable = True
    # The work stays, as the user chose; a Cluster attached again under the name deletes it.
    assert registered_cluster("a").statuses()


async def test_cluster_never_reached_is_deleted_at_once(client, control_plane):
    control_plane()
    await client.create(simulated_cluster("never", unreachable=True))

    async def unreachable():
        cluster = await client.get("Cluster", "never")
        finalized = CLEANUP_FINALIZER in cluster["metadata"]["finalizers"]
        return cluster if finalized and cluster["status"]["phase"] == "ERROR" else None

    cluster = await wait_for(unreachable)
    assert cluster["status"]["observed_time"] is None
    # The first report counts as a transition, so the events give the reason the Cluster is not ready.
    events = (await client.list("Event", "default"))["items"]
    reasons = [event["reason"] for event in events if event["involved_object"]["name"] == "never"]
    assert reasons == ["ClusterNotReady"]

    await client.delete("Cluster", "never")

    assert await wait_for(lambda: cluster_gone(client, "never"))
