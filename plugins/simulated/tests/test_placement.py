"""Capacity accounting and first-fit placement of simulated clusters."""

from __future__ import annotations

from typing import Any

import pytest

# Two CPU nodes of 4 CPUs and 8 GiB, then a GPU node with 2 A100 and 2 T4.
NODES = [
    {"name": "cpu-a", "cpus": 4, "memory": "8Gi", "labels": {"pool": "cpu"}},
    {"name": "cpu-b", "cpus": 4, "memory": "8Gi", "labels": {"pool": "cpu"}},
    {"name": "gpu-c", "cpus": 8, "memory": "32Gi", "A100": 2, "T4": 2, "labels": {"pool": "gpu"}},
]


def node_of(status, index: int) -> str:
    """Node named in a Pending (Starting) or Running replica's message."""
    message = status.tasks[str(index)].message
    return message.rsplit(" ", 1)[-1]


# (id, per-replica request, replicas, expected node of each replica in index order; None = unschedulable).
FIRST_FIT_CASES: list[tuple[str, dict[str, Any], int, list[str | None]]] = [
    # 4 CPUs per node: cpu-a takes replicas 0-3, cpu-b 4-7, gpu-c (8 CPUs) 8-15, then nothing is left.
    ("one-cpu-fills-in-order", {"cpus": 1}, 17, ["cpu-a"] * 4 + ["cpu-b"] * 4 + ["gpu-c"] * 8 + [None]),
    # 3 CPUs: one per CPU node (1 CPU left on each), two on gpu-c (8 - 2 * 3 = 2 left).
    ("leftover-too-small", {"cpus": 3}, 5, ["cpu-a", "cpu-b", "gpu-c", "gpu-c", None]),
    # 6 GiB of memory each: one per CPU node, then five on gpu-c (5 * 6 = 30 of 32 GiB).
    (
        "memory-bound",
        {"cpus": 0.5, "memory": "6Gi"},
        8,
        ["cpu-a", "cpu-b", "gpu-c", "gpu-c", "gpu-c", "gpu-c", "gpu-c", None],
    ),
    # Typed GPUs only exist on gpu-c: two A100 replicas fit, a third does not.
    ("accelerator-type", {"cpus": 1, "A100": 1}, 3, ["gpu-c", "gpu-c", None]),
    # Untyped GPUs count against the 4 GPUs of gpu-c.
    ("untyped-gpus", {"cpus": 1, "gpus": 2}, 3, ["gpu-c", "gpu-c", None]),
    # Larger than any node: never placed.
    ("larger-than-any-node", {"cpus": 16}, 1, [None]),
    ("disk-nowhere", {"cpus": 1, "disk": "1Gi"}, 1, [None]),
]


@pytest.mark.parametrize(
    ("request_", "replicas", "expected"), [case[1:] for case in FIRST_FIT_CASES], ids=[c[0] for c in FIRST_FIT_CASES]
)
async def test_first_fit_placement(make_manager, make_job, make_unit, request_, replicas, expected):
    manager = make_manager(nodes=NODES, pending_seconds=5)
    status = await manager.submit(make_unit(make_job(replicas=replicas, resources=request_)))

    observed = []
    for index in range(replicas):
        task = status.tasks[str(index)]
        observed.append(node_of(status, index) if task.reason == "Starting" else None)
    assert observed == expected


async def test_unschedulable_reason_and_message(make_manager, make_job, make_unit):
    manager = make_manager(nodes=NODES)
    status = await manager.submit(make_unit(make_job(replicas=1, resources={"cpus": 16})))

    task = status.tasks["0"]
    assert task.state == "Pending"
    assert task.reason == "Unschedulable"
    assert task.message == "0/3 nodes can hold cpus=16 even when empty; the replica will never start here"


async def test_unschedulable_waits_for_capacity_message(make_manager, make_job, make_unit):
    manager = make_manager(nodes=NODES, run_seconds=10)
    await manager.submit(make_unit(make_job("big", resources={"cpus": 8, "memory": "16Gi"})))
    status = await manager.submit(make_unit(make_job("second", resources={"cpus": 8, "memory": "16Gi"})))

    assert status.tasks["0"].reason == "Unschedulable"
    assert status.tasks["0"].message == "0/3 nodes have cpus=8, memory=16Gi free; waiting for running replicas to end"


async def test_nodes_report_capacity_and_labels(make_manager):
    manager = make_manager(nodes=NODES)

    nodes = await manager.nodes()

    assert list(nodes) == ["cpu-a", "cpu-b", "gpu-c"]
    gpu = nodes["gpu-c"]
    assert gpu.capacity.cpus == 8
    assert gpu.capacity.memory == 32768
    assert gpu.capacity.gpus == 4
    assert gpu.capacity.accelerators == {"A100": 2, "T4": 2}
    assert gpu.labels == {"pool": "gpu"}
    assert gpu.allocatable == gpu.capacity


async def test_allocatable_counts_starting_and_running(make_manager, make_job, make_unit, clock):
    # pending_seconds 2: replicas hold their node while Starting, and keep holding it while Running.
    manager = make_manager(nodes=NODES, pending_seconds=2, run_seconds=10)
    await manager.submit(make_unit(make_job(replicas=2, resources={"cpus": 3, "memory": "2Gi", "A100": 1})))

    starting = await manager.nodes()
    clock.advance(2)
    running = await manager.nodes()

    # Both replicas land on gpu-c, the only node with A100s: 8 - 2 * 3 = 2 CPUs, 32 - 2 * 2 = 28 GiB,
    # 4 - 2 = 2 GPUs of which 0 A100 and 2 T4 are left.
    for report in (starting, running):
        free = report["gpu-c"].allocatable
        assert free.cpus == 2
        assert free.memory == 28 * 1024
        assert free.gpus == 2
        assert free.accelerators == {"T4": 2}
        assert report["cpu-a"].allocatable == report["cpu-a"].capacity


async def test_allocatable_freed_when_replicas_end(make_manager, make_job, make_unit, clock):
    manager = make_manager(nodes=NODES, run_seconds=10)
    await manager.submit(make_unit(make_job(replicas=2, resources={"cpus": 4})))
    assert (await manager.nodes())["cpu-b"].allocatable.cpus == 0

    clock.advance(10)
    nodes = await manager.nodes()

    assert all(node.allocatable == node.capacity for node in nodes.values())


async def test_waiting_replica_placed_when_capacity_frees(make_manager, make_job, make_unit, clock):
    manager = make_manager(node={"cpus": 4, "memory": "8Gi"}, run_seconds=10)
    first = make_unit(make_job("first", resources={"cpus": 4}))
    second = make_unit(make_job("second", resources={"cpus": 4}))
    await manager.submit(first)
    await manager.submit(second)

    clock.advance(9.5)
    waiting = (await manager.statuses())[second.key].tasks["0"]
    clock.advance(0.5)
    started = (await manager.statuses())[second.key].tasks["0"]

    assert (waiting.state, waiting.reason) == ("Pending", "Unschedulable")
    assert started.state == "Running"


async def test_placement_time_independent_of_polling(make_manager, make_job, make_unit, clock):
    # The waiting replica starts when the first one ends (t=10), though no call observes the cluster
    # before t=19.9. It runs 10 s, so at t=19.9 it is still Running and at t=20 it has Succeeded.
    manager = make_manager(node={"cpus": 4, "memory": "8Gi"}, run_seconds=10)
    await manager.submit(make_unit(make_job("first", resources={"cpus": 4})))
    second = make_unit(make_job("second", resources={"cpus": 4}))
    await manager.submit(second)

    clock.advance(19.9)
    before = (await manager.statuses())[second.key].tasks["0"].state
    clock.advance(0.1)
    after = (await manager.statuses())[second.key].tasks["0"].state

    assert before == "Running"
    assert after == "Succeeded"


async def test_small_replica_not_blocked_by_large(make_manager, make_job, make_unit):
    # The 8-CPU job waits, but the 1-CPU job submitted after it fits on the 4-CPU node at once.
    manager = make_manager(node={"cpus": 4, "memory": "8Gi"}, pending_seconds=1)
    large = await manager.submit(make_unit(make_job("large", resources={"cpus": 8})))
    small = await manager.submit(make_unit(make_job("small", resources={"cpus": 1})))

    assert large.tasks["0"].reason == "Unschedulable"
    assert small.tasks["0"].reason == "Starting"


async def test_waiting_work_placed_in_submission_order(make_manager, make_job, make_unit, clock):
    # One 4-CPU node busy until t=10; two 4-CPU jobs wait. The earlier submission gets the node.
    manager = make_manager(node={"cpus": 4, "memory": "8Gi"}, run_seconds=10)
    await manager.submit(make_unit(make_job("busy", resources={"cpus": 4})))
    earlier = make_unit(make_job("earlier", resources={"cpus": 4}))
    later = make_unit(make_job("later", resources={"cpus": 4}))
    await manager.submit(earlier)
    await manager.submit(later)

    clock.advance(10)
    statuses = await manager.statuses()

    assert statuses[earlier.key].tasks["0"].state == "Running"
    assert statuses[later.key].tasks["0"].reason == "Unschedulable"


async def test_replicas_of_share_use_global_indices(make_manager, make_job, make_unit):
    manager = make_manager(node_count=2)
    job = make_job(replicas=10)

    status = await manager.submit(make_unit(job, replicas=3, offset=7))

    assert list(status.tasks) == ["7", "8", "9"]


async def test_share_with_gaps_in_indices(make_manager, make_job, make_unit):
    # After a re-placement a share may hold non-contiguous replicas, such as 1 and 4 of 6.
    manager = make_manager(node_count=2)

    status = await manager.submit(make_unit(make_job(replicas=6), indices=(4, 1)))

    assert list(status.tasks) == ["1", "4"]
