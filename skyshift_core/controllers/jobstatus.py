"""The job status controller: folds per-cluster replica states into one Job phase.

Skylets write each cluster's task states into `status.clusters`; this controller derives `phase`,
`start_time`, `completion_time` and the Succeeded/Failed conditions from them, so there is one
writer of the aggregate and the skylets never race over it.
"""

from __future__ import annotations

import logging

from skyshift_core.client import AsyncSkyShiftClient
from skyshift_core.controllers.events import record_event, single_line
from skyshift_core.objects import Condition, Job, JobPhase, RestartPolicy, set_condition, utc_now
from skyshift_core.runtime.informer import Informer
from skyshift_core.runtime.reconcile import Request, Result

logger = logging.getLogger(__name__)


def aggregate_phase(job: Job) -> tuple[JobPhase, str]:
    """The Job's phase from its replicas' states, and a one-line reason.

    - Failed: a replica failed for good (restart policy Never, or OnFailure retries exhausted,
      which backends report as Failed). The reason gives the first failed replica's exit code
      and reason, and its message when it has no exit code.
    - Succeeded: every replica succeeded (batch restart policies only), and the placement holds
      exactly spec.replicas replicas. Right after a scale-down, the placement still contains the
      replicas to be dropped, which may run; the Job finishes once the scheduler has dropped them.
    - Running: at least one replica runs, has succeeded or has restarted, so the Job's work has begun.
    - Pending: otherwise.
    """
    tasks = {}
    for cluster, share in job.status.clusters.items():
        if cluster not in job.status.placement:
            continue
        for index in share.replica_indices:
            task = share.tasks.get(str(index))
            if task is not None:
                tasks[index] = (cluster, task)
    batch = job.spec.restart_policy is not RestartPolicy.ALWAYS
    failed = [(index, cluster, task) for index, (cluster, task) in sorted(tasks.items()) if task.state == "Failed"]
    if batch and failed:
        index, cluster, task = failed[0]
        detail = f" with exit code {task.exit_code}" if task.exit_code is not None else ""
        # A reason that only repeats the state ("Failed") adds nothing.
        reason = f": {task.reason}" if task.reason and task.reason != task.state else ""
        # Without an exit code, a reason such as SubmitRejected or NodeFail does not say what went
        # wrong, but the backend's message does. With one, the message mostly repeats the code.
        explanation = ""
        if task.exit_code is None and task.message and task.message != task.reason:
            explanation = f": {single_line(task.message)}"
        return JobPhase.FAILED, f"replica {index} on {cluster} failed{detail}{reason}{explanation}"
    succeeded = sum(1 for _, task in tasks.values() if task.state == "Succeeded")
    all_succeeded = all(
        index in tasks and tasks[index][1].state == "Succeeded" for index in range(job.spec.replicas)
    )
    if batch and all_succeeded and sum(job.status.placement.values()) == job.spec.replicas:
        if job.spec.replicas == 1:
            return JobPhase.SUCCEEDED, "its replica succeeded"
        return JobPhase.SUCCEEDED, f"all {job.spec.replicas} replicas succeeded"
    running = sum(1 for _, task in tasks.values() if task.state == "Running")
    # A replica that restarted has run: its Job stays Running while the restart is pending.
    restarted = any(task.restarts > 0 for _, task in tasks.values())
    if running or succeeded or restarted:
        return JobPhase.RUNNING, f"{running} of {job.spec.replicas} replicas running, {succeeded} succeeded"
    return JobPhase.PENDING, f"{len(tasks)} of {job.spec.replicas} replicas reported, none running"


class JobStatusReconciler:
    def __init__(self, client: AsyncSkyShiftClient, jobs: Informer):
        self.client = client
        self.jobs = jobs

    async def reconcile(self, request: Request) -> Result | None:
        job: Job | None = self.jobs.get(request.name, request.namespace)
        if job is None or job.status.phase in (JobPhase.SUCCEEDED, JobPhase.FAILED):
            return None
        phase, message = aggregate_phase(job)
        status = job.status
        # As for a Kubernetes Job, the start is when work began for it: the first replica a
        # backend reported, even one that still waits in that backend's queue.
        reported = any(share.tasks for share in status.clusters.values())
        start_time = status.start_time or (utc_now() if reported or phase is not JobPhase.PENDING else None)
        completion_time = utc_now() if phase in (JobPhase.SUCCEEDED, JobPhase.FAILED) else None
        if phase == status.phase and start_time == status.start_time and completion_time is None:
            return None

        updated = job.model_copy(deep=True)
        updated.status.phase = phase
        updated.status.start_time = start_time
        updated.status.completion_time = completion_time
        if phase in (JobPhase.SUCCEEDED, JobPhase.FAILED):
            updated.status.conditions = set_condition(
                updated.status.conditions,
                Condition(type=phase.value, status="True", reason=phase.value, message=message),
            )
        await self.client.update_status(updated)
        logger.info("Job %s/%s is %s: %s", request.namespace, request.name, phase.value, message)
        if phase in (JobPhase.SUCCEEDED, JobPhase.FAILED):
            # As Kubernetes' Job controller records Completed, or a Warning when a Job fails.
            event_type, reason = ("Normal", "Completed") if phase is JobPhase.SUCCEEDED else ("Warning", "Failed")
            await record_event(self.client, updated, event_type, reason, message, "job-status-controller")
        return None
