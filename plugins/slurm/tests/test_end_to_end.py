"""SkyShift's control plane (real etcd, API server and controller manager) with two real Slurm
clusters attached through the `slurm` entry point: a Job spreads, runs, succeeds and shows its logs."""

from __future__ import annotations

import asyncio
import json
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
