"""End to end on a real Kubernetes cluster, run only when KUBECONFIG is set (for example to a kind
cluster on a laptop). An Indexed Job of busybox replicas runs to Succeeded, its logs carry the global
replica indices, and deleting it removes its Job and pods.

Set SKYSHIFT_K8S_TEST_CONTEXT to use a context other than the kubeconfig's current one. The test
works in the namespace `skyshift-e2e-default` and deletes it at the end.
"""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest
from kubernetes import client, config
from skyshift_core.cluster_manager import WorkUnit
from skyshift_core.objects import Job

from skyshift_k8s import KubernetesClusterManager

pytestmark = pytest.mark.skipif(not os.environ.get("KUBECONFIG"), reason="KUBECONFIG is not set")

PREFIX = "skyshift-e2e-"
# Pulling busybox on a fresh node can take a while.
TIMEOUT_SECONDS = 300


def kubeconfig_path() -> str:
    return next(entry for entry in os.environ["KUBECONFIG"].split(os.pathsep) if entry.strip())


async def wait_for(predicate, timeout: float = TIMEOUT_SECONDS, interval: float = 1.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = None
    while loop.time() < deadline:
        last = await predicate()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s; last value: {last!r}")


async def test_busybox_indexed_job_on_real_cluster():
    context = os.environ.get("SKYSHIFT_K8S_TEST_CONTEXT") or None
    settings = {"kubeconfig": kubeconfig_path(), "context": context, "namespace_prefix": PREFIX}
    manager = KubernetesClusterManager("e2e", KubernetesClusterManager.validate_config(settings))
    job = Job.model_validate(
        {
            "metadata": {"name": "busybox-e2e", "namespace": "default", "uid": str(uuid.uuid4())},
            "spec": {
                "replicas": 3,
                "image": "busybox:1.36",
                "run": "echo replica $SKYSHIFT_REPLICA_INDEX of $SKYSHIFT_REPLICAS",
                "restart_policy": "Never",
                "resources": {"cpus": 0.1, "memory": "32Mi"},
            },
        }
    )
    # Replicas 1 and 2 of 3 run here, so the pods compute their global index from the completion index.
    unit = WorkUnit(job, "e2e", (1, 2), 3, 1)
    await manager.start()
    try:
        health = await manager.health()
        assert health.ready, health.message
        assert await manager.nodes(), "the cluster reports no schedulable node"

        await manager.submit(unit)

        async def finished():
            status = (await manager.statuses()).get(unit.key)
            if status and all(task.state in ("Succeeded", "Failed") for task in status.tasks.values()):
                return status
            return None

        status = await wait_for(finished)
        assert {index: task.state for index, task in status.tasks.items()} == {"1": "Succeeded", "2": "Succeeded"}
        lines = sorted([entry async for entry in manager.logs(unit.key)])
        assert lines == [(1, "replica 1 of 3"), (2, "replica 2 of 3")]

        await manager.delete(unit.key)

        async def gone():
            return unit.key not in await manager.statuses()

        await wait_for(gone, timeout=60)
    finally:
        await manager.delete(unit.key)
        await manager.stop()
        api = config.new_client_from_config(config_file=kubeconfig_path(), context=context)
        try:
            client.CoreV1Api(api).delete_namespace(f"{PREFIX}default")
        except client.ApiException as error:
            if error.status != 404:
                raise
        finally:
            api.close()
