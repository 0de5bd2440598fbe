"""Control-plane recovery on simulated clusters: cluster loss and return, leader failover, restarts."""

from __future__ import annotations

import asyncio

from skyshift_core.testing.controlplane import (
    attach_simulated_clusters,
    simulated_cluster,
    wait_for,
    wait_for_ready_clusters,
)


async def job_status(client, name):
    return (await client.get("Job", name, "default"))["status"]


async def test_lost_cluster_replicas_move_and_stale_copies_are_deleted(client, control_plane):
    from skyshift_simulated import registered_cluster

    control_plane(grace_period=1.0)
    # Seen by the scheduler, so that spread places one replica on each: without that wait, about
    # one run in 50 placed both on a.
    await attach_simulated_clusters(client, "a", "b")
    await client.create({"kind": "Job", "metadata": {"name": "svc"}, "spec": {"replicas": 2, "run": "serve", "restart_policy": "Always"}})

    async def running_on_both():
        status = await job_status(client, "svc")
        return status if status["phase"] == "Running" and status["placement"] == {"a": 1, "b": 1} else None

    await wait_for(running_on_both)

    # b becomes unreachable: after the grace period its replica is placed on a.
    registered_cluster("b").reachable = False

    async def moved():
        status = await job_status(client, "svc")
        return status if status["placement"] == {"a": 2} else None

    status = await wait_for(moved)
    assert sorted(status["clusters"]["a"]["replica_indices"]) == [0, 1]
    scheduled = {c["type"]: c for c in status["conditions"]}["Scheduled"]
    assert "moved off b" in scheduled["message"]
    cluster_b = await client.get("Cluster", "b")
    assert cluster_b["status"]["phase"] == "ERROR"

    # b returns: its copy of the replica is deleted rather than run twice.
    assert registered_cluster("b").statuses()
    registered_cluster("b").reachable = True

    async def stale_copy_gone():
        return not registered_cluster("b").statuses()

    await wait_for(stale_copy_gone)
    assert (await job_status(client, "svc"))["placement"] == {"a": 2}


async def test_leader_failover(client, control_plane):
    first = control_plane()
    await client.create(simulated_cluster("a"))
    await wait_for_ready_clusters(client, 1)
    second = control_plane()

    async def holder():
        response = await client._send(client._json_request("GET", "/api/v1/leases/controller-manager", None))
        return response.get("holder")

    leader_identity = await wait_for(holder)
    managers = {manager.config.identity or "": (manager, task) for manager, task in control_plane.managers}
    assert leader_identity  # One of the two leads.

    # Stop whichever leads; the other takes over and schedules new work.
    for manager, task in control_plane.managers:
        manager.stop()
        await asyncio.wait_for(task, 15)
        break
    await client.create({"kind": "Job", "metadata": {"name": "after"}, "spec": {"run": "true", "restart_policy": "Never"}})

    async def succeeded():
        return (await job_status(client, "after"))["phase"] == "Succeeded"

    await wait_for(succeeded, timeout=30)
    assert first is not second


async def test_restart_mid_burst_loses_and_duplicates_nothing(client, control_plane):
    from skyshift_simulated import registered_cluster

    manager = control_plane()
    await client.create(simulated_cluster("a", cpus=64, run_seconds=30))
    await wait_for_ready_clusters(client, 1)
    for index in range(30):
        await client.create({"kind": "Job", "metadata": {"name": f"b-{index}"}, "spec": {"run": "true", "restart_policy": "Never"}})
        if index == 10:
            # Stop the controller manager mid-burst and start a fresh one.
            manager.stop()
            manager = control_plane()

    async def all_placed():
        items = (await client.list("Job", "default"))["items"]
        return items if all(item["status"]["placement"] for item in items) and len(items) == 30 else None

    items = await wait_for(all_placed, timeout=40)
    assert {item["status"]["placement_generation"] for item in items} == {1}

    async def all_submitted():
        statuses = registered_cluster("a").statuses()
        return statuses if len(statuses) == 30 else None

    statuses = await wait_for(all_submitted)
    uids = {item["metadata"]["uid"] for item in items}
    assert {key.rsplit("-", 1)[0] for key in statuses} == uids
