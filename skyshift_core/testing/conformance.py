"""Conformance suites that plugin authors run against their own plugins.

Subclass the suite in a test module and provide the plugin under test:

    import pytest_asyncio
    from skyshift_core.testing.conformance import (
        ClusterManagerConformance, DividePluginConformance, ScorePluginConformance,
    )

    class TestMyPlugin(DividePluginConformance, ScorePluginConformance):
        plugin_class = MyPlugin
        entry_point = "my-plugin"

    class TestMyBackend(ClusterManagerConformance):
        @pytest_asyncio.fixture
        async def manager(self):
            # A started manager whose cluster has room for two replicas of 1 CPU and 256 MiB.
            manager = MyClusterManager("my-cluster", MyClusterManager.validate_config({...}))
            await manager.start()
            yield manager
            await manager.stop()

Each suite checks the contract of the framework's interfaces, not the plugin's policy: the
plugin's own tests check what it decides. ClusterManagerConformance needs pytest-asyncio, in
either of its modes; the scheduling plugin suites need only pytest.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from importlib.metadata import entry_points

import pytest

from skyshift_core.cluster_manager import ClusterHealth, ClusterManager, ClusterManagerError, WorkStatus, WorkUnit
from skyshift_core.objects import Job, JobPhase, NodeResources, ResourceList
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
    ReservePlugin,
    ScorePlugin,
    Status,
)

# Resources that each replica of ClusterManagerConformance's work units requests.
REPLICA_CPUS = 1
REPLICA_MEMORY_MIB = 256
# The task states that the core compares, and those of a replica that has ended.
TASK_STATES = frozenset(phase.value for phase in JobPhase)
ENDED_STATES = frozenset({JobPhase.SUCCEEDED.value, JobPhase.FAILED.value})
# Seconds between two reads of a backend's statuses while a test waits for a state.
POLL_SECONDS = 0.2


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
    `FilterPluginConformance`, `ScorePluginConformance`, `DividePluginConformance`,
    `ReservePluginConformance`. Each check calls the plugin as a scheduling cycle does: one
    CycleState per Job, `pre_filter` before `filter` and `pre_score` before `score`. Override
    `jobs` to give Jobs that exercise the plugin, such as ones with the annotation it reads.
    """

    plugin_class: type[Plugin]
    entry_point: str | None = None
    plugin_args: dict = {}

    def make_plugin(self) -> Plugin:
        return self.plugin_class(dict(self.plugin_args))

    def jobs(self) -> list[Job]:
        """Return the Jobs that each check runs the plugin on."""
        return [sample_job()]

    def test_has_name(self):
        assert self.plugin_class.name, "a scheduling plugin needs a non-empty `name`"

    def test_entry_point_matches_name(self):
        assert self.entry_point, "set `entry_point` to the plugin's name in skyshift.scheduler_plugins"
        found = {ep.name: ep for ep in entry_points(group="skyshift.scheduler_plugins")}
        assert self.entry_point in found, f"no entry point {self.entry_point!r} in skyshift.scheduler_plugins"
        assert found[self.entry_point].load() is self.plugin_class
        assert self.plugin_class.name == self.entry_point, (
            f"the class's name {self.plugin_class.name!r} differs from its entry point {self.entry_point!r}; "
            "skyshift explain shows the class's name, and profiles use the entry point's"
        )

    def test_implements_an_extension_point(self):
        assert issubclass(self.plugin_class, (FilterPlugin, ScorePlugin, DividePlugin, ReservePlugin)), (
            "a scheduling plugin implements at least one of FilterPlugin, ScorePlugin, DividePlugin, ReservePlugin"
        )


class FilterPluginConformance(SchedulerPluginConformance):
    def test_pre_filter_returns_status(self):
        for job in self.jobs():
            status = self.make_plugin().pre_filter(CycleState(), job)
            assert isinstance(status, Status), f"pre_filter returned {status!r}, expected a Status"

    def test_filter_returns_status(self):
        # As in a cycle: filter runs only after pre_filter returned SUCCESS, with the same state.
        plugin = self.make_plugin()
        for job in self.jobs():
            state = CycleState()
            if plugin.pre_filter(state, job).code is not Code.SUCCESS:
                continue
            for cluster in sample_clusters():
                status = plugin.filter(state, job, cluster)
                assert isinstance(status, Status), f"filter returned {status!r} for {cluster.name}, expected a Status"
                assert status.code is not Code.SKIP, "filter returned SKIP, which only pre_filter may return"


class ScorePluginConformance(SchedulerPluginConformance):
    def test_pre_score_returns_success_skip_or_error(self):
        for job in self.jobs():
            status = self.make_plugin().pre_score(CycleState(), job, sample_clusters())
            assert isinstance(status, Status), f"pre_score returned {status!r}, expected a Status"
            assert status.code in (Code.SUCCESS, Code.SKIP, Code.ERROR), status

    def test_scores_within_range_after_normalization(self):
        # As in a cycle: score runs only after pre_score returned SUCCESS, and normalize_scores
        # gets the same state.
        plugin = self.make_plugin()
        clusters = sample_clusters()
        for job in self.jobs():
            state = CycleState()
            if plugin.pre_score(state, job, clusters).code is not Code.SUCCESS:
                continue
            scores = {cluster.name: plugin.score(state, job, cluster) for cluster in clusters}
            plugin.normalize_scores(state, job, scores)
            assert all(isinstance(value, int) and not isinstance(value, bool) for value in scores.values()), (
                f"scores must be ints after normalize_scores: {scores}"
            )
            assert all(MIN_SCORE <= value <= MAX_SCORE for value in scores.values()), scores


class ReservePluginConformance(SchedulerPluginConformance):
    def _placement(self) -> dict[str, int]:
        return {cluster.name: 1 for cluster in sample_clusters()[:2]}

    def test_reserve_returns_status(self):
        for job in self.jobs():
            plugin = self.make_plugin()
            state = CycleState()
            status = plugin.reserve(state, job, self._placement())
            assert isinstance(status, Status), f"reserve returned {status!r}, expected a Status"
            assert status.code is not Code.SKIP, "reserve returned SKIP, which only pre_filter and pre_score may return"
            plugin.unreserve(state, job, self._placement())

    def test_unreserve_is_idempotent(self):
        # The cycle unreserves the plugin that turned a placement down too, and a failed write may
        # follow a refusal of a later plugin, so unreserve must take repeats and calls without reserve.
        for job in self.jobs():
            plugin = self.make_plugin()
            state = CycleState()
            plugin.unreserve(state, job, self._placement())
            plugin.reserve(state, job, self._placement())
            plugin.unreserve(state, job, self._placement())
            plugin.unreserve(state, job, self._placement())


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
        assert all(isinstance(count, int) and not isinstance(count, bool) for count in division.values()), (
            f"replica counts must be ints: {division}"
        )
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
    """Checks a cluster manager against the ClusterManager contract in `skyshift_core.cluster_manager`.

    Provide a function-scoped `manager` fixture that returns a started manager, or yields one and
    stops it afterwards. Its cluster must be ready, and its nodes must have room for two replicas
    of 1 CPU and 256 MiB (REPLICA_CPUS, REPLICA_MEMORY_MIB) running at once. Each test deletes
    its work before it ends. Declare an async fixture with `pytest_asyncio.fixture`, which works in both
    of pytest-asyncio's modes, strict and auto: `pytest.fixture` on an async function works in
    auto mode only. The tests carry `pytest.mark.asyncio`, so they run in either mode, but they
    need pytest-asyncio installed.

    Override `finish_timeout` (seconds within which a short replica must finish, and deleted work
    must leave `statuses`), and the methods `failing_unit`, `output_unit` and `sibling_manager`
    as their docstrings describe.
    """

    finish_timeout: float = 60.0

    @pytest.fixture(autouse=True)
    def require_pytest_asyncio(self, request: pytest.FixtureRequest) -> None:
        # Without the pytest-asyncio plugin, pytest cannot run the async tests and fixtures. This
        # names the missing plugin before the first of them fails in a less direct way.
        if not request.config.pluginmanager.hasplugin("asyncio"):
            pytest.fail("ClusterManagerConformance needs the pytest-asyncio plugin: pip install pytest-asyncio")

    # ---- work units and helpers -----------------------------------------------------------

    def unit(
        self,
        replicas: int = 1,
        restart_policy: str = "Never",
        run: str = "true",
        backend: dict | None = None,
        indices: tuple[int, ...] | None = None,
    ) -> WorkUnit:
        """Build a share of a new Job with `replicas` replicas: the replicas `indices`, by default all of them."""
        job = Job.model_validate(
            {"kind": "Job", "metadata": {"name": "conformance", "namespace": "default", "uid": str(uuid.uuid4())},
             "spec": {"replicas": replicas, "run": run, "restart_policy": restart_policy,
                      "resources": {"cpus": REPLICA_CPUS, "memory": REPLICA_MEMORY_MIB}, "backend": backend or {}}}
        )  # fmt: skip
        return WorkUnit(job, "conformance", indices if indices is not None else tuple(range(replicas)), replicas, 1)

    def failing_unit(self) -> tuple[WorkUnit, int]:
        """A one-replica unit whose replica fails, and the exit code it fails with. Backends that
        do not run commands (a simulator) override this."""
        return self.unit(run="exit 3"), 3

    def output_unit(self) -> tuple[WorkUnit, dict[int, str]]:
        """A two-replica unit whose replicas write output, and one line that the output of each
        replica must contain. Backends that do not run commands override this."""
        unit = self.unit(replicas=2, run='echo "output of replica $SKYSHIFT_REPLICA_INDEX"')
        return unit, {index: f"output of replica {index}" for index in unit.replica_indices}

    async def sibling_manager(self, manager: ClusterManager) -> ClusterManager:
        """Build and start a manager of another cluster, named `<manager.name>-sibling`, on the same
        backend as `manager`. The default passes `manager.config`, validated again, to the
        manager's class; override this when the constructor needs more. The suite stops it."""
        manager_class = type(manager)
        sibling = manager_class(f"{manager.name}-sibling", manager_class.validate_config(manager.config))
        await sibling.start()
        return sibling

    async def wait_for_finish(self, manager: ClusterManager, key: str) -> WorkStatus:
        """Poll `statuses` until every task of work `key` has ended, and return its status."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.finish_timeout
        while loop.time() < deadline:
            status = (await manager.statuses()).get(key)
            if status is not None:
                check_states(status)
            if status and status.tasks and all(task.state in ENDED_STATES for task in status.tasks.values()):
                return status
            await asyncio.sleep(POLL_SECONDS)
        raise AssertionError(f"work {key} did not finish within {self.finish_timeout} s")

    async def wait_for_running(self, manager: ClusterManager, key: str) -> WorkStatus:
        """Poll `statuses` until a task of work `key` is Running, and return its status."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.finish_timeout
        while loop.time() < deadline:
            status = (await manager.statuses()).get(key)
            if status is not None:
                check_states(status)
            if status and any(task.state == "Running" for task in status.tasks.values()):
                return status
            await asyncio.sleep(POLL_SECONDS)
        raise AssertionError(f"no replica of work {key} was Running within {self.finish_timeout} s")

    async def wait_until_gone(self, manager: ClusterManager, key: str) -> None:
        """Poll `statuses` until it no longer lists work `key`, as it must after `delete(key)`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.finish_timeout
        while key in await manager.statuses():
            assert loop.time() < deadline, (
                f"work {key} is still listed by statuses() {self.finish_timeout} s after delete({key!r}); "
                "the skylet would call delete again in every cycle"
            )
            await asyncio.sleep(POLL_SECONDS)

    async def read_logs(
        self,
        manager: ClusterManager,
        key: str,
        replica: int | None = None,
        *,
        follow: bool = False,
        tail: int | None = None,
    ) -> list[tuple[int, str]]:
        """Return every (replica index, line) that `logs` yields; fail when it takes longer than `finish_timeout`."""
        try:
            async with asyncio.timeout(self.finish_timeout):
                return [item async for item in manager.logs(key, replica, follow=follow, tail=tail)]
        except TimeoutError:
            raise AssertionError(
                f"logs({key!r}, replica={replica}, follow={follow}) did not end within {self.finish_timeout} s"
            ) from None

    # ---- cluster --------------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_health_reports_ready(self, manager: ClusterManager):
        health = await manager.health()
        assert isinstance(health, ClusterHealth)
        assert health.ready, health

    @pytest.mark.asyncio
    async def test_nodes_report_capacity(self, manager: ClusterManager):
        nodes = await manager.nodes()
        assert nodes, "a ready cluster reports at least one node"
        for node in nodes.values():
            assert isinstance(node, NodeResources)
            assert node.capacity.fits(node.allocatable), "allocatable must not exceed capacity"

    @pytest.mark.asyncio
    async def test_nodes_fit_suite_replicas(self, manager: ClusterManager):
        replica = ResourceList(cpus=REPLICA_CPUS, memory=REPLICA_MEMORY_MIB)
        nodes = await manager.nodes()
        capacities = {name: node.capacity for name, node in nodes.items()}
        assert any(capacity.fits(replica) for capacity in capacities.values()), (
            f"no node reports the capacity of one replica of the suite ({REPLICA_CPUS} CPU, {REPLICA_MEMORY_MIB} MiB): "
            f"{capacities}; report capacity in CPUs and MiB, or give the test cluster bigger nodes"
        )
        total = ResourceList()
        for capacity in capacities.values():
            total = total.add(capacity)
        assert total.fits(replica.add(replica)), (
            f"the nodes report a total capacity of {total}, less than the two replicas that the suite runs at once"
        )

    # ---- work -----------------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_submit_is_idempotent(self, manager: ClusterManager):
        unit = self.unit(replicas=2)
        try:
            first = await manager.submit(unit)
            second = await manager.submit(unit)
            assert first.key == second.key == unit.key
            statuses = await manager.statuses()
            assert unit.key in statuses
            await self.wait_for_finish(manager, unit.key)
        finally:
            await manager.delete(unit.key)

    @pytest.mark.asyncio
    async def test_tasks_keyed_by_global_replica_index(self, manager: ClusterManager):
        # Replicas 1 and 3 of a four-replica Job, as after a placement that split it over clusters.
        unit = self.unit(replicas=4, indices=(1, 3))
        try:
            await manager.submit(unit)
            status = await self.wait_for_finish(manager, unit.key)
            assert set(status.tasks) == {"1", "3"}
            assert all(task.state == "Succeeded" for task in status.tasks.values()), status.tasks
        finally:
            await manager.delete(unit.key)

    @pytest.mark.asyncio
    async def test_failure_reports_exit_code(self, manager: ClusterManager):
        unit, exit_code = self.failing_unit()
        try:
            await manager.submit(unit)
            status = await self.wait_for_finish(manager, unit.key)
            task = status.tasks["0"]
            assert task.state == "Failed"
            assert task.exit_code == exit_code
        finally:
            await manager.delete(unit.key)

    @pytest.mark.asyncio
    async def test_statuses_list_only_own_work(self, manager: ClusterManager):
        # The skylet deletes every listed key that no Job places on its cluster, so a backend that
        # listed another cluster's work would have the skylet delete it.
        sibling = await self.sibling_manager(manager)
        own, other = self.unit(), self.unit()
        try:
            await manager.submit(own)
            await sibling.submit(other)
            await self.wait_for_finish(manager, own.key)
            await self.wait_for_finish(sibling, other.key)
            assert other.key not in await manager.statuses(), (
                f"{manager.name}.statuses() lists work {other.key} of cluster {sibling.name}; list only "
                "the work of the manager's own cluster name"
            )
            assert own.key not in await sibling.statuses(), (
                f"{sibling.name}.statuses() lists work {own.key} of cluster {manager.name}; list only "
                "the work of the manager's own cluster name"
            )
        finally:
            await manager.delete(own.key)
            await sibling.delete(other.key)
            await sibling.stop()

    # ---- delete ---------------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_delete_removes_running_work(self, manager: ClusterManager):
        unit = self.unit(restart_policy="Always", run="sleep 600")
        try:
            await manager.submit(unit)
            await self.wait_for_running(manager, unit.key)
        finally:
            await manager.delete(unit.key)
        await self.wait_until_gone(manager, unit.key)

    @pytest.mark.asyncio
    async def test_delete_removes_finished_work(self, manager: ClusterManager):
        unit = self.unit()
        try:
            await manager.submit(unit)
            await self.wait_for_finish(manager, unit.key)
        finally:
            await manager.delete(unit.key)
        await self.wait_until_gone(manager, unit.key)

    @pytest.mark.asyncio
    async def test_delete_is_idempotent(self, manager: ClusterManager):
        unit = self.unit(restart_policy="Always", run="sleep 600")
        await manager.submit(unit)
        await manager.delete(unit.key)
        await manager.delete(unit.key)
        await manager.delete(f"{uuid.uuid4()}-1")  # Never submitted: deleting it is fine too.
        await self.wait_until_gone(manager, unit.key)

    @pytest.mark.asyncio
    async def test_cancel_ends_unfinished_replicas(self, manager: ClusterManager):
        unit = self.unit(replicas=2, restart_policy="OnFailure", run="sleep 600")
        try:
            await manager.submit(unit)
            await self.wait_for_running(manager, unit.key)
            await manager.cancel(unit.key)
            await manager.cancel(unit.key)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.finish_timeout
            while True:
                # The default cancel deletes the work; a backend that keeps it reports its replicas Failed.
                status = (await manager.statuses()).get(unit.key)
                if status is None or all(task.state == "Failed" for task in status.tasks.values()):
                    break
                assert loop.time() < deadline, (
                    f"work {unit.key} still has unfinished replicas {self.finish_timeout} s after cancel: "
                    f"{ {index: task.state for index, task in status.tasks.items()} }"
                )
                await asyncio.sleep(POLL_SECONDS)
        finally:
            await manager.delete(unit.key)
        await self.wait_until_gone(manager, unit.key)

    # ---- logs -----------------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_logs_of_finished_replicas(self, manager: ClusterManager):
        if not manager.supports_logs:
            pytest.skip(f"{type(manager).__name__} does not set supports_logs")
        unit, expected = self.output_unit()
        try:
            await manager.submit(unit)
            await self.wait_for_finish(manager, unit.key)
            lines = await self.read_logs(manager, unit.key)
            assert not [text for _, text in lines if text.endswith(("\n", "\r"))], (
                f"logs() yielded lines with their line ending: {lines}; strip it"
            )
            for index, line in expected.items():
                assert (index, line) in lines, f"replica {index}'s line {line!r} is missing from logs(): {lines}"

            chosen = max(expected)
            only_chosen = await self.read_logs(manager, unit.key, chosen)
            assert (chosen, expected[chosen]) in only_chosen, only_chosen
            assert {index for index, _ in only_chosen} == {chosen}, (
                f"logs(replica={chosen}) yielded lines of other replicas: {only_chosen}"
            )

            last = await self.read_logs(manager, unit.key, tail=1)
            assert len(last) == len(expected), f"logs(tail=1) yielded {last}, expected one line of each replica"
            assert await self.read_logs(manager, unit.key, tail=0) == [], "logs(tail=0) yielded lines"

            # The replicas have ended, so following their output must end too.
            followed = await self.read_logs(manager, unit.key, follow=True)
            assert (chosen, expected[chosen]) in followed, followed
        finally:
            await manager.delete(unit.key)

    @pytest.mark.asyncio
    async def test_logs_of_unknown_work_raise(self, manager: ClusterManager):
        if not manager.supports_logs:
            pytest.skip(f"{type(manager).__name__} does not set supports_logs")
        key = f"{uuid.uuid4()}-1"
        with pytest.raises(ClusterManagerError):
            await self.read_logs(manager, key)


def check_states(status: WorkStatus) -> None:
    """Fail when a task of `status` has a state other than the JobPhase values that the core compares."""
    for index, task in status.tasks.items():
        assert task.state in TASK_STATES, (
            f"replica {index} of work {status.key} has state {task.state!r}; TaskStatus.state must be one of "
            f"{', '.join(sorted(TASK_STATES))} (the values of skyshift_core.objects.JobPhase)"
        )
