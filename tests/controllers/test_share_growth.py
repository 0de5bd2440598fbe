"""A share that grows keeps its running submission: scaling up and moving replicas restart nothing."""

from __future__ import annotations

from skyshift_core.testing.controlplane import (
    attach_simulated_clusters,
    simulated_cluster,
    wait_for,
    wait_for_ready_clusters,
)

SERVE = {"kind": "Job", "metadata": {"name": "serve"}, "spec": {"run": "serve", "restart_policy": "Always"}}


async def job_status(client) -> dict:
    return (await client.get("Job", "serve", "default"))["status"]


async def running(client, placement: dict, count: int) -> dict:
    async def check():
        status = await job_status(client)
        tasks = [task for share in status["clusters"].values() for task in share["tasks"].values()]
        ready = status["placement"] == placement and sum(task["state"] == "Running" for task in tasks) == count
        return status if ready else None

    return await wait_for(check)


async def test_scale_up_keeps_running_replica(client, control_plane):
    from skyshift_simulated import registered_cluster

    control_plane()
    await client.create(simulated_cluster("a"))
    await wait_for_ready_clusters(client, 1)
    await client.create(SERVE)
    await running(client, {"a": 1}, 1)
    (first_key,) = registered_cluster("a").statuses()

    await client.patch("Job", "serve", {"spec": {"replicas": 3}}, "default")

    status = await running(client, {"a": 3}, 3)
    keys = set(registered_cluster("a").statuses())
    assert first_key in keys
    assert len(keys) == 2
    assert [unit["replica_indices"] for unit in status["clusters"]["a"]["units"]] == [[0], [1, 2]]
    assert registered_cluster("a").statuses()[first_key].tasks["0"].restarts == 0


async def test_moved_replica_spares_healthy_share(client, control_plane):
    from skyshift_simulated import registered_cluster

    control_plane(grace_period=1.0)
    # Seen by the scheduler, so that spread places one replica on each: without that wait, about
    # one run in 50 placed both on a.
    await attach_simulated_clusters(client, "a", "b")
    await client.create({**SERVE, "spec": {**SERVE["spec"], "replicas": 2}})
    await running(client, {"a": 1, "b": 1}, 2)
    (key_on_a,) = registered_cluster("a").statuses()

    registered_cluster("b").reachable = False

    status = await running(client, {"a": 2}, 2)
    assert key_on_a in registered_cluster("a").statuses()
    assert len(status["clusters"]["a"]["units"]) == 2


async def test_scale_down_keeps_share_below_new_count(client, control_plane):
    from skyshift_simulated import registered_cluster

    control_plane()
    await client.create(simulated_cluster("a"))
    await client.create(simulated_cluster("b"))
    await wait_for_ready_clusters(client, 2)
    await client.create({**SERVE, "spec": {**SERVE["spec"], "replicas": 4}})
    await running(client, {"a": 2, "b": 2}, 4)
    (key_of_a,) = registered_cluster("a").statuses()

    await client.patch("Job", "serve", {"spec": {"replicas": 2}}, "default")

    status = await running(client, {"a": 2}, 2)

    async def b_stopped():
        return not registered_cluster("b").statuses()

    await wait_for(b_stopped)
    # Replicas 0 and 1 on a keep their submission; replicas 2 and 3 on b are stopped.
    assert list(registered_cluster("a").statuses()) == [key_of_a]
    assert status["clusters"]["a"]["replica_indices"] == [0, 1]


async def test_scale_down_recorded_in_events(client, control_plane):
    control_plane()
    await attach_simulated_clusters(client, "a", "b")
    await client.create({**SERVE, "spec": {**SERVE["spec"], "replicas": 4}})
    await running(client, {"a": 2, "b": 2}, 4)

    await client.patch("Job", "serve", {"spec": {"replicas": 2}}, "default")
    await running(client, {"a": 2}, 2)

    async def events():
        items = (await client.list("Event", "default"))["items"]
        mine = [event for event in items if event["involved_object"]["name"] == "serve"]
        messages = {(event["reason"], event["message"]) for event in mine}
        stopped = ("Stopped", "stopped replicas [2, 3] on cluster b, where the Job no longer places them")
        return messages if stopped in messages else None

    messages = await wait_for(events)
    assert ("Scheduled", "placed 2 on a (scaled from 4 to 2 replicas)") in messages


async def test_scale_down_names_replica_that_runs_again(client, control_plane):
    control_plane()
    await attach_simulated_clusters(client, "a", "b")
    await client.create({**SERVE, "spec": {**SERVE["spec"], "replicas": 4}})
    await running(client, {"a": 2, "b": 2}, 4)

    # Replicas 2 and 3 share one submission on b; replica 2 stays placed there.
    await client.patch("Job", "serve", {"spec": {"replicas": 3}}, "default")
    await running(client, {"a": 2, "b": 1}, 3)

    async def stopped_event():
        items = (await client.list("Event", "default"))["items"]
        return next((event for event in items if event["reason"] == "Stopped"), None)

    event = await wait_for(stopped_event)
    assert event["message"] == (
        "stopped replicas [2, 3] on cluster b: replica 3 is no longer placed here, and replica 2 runs again in a "
        "new submission, because a share is submitted whole"
    )
