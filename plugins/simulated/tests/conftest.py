"""Fixtures for the simulated cluster manager's tests: an isolated registry, a manual clock, and
factories for Jobs, work units and managers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from skyshift_core.cluster_manager import WorkUnit
from skyshift_core.objects import Job
from skyshift_simulated import ManualClock, SimulatedClusterManager, clear_registry

CLUSTER = "sim"


@pytest.fixture(autouse=True)
def isolated_registry() -> Iterator[None]:
    """Each test starts with no simulated clusters registered, so state never leaks between tests."""
    clear_registry()
    yield
    clear_registry()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def make_job() -> Callable[..., Job]:
    def make(
        name: str = "train",
        *,
        replicas: int = 1,
        resources: dict[str, Any] | None = None,
        restart_policy: str = "Never",
        backend: dict[str, Any] | None = None,
    ) -> Job:
        spec: dict[str, Any] = {
            "replicas": replicas,
            "resources": resources if resources is not None else {"cpus": 1},
            "restart_policy": restart_policy,
        }
        if backend is not None:
            spec["backend"] = {"simulated": backend}
        return Job.model_validate(
            {"metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"}, "spec": spec}
        )

    return make


@pytest.fixture
def make_unit() -> Callable[..., WorkUnit]:
    def make(
        job: Job,
        *,
        replicas: int | None = None,
        offset: int = 0,
        indices: tuple[int, ...] | None = None,
        generation: int = 1,
    ) -> WorkUnit:
        """A share of `job`: `indices`, or else `replicas` indices from `offset` (default: all replicas)."""
        if indices is None:
            count = job.spec.replicas if replicas is None else replicas
            indices = tuple(range(offset, offset + count))
        return WorkUnit(
            job=job,
            cluster=CLUSTER,
            replica_indices=indices,
            total_replicas=job.spec.replicas,
            generation=generation,
        )

    return make


@pytest.fixture
def make_manager(clock: ManualClock) -> Callable[..., SimulatedClusterManager]:
    """Build a manager of cluster `sim` on the test's clock; keyword arguments become its config."""

    def make(name: str = CLUSTER, **config: Any) -> SimulatedClusterManager:
        config.setdefault("node_count", 1)
        if "nodes" in config:
            config.pop("node_count")
        else:
            config.setdefault("node", {"cpus": 4, "memory": "8Gi"})
        return SimulatedClusterManager(name, config, clock=clock)

    return make
