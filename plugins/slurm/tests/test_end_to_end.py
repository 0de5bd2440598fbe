"""SkyShift's control plane (real etcd, API server and controller manager) with two real Slurm
clusters attached through the `slurm` entry point: a Job spreads, runs, succeeds and shows its logs,
and a Job with a partition that Slurm does not have fails with sbatch's own message."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from importlib.metadata import entry_points

import pytest

from skyshift_core.errors import InvalidError

pytestmark = pytest.mark.slurm_cluster

JOB = {
    "kind": "Job",
    "metadata": {"name": "hello"},
    "spec": {
        "replicas": 4,
        "image": "python:3.11-slim",
        "run": 'echo "replica $SKYSHIFT_REPLICA_INDEX of $SKYSHIFT_REPLICAS on $SKYSHIFT_CLUSTER"',
        "restart_policy": "Never",
        "resources": {"cpus": 0.5, "memory": "64Mi"},
    },
}


async def wait_until(condition, deadline: float = 90.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = await condition()
        if value:
            return value
        await asyncio.sleep(0.3)
    pytest.fail(f"condition not met within {deadline:.0f} s; last value: {value!r}")


def cluster_manifest(name: str, config: dict) -> dict:
    return {
        "kind": "Cluster",
        "metadata": {"name": name, "labels": {"site": name}},
        "spec": {"manager": "slurm", "config": config},
    }


async def test_job_spreads_over_two_slurm_clusters(async_client, control_plane, api, site_config):
    if "spread" not in {entry.name for entry in entry_points(group="skyshift.scheduler_plugins")}:
        pytest.skip("needs the spread scheduling plugin: pip install plugins/scheduler_spread")
    control_plane()
    await async_client.create(cluster_manifest("e2e-alpha", site_config("alpha", "cli")))
    await async_client.create(cluster_manifest("e2e-beta", site_config("beta", "cli")))

    async def both_ready():
        clusters = (await async_client.list("Cluster"))["items"]
        return len([cluster for cluster in clusters if cluster["status"]["phase"] == "READY"]) == 2

    await wait_until(both_ready)
    await async_client.create(JOB, "default")

    async def finished():
        status = (await async_client.get("Job", "hello", "default"))["status"]
        return status if status["phase"] in ("Succeeded", "Failed") else None

    status = await wait_until(finished)
    response = await asyncio.to_thread(api.get, "/api/v1/namespaces/default/jobs/hello/logs")
    lines = sorted(json.loads(line)["line"] for line in response.text.splitlines() if line.strip())
    events = (await async_client.list("Event", "default"))["items"]

    assert status["phase"] == "Succeeded"
    assert sorted(status["placement"].values()) == [2, 2]
    clusters = {index: name for name, share in status["clusters"].items() for index in share["replica_indices"]}
    assert lines == [f"replica {index} of 4 on {clusters[index]}" for index in range(4)]
    assert any(event["reason"] == "BackendWarning" and "was not used" in event["message"] for event in events)


async def test_invalid_slurm_settings_rejected_on_apply(async_client, site_config):
    job = {
        **JOB,
        "metadata": {"name": "bad-settings"},
        "spec": {**JOB["spec"], "backend": {"slurm": {"partiton": "gpu"}}},
    }

    with pytest.raises(InvalidError) as raised:
        await async_client.create(job, "default")

    assert "unknown field 'partiton' in Slurm settings (did you mean 'partition'?)" in str(raised.value)


async def test_invalid_partition_fails_job(async_client, control_plane, api, site_config):
    control_plane()
    await async_client.create(cluster_manifest("e2e-alpha", site_config("alpha", "cli")))
    job = {
        **JOB,
        "metadata": {"name": "bad-partition"},
        "spec": {**JOB["spec"], "replicas": 1, "backend": {"slurm": {"partition": "nosuch"}}},
    }
    await async_client.create(job, "default")
    sbatch_text = "sbatch: error: invalid partition specified: nosuch"

    async def failed():
        status = (await async_client.get("Job", "bad-partition", "default"))["status"]
        return status if status["phase"] == "Failed" else None

    status = await wait_until(failed)
    events = [
        event
        for event in (await async_client.list("Event", "default"))["items"]
        if event["involved_object"]["name"] == "bad-partition"
    ]
    response = await asyncio.to_thread(api.get, "/api/v1/namespaces/default/jobs/bad-partition/logs")
    logs = [json.loads(line) for line in response.text.splitlines() if line.strip()]

    condition = {c["type"]: c for c in status["conditions"]}["Failed"]
    assert condition["message"].startswith("replica 0 on e2e-alpha failed: SubmitRejected: ")
    assert sbatch_text in condition["message"]
    assert [event["reason"] for event in events if event["source"] == "skylet/e2e-alpha"] == ["SubmitRejected"]
    (rejected,) = [event for event in events if event["reason"] == "SubmitRejected"]
    assert rejected["type"] == "Warning"
    assert rejected["message"].startswith("cluster e2e-alpha rejected replicas [0]: ")
    assert sbatch_text in rejected["message"]
    assert len(logs) == 1
    assert logs[0]["error"].startswith("replica 0 has no output: cluster e2e-alpha rejected its submission: ")
    assert sbatch_text in logs[0]["error"]


async def run_cli(server: str, token: str, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    """Run `skyshift --server SERVER ARGS...` in a thread, so the control plane in this event loop keeps running."""
    command = [sys.executable, "-m", "skyshift_core.cli.main", "--server", server, *args]
    env = {**os.environ, "SKYSHIFT_TOKEN": token}
    return await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=60, input=input, env=env
    )


async def test_exec_in_slurm_replica(async_client, control_plane, api_server, admin_token, site_config):
    control_plane()
    await async_client.create(cluster_manifest("e2e-exec", site_config("alpha", "cli")))
    spec = {"run": "sleep 300", "restart_policy": "Never", "resources": {"cpus": 1, "memory": "64Mi"}}
    job = {"kind": "Job", "metadata": {"name": "shell"}, "spec": spec}
    await async_client.create(job, "default")

    async def running():
        status = (await async_client.get("Job", "shell", "default"))["status"]
        task = status["clusters"].get("e2e-exec", {}).get("tasks", {}).get("0", {})
        return task.get("state") == "Running"

    await wait_until(running)
    script = "echo in $SLURM_JOB_ID; exit 4"
    executed = await run_cli(api_server, admin_token, "exec", "shell", "--", "sh", "-c", script)
    piped = await run_cli(api_server, admin_token, "exec", "job/shell", "-i", "--", "cat", input="typed\n")
    await async_client.delete("Job", "shell", "default")

    assert executed.returncode == 4, executed.stderr
    assert executed.stdout.startswith("in ")
    assert executed.stdout.split()[1].isdigit()
    assert executed.stderr == ""
    assert (piped.returncode, piped.stdout) == (0, "typed\n"), piped.stderr
