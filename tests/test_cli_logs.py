"""`skyshift logs` when one cluster's logs cannot be read: the other clusters' lines are printed, the
error is reported, and the command exits 1. Runs on simulated clusters (the skyshift-simulated plugin)."""

from __future__ import annotations

import asyncio

import pytest
from cli_helpers import cli, client, runner  # noqa: F401

from skyshift_core.client import SkyShiftClient
from skyshift_core.cluster_manager import WorkUnit
from skyshift_core.objects import Job

simulated = pytest.importorskip("skyshift_simulated", reason="the skyshift-simulated plugin is not installed")

NODES = {"node_count": 1, "node": {"cpus": 4, "memory": "8Gi"}}


@pytest.fixture(autouse=True)
def fresh_simulated_clusters():
    """Simulated clusters keep their state per process, and the API server runs in this process."""
    simulated.clear_registry()
    yield
    simulated.clear_registry()


def place_job(client: SkyShiftClient) -> Job:
    """Create a Job with replica 0 on `sim-ok` and replica 1 on `sim-down`, as the scheduler would place it."""
    client.create({"kind": "Cluster", "metadata": {"name": "sim-ok"},
                   "spec": {"manager": "simulated", "config": {**NODES, "pending_seconds": 0, "run_seconds": 600}}})
    client.create({"kind": "Cluster", "metadata": {"name": "sim-down"},
                   "spec": {"manager": "simulated", "config": {**NODES, "unreachable": True}}})  # fmt: skip
    client.create({"kind": "Job", "metadata": {"name": "mixed"}, "spec": {"replicas": 2, "run": "true"}})
    shares = {
        "sim-ok": {"replicas": 1, "replica_indices": [0], "generation": 1},
        "sim-down": {"replicas": 1, "replica_indices": [1], "generation": 1},
    }
    status = {"placement": {"sim-ok": 1, "sim-down": 1}, "placement_generation": 1, "clusters": shares}
    return Job.model_validate(client.patch("jobs", "mixed", {"status": status}, subresource="status"))


def submit_to_reachable_cluster(job: Job) -> None:
    """Run replica 0 on the simulated cluster `sim-ok`, whose state the API server's manager shares."""
    from skyshift_simulated.manager import SimulatedClusterManager

    config = SimulatedClusterManager.validate_config({**NODES, "pending_seconds": 0, "run_seconds": 600})
    manager = SimulatedClusterManager("sim-ok", config)
    asyncio.run(manager.submit(WorkUnit(job, "sim-ok", (0,), 2, 1)))


def test_logs_cluster_error_exits_1(cli, client: SkyShiftClient):
    job = place_job(client)
    submit_to_reachable_cluster(job)

    result = cli("logs", "mixed")

    assert result.exit_code == 1
    assert "[replica 0 on sim-ok] replica 0 on sim-ok: started on" in result.stdout
    assert result.stderr.startswith("Error reading logs from cluster sim-down:")


def test_logs_of_deleted_cluster_named(cli, client: SkyShiftClient):
    """A Cluster deleted after the Job ran: its replicas are named, the others' output still comes."""
    job = place_job(client)
    submit_to_reachable_cluster(job)
    client.delete("Cluster", "sim-down")

    result = cli("logs", "mixed")

    assert result.exit_code == 1
    assert "[replica 0 on sim-ok] replica 0 on sim-ok: started on" in result.stdout
    assert "cluster sim-down no longer exists, so the output of replicas [1] cannot be read" in result.stderr
