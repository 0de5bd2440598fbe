"""`skyshift exec`'s choice of replica, and its errors for Jobs that have nothing placed to run in."""

from __future__ import annotations

import pytest
from cli_helpers import cli, client, runner  # noqa: F401
from skyshift_core.cli.exec import check_replica_runs, share_of

from skyshift_core.errors import InvalidError
from skyshift_core.objects import Job
from skyshift_core.objects.job import TaskStatus


def placed_job(placement: dict[str, list[int]]) -> Job:
    clusters = {name: {"replicas": len(indices), "replica_indices": indices} for name, indices in placement.items()}
    return Job.model_validate(
        {
            "metadata": {"name": "train", "namespace": "default"},
            "spec": {"run": "sleep 60", "replicas": 3},
            "status": {"placement": {name: len(indices) for name, indices in placement.items()}, "clusters": clusters},
        }
    )


def test_lowest_placed_replica_chosen():
    cluster, unit, index = share_of(placed_job({"b": [2], "a": [0, 1]}), None)

    assert (cluster, index) == ("a", 0)
    assert unit.replica_indices == (0, 1)


def test_unplaced_job_is_error():
    with pytest.raises(InvalidError, match="Job 'train' has no replicas placed on a cluster yet; see: skyshift explain"):
        share_of(placed_job({}), None)


def test_unplaced_replica_names_the_range():
    # Right after a scale-up, replica 2 exists but is not placed yet.
    message = "replica 2 of Job 'train' is not placed on any cluster; the Job has replicas 0 to 2"
    with pytest.raises(InvalidError, match=message):
        share_of(placed_job({"a": [0, 1]}), 2)


def place(client, manager: str) -> None:
    """Create a Cluster of `manager` and a Job with replica 0 placed on it, as the scheduler would."""
    config = {"node_count": 1, "node": {"cpus": 4, "memory": "8Gi"}} if manager == "simulated" else {}
    client.create({"kind": "Cluster", "metadata": {"name": "site-a"}, "spec": {"manager": manager, "config": config}})
    client.create({"kind": "Job", "metadata": {"name": "train"}, "spec": {"run": "sleep 60"}})
    share = {"replicas": 1, "replica_indices": [0], "generation": 1}
    status = {"placement": {"site-a": 1}, "placement_generation": 1, "clusters": {"site-a": share}}
    client.patch("jobs", "train", {"status": status}, subresource="status")


def test_exec_manager_without_exec_rejected(cli, client):
    pytest.importorskip("skyshift_simulated", reason="the skyshift-simulated plugin is not installed")
    place(client, "simulated")

    result = cli("exec", "train", "--", "true")

    assert result.exit_code == 1
    assert result.stderr == (
        "Error: cluster 'site-a' uses manager 'simulated', which cannot run commands in replicas\n"
    )


def test_exec_uninstalled_manager_names_plugin(cli, client):
    place(client, "nosuchmanager")

    result = cli("exec", "job/train", "--", "true")

    assert result.exit_code == 1
    assert "No cluster manager named 'nosuchmanager'" in result.stderr
    assert "install the plugin that provides 'nosuchmanager' here" in result.stderr


def test_exec_missing_job_not_found(cli):
    result = cli("exec", "ghost", "--", "true")

    assert result.exit_code == 1
    assert result.stderr.startswith("Error: Job 'default/ghost' not found")


def test_replica_out_of_range_rejected():
    job = placed_job({"a": [0, 1, 2]})

    for replica in (-1, 3):
        with pytest.raises(InvalidError, match=rf"invalid replica {replica}: Job 'train' has replicas 0 to 2; pass"):
            share_of(job, replica)


@pytest.mark.parametrize(
    ("task", "message"),
    [
        pytest.param(
            {"state": "Running", "reason": "BackOff", "message": "exit code 1, restart 2 in 4 s"},
            "replica 0 of Job 'train' on cluster 'a' is waiting to restart (BackOff: exit code 1, restart 2 in 4 s); "
            "run the command once it runs again, which skyshift get job train -w shows",
            id="backoff",
        ),
        pytest.param(
            {"state": "Succeeded"},
            "replica 0 of Job 'train' on cluster 'a' has ended (Succeeded); commands run only in running replicas",
            id="ended",
        ),
    ],
)
def test_replica_that_runs_nothing_named(task, message):
    job = placed_job({"a": [0, 1]})
    job.status.clusters["a"].tasks["0"] = TaskStatus(**task)

    with pytest.raises(InvalidError) as raised:
        check_replica_runs(job, "a", 0)

    assert raised.value.message == message


@pytest.mark.parametrize(
    "task", [None, {"state": "Running"}, {"state": "Pending"}], ids=["unreported", "running", "pending"]
)
def test_replica_that_may_run_passes(task):
    job = placed_job({"a": [0, 1]})
    if task is not None:
        job.status.clusters["a"].tasks["0"] = TaskStatus(**task)

    assert check_replica_runs(job, "a", 0) is None
