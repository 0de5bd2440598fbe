"""One Job whose replicas span a Kubernetes cluster (the fake API server with its simulated kubelet)
and a real local Slurm cluster, through the whole control plane: placement, global replica indices,
status and logs from both backends."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from skyshift_core.client import SkyShiftClient
from skyshift_core.testing.controlplane import wait_for, wait_for_ready_clusters


def _installed(group: str, *names: str) -> bool:
    found = {entry.name for entry in entry_points(group=group)}
    return all(name in found for name in names)


pytestmark = [
    pytest.mark.skipif(
        not (_installed("skyshift.cluster_managers", "kubernetes", "slurm") and _installed("skyshift.scheduler_plugins", "spread")),
        reason="needs the skyshift-k8s, skyshift-slurm and skyshift-scheduler-spread plugins",
    ),
    pytest.mark.skipif(shutil.which("slurmctld") is None and not os.path.exists("/usr/sbin/slurmctld"), reason="Slurm is not installed: bash scripts/install-slurm.sh"),
]


@pytest.fixture
def kubernetes_cluster(tmp_path: Path):
    from skyshift_k8s.testing import FakeApiServer, SimulatedKubelet

    server = FakeApiServer(token="integration-token", bookmark_interval_seconds=0.5).start()
    kubelet = SimulatedKubelet(server, tick_seconds=0.02)
    kubelet.add_node("node-a", cpu="4", memory="8Gi")
    kubelet.start()
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig", context="fake")
    yield {"kubeconfig": str(kubeconfig), "context": "fake"}
    kubelet.stop()
    server.stop()


@pytest.fixture
def slurm_cluster():
    from skyshift_slurm.localcluster import LocalSlurmCluster

    # Slurm's daemons need every parent of the cluster's directory to be searchable by others.
    base = Path(tempfile.mkdtemp(prefix="skyshift-integration-", dir="/var/tmp"))
    base.chmod(0o755)
    cluster = LocalSlurmCluster("mixed", base / "slurm", cpus=2, memory_mb=1024, munge_dir=base / "munge")
    cluster.start()
    yield {"interface": "cli", "slurm_conf": str(cluster.slurm_conf)}
    cluster.stop()
    shutil.rmtree(base, ignore_errors=True)


async def test_job_spans_kubernetes_and_slurm(api_server, admin_token, async_client, control_plane, kubernetes_cluster, slurm_cluster):
    control_plane()
    await async_client.create({"kind": "Cluster", "metadata": {"name": "kube"}, "spec": {"manager": "kubernetes", "config": kubernetes_cluster}})
    await async_client.create({"kind": "Cluster", "metadata": {"name": "hpc"}, "spec": {"manager": "slurm", "config": slurm_cluster}})
    await wait_for_ready_clusters(async_client, 2, timeout=60)

    job = {
        "kind": "Job",
        "metadata": {"name": "mixed"},
        "spec": {
            "replicas": 4,
            "run": "echo replica $SKYSHIFT_REPLICA_INDEX of $SKYSHIFT_REPLICAS on $SKYSHIFT_CLUSTER",
            "restart_policy": "Never",
            "resources": {"cpus": 1, "memory": "64Mi"},
        },
    }
    await async_client.create(job)

    async def succeeded():
        status = (await async_client.get("Job", "mixed", "default"))["status"]
        return status if status["phase"] in ("Succeeded", "Failed") else None

    status = await wait_for(succeeded, timeout=90)
    assert status["phase"] == "Succeeded", status
    assert status["placement"] == {"hpc": 2, "kube": 2}
    assert status["clusters"]["hpc"]["replica_indices"] == [0, 1]
    assert status["clusters"]["kube"]["replica_indices"] == [2, 3]

    def read_logs() -> list[dict]:
        with SkyShiftClient(api_server, token=admin_token) as client:
            return list(client.job_logs("mixed"))

    entries = await asyncio.to_thread(read_logs)
    lines = sorted((entry["cluster"], entry["replica"], entry["line"]) for entry in entries if "line" in entry)
    assert lines == [
        ("hpc", 0, "replica 0 of 4 on hpc"),
        ("hpc", 1, "replica 1 of 4 on hpc"),
        ("kube", 2, "replica 2 of 4 on kube"),
        ("kube", 3, "replica 3 of 4 on kube"),
    ]
