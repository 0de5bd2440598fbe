"""The Slurm cluster manager against real local Slurm clusters, in the access modes cli, ssh and rest.

Each test submits work through the manager and polls statuses() with a deadline, as the skylet
does, and checks Slurm's side with Slurm's own commands where that matters.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest
from skyshift_slurm.manager import SlurmClusterManager

from skyshift_core.cluster_manager import ClusterHealth, ClusterManagerError

pytestmark = pytest.mark.slurm_cluster

MODES = ("cli", "ssh", "rest")
# ssh runs the same commands and parsers as cli, only through a different transport, so checks of
# parsing and policy run in cli and rest, and ssh runs the checks that exercise the transport.
PARSER_MODES = ("cli", "rest")
# Slurm's shortest time limit is one minute, and slurmctld enforces it at its next periodic check.
TIME_LIMIT_DEADLINE = 150.0


def queue_names(cluster, pattern: str) -> list[str]:
    """Names of the jobs (array tasks collapsed) in a cluster's queue that contain `pattern`."""
    output = cluster.run(["squeue", "--states=all", "--noheader", "--format=%i|%j"]).stdout
    return [line.split("|", 1)[1] for line in output.splitlines() if pattern in line]


def slurm_state(cluster, job_id: str) -> str:
    return cluster.run(["squeue", "--states=all", "--noheader", "--array", "-j", job_id, "--format=%T"]).stdout.split()[
        0
    ]


@pytest.mark.parametrize("mode", MODES)
async def test_success_runs_every_replica(mode, make_manager, make_job, make_unit, wait_for, ended, output_root):
    manager = await make_manager("alpha", mode)
    job = make_job(
        "hello",
        'echo "replica=$SKYSHIFT_REPLICA_INDEX of=$SKYSHIFT_REPLICAS job=$SKYSHIFT_JOB greeting=$GREETING"',
        replicas=2,
        envs={"GREETING": "hi there"},
    )
    unit = make_unit(job, manager.name)

    submitted = await manager.submit(unit)
    status = await wait_for(manager, unit.key, ended)

    assert sorted(status.tasks) == ["0", "1"]
    assert [task.state for task in status.tasks.values()] == ["Succeeded", "Succeeded"]
    assert [task.exit_code for task in status.tasks.values()] == [0, 0]
    assert status.manager_job_ids == submitted.manager_job_ids
    output = Path(output_root / f"alpha-{mode}" / unit.key / "replica-1.out").read_text()
    assert output == "replica=1 of=2 job=hello greeting=hi there\n"


@pytest.mark.parametrize("mode", PARSER_MODES)
async def test_submit_warns_that_image_is_unused(mode, make_manager, make_job, make_unit):
    manager = await make_manager("alpha", mode)
    unit = make_unit(make_job("image", "true", image="python:3.11-slim"), manager.name)

    submitted = await manager.submit(unit)

    assert len(submitted.warnings) == 1
    assert "image 'python:3.11-slim' was not used" in submitted.warnings[0]


@pytest.mark.parametrize("mode", MODES)
async def test_failure_reports_exit_code(mode, make_manager, make_job, make_unit, wait_for, ended):
    manager = await make_manager("alpha", mode)
    unit = make_unit(make_job("fails", "echo failing; exit 3"), manager.name)

    await manager.submit(unit)
    task = (await wait_for(manager, unit.key, ended)).tasks["0"]

    assert task.state == "Failed"
    assert task.exit_code == 3
    assert task.reason == "Failed"
    assert "FAILED with exit code 3" in task.message


@pytest.mark.parametrize("mode", MODES)
async def test_delete_cancels_running_job(mode, make_manager, make_job, make_unit, wait_for, sites):
    manager = await make_manager("alpha", mode)
    unit = make_unit(make_job("cancel-me", "sleep 300"), manager.name)
    submitted = await manager.submit(unit)
    await wait_for(manager, unit.key, lambda status: status.tasks["0"].state == "Running")

    await manager.delete(unit.key)
    statuses = await manager.statuses()
    await manager.delete(unit.key)

    assert unit.key not in statuses
    deadline = time.monotonic() + 30
    while slurm_state(sites["alpha"], submitted.manager_job_ids[0]) != "CANCELLED":
        assert time.monotonic() < deadline, "the Slurm job was not cancelled"
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("mode", ("cli", "ssh"))
async def test_exec_runs_in_replica_job(mode, make_manager, make_job, make_unit, wait_for, sites, output_root):
    manager = await make_manager("alpha", mode)
    unit = make_unit(make_job("exec-me", "sleep 300", replicas=2, envs={"GREETING": "it's me"}), manager.name)
    await manager.submit(unit)
    script = 'echo job $SLURM_JOB_ID; cat; echo "$SKYSHIFT_REPLICA_INDEX $GREETING $PWD"; echo to stderr >&2; exit 3'
    try:
        await wait_for(manager, unit.key, lambda status: all(task.state == "Running" for task in status.tasks.values()))
        result = await manager.exec(unit.key, 1, ["sh", "-c", script], stdin="typed\n")
        tasks = sites["alpha"].run(["squeue", "--noheader", "--array", "--format=%K %A"]).stdout.split("\n")
    finally:
        await manager.delete(unit.key)

    # Replica 1 is array task 1, whose own Slurm job id the step runs in.
    job_ids = dict(line.split() for line in tasks if line.strip())
    # The command runs where the replica's own command runs, with its variables.
    work_dir = f"{output_root}/alpha-{mode}/{unit.key}"
    assert result.stdout == f"job {job_ids['1']}\ntyped\n1 it's me {work_dir}\n"
    assert result.stderr == "to stderr\n"
    assert result.exit_code == 3


async def test_exec_ended_replica_rejected(make_manager, make_job, make_unit, wait_for, ended):
    manager = await make_manager("alpha", "cli")
    unit = make_unit(make_job("exec-ended", "true"), manager.name)
    await manager.submit(unit)
    await wait_for(manager, unit.key, ended)

    expected = r"cannot run a command in replica 0 on Slurm cluster 'alpha-cli': "
    with pytest.raises(ClusterManagerError, match=expected) as caught:
        await manager.exec(unit.key, 0, ["true"])

    assert "commands run only in running replicas" in str(caught.value)
    assert caught.value.retryable is False


async def test_exec_through_rest_rejected(make_manager):
    manager = await make_manager("alpha", "rest")

    expected = "slurmrestd cannot start job steps; attach the cluster with interface cli or ssh"
    with pytest.raises(ClusterManagerError, match=expected):
        await manager.exec("uid-1", 0, ["true"])


@pytest.mark.parametrize("mode", PARSER_MODES)
async def test_cancel_keeps_work_and_output(mode, make_manager, make_job, make_unit, wait_for, output_root):
    manager = await make_manager("alpha", mode, restart_backoff_seconds=1)
    run = 'echo "hello from $SKYSHIFT_REPLICA_INDEX"; sleep 300'
    job = make_job("cancel-keep", run, replicas=2, restart_policy="OnFailure")
    unit = make_unit(job, manager.name)
    await manager.submit(unit)
    try:
        await wait_for(manager, unit.key, lambda status: all(task.state == "Running" for task in status.tasks.values()))
        await manager.cancel(unit.key)
        await wait_for(manager, unit.key, lambda status: all(task.state == "Failed" for task in status.tasks.values()))
        # OnFailure restarts a failed replica after 1 s here, but never a cancelled one.
        for _ in range(8):
            status = (await manager.statuses())[unit.key]
            await asyncio.sleep(0.5)
        lines = sorted([entry async for entry in manager.logs(unit.key)])
    finally:
        await manager.delete(unit.key)

    assert {index: (task.state, task.reason) for index, task in status.tasks.items()} == {
        "0": ("Failed", "Cancelled"),
        "1": ("Failed", "Cancelled"),
    }
    assert {task.restarts for task in status.tasks.values()} == {0}
    # The batch script's shell may add a line such as "Terminated" for the killed command.
    assert {(0, "hello from 0"), (1, "hello from 1")} <= set(lines)


@pytest.mark.parametrize("mode", PARSER_MODES)
async def test_waiting_job_shows_pending_reason(mode, make_manager, make_job, make_unit, wait_for):
    # beta has 2 CPUs: the first job takes both, so the second waits for resources.
    manager = await make_manager("beta", mode)
    blocker = make_unit(make_job("blocker", "sleep 300", resources={"cpus": 2, "memory": "64Mi"}), manager.name)
    waiting = make_unit(make_job("waiting", "true", resources={"cpus": 2, "memory": "64Mi"}), manager.name)
    try:
        await manager.submit(blocker)
        await wait_for(manager, blocker.key, lambda status: status.tasks["0"].state == "Running")
        await manager.submit(waiting)
        status = await wait_for(manager, waiting.key, lambda status: status.tasks["0"].reason not in ("", "Submitted"))
    finally:
        await manager.delete(blocker.key)
        await manager.delete(waiting.key)

    task = status.tasks["0"]
    assert task.state == "Pending"
    assert task.reason == "Resources"
    assert "waiting for resources" in task.message


@pytest.mark.parametrize("mode", MODES)
async def test_replicas_split_across_clusters(mode, make_manager, make_job, make_unit, wait_for, ended, output_root):
    # Replicas 0, 2 and 4 on alpha and 1 and 3 on beta: a share's indices may have gaps.
    alpha = await make_manager("alpha", mode)
    beta = await make_manager("beta", mode)
    job = make_job(
        "split",
        'echo "index=$SKYSHIFT_REPLICA_INDEX cluster=$SKYSHIFT_CLUSTER replicas=$SKYSHIFT_REPLICAS"',
        replicas=5,
        resources={"cpus": 0.5, "memory": "32Mi"},
    )
    shares = {alpha: make_unit(job, alpha.name, (0, 2, 4)), beta: make_unit(job, beta.name, (1, 3))}

    for manager, unit in shares.items():
        await manager.submit(unit)
    lines = {}
    for manager, unit in shares.items():
        status = await wait_for(manager, unit.key, ended)
        assert {task.state for task in status.tasks.values()} == {"Succeeded"}
        site = manager.name.split("-")[0]
        for index in unit.replica_indices:
            lines[index] = (output_root / f"{site}-{mode}" / unit.key / f"replica-{index}.out").read_text()

    assert lines == {
        0: f"index=0 cluster=alpha-{mode} replicas=5\n",
        1: f"index=1 cluster=beta-{mode} replicas=5\n",
        2: f"index=2 cluster=alpha-{mode} replicas=5\n",
        3: f"index=3 cluster=beta-{mode} replicas=5\n",
        4: f"index=4 cluster=alpha-{mode} replicas=5\n",
    }


@pytest.mark.parametrize("mode", MODES)
async def test_logs_marks_each_replica(mode, make_manager, make_job, make_unit, wait_for, ended):
    manager = await make_manager("alpha", mode)
    unit = make_unit(
        make_job("logs", 'for i in 1 2 3 4; do echo "line $i of $SKYSHIFT_REPLICA_INDEX"; done', replicas=2),
        manager.name,
    )
    await manager.submit(unit)
    await wait_for(manager, unit.key, ended)

    everything = [item async for item in manager.logs(unit.key)]
    last_two = [item async for item in manager.logs(unit.key, tail=2)]
    one_replica = [item async for item in manager.logs(unit.key, replica=1, tail=1)]

    assert sorted(everything) == [(index, f"line {i} of {index}") for index in (0, 1) for i in (1, 2, 3, 4)]
    assert sorted(last_two) == [(0, "line 3 of 0"), (0, "line 4 of 0"), (1, "line 3 of 1"), (1, "line 4 of 1")]
    assert one_replica == [(1, "line 4 of 1")]


@pytest.mark.parametrize("mode", MODES)
async def test_logs_follow_ends_with_job(mode, make_manager, make_job, make_unit):
    manager = await make_manager("alpha", mode)
    unit = make_unit(make_job("follow", "echo first; sleep 2; echo second"), manager.name)
    await manager.submit(unit)

    lines = await asyncio.wait_for(_collect(manager.logs(unit.key, follow=True)), 60)

    assert lines == [(0, "first"), (0, "second")]


@pytest.mark.parametrize("mode", PARSER_MODES)
async def test_logs_read_while_controller_down(mode, make_manager, make_job, make_unit, wait_for, ended, monkeypatch):
    """The output files stay readable when squeue fails, as it does while slurmctld is down."""
    manager = await make_manager("alpha", mode)
    unit = make_unit(make_job("outage", "echo kept"), manager.name)
    await manager.submit(unit)
    await wait_for(manager, unit.key, ended)

    async def controller_down():
        raise ClusterManagerError("slurm_load_jobs error: Unable to contact slurm controller (connect failure)")

    monkeypatch.setattr(manager.client, "list_jobs", controller_down)
    lines = [item async for item in manager.logs(unit.key)]

    assert lines == [(0, "kept")]
    with pytest.raises(ClusterManagerError, match="Unable to contact slurm controller"):
        [item async for item in manager.logs("no-such-key")]


async def _collect(iterator):
    return [item async for item in iterator]


@pytest.mark.parametrize("mode", PARSER_MODES)
async def test_logs_rejects_unknown_replica(mode, make_manager, make_job, make_unit, wait_for, ended):
    manager = await make_manager("alpha", mode)
    unit = make_unit(make_job("one-replica", "echo one"), manager.name)
    await manager.submit(unit)
    await wait_for(manager, unit.key, ended)

    with pytest.raises(ClusterManagerError, match="replica 7 is not part of work"):
        _ = [item async for item in manager.logs(unit.key, replica=7)]


@pytest.mark.parametrize("mode", MODES)
async def test_capacity_matches_sinfo(mode, make_manager, sites):
    cluster = sites["beta"]
    manager = await make_manager("beta", mode)

    # Jobs of other tests may end meanwhile, so compare against sinfo readings on both sides.
    for _ in range(20):
        before = cluster.run(["sinfo", "--Node", "--noheader", "--format=%N %C %m %e"]).stdout.split()
        nodes = await manager.nodes()
        after = cluster.run(["sinfo", "--Node", "--noheader", "--format=%N %C %m %e"]).stdout.split()
        if before == after:
            break
    name, cpu_states, memory, _free = before
    allocated, idle, _other, total = (int(value) for value in cpu_states.split("/"))

    assert list(nodes) == [name]
    assert nodes[name].capacity.cpus == total == 2
    assert nodes[name].capacity.memory == int(memory) == 1024
    assert nodes[name].allocatable.cpus == idle == total - allocated
    # Slurm gives a task whole CPUs, so the scheduler must count a request of 0.5 as 1.
    assert nodes[name].cpu_allocation_unit == 1


@pytest.mark.parametrize("mode", PARSER_MODES)
async def test_capacity_counts_allocated_resources(mode, make_manager, make_job, make_unit, wait_for, sites):
    manager = await make_manager("beta", mode)
    unit = make_unit(make_job("holder", "sleep 300", resources={"cpus": 1, "memory": "300Mi"}), manager.name)
    await manager.submit(unit)
    try:
        await wait_for(manager, unit.key, lambda status: status.tasks["0"].state == "Running")
        node = (await manager.nodes())[sites["beta"].node_name]
    finally:
        await manager.delete(unit.key)

    # 2 CPUs and 1024 MiB in slurm.conf, less the running job's 1 CPU and 300 MiB.
    assert node.allocatable.cpus == 1
    assert node.allocatable.memory == 724


@pytest.mark.parametrize("mode", PARSER_MODES)
async def test_drained_node_is_left_out(mode, make_manager, sites):
    cluster = sites["beta"]
    manager = await make_manager("beta", mode)
    cluster.run(["scontrol", "update", f"NodeName={cluster.node_name}", "State=DRAIN", "Reason=skyshift-test"])
    try:
        nodes = await manager.nodes()
    finally:
        cluster.run(["scontrol", "update", f"NodeName={cluster.node_name}", "State=RESUME"])

    assert nodes == {}


@pytest.mark.parametrize("mode", MODES)
async def test_new_manager_finds_earlier_submission(mode, make_manager, make_job, make_unit, wait_for, ended, sites):
    first = await make_manager("alpha", mode)
    unit = make_unit(make_job("restart", "sleep 1"), first.name)
    submitted = await first.submit(unit)
    await first.stop()

    second = await make_manager("alpha", mode)
    statuses = await second.statuses()
    again = await second.submit(unit)
    await wait_for(second, unit.key, ended)

    assert unit.key in statuses
    assert again.manager_job_ids == submitted.manager_job_ids
    assert len(queue_names(sites["alpha"], unit.key)) == 1


@pytest.mark.parametrize("mode", PARSER_MODES)
async def test_parallel_and_repeated_submits_run_once(mode, make_manager, make_job, make_unit, wait_for, ended, sites):
    manager = await make_manager("alpha", mode)
    units = [make_unit(make_job(f"burst-{number}", "true"), manager.name) for number in range(4)]

    # As the skylet does with max_parallel_submits, then again before its next queue read.
    first = await asyncio.gather(*(manager.submit(unit) for unit in units))
    again = await asyncio.gather(*(manager.submit(unit) for unit in units))
    for unit in units:
        await wait_for(manager, unit.key, ended)

    assert [status.manager_job_ids for status in again] == [status.manager_job_ids for status in first]
    for unit in units:
        assert len(queue_names(sites["alpha"], unit.key)) == 1


@pytest.mark.parametrize("mode", MODES)
async def test_on_failure_retries_failed_replica(mode, make_manager, make_job, make_unit, wait_for, ended):
    manager = await make_manager("alpha", mode)
    # Replica 1 fails on its first attempt; replica 0 succeeds at once and is not rerun.
    run = 'n=$(cat attempts-$SKYSHIFT_REPLICA_INDEX 2>/dev/null || echo 0); echo $((n + 1)) > attempts-$SKYSHIFT_REPLICA_INDEX; echo "attempt $n"; [ "$SKYSHIFT_REPLICA_INDEX" = 0 ] || [ "$n" -ge 1 ]'
    unit = make_unit(make_job("retry", run, replicas=2, restart_policy="OnFailure"), manager.name)
    await manager.submit(unit)

    status = await wait_for(manager, unit.key, ended)
    lines = [item async for item in manager.logs(unit.key)]

    assert [(task.state, task.restarts) for task in status.tasks.values()] == [("Succeeded", 0), ("Succeeded", 1)]
    assert sorted(lines) == [(0, "attempt 0"), (1, "attempt 0"), (1, "attempt 1")]


@pytest.mark.parametrize("mode", PARSER_MODES)
async def test_on_failure_stops_at_max_restarts(mode, make_manager, make_job, make_unit, wait_for, ended):
    manager = await make_manager("alpha", mode, max_restarts=1)
    unit = make_unit(make_job("always-fails", "exit 7", restart_policy="OnFailure"), manager.name)
    await manager.submit(unit)

    task = (await wait_for(manager, unit.key, ended)).tasks["0"]

    assert task.state == "Failed"
    assert task.exit_code == 7
    assert task.restarts == 1
    assert "after 1 restarts (max_restarts is 1)" in task.message


@pytest.mark.parametrize("mode", MODES)
async def test_always_resubmits_ended_replica(mode, make_manager, make_job, make_unit, wait_for):
    manager = await make_manager("alpha", mode)
    unit = make_unit(make_job("service", "echo up", restart_policy="Always"), manager.name)
    await manager.submit(unit)
    try:
        status = await wait_for(manager, unit.key, lambda status: status.tasks["0"].restarts >= 1)
    finally:
        await manager.delete(unit.key)

    assert status.tasks["0"].state in ("Pending", "Running")


@pytest.mark.parametrize("mode", ("cli", "rest"))
async def test_invalid_partition_fails_tasks(mode, make_manager, make_job, make_unit):
    manager = await make_manager("alpha", mode)
    unit = make_unit(
        make_job("bad-partition", "true", replicas=2, backend={"partition": "nosuchpartition"}), manager.name
    )

    submitted = await manager.submit(unit)
    statuses = await manager.statuses()

    assert [task.state for task in submitted.tasks.values()] == ["Failed", "Failed"]
    assert submitted.tasks["0"].reason == "SubmitRejected"
    assert "Invalid partition" in submitted.tasks["0"].message
    assert submitted.rejection == submitted.tasks["0"].message
    assert statuses[unit.key].tasks == submitted.tasks


async def test_ssh_rejects_unknown_host_key(make_manager, work_root):
    empty_known_hosts = work_root / "empty_known_hosts"
    empty_known_hosts.write_text("")
    manager = await make_manager("alpha", "ssh", known_hosts=str(empty_known_hosts))

    health = await manager.health()

    assert not health.ready
    assert health.reason == "Unreachable"
    assert "Host key verification failed" in health.message


async def test_rest_rejects_bad_token(make_manager, work_root):
    bad_token = work_root / "bad.jwt"
    bad_token.write_text("not-a-jwt\n")
    manager = await make_manager("alpha", "rest", token_file=str(bad_token))

    health = await manager.health()

    assert not health.ready
    assert health.reason == "Unreachable"
    assert "expired or invalid JWT" in health.message


async def test_health_follows_controller(gamma, make_manager):
    managers = {mode: await make_manager(gamma, mode) for mode in MODES}

    before = await health_of(managers)
    gamma.stop_slurmctld()
    try:
        during = await health_of(managers)
    finally:
        gamma.start_slurmctld()
    after = await health_of(managers)

    assert {mode: health.ready for mode, health in before.items()} == {"cli": True, "ssh": True, "rest": True}
    assert {mode: health.ready for mode, health in during.items()} == {"cli": False, "ssh": False, "rest": False}
    assert {mode: health.ready for mode, health in after.items()} == {"cli": True, "ssh": True, "rest": True}
    assert during["cli"].reason == "SlurmctldDown"
    assert during["ssh"].reason == "SlurmctldDown"
    assert re.search(r"Slurmctld\(primary\) at \S+ is DOWN", during["cli"].message)
    assert during["rest"].message


async def test_rest_reports_missing_token_variable(make_manager, monkeypatch):
    monkeypatch.delenv("SKYSHIFT_TEST_SLURM_JWT", raising=False)
    manager = await make_manager("alpha", "rest", token_file=None, token_env="SKYSHIFT_TEST_SLURM_JWT")

    health = await manager.health()

    assert not health.ready
    assert "missing JWT: the environment variable SKYSHIFT_TEST_SLURM_JWT is empty" in health.message


async def test_rest_reads_token_from_variable(make_manager, monkeypatch, sites):
    monkeypatch.setenv("SKYSHIFT_TEST_SLURM_JWT", sites["alpha"].token(lifespan=300))
    manager = await make_manager("alpha", "rest", token_file=None, token_env="SKYSHIFT_TEST_SLURM_JWT")

    health = await manager.health()

    assert health.ready


async def health_of(managers: dict[str, SlurmClusterManager]) -> dict[str, ClusterHealth]:
    results = await asyncio.gather(*(manager.health() for manager in managers.values()))
    return dict(zip(managers, results))


async def test_new_manager_reads_purged_jobs_from_jobcomp(gamma, make_manager, make_job, make_unit, wait_for, ended):
    # slurmctld purges ended jobs after MinJobAge (300 s); a clean restart of the controller
    # purges them at once, and the jobcomp file keeps their lines.
    managers = {mode: await make_manager(gamma, mode) for mode in ("cli", "ssh")}
    units = {
        mode: make_unit(make_job("purged", "exit 5", resources={"cpus": 0.5, "memory": "32Mi"}), manager.name)
        for mode, manager in managers.items()
    }
    for mode, manager in managers.items():
        await manager.submit(units[mode])
    for mode, manager in managers.items():
        await wait_for(manager, units[mode].key, ended)
    gamma.stop_slurmctld()
    gamma.start_slurmctld(clean=True)
    queue_after_restart = gamma.run(["squeue", "--states=all", "--noheader"]).stdout

    for mode, unit in units.items():
        manager = await make_manager(gamma, mode)
        task = (await manager.statuses())[unit.key].tasks["0"]
        assert (mode, task.state, task.exit_code) == (mode, "Failed", 5)
    assert queue_after_restart == ""


@pytest.mark.late
@pytest.mark.parametrize("mode", MODES)
async def test_time_limit_ends_with_timeout(mode, time_limit_work, make_manager, wait_for, ended):
    # The job was submitted when the session's first manager test started, with time_limit "1"
    # (one minute, Slurm's shortest) in spec.backend.slurm; this test runs last.
    manager = await make_manager("alpha", mode)
    unit = time_limit_work[mode]

    task = (await wait_for(manager, unit.key, ended, deadline=TIME_LIMIT_DEADLINE)).tasks["0"]

    assert task.state == "Failed"
    assert task.reason == "Timeout"
    assert "reached its time limit (TIMEOUT)" in task.message
