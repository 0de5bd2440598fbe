"""Task state transitions of simulated replicas on an injected clock: success, failure, restart
policies with backoff, per-Job settings, and independence from how often the cluster is polled."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skyshift_core.cluster_manager import ClusterManagerError, WorkUnit
from skyshift_core.objects import Job
from skyshift_simulated import ManualClock, SimulatedClusterManager, clear_registry

# (time, state, reason, restarts, exit_code) of replica 0.
Checkpoint = tuple[float, str, str, int, int | None]

# Each case: id, restart_policy, cluster config beyond the node, the Job's own simulated settings,
# and checkpoints in time order. Unless a case sets them: run_seconds 10, pending_seconds 0,
# restart_backoff_seconds 1 (restart n waits 2**(n-1) s), max_restarts 3.
TIMELINES: list[tuple[str, str, dict[str, Any], dict[str, Any] | None, list[Checkpoint]]] = [
    (
        "never-succeeds",
        "Never",
        {"pending_seconds": 2},
        None,
        # Starts at t=2, ends at 2 + 10 = 12.
        [
            (0, "Pending", "Starting", 0, None),
            (2, "Running", "", 0, None),
            (11.9, "Running", "", 0, None),
            (12, "Succeeded", "Completed", 0, 0),
            (100, "Succeeded", "Completed", 0, 0),
        ],
    ),
    (
        "never-fails",
        "Never",
        {"fail_replicas": [0]},
        None,
        [(0, "Running", "", 0, None), (10, "Failed", "Error", 0, 1), (50, "Failed", "Error", 0, 1)],
    ),
    (
        "on-failure-gives-up-after-limit",
        "OnFailure",
        {"fail_replicas": [0]},
        None,
        # Attempts run 10 s and backoffs are 1, 2 and 4 s. So: fail at 10, restart at 11, fail at 21,
        # restart at 23, fail at 33, restart at 37, and fail at 47 after 3 restarts, the limit.
        [
            (0, "Running", "", 0, None),
            (10, "Running", "BackOff", 0, 1),
            (11, "Running", "", 1, None),
            (21, "Running", "BackOff", 1, 1),
            (22.9, "Running", "BackOff", 1, 1),
            (23, "Running", "", 2, None),
            (33, "Running", "BackOff", 2, 1),
            (37, "Running", "", 3, None),
            (46.9, "Running", "", 3, None),
            (47, "Failed", "BackoffLimitExceeded", 3, 1),
        ],
    ),
    (
        "on-failure-recovers",
        "OnFailure",
        {"fail_replicas": {"0": 1}},
        None,
        # Only the first attempt fails: restart at 11, success at 21.
        [(10, "Running", "BackOff", 0, 1), (11, "Running", "", 1, None), (21, "Succeeded", "Completed", 1, 0)],
    ),
    (
        "on-failure-without-restarts",
        "OnFailure",
        {"fail_replicas": [0], "max_restarts": 0},
        None,
        [(10, "Failed", "BackoffLimitExceeded", 0, 1)],
    ),
    (
        "on-failure-succeeds",
        "OnFailure",
        {},
        None,
        [(9.9, "Running", "", 0, None), (10, "Succeeded", "Completed", 0, 0)],
    ),
    (
        "always-runs-until-deleted",
        "Always",
        {"pending_seconds": 1},
        None,
        [(0, "Pending", "Starting", 0, None), (1, "Running", "", 0, None), (1_000_000, "Running", "", 0, None)],
    ),
    (
        "always-restarts-past-limit",
        "Always",
        {"fail_replicas": [0]},
        None,
        # Same timeline as OnFailure up to t=47, but the limit does not apply: backoff 8 s, restart 4 at 55.
        [
            (37, "Running", "", 3, None),
            (47, "Running", "BackOff", 3, 1),
            (55, "Running", "", 4, None),
        ],
    ),
    (
        "always-recovers",
        "Always",
        {"fail_replicas": {"0": 2}},
        None,
        # Fails at 10 and 21, restarts at 11 and 23, then runs for good.
        [(21, "Running", "BackOff", 1, 1), (23, "Running", "", 2, None), (10_000, "Running", "", 2, None)],
    ),
    (
        "backoff-capped",
        "OnFailure",
        {"fail_replicas": [0], "restart_backoff_seconds": 200},
        None,
        # Fail at 10, restart after 200 s at 210, fail at 220; the next backoff of 400 s is capped
        # at 300 s, so restart 2 comes at 520.
        [(210, "Running", "", 1, None), (519.9, "Running", "BackOff", 1, 1), (520, "Running", "", 2, None)],
    ),
    (
        "zero-run-seconds",
        "Never",
        {"run_seconds": 0},
        None,
        [(0, "Succeeded", "Completed", 0, 0)],
    ),
    (
        "job-run-seconds",
        "Never",
        {},
        {"run_seconds": 3, "pending_seconds": 1},
        [(0.9, "Pending", "Starting", 0, None), (1, "Running", "", 0, None), (4, "Succeeded", "Completed", 0, 0)],
    ),
    (
        "job-fail-replicas",
        "Never",
        {},
        {"fail_replicas": [0]},
        [(10, "Failed", "Error", 0, 1)],
    ),
    (
        "job-clears-cluster-failures",
        "Never",
        {"fail_replicas": [0]},
        {"fail_replicas": []},
        [(10, "Succeeded", "Completed", 0, 0)],
    ),
]


@pytest.mark.parametrize(
    ("policy", "config", "backend", "checkpoints"), [case[1:] for case in TIMELINES], ids=[c[0] for c in TIMELINES]
)
async def test_replica_timeline(make_manager, make_job, make_unit, clock, policy, config, backend, checkpoints):
    manager = make_manager(**{"run_seconds": 10, **config})
    unit = make_unit(make_job(restart_policy=policy, backend=backend))
    await manager.submit(unit)

    for time, state, reason, restarts, exit_code in checkpoints:
        clock.now = time
        task = (await manager.statuses())[unit.key].tasks["0"]
        observed = (time, task.state, task.reason, task.restarts, task.exit_code)
        assert observed == (time, state, reason, restarts, exit_code)


async def test_backoff_message(make_manager, make_job, make_unit, clock):
    manager = make_manager(run_seconds=10, fail_replicas=[0])
    unit = make_unit(make_job(restart_policy="OnFailure"))
    await manager.submit(unit)

    clock.advance(10)
    task = (await manager.statuses())[unit.key].tasks["0"]

    assert task.message == "exited with code 1; restart 1 of 3 in 1s"


async def test_limit_message(make_manager, make_job, make_unit, clock):
    manager = make_manager(run_seconds=10, fail_replicas=[0], max_restarts=1)
    unit = make_unit(make_job(restart_policy="OnFailure"))
    await manager.submit(unit)

    # Fail at 10, restart at 11, fail at 21 with the one allowed restart used.
    clock.advance(21)
    task = (await manager.statuses())[unit.key].tasks["0"]

    assert task.message == "exited with code 1 after 1 restarts; the limit is 1"


async def test_fail_replicas_are_global_indices(make_manager, make_job, make_unit, clock):
    # This cluster runs replicas 2 and 3 of a 4-replica job. Of those, only global replica 3 is set to fail.
    manager = make_manager(run_seconds=5, fail_replicas=[1, 3])
    unit = make_unit(make_job(replicas=4), replicas=2, offset=2)
    await manager.submit(unit)

    clock.advance(5)
    tasks = (await manager.statuses())[unit.key].tasks

    assert tasks["2"].state == "Succeeded"
    assert tasks["3"].state == "Failed"
    assert tasks["3"].exit_code == 1


async def test_statuses_lists_every_share(make_manager, make_job, make_unit):
    manager = make_manager()
    first = make_unit(make_job("first"))
    second = make_unit(make_job("second"))
    await manager.submit(first)
    await manager.submit(second)

    statuses = await manager.statuses()

    assert sorted(statuses) == sorted([first.key, second.key])
    assert statuses[first.key].manager_job_ids == ["sim-1"]
    assert statuses[second.key].manager_job_ids == ["sim-2"]


@pytest.mark.parametrize(
    ("backend", "message"),
    [
        ({"run_second": 3}, "unknown field 'run_second' in spec.backend.simulated (did you mean 'run_seconds'?)"),
        ({"run_seconds": -1}, "invalid spec.backend.simulated.run_seconds -1: expected a finite number of at least 0"),
        ({"fail_replicas": "0"}, "invalid spec.backend.simulated.fail_replicas '0'"),
    ],
    ids=["unknown-field", "negative-run-seconds", "bad-fail-replicas"],
)
async def test_invalid_job_settings_rejected(make_manager, make_job, make_unit, backend, message):
    manager = make_manager()
    unit = make_unit(make_job(backend=backend))

    status = await manager.submit(unit)

    assert status.rejection is not None
    assert status.rejection.startswith("job default/train: ")
    assert message in status.rejection
    assert {index: task.reason for index, task in status.tasks.items()} == {"0": "SubmitRejected"}
    assert unit.key not in await manager.statuses()


@pytest.mark.parametrize("indices", [(-1,), (0, 2, 0)], ids=["negative", "repeated"])
async def test_invalid_replica_indices_rejected(make_manager, make_job, indices):
    manager = make_manager()
    job = make_job()
    unit = WorkUnit(job=job, cluster="sim", replica_indices=indices, total_replicas=1, generation=1)

    with pytest.raises(ClusterManagerError, match="must be distinct and not negative") as caught:
        await manager.submit(unit)

    assert caught.value.retryable is False


# ---------------------------------------------------------------------------------------------
# Property: polling does not change the outcome, and capacity is never overcommitted
# ---------------------------------------------------------------------------------------------

JOB_SPECS = st.lists(
    st.fixed_dictionaries(
        {
            "cpus": st.integers(min_value=1, max_value=4),
            "replicas": st.integers(min_value=1, max_value=4),
            "policy": st.sampled_from(["Never", "OnFailure", "Always"]),
            "fail": st.lists(st.integers(min_value=0, max_value=3), max_size=2),
            "run_seconds": st.sampled_from([0, 1, 2.5, 7]),
            "submit_at": st.sampled_from([0, 0.5, 3, 8]),
        }
    ),
    min_size=1,
    max_size=5,
)
POLL_TIMES = st.lists(st.floats(min_value=0, max_value=60, allow_nan=False), max_size=15)


def property_job(index: int, spec: dict[str, Any]) -> WorkUnit:
    job = Job.model_validate(
        {
            "metadata": {"name": f"job-{index}", "namespace": "default", "uid": f"uid-{index}"},
            "spec": {
                "replicas": spec["replicas"],
                "resources": {"cpus": spec["cpus"]},
                "restart_policy": spec["policy"],
                "backend": {"simulated": {"run_seconds": spec["run_seconds"], "fail_replicas": spec["fail"]}},
            },
        }
    )
    return WorkUnit(job, "sim", tuple(range(spec["replicas"])), spec["replicas"], 1)


async def replay(specs: list[dict[str, Any]], poll_times: list[float], name: str) -> tuple[dict, list]:
    """Submit the jobs at their times, polling at `poll_times` in between; return the statuses and
    logs at t=60. Each poll checks that the replicas holding nodes fit in the cluster's capacity."""
    clock = ManualClock()
    config = {"node_count": 2, "node": {"cpus": 4, "memory": "8Gi"}, "pending_seconds": 0.5, "max_restarts": 2}
    manager = SimulatedClusterManager(name, config, clock=clock)
    units = [property_job(index, spec) for index, spec in enumerate(specs)]
    requests = {unit.key: unit.job.spec.resources.cpus for unit in units}
    actions = sorted(
        [(spec["submit_at"], 0, index) for index, spec in enumerate(specs)]
        + [(time, 1, -1) for time in poll_times]
        + [(60.0, 1, -1)]
    )

    for time, kind, index in actions:
        clock.now = time
        if kind == 0:
            await manager.submit(units[index])
            continue
        statuses = await manager.statuses()
        nodes = await manager.nodes()
        cpus_in_use = sum(
            requests[key]
            for key, status in statuses.items()
            for task in status.tasks.values()
            if task.reason == "Starting" or task.state == "Running"
        )
        capacity = sum(node.capacity.cpus for node in nodes.values())
        allocatable = sum(node.allocatable.cpus for node in nodes.values())
        assert cpus_in_use <= capacity
        assert capacity - allocatable == cpus_in_use

    final = {key: {i: t.model_dump() for i, t in s.tasks.items()} for key, s in (await manager.statuses()).items()}
    logs = []
    for unit in units:
        logs.extend([line async for line in manager.logs(unit.key)])
    # Log lines name the cluster; compare them without it.
    return final, [(replica, text.replace(f" on {name}:", ":")) for replica, text in logs]


@settings(max_examples=60, deadline=None)
@given(specs=JOB_SPECS, poll_times=POLL_TIMES)
def test_outcome_independent_of_polling(specs, poll_times):
    clear_registry()
    polled = asyncio.run(replay(specs, poll_times, "polled"))
    unpolled = asyncio.run(replay(specs, [], "unpolled"))
    clear_registry()

    assert polled == unpolled
