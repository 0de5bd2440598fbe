"""Mapping of pod, Job and Deployment states to SkyShift task states, on objects shaped as the API
server sends them (including states the fake kubelet does not produce, such as OOMKilled)."""

from __future__ import annotations

import pytest

from skyshift_k8s.states import parse_indexes, pod_task_status, workload_tasks


def pod(phase: str, *, state=None, last=None, restarts=0, conditions=(), node="node-a", reason=None, message=None,
        index=None, created="2024-01-01T00:00:00Z", name="p", deleting=False) -> dict:  # fmt: skip
    container = {"name": "replica", "restartCount": restarts, "state": state or {}, "lastState": last or {}}
    status = {"phase": phase, "conditions": list(conditions), "containerStatuses": [container] if state or last else []}
    if reason:
        status["reason"] = reason
    if message:
        status["message"] = message
    metadata = {"name": name, "namespace": "n", "creationTimestamp": created, "annotations": {}}
    if index is not None:
        metadata["annotations"]["batch.kubernetes.io/job-completion-index"] = str(index)
    if deleting:
        metadata["deletionTimestamp"] = created
    spec = {"nodeName": node} if node else {}
    return {"metadata": metadata, "spec": spec, "status": status}


UNSCHEDULABLE = {
    "type": "PodScheduled",
    "status": "False",
    "reason": "Unschedulable",
    "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
}

CASES = [
    (
        "unschedulable",
        pod("Pending", node=None, conditions=[UNSCHEDULABLE]),
        ("Pending", None, "Unschedulable", UNSCHEDULABLE["message"], 0),
    ),
    (
        "not-scheduled-yet",
        pod("Pending", node=None),
        ("Pending", None, "Scheduling", "waiting for the Kubernetes scheduler", 0),
    ),
    ("container-creating", pod("Pending"), ("Pending", None, "ContainerCreating", "", 0)),
    (
        "image-pull-backoff",
        pod("Pending", state={"waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "x"'}}),
        ("Pending", None, "ImagePullBackOff", 'Back-off pulling image "x"', 0),
    ),
    (
        "config-error",
        pod("Pending", state={"waiting": {"reason": "CreateContainerConfigError", "message": 'secret "s" not found'}}),
        ("Pending", None, "CreateContainerConfigError", 'secret "s" not found', 0),
    ),
    ("running", pod("Running", state={"running": {}}), ("Running", None, "", "", 0)),
    (
        "crash-loop",
        pod(
            "Running",
            restarts=2,
            state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}},
            last={"terminated": {"exitCode": 1, "reason": "Error"}},
        ),
        ("Running", 1, "CrashLoopBackOff", "back-off 10s", 2),
    ),
    ("terminating", pod("Running", state={"running": {}}, deleting=True), ("Running", None, "Terminating", "", 0)),
    (
        "succeeded",
        pod("Succeeded", state={"terminated": {"exitCode": 0, "reason": "Completed"}}),
        ("Succeeded", 0, "Completed", "", 0),
    ),
    (
        "failed-error",
        pod("Failed", state={"terminated": {"exitCode": 3, "reason": "Error"}}),
        ("Failed", 3, "Error", "", 0),
    ),
    (
        "oom-killed",
        pod("Failed", state={"terminated": {"exitCode": 137, "reason": "OOMKilled"}}),
        ("Failed", 137, "OOMKilled", "", 0),
    ),
    (
        "deadline-exceeded",
        pod(
            "Failed",
            reason="DeadlineExceeded",
            message="Pod was active on the node longer than the specified deadline",
            state={"terminated": {"exitCode": 143, "reason": "Error"}},
        ),
        ("Failed", 143, "DeadlineExceeded", "Pod was active on the node longer than the specified deadline", 0),
    ),
    (
        "evicted",
        pod("Failed", reason="Evicted", message="The node was low on resource: memory."),
        ("Failed", None, "Evicted", "The node was low on resource: memory.", 0),
    ),
    (
        "node-lost",
        pod(
            "Failed",
            reason="NodeLost",
            message="Node node-a which was running pod p is unresponsive",
            state={"running": {}},
        ),
        ("Failed", None, "NodeLost", "Node node-a which was running pod p is unresponsive", 0),
    ),
    (
        "phase-unknown",
        pod("Unknown", state={"running": {}}),
        ("Pending", None, "NodeLost", "node-a stopped reporting the pod's state", 0),
    ),
]


@pytest.mark.parametrize(("case", "expected"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_pod_task_status(case, expected):
    task = pod_task_status(case)

    assert (task.state, task.exit_code, task.reason, task.message, task.restarts) == expected


def test_parse_indexes():
    assert parse_indexes("0-2,5,7-8") == {0, 1, 2, 5, 7, 8}
    assert parse_indexes("") == set()
    assert parse_indexes(None) == set()


def indexed_job(
    indices: str, *, completed: str = "", failed: tuple[str, str] | None = None, restart_policy: str = "Never"
) -> dict:
    conditions = [{"type": "Failed", "status": "True", "reason": failed[0], "message": failed[1]}] if failed else []
    return {
        "kind": "Job",
        "metadata": {
            "name": "j",
            "namespace": "n",
            "annotations": {"skyshift.io/work-key": "k", "skyshift.io/replica-indices": indices},
        },
        "spec": {"template": {"spec": {"restartPolicy": restart_policy}}},
        "status": {"completedIndexes": completed, "conditions": conditions},
    }


def states(tasks) -> dict[str, tuple]:
    return {index: (task.state, task.reason) for index, task in tasks.items()}


def test_job_tasks_follow_completion_indices():
    # Global replicas 4, 7 and 9 have completion indices 0, 1 and 2.
    workload = indexed_job("4,7,9", completed="0")
    pods = [
        pod("Running", state={"running": {}}, index=1, name="j-1"),
        pod(
            "Failed",
            state={"terminated": {"exitCode": 1, "reason": "Error"}},
            index=2,
            name="j-2-old",
            created="2024-01-01T00:00:00Z",
        ),
        pod("Pending", index=2, name="j-2-new", created="2024-01-01T00:01:00Z"),
    ]

    tasks = workload_tasks(workload, pods)

    # Index 0 completed and its pod is gone. Index 2's newest active pod represents it.
    assert states(tasks) == {
        "4": ("Succeeded", "Completed"),
        "7": ("Running", ""),
        "9": ("Pending", "ContainerCreating"),
    }


def test_failed_job_fails_unfinished_replicas():
    workload = indexed_job(
        "0,1,2,3,4", completed="0", failed=("BackoffLimitExceeded", "Job has reached the specified backoff limit")
    )
    pods = [
        pod("Failed", state={"terminated": {"exitCode": 2, "reason": "Error"}}, index=1),
        # Index 3's pod still looks active: its final state has not been seen yet, so it stays Running.
        pod("Running", state={"running": {}}, index=3),
        pod("Running", state={"running": {}}, index=4, deleting=True),
    ]

    tasks = workload_tasks(workload, pods)

    assert states(tasks) == {
        "0": ("Succeeded", "Completed"),
        "1": ("Failed", "Error"),
        "2": ("Failed", "BackoffLimitExceeded"),
        "3": ("Running", ""),
        "4": ("Failed", "BackoffLimitExceeded"),
    }
    assert tasks["1"].exit_code == 2
    assert tasks["2"].message == "Job has reached the specified backoff limit"


def test_on_failure_job_replaces_failed_pod():
    workload = indexed_job("0", restart_policy="OnFailure")
    pods = [pod("Failed", reason="NodeLost", message="Node node-a which was running pod p is unresponsive", index=0)]

    task = workload_tasks(workload, pods)["0"]

    assert (task.state, task.reason) == ("Pending", "NodeLost")
    assert task.message.startswith("the Job controller replaces the failed pod")


def test_job_without_pods_is_pending():
    task = workload_tasks(indexed_job("3"), [])["3"]

    assert (task.state, task.reason) == ("Pending", "PodNotCreated")


def test_deployment_pods_take_indices_in_creation_order():
    workload = {
        "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "n", "annotations": {"skyshift.io/replica-indices": "2,5,6"}},
    }
    pods = [
        pod("Running", state={"running": {}}, name="b", created="2024-01-01T00:02:00Z"),
        pod("Running", state={"running": {}}, name="a", created="2024-01-01T00:01:00Z"),
        # Lost with its node. The ReplicaSet has not replaced it yet, so it still represents a replica.
        pod("Failed", reason="NodeLost", name="c", created="2024-01-01T00:00:00Z"),
        pod("Running", state={"running": {}}, name="z", created="2024-01-01T00:03:00Z", deleting=True),
    ]

    tasks = workload_tasks(workload, pods)

    assert states(tasks) == {"2": ("Failed", "NodeLost"), "5": ("Running", ""), "6": ("Running", "")}
