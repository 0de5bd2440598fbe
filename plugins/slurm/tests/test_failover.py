"""Failover across two real Slurm clusters under a whole control plane (etcd, API server and
controller manager). When one cluster's slurmctld stops, its replica moves to the other cluster
after the grace period. When slurmctld returns, the stale copy left behind is cancelled, so no
replica runs twice."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from skyshift_slurm.localcluster import LocalSlurmCluster

pytestmark = pytest.mark.slurm_cluster

# Seconds the controller manager waits before it moves replicas off an unready cluster.
GRACE_PERIOD = 2.0
# Seconds each step may take; a deadline, not an expected duration. Slurm itself may delay a
# batch job's start by up to 3 s (batch_sched_delay), and restarting slurmctld takes a few more.
STEP_DEADLINE = 30.0
POLL_SECONDS = 0.2

JOB = {
    "kind": "Job",
    "metadata": {"name": "failover"},
    "spec": {
        "replicas": 2,
        "run": "sleep 600",
        "restart_policy": "Always",
        "resources": {"cpus": 1, "memory": "64Mi"},
    },
}


@pytest.fixture(scope="module")
def failover_sites(work_root: Path) -> Iterator[dict[str, LocalSlurmCluster]]:
    """Two fresh clusters of 2 CPUs each, so that stopping a controller disturbs no cluster that
    other tests use. Either cluster fits both replicas exactly, so the move also checks that the
    scheduler counts the replica already running on the remaining cluster only once."""
    clusters = {
        "failover-east": LocalSlurmCluster("fo-east", work_root / "fo-east", cpus=2, memory_mb=1024,
                                           munge_dir=work_root / "munge"),
        "failover-west": LocalSlurmCluster("fo-west", work_root / "fo-west", cpus=2, memory_mb=1024,
                                           munge_dir=work_root / "munge"),
    }  # fmt: skip
    started = []
    try:
        for cluster in clusters.values():
            cluster.start()
            started.append(cluster)
        yield clusters
    finally:
        for cluster in started:
            cluster.stop()


async def wait_until(condition: Callable[[], Any], description: str, deadline: float = STEP_DEADLINE) -> Any:
    """Poll an async condition until it returns a truthy value, which is returned; fail at the deadline."""
    end = time.monotonic() + deadline
    value = None
    while time.monotonic() < end:
        value = await condition()
        if value:
            return value
        await asyncio.sleep(POLL_SECONDS)
    pytest.fail(f"{description} not reached within {deadline:.0f} s; last value: {value!r}")


async def slurm_jobs_of(cluster: LocalSlurmCluster, uid: str, ended: bool = False) -> list[tuple[str, str]]:
    """Return (job id, state) of the Slurm jobs on `cluster` whose name carries the Job uid `uid`.

    Without `ended`, squeue lists only pending, running and completing jobs (squeue(1), Slurm
    22.05); with it, also those that ended and that slurmctld still keeps."""
    command = ["squeue", "-h", "-o", "%i %j %T"] + (["-t", "all"] if ended else [])
    result = await asyncio.to_thread(cluster.run, command)
    jobs = []
    for line in result.stdout.splitlines():
        job_id, name, state = line.split()
        if uid in name:
            jobs.append((job_id, state))
    return jobs


def running_replicas(status: dict[str, Any], cluster: str) -> list[int]:
    """Return the replica indices that a Job's status shows Running on `cluster`."""
    share = status["clusters"].get(cluster) or {}
    tasks = share.get("tasks") or {}
    return sorted(int(index) for index, task in tasks.items() if task["state"] == "Running")


async def test_replica_moves_off_stopped_slurmctld(async_client, control_plane, site_config, failover_sites):
    if "spread" not in {entry.name for entry in entry_points(group="skyshift.scheduler_plugins")}:
        pytest.skip("needs the spread scheduling plugin: pip install plugins/scheduler_spread")
    control_plane(grace_period=GRACE_PERIOD)
    for name, cluster in failover_sites.items():
        manifest = {"kind": "Cluster", "metadata": {"name": name}, "spec": {"manager": "slurm",
                    "config": site_config(cluster, "cli")}}  # fmt: skip
        await async_client.create(manifest)
    east, west = failover_sites["failover-east"], failover_sites["failover-west"]

    async def cluster_phases() -> dict[str, str]:
        return {
            item["metadata"]["name"]: item["status"]["phase"] for item in (await async_client.list("Cluster"))["items"]
        }

    async def both_ready():
        phases = await cluster_phases()
        return phases if set(phases.values()) == {"READY"} and len(phases) == 2 else None

    await wait_until(both_ready, "both Clusters READY")
    uid = (await async_client.create(JOB, "default"))["metadata"]["uid"]

    async def job_status() -> dict[str, Any]:
        return (await async_client.get("Job", "failover", "default"))["status"]

    async def spread_and_running():
        status = await job_status()
        spread = status["placement"] == {"failover-east": 1, "failover-west": 1}
        running = running_replicas(status, "failover-east") + running_replicas(status, "failover-west")
        return status if spread and len(running) == 2 else None

    before = await wait_until(spread_and_running, "one running replica on each cluster")
    (east_replica,) = before["clusters"]["failover-east"]["replica_indices"]
    east_jobs = await slurm_jobs_of(east, uid)
    assert [state for _, state in east_jobs] == ["RUNNING"]

    # The controller goes away; slurmd and the job it runs stay, as in a real controller outage.
    await asyncio.to_thread(east.stop_slurmctld)

    # A skylet cycle that is past its health check when slurmctld stops fails on squeue and
    # records reason ClusterManagerError. The next cycle's `scontrol ping` gives SlurmctldDown.
    async def east_down():
        status = (await async_client.get("Cluster", "failover-east"))["status"]
        ready = [condition for condition in status["conditions"] if condition["type"] == "Ready"]
        return status if ready and ready[0]["reason"] == "SlurmctldDown" else None

    east_status = await wait_until(east_down, "Cluster failover-east with reason SlurmctldDown")
    (ready,) = [condition for condition in east_status["conditions"] if condition["type"] == "Ready"]
    assert east_status["phase"] == "ERROR"
    assert ready["status"] == "False"
    assert "DOWN" in ready["message"]

    async def moved_and_running():
        status = await job_status()
        moved = status["placement"] == {"failover-west": 2}
        return status if moved and running_replicas(status, "failover-west") == [0, 1] else None

    after = await wait_until(moved_and_running, "both replicas running on failover-west")
    (scheduled,) = [condition for condition in after["conditions"] if condition["type"] == "Scheduled"]
    assert "failover-east" not in after["clusters"]
    assert "moved off failover-east" in scheduled["message"]
    west_jobs = await slurm_jobs_of(west, uid)
    assert sorted(state for _, state in west_jobs) == ["RUNNING", "RUNNING"]

    # The controller returns with the job it saved, which no Job places there any more.
    await asyncio.to_thread(east.start_slurmctld)

    async def east_ready():
        return (await cluster_phases()).get("failover-east") == "READY"

    await wait_until(east_ready, "Cluster failover-east READY again")

    # squeue lists the copy while it is pending, running or completing: poll until it is gone.
    end = time.monotonic() + STEP_DEADLINE
    live = await slurm_jobs_of(east, uid)
    while live and time.monotonic() < end:
        await asyncio.sleep(POLL_SECONDS)
        live = await slurm_jobs_of(east, uid)
    assert live == [], f"stale copy of replica {east_replica} still live on failover-east: {live}"
    # The copy was cancelled rather than lost: slurmctld recovered it and lists it as CANCELLED.
    assert await slurm_jobs_of(east, uid, ended=True) == [(east_jobs[0][0], "CANCELLED")]

    final = await job_status()
    assert final["placement"] == {"failover-west": 2}
    assert running_replicas(final, "failover-west") == [0, 1]
    assert sorted(state for _, state in await slurm_jobs_of(west, uid)) == ["RUNNING", "RUNNING"]
