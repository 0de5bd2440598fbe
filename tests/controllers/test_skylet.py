"""When a skylet runs its cycles: fast status reads while work changes state, wake-ups from
backends that push status changes, wake-ups during a cycle, and which Job changes wake it.

The poll interval is 30 s in these tests, so every change the tests wait for (10 s at most) can
only arrive through the mechanism under test, never through the periodic poll."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from skyshift_core.cluster_manager import ClusterHealth, ClusterManager, ClusterManagerError, WorkStatus, WorkUnit
from skyshift_core.controllers.manager import ControllerManagerConfig
from skyshift_core.controllers.skylet import Skylet
from skyshift_core.errors import ForbiddenError, ServerUnreachableError
from skyshift_core.objects import Job, JobPhase, NodeResources, TaskStatus
from skyshift_core.runtime.informer import Informer
from skyshift_core.testing.controlplane import simulated_cluster, wait_for, wait_for_ready_clusters

CLUSTER = "edge"
SLOW_POLL = 30.0


class ScriptedManager(ClusterManager):
    """A backend whose task states the test sets. It records submissions and can keep one open."""

    provides = "a backend scripted by the test"

    def __init__(self, name: str):
        super().__init__(name, {})
        self.state = "Pending"
        self.restarts = 0
        self.submitted: dict[str, WorkUnit] = {}
        self.changed = asyncio.Event()
        # While set, submit waits for `release` after setting `entered` and then fails, so that
        # no task write of the skylet wakes it again.
        self.hold_submit = False
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def health(self) -> ClusterHealth:
        return ClusterHealth(ready=True)

    async def nodes(self) -> dict[str, NodeResources]:
        return {}

    def _status(self, unit: WorkUnit) -> WorkStatus:
        tasks = {str(index): TaskStatus(state=self.state, restarts=self.restarts) for index in unit.replica_indices}
        return WorkStatus(key=unit.key, tasks=tasks, manager_job_ids=[f"scripted-{unit.key}"])

    async def submit(self, unit: WorkUnit) -> WorkStatus:
        if self.hold_submit:
            self.hold_submit = False
            self.entered.set()
            await self.release.wait()
            raise ClusterManagerError("the scripted backend rejected this submission", retryable=True)
        self.submitted[unit.key] = unit
        return self._status(unit)

    async def delete(self, key: str) -> None:
        self.submitted.pop(key, None)

    async def statuses(self) -> dict[str, WorkStatus]:
        return {key: self._status(unit) for key, unit in self.submitted.items()}

    async def watch_statuses(self):
        while True:
            self.changed.clear()
            yield await self.statuses()
            await self.changed.wait()

    def set_state(self, state: str) -> None:
        self.state = state
        self.changed.set()


class PushingManager(ScriptedManager):
    """The scripted backend, announcing each change through `watch_statuses`."""

    supports_watch = True


async def is_true(predicate) -> bool:
    return bool(predicate())


@pytest.fixture
async def run_skylet(async_client):
    """Start a skylet for the cluster `edge` with the given manager; stop it afterwards."""
    await async_client.create(simulated_cluster(CLUSTER))
    jobs = Informer(async_client, Job)
    jobs.start()
    tasks: list[asyncio.Task] = []

    async def start(manager: ClusterManager, client=None, **settings) -> Skylet:
        skylet = Skylet(CLUSTER, manager, client or async_client, jobs, poll_interval=SLOW_POLL, **settings)
        jobs.add_event_handler(
            on_add=lambda job: skylet.wake(),
            on_update=lambda old, new: skylet.wake() if skylet.affected_by(old, new) else None,
            on_delete=lambda job: skylet.wake(),
        )
        await wait_for(lambda: is_true(lambda: jobs.has_synced))
        tasks.append(asyncio.get_running_loop().create_task(skylet.run()))
        return skylet

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await jobs.stop()


async def place(client, name: str, replicas: int = 1, restart_policy: str = "Always") -> None:
    """Create a Job and place all its replicas on `edge`, as the scheduler would."""
    spec = {"run": "serve", "replicas": replicas, "restart_policy": restart_policy}
    await client.create({"kind": "Job", "metadata": {"name": name}, "spec": spec})
    share = {"replicas": replicas, "replica_indices": list(range(replicas)), "generation": 1}
    status = {"placement": {CLUSTER: replicas}, "placement_generation": 1, "clusters": {CLUSTER: share}}
    await client.patch("Job", name, {"status": status}, "default", subresource="status")


async def task_state(client, name: str, state: str):
    share = (await client.get("Job", name, "default"))["status"]["clusters"].get(CLUSTER) or {}
    tasks = share.get("tasks") or {}
    return tasks if tasks and all(task["state"] == state for task in tasks.values()) else None


async def test_fast_polls_follow_a_submission(async_client, run_skylet):
    manager = ScriptedManager(CLUSTER)
    await run_skylet(manager, fast_poll_interval=0.05, fast_poll_window=SLOW_POLL)
    await place(async_client, "web")
    await wait_for(lambda: task_state(async_client, "web", "Pending"))

    # The backend changes without telling anyone: only the fast status reads can find it.
    manager.state = "Running"

    assert await wait_for(lambda: task_state(async_client, "web", "Running"), timeout=10)


async def test_pushed_status_change_wakes_the_skylet(async_client, run_skylet):
    manager = PushingManager(CLUSTER)
    await run_skylet(manager, fast_poll_interval=0.05, fast_poll_window=0.001)
    await place(async_client, "web")
    await wait_for(lambda: task_state(async_client, "web", "Pending"))

    manager.set_state("Running")

    assert await wait_for(lambda: task_state(async_client, "web", "Running"), timeout=10)


async def restarted_events(client, name: str) -> list[dict]:
    events = (await client.list("Event", "default"))["items"]
    return [event for event in events if event["involved_object"]["name"] == name and event["reason"] == "Restarted"]


async def event_count(client, name: str, count: int) -> bool:
    events = await restarted_events(client, name)
    return bool(events) and events[0]["count"] == count


async def test_replica_restart_recorded_as_event(async_client, run_skylet):
    manager = PushingManager(CLUSTER)
    await run_skylet(manager, fast_poll_interval=0.05, fast_poll_window=0.001)
    await place(async_client, "web")
    await wait_for(lambda: task_state(async_client, "web", "Pending"))
    assert await restarted_events(async_client, "web") == []

    manager.restarts = 1
    manager.set_state("Running")
    (event,) = await wait_for(lambda: restarted_events(async_client, "web"), timeout=10)

    assert event["type"] == "Normal"
    assert event["message"] == "replica 0 restarted on cluster edge (restart_policy Always)"
    assert event["source"] == f"skylet/{CLUSTER}"

    # A second restart counts up on the same Event.
    manager.restarts = 2
    manager.set_state("Pending")
    assert await wait_for(lambda: event_count(async_client, "web", 2), timeout=10)
    assert len(await restarted_events(async_client, "web")) == 1

    # Three restarts seen in one poll count three.
    manager.restarts = 5
    manager.set_state("Running")
    assert await wait_for(lambda: event_count(async_client, "web", 5), timeout=10)
    assert len(await restarted_events(async_client, "web")) == 1


async def events_of(client, name: str, reason: str) -> list[dict]:
    events = (await client.list("Event", "default"))["items"]
    return [event for event in events if event["involved_object"]["name"] == name and event["reason"] == reason]


async def run_then_fail(async_client, run_skylet, manager: ScriptedManager, replicas: int = 1, **settings) -> None:
    """Run Job `train` on `manager` until its replicas run, then mark it Failed, as the job status
    controller does when a replica on another cluster failed for good."""
    manager.state = "Running"
    await run_skylet(manager, **settings)
    await place(async_client, "train", replicas=replicas)
    await wait_for(lambda: task_state(async_client, "train", "Running"))
    await async_client.patch("Job", "train", {"status": {"phase": "Failed"}}, "default", subresource="status")


async def test_failed_job_replicas_stopped(async_client, run_skylet):
    # As Kubernetes ends a failed Job's active pods, the skylet stops the replicas that still run.
    manager = ScriptedManager(CLUSTER)
    await run_then_fail(async_client, run_skylet, manager, replicas=2)
    tasks = await wait_for(lambda: task_state(async_client, "train", "Failed"), timeout=10)
    (event,) = await wait_for(lambda: events_of(async_client, "train", "Stopped"))

    assert manager.submitted == {}
    assert {index: (task["reason"], task["message"]) for index, task in tasks.items()} == {
        "0": ("JobFailed", "stopped because the Job failed"),
        "1": ("JobFailed", "stopped because the Job failed"),
    }
    assert event["message"] == "stopped replicas [0, 1] on cluster edge because the Job failed"
    assert event["source"] == f"skylet/{CLUSTER}"


async def test_failed_job_unlisted_replicas_recorded(async_client, run_skylet):
    # The Job failed before replica 1 was submitted here, and replica 0's stop was never recorded.
    manager = ScriptedManager(CLUSTER)
    await async_client.create({"kind": "Job", "metadata": {"name": "train"}, "spec": {"run": "x", "replicas": 2}})
    share = {"replicas": 2, "replica_indices": [0, 1], "generation": 1, "tasks": {"0": {"state": "Running"}}}
    status = {"phase": "Failed", "placement": {CLUSTER: 2}, "placement_generation": 1, "clusters": {CLUSTER: share}}
    await async_client.patch("Job", "train", {"status": status}, "default", subresource="status")
    await run_skylet(manager)

    tasks = await wait_for(lambda: task_state(async_client, "train", "Failed"), timeout=10)

    assert {index: (task["reason"], task["message"]) for index, task in tasks.items()} == {
        "0": ("JobFailed", "stopped because the Job failed"),
        "1": ("JobFailed", "not started because the Job failed"),
    }
    assert manager.submitted == {}
    # Nothing was stopped on the backend, so no Stopped Event is recorded.
    assert await events_of(async_client, "train", "Stopped") == []


async def test_wake_during_a_cycle_is_not_lost(async_client, run_skylet):
    manager = ScriptedManager(CLUSTER)
    manager.hold_submit = True
    skylet = await run_skylet(manager, fast_poll_interval=0.05, fast_poll_window=0.001)
    await place(async_client, "first")
    await asyncio.wait_for(manager.entered.wait(), 10)

    # The second Job is placed while the cycle that submits the first one is still running.
    await place(async_client, "second")
    await wait_for(lambda: is_true(lambda: (skylet.jobs.get("second", "default") or job_with(None)).status.placement))
    manager.release.set()

    def second_submitted() -> bool:
        return "second" in {unit.job.metadata.name for unit in manager.submitted.values()}

    assert await wait_for(lambda: is_true(second_submitted), timeout=10)


class ConcurrentManager(ScriptedManager):
    """The scripted backend, taking three submissions at once and recording how many ran together."""

    max_parallel_submits = 3

    def __init__(self, name: str):
        super().__init__(name)
        self.in_flight = 0
        self.peak = 0

    async def submit(self, unit: WorkUnit) -> WorkStatus:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(0.05)
            return await super().submit(unit)
        finally:
            self.in_flight -= 1


async def test_submissions_run_up_to_the_manager_limit(async_client, run_skylet):
    manager = ConcurrentManager(CLUSTER)
    for number in range(7):
        await place(async_client, f"burst-{number}")
    await run_skylet(manager)

    def all_submitted() -> bool:
        return len(manager.submitted) == 7

    assert await wait_for(lambda: is_true(all_submitted), timeout=10)
    assert manager.peak == 3


def job_with(cluster_share: dict | None, generation: int = 1, tasks_state: str = "Pending") -> Job:
    status: dict = {}
    if cluster_share is not None:
        share = {**cluster_share, "tasks": {"0": {"state": tasks_state}}}
        status = {"placement": {CLUSTER: 1}, "clusters": {CLUSTER: share}}
    return Job.model_validate(
        {"metadata": {"name": "web", "namespace": "default", "generation": generation}, "spec": {"run": "x"}, "status": status}
    )


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(None, job_with(None), True, id="added"),
        pytest.param(job_with(None), None, True, id="deleted"),
        pytest.param(job_with(None), job_with(None, generation=2), True, id="spec-changed"),
        pytest.param(job_with(None), job_with({"replica_indices": [0], "generation": 1}), True, id="placed-here"),
        pytest.param(
            job_with({"replica_indices": [0], "generation": 1}),
            job_with({"replica_indices": [1], "generation": 2}),
            True,
            id="share-moved",
        ),
        pytest.param(
            job_with({"replica_indices": [0], "generation": 1}),
            job_with({"replica_indices": [0], "generation": 1}, tasks_state="Running"),
            False,
            id="task-states-only",
        ),
    ],
)
def test_which_job_changes_wake_the_skylet(old, new, expected):
    skylet = Skylet(CLUSTER, ScriptedManager(CLUSTER), client=None, jobs=None)  # type: ignore[arg-type]

    assert skylet.affected_by(old, new) is expected


def test_job_failing_wakes_the_skylet():
    skylet = Skylet(CLUSTER, ScriptedManager(CLUSTER), client=None, jobs=None)  # type: ignore[arg-type]
    old = job_with({"replica_indices": [0], "generation": 1}, tasks_state="Running")
    new = old.model_copy(deep=True)
    new.status.phase = JobPhase.FAILED

    assert skylet.affected_by(old, new) is True
    assert skylet.affected_by(new, new.model_copy(deep=True)) is False


def test_own_task_write_wakes_the_skylet():
    skylet = Skylet(CLUSTER, ScriptedManager(CLUSTER), client=None, jobs=None)  # type: ignore[arg-type]
    old = job_with({"replica_indices": [0], "generation": 1})
    new = job_with({"replica_indices": [0], "generation": 1}, tasks_state="Running")
    skylet._unseen_task_writes[("default", "web")] = 42

    assert skylet.affected_by(old, new) is True


def test_fast_poll_settings_from_config(tmp_path: Path):
    path = tmp_path / "controller-manager.yaml"
    path.write_text("skylet:\n  poll_interval: 2\n  fast_poll_interval: 0.5\n  fast_poll_window: 20\n")

    config = ControllerManagerConfig.load(path)

    assert (config.poll_interval, config.fast_poll_interval, config.fast_poll_window) == (2.0, 0.5, 20.0)


@pytest.mark.parametrize("value", ["0", "-1", "soon", "true"])
def test_invalid_fast_poll_interval_rejected(tmp_path: Path, value: str):
    path = tmp_path / "controller-manager.yaml"
    path.write_text(f"skylet:\n  fast_poll_interval: {value}\n")

    with pytest.raises(ValueError, match=r"invalid skylet.fast_poll_interval .* expected a number of seconds greater than 0"):
        ControllerManagerConfig.load(path)


async def test_skylet_stops_when_cancelled_as_woken(async_client, run_skylet):
    skylet = await run_skylet(ScriptedManager(CLUSTER))
    await asyncio.sleep(0.3)  # The skylet has run its first cycle and waits for a wake-up.
    (task,) = [task for task in asyncio.all_tasks() if task.get_coro().__qualname__ == "Skylet.run"]

    # A wake-up and a cancellation in the same turn of the event loop: the cancellation wins.
    skylet.wake()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)

    assert task in done
    assert task.cancelled()


async def test_plugin_bug_marks_cluster_error(client, control_plane, monkeypatch):
    """A cluster manager whose validate_config raises something other than ConfigError marks its Cluster ERROR."""
    from skyshift_core.controllers import skylets

    class BrokenManager(ClusterManager):
        @classmethod
        def validate_config(cls, config):
            return config["missing"]

    real_load = skylets.load_driver
    monkeypatch.setattr(
        skylets, "load_driver", lambda group, name: BrokenManager if name == "broken" else real_load(group, name)
    )
    control_plane()

    await client.create({"kind": "Cluster", "metadata": {"name": "buggy"}, "spec": {"manager": "broken"}})

    async def marked():
        cluster = await client.get("Cluster", "buggy")
        return cluster if cluster["status"]["phase"] == "ERROR" else None

    ready = {condition["type"]: condition for condition in (await wait_for(marked))["status"]["conditions"]}["Ready"]
    assert ready["reason"] == "PluginError"
    assert ready["message"] == "the cluster manager plugin 'broken' failed: KeyError: 'missing'"


async def test_readiness_transitions_recorded_as_events(client, control_plane):
    from skyshift_simulated import registered_cluster

    control_plane()
    await client.create(simulated_cluster("flaky"))
    await wait_for_ready_clusters(client, 1)

    registered_cluster("flaky").reachable = False
    await wait_for(lambda: cluster_phase(client, "flaky", "ERROR"))
    registered_cluster("flaky").reachable = True
    await wait_for(lambda: cluster_phase(client, "flaky", "READY"))

    async def reasons():
        events = (await client.list("Event", "default"))["items"]
        found = {event["reason"]: event for event in events if event["involved_object"]["name"] == "flaky"}
        return found if {"ClusterReady", "ClusterNotReady"} <= set(found) else None

    found = await wait_for(reasons)
    assert found["ClusterNotReady"]["type"] == "Warning"
    assert "unreachable" in found["ClusterNotReady"]["message"]
    assert found["ClusterReady"]["type"] == "Normal"
    assert found["ClusterReady"]["count"] == 2  # Ready when attached, and again when it returned.


async def cluster_phase(client, name: str, phase: str) -> bool:
    return (await client.get("Cluster", name))["status"]["phase"] == phase


class LingeringManager(ScriptedManager):
    """A backend that lists deleted work as Running for a while, as one that deletes asynchronously may."""

    def __init__(self, name: str):
        super().__init__(name)
        self.deletes = 0

    async def delete(self, key: str) -> None:
        self.deletes += 1
        if self.deletes >= 3:
            self.submitted.pop(key, None)


async def test_failed_job_stop_recorded_once(async_client, run_skylet):
    manager = LingeringManager(CLUSTER)
    await run_then_fail(async_client, run_skylet, manager, fast_poll_interval=0.05, fast_poll_window=SLOW_POLL)
    await wait_for(lambda: is_true(lambda: not manager.submitted), timeout=10)
    (event,) = await events_of(async_client, "train", "Stopped")

    assert manager.deletes == 3
    assert event["count"] == 1


class CancellingManager(ScriptedManager):
    """A backend that cancels work as Slurm does: the work stays listed, its replicas Failed."""

    def __init__(self, name: str):
        super().__init__(name)
        self.cancelled: list[str] = []

    async def cancel(self, key: str) -> None:
        self.cancelled.append(key)
        self.state = "Failed"

    def _status(self, unit: WorkUnit) -> WorkStatus:
        status = super()._status(unit)
        if self.state == "Failed":
            for task in status.tasks.values():
                task.reason = "Cancelled"
        return status


async def test_failed_job_work_cancelled_not_deleted(async_client, run_skylet):
    manager = CancellingManager(CLUSTER)
    await run_then_fail(async_client, run_skylet, manager, fast_poll_interval=0.05, fast_poll_window=SLOW_POLL)
    tasks = await wait_for(lambda: task_state(async_client, "train", "Failed"), timeout=10)
    await asyncio.sleep(0.5)  # Several fast cycles read the backend's Cancelled report meanwhile.
    share = (await async_client.get("Job", "train", "default"))["status"]["clusters"][CLUSTER]

    assert len(manager.cancelled) == 1
    assert list(manager.submitted) == manager.cancelled
    # The skylet's record of the stop stays in place of the backend's later report.
    assert tasks["0"]["reason"] == "JobFailed"
    assert share["tasks"]["0"]["reason"] == "JobFailed"


class BuggySubmitManager(ScriptedManager):
    """A backend whose submit raises a plain exception for Job `buggy`, as a plugin bug does."""

    async def submit(self, unit: WorkUnit) -> WorkStatus:
        if unit.job.metadata.name == "buggy":
            raise RuntimeError("simulated bug in submit")
        return await super().submit(unit)


async def test_plugin_bug_in_submit_fails_only_that_job(async_client, run_skylet, caplog):
    manager = BuggySubmitManager(CLUSTER)
    manager.state = "Running"
    await run_skylet(manager)
    await place(async_client, "buggy")
    await place(async_client, "healthy")

    await wait_for(lambda: task_state(async_client, "healthy", "Running"))
    (event,) = await wait_for(lambda: events_of(async_client, "buggy", "SubmitFailed"))
    cluster = await async_client.get("Cluster", CLUSTER)

    assert event["message"] == (
        "RuntimeError: simulated bug in submit in submit() of BuggySubmitManager; this is a bug in the cluster "
        "manager plugin, and the submission is retried next cycle"
    )
    assert cluster["status"]["phase"] == "READY"
    assert "Traceback" in caplog.text


class NoStatusesManager(ClusterManager):
    """A backend that leaves out `statuses`, as a plugin author may by mistake."""

    async def health(self) -> ClusterHealth:
        return ClusterHealth(ready=True)

    async def nodes(self) -> dict[str, NodeResources]:
        return {}


async def test_missing_method_named_on_cluster(async_client, run_skylet):
    await run_skylet(NoStatusesManager(CLUSTER, {}))
    await place(async_client, "web")

    async def not_ready():
        cluster = await async_client.get("Cluster", CLUSTER)
        return cluster if cluster["status"]["phase"] == "ERROR" else None

    conditions = {condition["type"]: condition for condition in (await wait_for(not_ready))["status"]["conditions"]}

    assert conditions["Ready"]["message"] == (
        f"NotImplementedError: cluster manager {NoStatusesManager.__module__}.NoStatusesManager does not implement "
        "statuses(); this is a bug in the plugin: report it to its authors"
    )


class PurgingManager(ScriptedManager):
    """The scripted backend, counting its status reads, whose work the test can purge as Slurm
    purges ended jobs after MinJobAge, or as a restarted in-memory backend loses them."""

    def __init__(self, name: str):
        super().__init__(name)
        self.reads = 0
        self.submissions = 0

    async def submit(self, unit: WorkUnit) -> WorkStatus:
        self.submissions += 1
        return await super().submit(unit)

    async def statuses(self) -> dict[str, WorkStatus]:
        self.reads += 1
        return await super().statuses()


@pytest.mark.parametrize(("restart_policy", "submissions"), [("Never", 1), ("OnFailure", 1), ("Always", 2)])
async def test_purged_succeeded_replicas_not_run_again(async_client, run_skylet, restart_policy, submissions):
    # As a Kubernetes Job never reruns a completed pod; under Always a replica runs again whatever its end.
    manager = PurgingManager(CLUSTER)
    await run_skylet(manager, fast_poll_interval=0.05, fast_poll_window=SLOW_POLL)
    await place(async_client, "train", restart_policy=restart_policy)
    await wait_for(lambda: task_state(async_client, "train", "Pending"))
    manager.set_state("Succeeded")
    await wait_for(lambda: task_state(async_client, "train", "Succeeded"))

    manager.submitted.clear()
    reads = manager.reads
    await wait_for(lambda: is_true(lambda: manager.reads >= reads + 5), timeout=10)

    assert manager.submissions == submissions
    # The Job keeps the recorded outcome of the purged work.
    assert await task_state(async_client, "train", "Succeeded")


class ForbiddingClient:
    """The API client, except that writing the status of Job `forbidden` is denied, as for a
    controller manager whose Role predates a new controller."""

    def __init__(self, client):
        self._client = client

    def __getattr__(self, name: str):
        return getattr(self._client, name)

    async def patch(self, kind, name, *args, **kwargs):
        if name == "forbidden" and kwargs.get("subresource") == "status":
            raise ForbiddenError("user 'skyshift-controller-manager' may not patch jobs/status 'forbidden'")
        return await self._client.patch(kind, name, *args, **kwargs)


async def test_refused_status_write_isolated(async_client, run_skylet, caplog):
    manager = ScriptedManager(CLUSTER)
    await run_skylet(manager, client=ForbiddingClient(async_client), fast_poll_interval=0.05, fast_poll_window=SLOW_POLL)
    await place(async_client, "forbidden")
    await place(async_client, "allowed")

    manager.state = "Running"
    assert await wait_for(lambda: task_state(async_client, "allowed", "Running"), timeout=10)

    cluster = await async_client.get("Cluster", CLUSTER)
    assert cluster["status"]["phase"] == "READY"
    assert "may not write the status of Job default/forbidden" in caplog.text


class UnreachableClient(ForbiddingClient):
    """The API client while the API server cannot be reached: every write fails."""

    async def update_status(self, *args, **kwargs):
        raise ServerUnreachableError("cannot reach the API server at http://127.0.0.1:9: connection refused")


async def test_unreachable_api_server_logged_without_traceback(async_client, run_skylet, caplog):
    # The API server's outage is neither the cluster's failure nor a bug: one line per failed cycle.
    manager = ScriptedManager(CLUSTER)
    await run_skylet(manager, client=UnreachableClient(async_client))

    assert await wait_for(lambda: is_true(lambda: "cycle failed at the API server" in caplog.text), timeout=10)
    assert "Traceback" not in caplog.text
    assert "cannot reach the API server at http://127.0.0.1:9" in caplog.text
