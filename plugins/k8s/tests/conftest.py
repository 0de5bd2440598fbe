"""Fixtures for the Kubernetes cluster manager's tests: a fake API server with a running simulated
kubelet and two 4-cpu nodes, a kubeconfig for it, the official client on it, and factories for
Jobs, work units and managers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from skyshift_core.cluster_manager import WorkUnit
from skyshift_core.objects import Job

from skyshift_k8s import KubernetesClusterManager
from skyshift_k8s.testing import FakeApiServer, SimulatedKubelet

TOKEN = "k8s-manager-test-token"
CLUSTER = "kube"


@pytest.fixture
def fake() -> Iterator[FakeApiServer]:
    """A fake API server whose kubelet runs in the background (real time) with nodes node-a and node-b."""
    server = FakeApiServer(token=TOKEN, bookmark_interval_seconds=0.5).start()
    kubelet = SimulatedKubelet(server, tick_seconds=0.02, restart_backoff_seconds=0.2)
    kubelet.add_node("node-a", cpu="4", memory="8Gi")
    kubelet.add_node("node-b", cpu="4", memory="8Gi")
    kubelet.start()
    yield server
    kubelet.stop()
    server.stop()
    assert kubelet.errors == []


@pytest.fixture
def kubelet(fake: FakeApiServer) -> SimulatedKubelet:
    assert fake.kubelet is not None
    return fake.kubelet


@pytest.fixture
def kubeconfig(fake: FakeApiServer, tmp_path: Path) -> Path:
    return fake.write_kubeconfig(tmp_path / "kubeconfig", context="fake-context")


@pytest.fixture
def api(kubeconfig: Path) -> Iterator[client.ApiClient]:
    """The official client on the fake, for arranging and checking objects behind the manager's back."""
    api_client = config.new_client_from_config(config_file=str(kubeconfig))
    yield api_client
    api_client.close()


@pytest.fixture
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
def batch(api: client.ApiClient) -> client.BatchV1Api:
    return client.BatchV1Api(api)


@pytest.fixture
def apps(api: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api)


@pytest.fixture
async def make_manager(kubeconfig: Path):
    """Build and start managers of cluster `kube` on the fake; keyword arguments go into the config.
    Every manager is stopped at the end of the test."""
    managers: list[KubernetesClusterManager] = []

    async def make(name: str = CLUSTER, **settings: Any) -> KubernetesClusterManager:
        settings.setdefault("kubeconfig", str(kubeconfig))
        manager = KubernetesClusterManager(name, KubernetesClusterManager.validate_config(settings))
        # Tests follow logs of pods that start within milliseconds.
        manager.follow_poll_seconds = 0.05
        await manager.start()
        managers.append(manager)
        return manager

    yield make
    for manager in managers:
        await manager.stop()


@pytest.fixture
def make_job() -> Callable[..., Job]:
    def make(
        name: str = "train",
        *,
        replicas: int = 1,
        run: str = "echo hello",
        restart_policy: str = "Never",
        namespace: str = "default",
        **spec: Any,
    ) -> Job:
        labels = spec.pop("labels", {})
        spec.setdefault("resources", {"cpus": 0.5, "memory": "128Mi"})
        return Job.model_validate(
            {
                "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}", "labels": labels},
                "spec": {"replicas": replicas, "run": run, "restart_policy": restart_policy, **spec},
            }
        )

    return make


@pytest.fixture
def make_unit() -> Callable[..., WorkUnit]:
    def make(
        job: Job, indices: tuple[int, ...] | None = None, *, generation: int = 1, cluster: str = CLUSTER
    ) -> WorkUnit:
        """A share of `job` on `cluster`: `indices`, by default every replica."""
        if indices is None:
            indices = tuple(range(job.spec.replicas))
        return WorkUnit(
            job=job, cluster=cluster, replica_indices=indices, total_replicas=job.spec.replicas, generation=generation
        )

    return make


@pytest.fixture
def eventually() -> Callable[..., Awaitable[Any]]:
    """Await `predicate()` (sync or async) until it returns something truthy; fail with its last value."""

    async def wait(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last = None
        while loop.time() < deadline:
            last = predicate()
            if asyncio.iscoroutine(last):
                last = await last
            if last:
                return last
            await asyncio.sleep(interval)
        raise AssertionError(f"condition not met within {timeout} s; last value: {last!r}")

    return wait
