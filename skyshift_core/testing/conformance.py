"""Conformance suites that plugin authors run against their own plugins.

Subclass the suite in a test module and provide the plugin under test:

    from skyshift_core.testing.conformance import DividePluginConformance, ScorePluginConformance

    class TestMyPlugin(DividePluginConformance, ScorePluginConformance):
        plugin_class = MyPlugin
        entry_point = "my-plugin"

    class TestMyBackend(ClusterManagerConformance):
        @pytest.fixture
        def manager(self):
            ...  # return a started ClusterManager on a cluster with room for two 1-CPU replicas

Each suite checks the contract of the framework's interfaces, not the plugin's policy: the
plugin's own tests check what it decides.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from importlib.metadata import entry_points

import pytest

from skyshift_core.cluster_manager import ClusterHealth, ClusterManager, WorkStatus, WorkUnit
from skyshift_core.objects import Job, NodeResources, ResourceList
from skyshift_core.scheduler.framework import (
    MAX_SCORE,
    MIN_SCORE,
    Candidate,
    ClusterInfo,
    Code,
    CycleState,
    DividePlugin,
    FilterPlugin,
    NodeInfo,
    Plugin,
    ScorePlugin,
    Status,
)


def sample_clusters() -> list[ClusterInfo]:
    """Clusters of different sizes, labels and load, for exercising a plugin."""
    clusters = []
    for index, (cpus, free, labels) in enumerate(
        [(8, 8, {"tier": "gold"}), (16, 4, {}), (4, 4, {"tier": "silver"}), (32, 31, {"region": "eu"}), (2, 0, {})]
    ):
        capacity = ResourceList(cpus=cpus, memory=cpus * 4096)
        allocatable = ResourceList(cpus=free, memory=free * 4096)
        clusters.append(ClusterInfo(f"cluster-{index}", labels, True, False, [NodeInfo("node-0", capacity, allocatable)]))
    return clusters


def sample_job(replicas: int = 3, cpus: float = 1) -> Job:
    return Job.model_validate(
        {"kind": "Job", "metadata": {"name": "conformance", "namespace": "default", "uid": str(uuid.uuid4())},
         "spec": {"replicas": replicas, "resources": {"cpus": cpus, "memory": 256}, "run": "true", "restart_policy": "Never"}}
    )


class SchedulerPluginConformance:
    """Checks every scheduling plugin: a name that matches its entry point, and an extension point.

    Combine it with the suites of the extension points the plugin implements:
    `FilterPluginConformance`, `ScorePluginConformance`, `DividePluginConformance`.
    """

    plugin_class: type[Plugin]
    entry_point: str | None = None
    plugin_args: dict = {}

    def make_plugin(self) -> Plugin:
        return self.plugin_class(dict(self.plugin_args))

    def test_has_name(self):
        assert self.plugin_class.name, "a scheduling plugin needs a non-empty `name`"

    def test_entry_point_matches_name(self):
        assert self.entry_point, "set `entry_point` to the plugin's name in skyshift.scheduler_plugins"
        found = {ep.name: ep for ep in entry_points(group="skyshift.scheduler_plugins")}
        assert self.entry_point in found, f"no entry point {self.entry_point!r} in skyshift.scheduler_plugins"
        assert found[self.entry_point].load() is self.plugin_class
        assert self.plugin_class.name == self.entry_point

    def test_implements_an_extension_point(self):
        assert issubclass(self.plugin_class, (FilterPlugin, ScorePlugin, DividePlugin)), (
            "a scheduling plugin implements at least one of FilterPlugin, ScorePlugin, DividePlugin"
        )


class FilterPluginConformance(SchedulerPluginConformance):
    def test_pre_filter_returns_status(self):
        status = self.make_plugin().pre_filter(CycleState(), sample_job())
        assert isinstance(status, Status), f"pre_filter returned {status!r}, expected a Status"

    def test_filter_returns_status(self):
        plugin = self.make_plugin()
        for cluster in sample_clusters():
            assert isinstance(plugin.filter(CycleState(), sample_job(), cluster), Status)


class ScorePluginConformance(SchedulerPluginConformance):
    def test_pre_score_returns_success_skip_or_error(self):
        status = self.make_plugin().pre_score(CycleState(), sample_job(), sample_clusters())
        assert isinstance(status, Status), f"pre_score returned {status!r}, expected a Status"
        assert status.code in (Code.SUCCESS, Code.SKIP, Code.ERROR), status

    def test_scores_within_range_after_normalization(self):
        plugin = self.make_plugin()
        job = sample_job()
        clusters = sample_clusters()
        scores = {cluster.name: plugin.score(CycleState(), job, cluster) for cluster in clusters}
        assert all(isinstance(value, int) for value in scores.values()), scores
        plugin.normalize_scores(CycleState(), job, scores)
        assert all(MIN_SCORE <= value <= MAX_SCORE for value in scores.values()), scores


class DividePluginConformance(SchedulerPluginConformance):
    def _candidates(self, job: Job) -> list[Candidate]:
        from skyshift_core.scheduler.framework import replica_request

        request = replica_request(job)
        candidates = [Candidate(cluster, cluster.fit_count(request)) for cluster in sample_clusters()]
        return sorted(candidates, key=lambda candidate: candidate.name)

    @pytest.mark.parametrize("replicas", [1, 2, 5, 17, 40])
    def test_divide_respects_fit_and_places_all(self, replicas):
        job = sample_job(replicas)
        candidates = self._candidates(job)
        fits = {candidate.name: candidate.fit_count for candidate in candidates}
        division = self.make_plugin().divide(CycleState(), job, replicas, candidates)
        assert set(division) <= set(fits), "division names a cluster that is not a candidate"
        assert all(count >= 0 for count in division.values())
        assert all(count <= fits[name] for name, count in division.items()), (division, fits)
        if sum(fits.values()) >= replicas:
            assert sum(division.values()) == replicas, division
        else:
            assert sum(division.values()) <= replicas

    def test_divide_is_deterministic(self):
        job = sample_job(7)
        results = set()
        for order in itertools.islice(itertools.permutations(self._candidates(job)), 12):
            division = self.make_plugin().divide(CycleState(), job, 7, sorted(order, key=lambda c: (-c.score, c.name)))
            results.add(tuple(sorted((name, count) for name, count in division.items() if count)))
        assert len(results) == 1, results


class ClusterManagerConformance:
    """Checks a cluster manager against the ClusterManager contract.

    Provide a `manager` fixture returning a started manager whose cluster has room for two
    replicas of one CPU and 256 MiB, and, optionally, override `finish_timeout` (seconds a
    one-second `true` replica may take to finish on your backend).
    """

    finish_timeout: float = 60.0

    def unit(self, replicas: int = 1, restart_policy: str = "Never", run: str = "true", backend: dict | None = None) -> WorkUnit:
        job = Job.model_validate(
            {"kind": "Job", "metadata": {"name": "conformance", "namespace": "default", "uid": str(uuid.uuid4())},
             "spec": {"replicas": replicas, "run": run, "restart_policy": restart_policy,
                      "resources": {"cpus": 1, "memory": 256}, "backend": backend or {}}}
        )
        return WorkUnit(job, "conformance", tuple(range(replicas)), replicas, 1)

    def failing_unit(self) -> tuple[WorkUnit, int]:
        """A one-replica unit whose replica fails, and the exit code it fails with. Backends that
        do not run commands (a simulator) override this."""
        return self.unit(run="exit 3"), 3

    async def wait_for_finish(self, manager: ClusterManager, key: str) -> WorkStatus:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.finish_timeout
        while loop.time() < deadline:
            status = (await manager.statuses()).get(key)
            if status and status.tasks and all(task.state in ("Succeeded", "Failed") for task in status.tasks.values()):
                return status
            await asyncio.sleep(0.2)
        raise AssertionError(f"work {key} did not finish within {self.finish_timeout} s")

    async def test_health_reports_ready(self, manager: ClusterManager):
        health = await manager.health()
        assert isinstance(health, ClusterHealth)
        assert health.ready, health

    async def test_nodes_report_capacity(self, manager: ClusterManager):
        nodes = await manager.nodes()
        assert nodes, "a ready cluster reports at least one node"
        for node in nodes.values():
            assert isinstance(node, NodeResources)
            assert node.capacity.fits(node.allocatable), "allocatable must not exceed capacity"

    async def test_submit_is_idempotent(self, manager: ClusterManager):
        unit = self.unit(replicas=2)
        first = await manager.submit(unit)
        second = await manager.submit(unit)
        assert first.key == second.key == unit.key
        statuses = await manager.statuses()
        assert unit.key in statuses
        await self.wait_for_finish(manager, unit.key)
        await manager.delete(unit.key)

    async def test_tasks_keyed_by_global_replica_index(self, manager: ClusterManager):
        unit = self.unit(replicas=2)
        await manager.submit(unit)
        status = await self.wait_for_finish(manager, unit.key)
        assert set(status.tasks) == {"0", "1"}
        assert all(task.state == "Succeeded" for task in status.tasks.values()), status.tasks
        await manager.delete(unit.key)

    async def test_failure_reports_exit_code(self, manager: ClusterManager):
        unit, exit_code = self.failing_unit()
        await manager.submit(unit)
        status = await self.wait_for_finish(manager, unit.key)
        task = status.tasks["0"]
        assert task.state == "Failed"
        assert task.exit_code == exit_code
        await manager.delete(unit.key)

    async def test_delete_is_idempotent(self, manager: ClusterManager):
        unit = self.unit(restart_policy="Always", run="sleep 600")
        await manager.submit(unit)
        await manager.delete(unit.key)
        await manager.delete(unit.key)
        await manager.delete(f"{uuid.uuid4()}-1")  # Never submitted: deleting it is fine too.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.finish_timeout
        while unit.key in await manager.statuses():
            assert loop.time() < deadline, f"work {unit.key} still reported after delete"
            await asyncio.sleep(0.2)
