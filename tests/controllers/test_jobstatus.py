"""The job status controller: start and completion times, and the reason of a Failed Job."""

from __future__ import annotations

import pytest

from skyshift_core.controllers.jobstatus import JobStatusReconciler, aggregate_phase
from skyshift_core.objects import Job, JobPhase, TaskStatus
from skyshift_core.runtime.reconcile import Request


class OneJob:
    """Stands in for the Job informer."""

    def __init__(self, job: Job):
        self.job = job

    def get(self, name: str, namespace: str | None = None) -> Job | None:
        return self.job if name == self.job.metadata.name else None


class RecordingClient:
    """Stands in for the API client: keeps each status write."""

    def __init__(self):
        self.written: list[Job] = []
        self.events: list = []

    async def update_status(self, job: Job) -> dict:
        self.written.append(job)
        return job.model_dump(mode="json")

    async def create(self, obj) -> dict:
        self.events.append(obj)
        return obj.model_dump(mode="json")


def job_with_tasks(*states: str) -> Job:
    tasks = {str(index): {"state": state} for index, state in enumerate(states)}
    share = {"replica_indices": list(range(len(states))), "tasks": tasks}
    return Job.model_validate(
        {
            "metadata": {"name": "train", "namespace": "default"},
            "spec": {"run": "x", "replicas": len(states), "restart_policy": "Never"},
            "status": {"placement": {"a": len(states)}, "clusters": {"a": share}},
        }
    )


async def test_start_time_set_when_first_replica_reported():
    client = RecordingClient()
    reconciler = JobStatusReconciler(client, OneJob(job_with_tasks("Pending", "Pending")))  # type: ignore[arg-type]

    await reconciler.reconcile(Request("Job", "default", "train"))

    (written,) = client.written
    assert written.status.phase.value == "Pending"
    assert written.status.start_time is not None
    assert written.status.completion_time is None


async def test_unreported_job_has_no_start_time():
    job = job_with_tasks("Pending")
    job.status.clusters = {}
    client = RecordingClient()

    await JobStatusReconciler(client, OneJob(job)).reconcile(Request("Job", "default", "train"))  # type: ignore[arg-type]

    assert client.written == []


async def test_quick_job_starts_before_it_completes():
    job = job_with_tasks("Pending")
    client = RecordingClient()
    await JobStatusReconciler(client, OneJob(job)).reconcile(Request("Job", "default", "train"))  # type: ignore[arg-type]
    started = client.written[-1]
    started.status.clusters["a"].tasks["0"].state = "Succeeded"

    await JobStatusReconciler(client, OneJob(started)).reconcile(Request("Job", "default", "train"))  # type: ignore[arg-type]

    finished = client.written[-1]
    assert finished.status.phase.value == "Succeeded"
    assert finished.status.start_time == started.status.start_time
    assert finished.status.completion_time > finished.status.start_time


async def test_partly_succeeded_job_is_running():
    client = RecordingClient()
    reconciler = JobStatusReconciler(client, OneJob(job_with_tasks("Succeeded", "Succeeded", "Pending", "Pending")))  # type: ignore[arg-type]

    await reconciler.reconcile(Request("Job", "default", "train"))

    (written,) = client.written
    assert written.status.phase.value == "Running"
    assert written.status.completion_time is None


def test_scaled_down_job_waits_for_new_placement():
    # Scaled from 5 to 2 replicas: 0 to 2 succeeded, while 3 and 4 still run until the scheduler
    # drops them from the placement.
    job = job_with_tasks("Succeeded", "Succeeded", "Succeeded", "Running", "Running")
    job.spec.replicas = 2

    phase, message = aggregate_phase(job)

    assert phase is JobPhase.RUNNING
    assert message == "2 of 2 replicas running, 3 succeeded"


def test_scaled_down_job_succeeds_once_placed():
    job = job_with_tasks("Succeeded", "Succeeded", "Succeeded", "Running", "Running")
    job.spec.replicas = 2
    job.status.placement = {"a": 2}
    job.status.clusters["a"].replica_indices = [0, 1]

    assert aggregate_phase(job) == (JobPhase.SUCCEEDED, "all 2 replicas succeeded")


def job_with_failed_task(**task: object) -> Job:
    job = job_with_tasks("Failed")
    job.status.clusters["a"].tasks["0"] = TaskStatus(state="Failed", **task)
    return job


@pytest.mark.parametrize(
    ("task", "message"),
    [
        # The exit code and reason explain the failure, and the message would repeat the code.
        pytest.param(
            {"exit_code": 1, "reason": "Error", "message": "exited with code 1"},
            "replica 0 on a failed with exit code 1: Error",
            id="exit-code",
        ),
        # A rejected submission has no exit code, so the backend's text follows the reason, on one line.
        pytest.param(
            {"reason": "SubmitRejected", "message": "sbatch: error: invalid partition specified: nosuch\nsbatch: error: x"},
            "replica 0 on a failed: SubmitRejected: sbatch: error: invalid partition specified: nosuch; sbatch: error: x",
            id="rejected",
        ),
        pytest.param(
            {"reason": "DeadlineExceeded", "message": "Job was active longer than specified deadline"},
            "replica 0 on a failed: DeadlineExceeded: Job was active longer than specified deadline",
            id="no-exit-code",
        ),
        pytest.param({"reason": "NodeFail"}, "replica 0 on a failed: NodeFail", id="no-message"),
        pytest.param({"reason": "Evicted", "message": "Evicted"}, "replica 0 on a failed: Evicted", id="message-repeats-reason"),
        pytest.param({"exit_code": 3, "reason": "Failed"}, "replica 0 on a failed with exit code 3", id="reason-repeats-state"),
    ],
)
def test_failed_message(task: dict, message: str):
    phase, reason = aggregate_phase(job_with_failed_task(**task))

    assert phase is JobPhase.FAILED
    assert reason == message


def test_restarting_replica_keeps_job_running():
    # Between its attempts a Slurm replica is Pending (reason Restarting) for a moment.
    job = job_with_tasks("Pending")
    job.spec.restart_policy = "Always"
    job.status.clusters["a"].tasks["0"] = TaskStatus(state="Pending", reason="Restarting", restarts=2)

    assert aggregate_phase(job) == (JobPhase.RUNNING, "0 of 1 replicas running, 0 succeeded")


@pytest.mark.parametrize(
    ("states", "event_type", "reason", "message"),
    [
        (("Succeeded", "Succeeded"), "Normal", "Completed", "all 2 replicas succeeded"),
        (("Succeeded", "Failed"), "Warning", "Failed", "replica 1 on a failed"),
    ],
    ids=["succeeded", "failed"],
)
async def test_finished_job_gets_event(states, event_type, reason, message):
    # As Kubernetes' Job controller records Completed, or a Warning when the Job fails.
    client = RecordingClient()

    await JobStatusReconciler(client, OneJob(job_with_tasks(*states))).reconcile(Request("Job", "default", "train"))  # type: ignore[arg-type]

    (event,) = client.events
    assert (event.type, event.reason, event.source) == (event_type, reason, "job-status-controller")
    assert event.message.startswith(message)
    assert event.involved_object.name == "train"


async def test_running_job_gets_no_event():
    client = RecordingClient()

    await JobStatusReconciler(client, OneJob(job_with_tasks("Running"))).reconcile(Request("Job", "default", "train"))  # type: ignore[arg-type]

    assert client.events == []
