"""SimulatedClusterManager's contract: idempotent submit, delete, unreachable clusters, the
process-wide registry that survives a skylet restart, logs, and loading through the entry point."""

from __future__ import annotations

import pytest
from skyshift_core.cluster_manager import ClusterManagerError
from skyshift_core.plugins import CLUSTER_MANAGERS, load_driver
from skyshift_simulated import (
    SimulatedClusterManager,
    forget_cluster,
    registered_cluster,
)
from skyshift_simulated.manager import describe_indices

NODE = {"cpus": 4, "memory": "8Gi"}

# ---------------------------------------------------------------------------------------------
# Submit and delete
# ---------------------------------------------------------------------------------------------


async def test_submit_twice_creates_once(make_manager, make_job, make_unit, clock):
    manager = make_manager(run_seconds=10)
    unit = make_unit(make_job(replicas=2, resources={"cpus": 1}))

    first = await manager.submit(unit)
    clock.advance(3)
    second = await manager.submit(unit)

    assert second.manager_job_ids == first.manager_job_ids
    assert list(await manager.statuses()) == [unit.key]
    # Only the first submission uses capacity: 4 - 2 * 1 CPUs.
    assert (await manager.nodes())["node-0"].allocatable.cpus == 2


async def test_submit_returns_current_status(make_manager, make_job, make_unit, clock):
    manager = make_manager(run_seconds=10)
    unit = make_unit(make_job())
    await manager.submit(unit)

    clock.advance(10)
    again = await manager.submit(unit)

    assert again.tasks["0"].state == "Succeeded"


async def test_new_generation_is_new_work(make_manager, make_job, make_unit):
    manager = make_manager()
    job = make_job()

    await manager.submit(make_unit(job, generation=1))
    await manager.submit(make_unit(job, generation=2))

    assert sorted(await manager.statuses()) == ["uid-train-1", "uid-train-2"]


async def test_delete_frees_capacity(make_manager, make_job, make_unit):
    manager = make_manager()
    unit = make_unit(make_job(resources={"cpus": 4}))
    await manager.submit(unit)

    await manager.delete(unit.key)

    assert await manager.statuses() == {}
    node = (await manager.nodes())["node-0"]
    assert node.allocatable == node.capacity


async def test_delete_absent_key_succeeds(make_manager, make_job, make_unit):
    manager = make_manager()
    unit = make_unit(make_job())
    await manager.submit(unit)

    await manager.delete("never-submitted")
    await manager.delete(unit.key)
    await manager.delete(unit.key)

    assert await manager.statuses() == {}


async def test_delete_places_waiting_replicas(make_manager, make_job, make_unit):
    manager = make_manager(node=NODE, pending_seconds=1)
    always = make_unit(make_job("server", resources={"cpus": 4}, restart_policy="Always"))
    waiting = make_unit(make_job("waiting", resources={"cpus": 4}))
    await manager.submit(always)
    await manager.submit(waiting)

    await manager.delete(always.key)
    task = (await manager.statuses())[waiting.key].tasks["0"]

    assert (task.state, task.reason) == ("Pending", "Starting")


async def test_deleted_work_events_ignored(make_manager, make_job, make_unit, clock):
    # The deleted work's end event at t=10 must neither resurrect it nor free capacity twice.
    manager = make_manager(node=NODE, run_seconds=10)
    deleted = make_unit(make_job("deleted", resources={"cpus": 2}))
    server = make_unit(make_job("server", resources={"cpus": 4}, restart_policy="Always"))
    await manager.submit(deleted)
    await manager.delete(deleted.key)
    await manager.submit(server)

    clock.advance(20)

    assert list(await manager.statuses()) == [server.key]
    assert (await manager.nodes())["node-0"].allocatable.cpus == 0


# ---------------------------------------------------------------------------------------------
# Unreachable clusters
# ---------------------------------------------------------------------------------------------


async def test_health_ready(make_manager):
    health = await make_manager(node_count=3).health()

    assert health.ready is True
    assert health.message == "3 simulated nodes"


async def test_unreachable_from_config(make_manager, make_job, make_unit):
    manager = make_manager(unreachable=True)

    health = await manager.health()

    assert health.ready is False
    assert health.reason == "Unreachable"
    assert "set_reachable(True)" in health.message


CALLS = {
    "start": lambda manager, unit: manager.start(),
    "nodes": lambda manager, unit: manager.nodes(),
    "submit": lambda manager, unit: manager.submit(unit),
    "delete": lambda manager, unit: manager.delete(unit.key),
    "statuses": lambda manager, unit: manager.statuses(),
}


@pytest.mark.parametrize("call", list(CALLS))
async def test_unreachable_calls_raise(make_manager, make_job, make_unit, call):
    manager = make_manager(unreachable=True)

    with pytest.raises(ClusterManagerError, match="simulated cluster 'sim' is unreachable") as caught:
        await CALLS[call](manager, make_unit(make_job()))

    assert caught.value.retryable is True


async def test_unreachable_logs_raise(make_manager, make_job, make_unit):
    manager = make_manager()
    unit = make_unit(make_job())
    await manager.submit(unit)
    manager.set_reachable(False)

    with pytest.raises(ClusterManagerError, match="is unreachable"):
        [line async for line in manager.logs(unit.key)]


async def test_set_reachable_keeps_work_running(make_manager, make_job, make_unit, clock):
    # Losing the connection does not stop the cluster: the job still finishes at t=10.
    manager = make_manager(run_seconds=10)
    unit = make_unit(make_job())
    await manager.submit(unit)

    manager.set_reachable(False)
    clock.advance(15)
    assert (await manager.health()).ready is False
    manager.set_reachable(True)

    assert (await manager.health()).ready is True
    assert (await manager.statuses())[unit.key].tasks["0"].state == "Succeeded"


async def test_stop_succeeds_when_unreachable(make_manager):
    manager = make_manager(unreachable=True)

    await manager.stop()

    assert registered_cluster("sim") is manager.cluster


# ---------------------------------------------------------------------------------------------
# Registry: a restarted skylet in the same process finds its earlier work
# ---------------------------------------------------------------------------------------------


async def test_restarted_manager_finds_work(make_manager, make_job, make_unit, clock):
    first = make_manager(run_seconds=10)
    unit = make_unit(make_job(replicas=2, resources={"cpus": 2}))
    await first.submit(unit)

    # What a restarted skylet does: build the manager again from the Cluster's config, with no clock.
    restarted = SimulatedClusterManager("sim", first.config)
    again = await restarted.submit(unit)
    clock.advance(10)

    assert again.manager_job_ids == ["sim-1"]
    assert list(await restarted.statuses()) == [unit.key]
    # The registered cluster keeps the test's clock, so the work ends on it.
    assert (await restarted.statuses())[unit.key].tasks["0"].state == "Succeeded"


async def test_restart_applies_new_settings_to_new_work(make_manager, make_job, make_unit, clock):
    first = make_manager(run_seconds=10)
    old = make_unit(make_job("old"))
    await first.submit(old)

    restarted = SimulatedClusterManager("sim", {**first.config, "run_seconds": 2})
    new = make_unit(make_job("new"))
    await restarted.submit(new)
    clock.advance(2)
    statuses = await restarted.statuses()

    assert statuses[old.key].tasks["0"].state == "Running"
    assert statuses[new.key].tasks["0"].state == "Succeeded"


async def test_restart_with_unreachable_config(make_manager, make_job, make_unit):
    first = make_manager()
    await first.submit(make_unit(make_job()))

    SimulatedClusterManager("sim", {**first.config, "unreachable": True})

    assert (await first.health()).ready is False


async def test_new_node_layout_starts_empty(make_manager, make_job, make_unit):
    first = make_manager(node_count=1)
    await first.submit(make_unit(make_job()))

    changed = SimulatedClusterManager("sim", {"node_count": 2, "node": NODE})

    assert await changed.statuses() == {}
    assert registered_cluster("sim") is changed.cluster


async def test_forget_cluster_drops_work(make_manager, make_job, make_unit):
    first = make_manager()
    await first.submit(make_unit(make_job()))

    assert forget_cluster("sim") is True
    assert forget_cluster("sim") is False
    fresh = SimulatedClusterManager("sim", first.config)

    assert await fresh.statuses() == {}


async def test_clusters_isolated_by_name(make_manager, make_job, make_unit):
    east = make_manager("east")
    west = make_manager("west")

    await east.submit(make_unit(make_job()))

    assert await west.statuses() == {}
    assert registered_cluster("east") is not registered_cluster("west")


# ---------------------------------------------------------------------------------------------
# Logs
# ---------------------------------------------------------------------------------------------


async def test_logs_lines_in_time_order(make_manager, make_job, make_unit, clock):
    manager = make_manager(run_seconds=10, fail_replicas=[1])
    unit = make_unit(make_job(replicas=2, restart_policy="OnFailure"))
    await manager.submit(unit)
    clock.advance(21)

    lines = [line async for line in manager.logs(unit.key)]

    # Replica 1 fails at 10, restarts at 11 and fails again at 21.
    assert lines == [
        (0, "replica 0 on sim: started on node-0"),
        (1, "replica 1 on sim: started on node-0"),
        (0, "replica 0 on sim: finished with exit code 0"),
        (1, "replica 1 on sim: finished with exit code 1"),
        (1, "replica 1 on sim: restarting in 1s (restart 1 of 3)"),
        (1, "replica 1 on sim: restarted on node-0 (restart 1)"),
        (1, "replica 1 on sim: finished with exit code 1"),
        (1, "replica 1 on sim: restarting in 2s (restart 2 of 3)"),
    ]


async def test_logs_of_one_replica_with_tail(make_manager, make_job, make_unit, clock):
    manager = make_manager(run_seconds=10, fail_replicas=[1])
    unit = make_unit(make_job(replicas=2, restart_policy="OnFailure"))
    await manager.submit(unit)
    clock.advance(21)

    lines = [line async for line in manager.logs(unit.key, replica=1, tail=2)]

    assert lines == [
        (1, "replica 1 on sim: finished with exit code 1"),
        (1, "replica 1 on sim: restarting in 2s (restart 2 of 3)"),
    ]


async def test_logs_tail_per_replica(make_manager, make_job, make_unit, clock):
    manager = make_manager(run_seconds=10)
    unit = make_unit(make_job(replicas=2))
    await manager.submit(unit)
    clock.advance(10)

    lines = [line async for line in manager.logs(unit.key, tail=1)]

    assert lines == [
        (0, "replica 0 on sim: finished with exit code 0"),
        (1, "replica 1 on sim: finished with exit code 0"),
    ]


async def test_logs_follow_until_end(make_manager, make_job, make_unit, clock):
    manager = make_manager(run_seconds=10)
    manager.follow_poll_seconds = 0
    unit = make_unit(make_job())
    await manager.submit(unit)
    received = []

    async for line in manager.logs(unit.key, follow=True):
        received.append(line)
        # Each time a line arrives, let the simulated job run on to its end.
        clock.advance(10)

    assert received == [(0, "replica 0 on sim: started on node-0"), (0, "replica 0 on sim: finished with exit code 0")]


async def test_logs_follow_stops_on_delete(make_manager, make_job, make_unit):
    manager = make_manager()
    manager.follow_poll_seconds = 0
    unit = make_unit(make_job(restart_policy="Always"))
    await manager.submit(unit)
    received = []

    async for line in manager.logs(unit.key, follow=True):
        received.append(line)
        await manager.delete(unit.key)

    assert received == [(0, "replica 0 on sim: started on node-0")]


@pytest.mark.parametrize(
    ("key", "replica", "tail", "message"),
    [
        ("missing", None, None, "no work with key 'missing' on simulated cluster 'sim'"),
        (
            "uid-train-1",
            5,
            None,
            "replica 5 is not part of work 'uid-train-1' on simulated cluster 'sim', which contains replicas 0-1",
        ),
        ("uid-train-1", None, -1, "invalid tail -1"),
    ],
    ids=["unknown-key", "replica-of-other-share", "negative-tail"],
)
async def test_logs_rejected(make_manager, make_job, make_unit, key, replica, tail, message):
    manager = make_manager()
    await manager.submit(make_unit(make_job(replicas=2)))

    with pytest.raises(ClusterManagerError) as caught:
        [line async for line in manager.logs(key, replica, tail=tail)]

    assert message in str(caught.value)
    assert caught.value.retryable is False


@pytest.mark.parametrize(
    ("indices", "expected"),
    [
        ([], "no replicas"),
        ([3], "replica 3"),
        ([2, 0, 1], "replicas 0-2"),
        ([0, 1, 2, 5, 7, 8], "replicas 0-2, 5, 7-8"),
    ],
    ids=["empty", "one", "range", "ranges-and-single"],
)
def test_describe_indices(indices, expected):
    assert describe_indices(indices) == expected


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------


def test_entry_point_loads_manager():
    manager_class = load_driver(CLUSTER_MANAGERS, "simulated")

    assert manager_class is SimulatedClusterManager
    assert manager_class.supports_logs is True
