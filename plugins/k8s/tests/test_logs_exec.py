"""Replica output (tail and follow) and commands in replicas, through the pods/log and pods/exec APIs."""

from __future__ import annotations

import asyncio

import pytest
from skyshift_core.cluster_manager import ClusterManagerError

SCRIPT = (
    "echo one-$SKYSHIFT_REPLICA_INDEX; echo two-$SKYSHIFT_REPLICA_INDEX; sleep 0.5; echo three-$SKYSHIFT_REPLICA_INDEX"
)


async def succeeded(manager, key: str):
    status = (await manager.statuses()).get(key)
    return status is not None and all(task.state == "Succeeded" for task in status.tasks.values())


async def running(manager, key: str):
    status = (await manager.statuses()).get(key)
    return status is not None and all(task.state == "Running" for task in status.tasks.values())


async def test_logs_tail_keeps_last_lines_of_each_replica(make_manager, make_job, make_unit, eventually):
    manager = await make_manager()
    unit = make_unit(make_job(replicas=4, run=SCRIPT), (0, 2))
    await manager.submit(unit)
    await eventually(lambda: succeeded(manager, unit.key))

    everything = [entry async for entry in manager.logs(unit.key)]
    tail = [entry async for entry in manager.logs(unit.key, tail=1)]
    one_replica = [entry async for entry in manager.logs(unit.key, replica=2, tail=2)]

    assert sorted(everything) == sorted(
        (index, f"{word}-{index}") for index in (0, 2) for word in ("one", "two", "three")
    )
    # Time order: each replica's lines stay in their order.
    assert [line for index, line in everything if index == 2] == ["one-2", "two-2", "three-2"]
    assert sorted(tail) == [(0, "three-0"), (2, "three-2")]
    assert one_replica == [(2, "two-2"), (2, "three-2")]


async def test_logs_follow_from_submit_to_end(make_manager, make_job, make_unit):
    manager = await make_manager()
    unit = make_unit(make_job(replicas=2, run=SCRIPT))
    await manager.submit(unit)

    async def follow():
        return [entry async for entry in manager.logs(unit.key, follow=True)]

    lines = await asyncio.wait_for(follow(), timeout=20)

    assert [line for index, line in lines if index == 0] == ["one-0", "two-0", "three-0"]
    assert [line for index, line in lines if index == 1] == ["one-1", "two-1", "three-1"]


async def test_logs_follow_with_tail_of_running_replica(make_manager, make_job, make_unit, eventually):
    manager = await make_manager()
    unit = make_unit(make_job(run="echo a; echo b; echo c; sleep 1; echo d"))
    await manager.submit(unit)
    await eventually(lambda: running(manager, unit.key))

    async def follow():
        return [line async for _, line in manager.logs(unit.key, follow=True, tail=1)]

    lines = await asyncio.wait_for(follow(), timeout=20)

    assert lines == ["c", "d"]


async def test_logs_of_unknown_work_or_replica_fail(make_manager, make_job, make_unit):
    manager = await make_manager()
    unit = make_unit(make_job(replicas=3), (0, 1))
    await manager.submit(unit)

    with pytest.raises(ClusterManagerError, match="no work with key 'uid-missing-1'"):
        [entry async for entry in manager.logs("uid-missing-1")]
    with pytest.raises(ClusterManagerError, match="replica 2 does not run on Kubernetes cluster 'kube'"):
        [entry async for entry in manager.logs(unit.key, replica=2)]


async def test_exec_returns_output_and_exit_code(make_manager, make_job, make_unit, eventually):
    manager = await make_manager()
    unit = make_unit(make_job(replicas=6, run="sleep 60"), (3, 5))
    await manager.submit(unit)
    await eventually(lambda: running(manager, unit.key))

    result = await manager.exec(unit.key, 5, ["sh", "-c", "echo $SKYSHIFT_JOB on $HOSTNAME; echo oops >&2; exit 4"])

    # Replica 5 is the share's second replica, so its pod has completion index 1.
    assert result.stdout.startswith("train on train-")
    assert result.stdout.endswith("-1\n")
    assert result.stderr == "oops\n"
    assert result.exit_code == 4


async def test_exec_with_stdin_and_tty(make_manager, make_job, make_unit, eventually):
    manager = await make_manager()
    unit = make_unit(make_job("web", run="sleep infinity", restart_policy="Always"))
    await manager.submit(unit)
    await eventually(lambda: running(manager, unit.key))

    echoed = await manager.exec(unit.key, 0, ["cat"], stdin="hello\n")
    merged = await manager.exec(unit.key, 0, ["sh", "-c", "echo out; echo err >&2"], tty=True)

    assert (echoed.stdout, echoed.exit_code) == ("hello\n", 0)
    assert merged.stdout == "out\r\nerr\r\n"
    assert merged.stderr == ""


async def test_exec_in_finished_replica_fails(make_manager, make_job, make_unit, eventually):
    manager = await make_manager()
    unit = make_unit(make_job(run="true"))
    await manager.submit(unit)
    await eventually(lambda: succeeded(manager, unit.key))

    with pytest.raises(ClusterManagerError, match="its pod is in phase Succeeded") as raised:
        await manager.exec(unit.key, 0, ["true"])
    assert raised.value.retryable is False
