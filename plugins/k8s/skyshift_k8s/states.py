"""Mapping of Kubernetes pod, Job and Deployment states to SkyShift task states.

SkyShift's task states are the Job phases Pending, Running, Succeeded and Failed; the Kubernetes
detail goes into `reason` and `message`:

  Pending    not scheduled (reason Unschedulable or SchedulingGated, with the scheduler's message),
             waiting for its container (ImagePullBackOff, ErrImagePull, ContainerCreating,
             CreateContainerConfigError, ...), not created yet (PodNotCreated), or on a node that
             stopped responding (pod phase Unknown, reason NodeLost).
  Running    pod phase Running; a container waiting to restart keeps reason CrashLoopBackOff and
             the exit code of its last run.
  Succeeded  pod phase Succeeded, or an index the Job reports in completedIndexes.
  Failed     pod phase Failed, with the pod's reason (NodeLost, DeadlineExceeded, Evicted) or the
             container's (Error, OOMKilled) and its exit code. Also an unfinished index of a failed
             Job, with the Job's reason (BackoffLimitExceeded, DeadlineExceeded).

Functions here take raw API objects (dicts as the API server sends them) and never call the API.
"""

from __future__ import annotations

from typing import Any

from skyshift_core.objects import TaskStatus

from skyshift_k8s.objects import (
    CANCELLED_ANNOTATION,
    COMPLETION_INDEX_ANNOTATION,
    CONTAINER_NAME,
    replica_indices,
)

TERMINAL_PHASES = ("Succeeded", "Failed")


def is_terminal(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in TERMINAL_PHASES


def _being_deleted(pod: dict[str, Any]) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def is_active(pod: dict[str, Any]) -> bool:
    """Tell whether a pod is neither finished nor being deleted."""
    return not is_terminal(pod) and not _being_deleted(pod)


def _creation_order(pod: dict[str, Any]) -> tuple[str, str]:
    metadata = pod.get("metadata") or {}
    return metadata.get("creationTimestamp") or "", metadata.get("name") or ""


def current_pod(pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Return the pod that represents a replica: the newest active one, else the newest of all."""
    if not pods:
        return None
    active = [pod for pod in pods if is_active(pod)]
    return max(active or pods, key=_creation_order)


def completion_index(pod: dict[str, Any]) -> int | None:
    value = ((pod.get("metadata") or {}).get("annotations") or {}).get(COMPLETION_INDEX_ANNOTATION)
    return int(value) if isinstance(value, str) and value.isdigit() else None


def parse_indexes(text: str | None) -> set[int]:
    """Parse a Job's `completedIndexes`, such as "0-2,5"."""
    indexes: set[int] = set()
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        first, _, last = part.partition("-")
        if first.isdigit() and (not last or last.isdigit()):
            indexes.update(range(int(first), int(last or first) + 1))
    return indexes


def _container_status(pod: dict[str, Any]) -> dict[str, Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    for status in statuses:
        if status.get("name") == CONTAINER_NAME:
            return status
    return statuses[0] if statuses else {}


def _last_termination(container: dict[str, Any]) -> dict[str, Any]:
    """Return the container's current terminated state, else the one before its last restart."""
    return (
        (container.get("state") or {}).get("terminated") or (container.get("lastState") or {}).get("terminated")
    ) or {}


def _condition(obj: dict[str, Any], condition_type: str) -> dict[str, Any] | None:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == condition_type:
            return condition
    return None


def pod_task_status(pod: dict[str, Any]) -> TaskStatus:
    """Map one pod to the task state of the replica it runs."""
    status = pod.get("status") or {}
    phase = status.get("phase") or "Pending"
    container = _container_status(pod)
    restarts = int(container.get("restartCount") or 0)
    termination = _last_termination(container)
    exit_code = termination.get("exitCode")

    if phase == "Succeeded":
        return TaskStatus(
            state="Succeeded", exit_code=exit_code if exit_code is not None else 0,
            reason=termination.get("reason") or "Completed", restarts=restarts,
        )  # fmt: skip
    if phase == "Failed":
        # A reason on the pod (NodeLost, DeadlineExceeded, Evicted) explains more than the
        # container's own, which is Error for any kill.
        reason = status.get("reason") or termination.get("reason") or "Failed"
        message = status.get("message") or termination.get("message") or ""
        return TaskStatus(state="Failed", exit_code=exit_code, reason=reason, message=message, restarts=restarts)
    if phase == "Unknown":
        node = (pod.get("spec") or {}).get("nodeName") or "its node"
        message = status.get("message") or f"{node} stopped reporting the pod's state"
        return TaskStatus(
            state="Pending", reason=status.get("reason") or "NodeLost", message=message, restarts=restarts
        )
    if phase == "Running":
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason") or (
            "Terminating" if (pod.get("metadata") or {}).get("deletionTimestamp") else ""
        )
        return TaskStatus(
            state="Running", exit_code=exit_code if waiting else None,
            reason=reason, message=waiting.get("message") or "", restarts=restarts,
        )  # fmt: skip
    return _pending_status(pod, container, restarts)


def _pending_status(pod: dict[str, Any], container: dict[str, Any], restarts: int) -> TaskStatus:
    scheduled = _condition(pod, "PodScheduled")
    if scheduled is not None and scheduled.get("status") == "False":
        return TaskStatus(
            state="Pending", reason=scheduled.get("reason") or "Unschedulable",
            message=scheduled.get("message") or "", restarts=restarts,
        )  # fmt: skip
    waiting = (container.get("state") or {}).get("waiting")
    if waiting:
        return TaskStatus(
            state="Pending", reason=waiting.get("reason") or "ContainerCreating",
            message=waiting.get("message") or "", restarts=restarts,
        )  # fmt: skip
    if (pod.get("spec") or {}).get("nodeName"):
        return TaskStatus(state="Pending", reason="ContainerCreating", restarts=restarts)
    return TaskStatus(state="Pending", reason="Scheduling", message="waiting for the Kubernetes scheduler")


def cancelled(workload: dict[str, Any]) -> bool:
    """Tell whether SkyShift cancelled a batch/v1 Job (`KubernetesClusterManager.cancel`)."""
    annotations = (workload.get("metadata") or {}).get("annotations") or {}
    return workload.get("kind", "Job") == "Job" and annotations.get(CANCELLED_ANNOTATION) == "true"


def job_finished(workload: dict[str, Any]) -> bool:
    """Tell whether a batch/v1 Job has finished (condition Complete or Failed, or cancelled by
    SkyShift); a Deployment never does."""
    if workload.get("kind") != "Job":
        return False
    if cancelled(workload):
        return True
    return any(
        (_condition(workload, condition_type) or {}).get("status") == "True"
        for condition_type in ("Complete", "Failed")
    )


def _not_created(kind: str) -> TaskStatus:
    return TaskStatus(
        state="Pending", reason="PodNotCreated", message=f"the Kubernetes {kind} controller has not created its pod yet"
    )


def pods_by_replica(workload: dict[str, Any], pods: list[dict[str, Any]]) -> dict[int, dict[str, Any] | None]:
    """Return the pod that represents each global replica index of a share (None when there is none).

    For a Job, a pod's completion index picks its replica. A Deployment's pods have no index,
    so its active pods are given the Deployment's indices in creation order (SkyShift gives each
    replica a Deployment of its own, so there is one index), and finished pods (then pods being
    deleted) fill the places of replicas that have no active pod yet.
    """
    indices = replica_indices(workload)
    if workload.get("kind") == "Job":
        by_completion: dict[int, list[dict[str, Any]]] = {}
        for pod in pods:
            index = completion_index(pod)
            if index is not None:
                by_completion.setdefault(index, []).append(pod)
        return {index: current_pod(by_completion.get(local, [])) for local, index in enumerate(indices)}

    active = sorted((pod for pod in pods if is_active(pod)), key=_creation_order)
    chosen = active[: len(indices)]
    if len(chosen) < len(indices):
        # Finished pods (the newest first) describe a missing replica better than pods being deleted.
        others = sorted(
            (pod for pod in pods if not is_active(pod)),
            key=lambda pod: (is_terminal(pod), _creation_order(pod)),
            reverse=True,
        )
        chosen += others[: len(indices) - len(chosen)]
        chosen.sort(key=_creation_order)
    return {index: chosen[position] if position < len(chosen) else None for position, index in enumerate(indices)}


def owned_pods(workload: dict[str, Any], pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the pods of a share that belong to `workload`: those whose replica indices are its own."""
    indices = replica_indices(workload)
    return [pod for pod in pods if replica_indices(pod) == indices]


def share_pods_by_replica(
    workloads: list[dict[str, Any]], pods: list[dict[str, Any]]
) -> dict[int, dict[str, Any] | None]:
    """Return `pods_by_replica` over all the workloads of one share, in replica order."""
    result: dict[int, dict[str, Any] | None] = {}
    for workload in workloads:
        result.update(pods_by_replica(workload, owned_pods(workload, pods)))
    return dict(sorted(result.items()))


def share_tasks(workloads: list[dict[str, Any]], pods: list[dict[str, Any]]) -> dict[str, TaskStatus]:
    """Return `workload_tasks` over all the workloads of one share, in replica order."""
    tasks: dict[str, TaskStatus] = {}
    for workload in workloads:
        tasks.update(workload_tasks(workload, owned_pods(workload, pods)))
    return dict(sorted(tasks.items(), key=lambda item: int(item[0])))


def share_finished(workloads: list[dict[str, Any]]) -> bool:
    """Tell whether every workload of a share has finished, which only batch/v1 Jobs do."""
    return bool(workloads) and all(job_finished(workload) for workload in workloads)


def workload_tasks(workload: dict[str, Any], pods: list[dict[str, Any]]) -> dict[str, TaskStatus]:
    """Return the task state of every replica of a share, keyed by global replica index as a string."""
    kind = workload.get("kind") or "Job"
    by_replica = pods_by_replica(workload, pods)
    if kind != "Job":
        return {
            str(index): pod_task_status(pod) if pod is not None else _not_created("ReplicaSet")
            for index, pod in by_replica.items()
        }

    status = workload.get("status") or {}
    completed = parse_indexes(status.get("completedIndexes"))
    failed = _condition(workload, "Failed")
    job_failed = failed is not None and failed.get("status") == "True"
    template_spec = (((workload.get("spec") or {}).get("template") or {}).get("spec")) or {}
    retries_pods = template_spec.get("restartPolicy") == "OnFailure"
    tasks = {}
    for local, (index, pod) in enumerate(by_replica.items()):
        task = pod_task_status(pod) if pod is not None else _not_created("Job")
        if local in completed and task.state != "Succeeded":
            task = TaskStatus(state="Succeeded", exit_code=0, reason="Completed", restarts=task.restarts)
        elif retries_pods and not job_failed and task.state == "Failed":
            # Within its backoffLimit, an OnFailure Job replaces a failed pod (after a lost node or
            # deadline), so the replica is not failed for good yet.
            task = TaskStatus(
                state="Pending", exit_code=task.exit_code, reason=task.reason,
                message=f"the Job controller replaces the failed pod; {task.message}".rstrip("; "),
                restarts=task.restarts,
            )  # fmt: skip
        elif job_failed and task.state != "Succeeded" and (pod is None or _being_deleted(pod)):
            # The Job controller deletes the active pods of a failed Job, so a replica whose pod is
            # gone or going fails with the Job's reason (its exit code would be the kill's). A pod
            # that still looks active may be a stale copy, because the Job's and the pods' watches
            # are not in step, so its own final state is awaited.
            task = TaskStatus(
                state="Failed",
                reason=failed.get("reason") or "JobFailed",
                message=failed.get("message") or "",
                restarts=task.restarts,
            )
        ended = task.state in ("Succeeded", "Failed")
        if cancelled(workload) and not ended and (pod is None or _being_deleted(pod)):
            # The suspended Job's controller deletes the replica's pod.
            task = TaskStatus(
                state="Failed", exit_code=task.exit_code, reason="Cancelled",
                message="cancelled by SkyShift, which suspended the Job", restarts=task.restarts,
            )  # fmt: skip
        tasks[str(index)] = task
    return tasks
