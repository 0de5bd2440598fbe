"""Simulated kube-controller-manager loops: the Job, ReplicaSet and Deployment controllers.

Each `sync()` reconciles every object of its kind once, level-based: it reads the objects and
their pods from the store, creates or deletes pods to reach the desired state, and writes status.
The store drops writes that change nothing, so a sync that finds nothing to do sends no events.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from . import errors
from .admission import JOB_COMPLETION_INDEX_ANNOTATION
from .resources import DEPLOYMENTS, JOBS, PODS, REPLICASETS, ResourceType
from .selectors import label_selector_from_object
from .store import ObjectStore, now_timestamp

logger = logging.getLogger(__name__)

POD_TEMPLATE_HASH_LABEL = "pod-template-hash"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def is_terminal(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def is_active(pod: dict[str, Any]) -> bool:
    """Tell whether a pod counts as active: not terminal and not being deleted."""
    return not is_terminal(pod) and not pod["metadata"].get("deletionTimestamp")


def is_ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def controller_reference(owner: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def owned_objects(store: ObjectStore, resource: ResourceType, owner: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the objects in the owner's namespace whose controller reference names the owner."""
    uid = owner["metadata"]["uid"]
    return [
        obj
        for obj in store.select(resource, owner["metadata"].get("namespace"))
        if any(ref.get("uid") == uid and ref.get("controller") for ref in obj["metadata"].get("ownerReferences") or [])
    ]


def set_condition(
    conditions: list[dict[str, Any]],
    condition_type: str,
    status: str,
    reason: str,
    message: str,
    update_field: str = "lastProbeTime",
) -> list[dict[str, Any]]:
    """Return `conditions` with one condition set.

    Its lastTransitionTime changes only with its status, and `update_field` (lastProbeTime for
    jobs, lastUpdateTime for deployments) only when status, reason or message change.
    """
    now = now_timestamp()
    previous = next((c for c in conditions if c.get("type") == condition_type), None)
    same_status = previous is not None and previous.get("status") == status
    unchanged = same_status and previous.get("reason") == reason and previous.get("message") == message
    updated = {
        "type": condition_type,
        "status": status,
        update_field: previous.get(update_field, now) if unchanged else now,
        "lastTransitionTime": previous.get("lastTransitionTime", now) if same_status else now,
        "reason": reason,
        "message": message,
    }
    return [c for c in conditions if c.get("type") != condition_type] + [updated]


def condition_is_true(obj: dict[str, Any], condition_type: str) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == condition_type and c.get("status") == "True" for c in conditions)


def pod_from_template(owner: dict[str, Any], template: dict[str, Any], generate_name: str) -> dict[str, Any]:
    metadata = copy.deepcopy(template.get("metadata") or {})
    pod_metadata = {
        "generateName": generate_name,
        "labels": metadata.get("labels") or {},
        "annotations": metadata.get("annotations") or {},
        "ownerReferences": [controller_reference(owner)],
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": pod_metadata,
        "spec": copy.deepcopy(template.get("spec") or {}),
    }


def _delete_quietly(store: ObjectStore, resource: ResourceType, obj: dict[str, Any]) -> None:
    try:
        store.delete(
            resource, obj["metadata"].get("namespace"), obj["metadata"]["name"], propagation_policy="Background"
        )
    except errors.ApiError as err:
        if err.code != 404:
            logger.warning(
                "Deleting %s %s/%s failed: %s",
                resource.kind,
                obj["metadata"].get("namespace"),
                obj["metadata"]["name"],
                err.message,
            )


def _create_quietly(
    store: ObjectStore, resource: ResourceType, namespace: str, obj: dict[str, Any], controller: str
) -> None:
    try:
        store.create(resource, namespace, obj)
    except errors.ApiError as err:
        logger.warning(
            "%s controller could not create a %s in namespace %s: %s", controller, resource.kind, namespace, err.message
        )


def format_indexes(indexes: set[int]) -> str:
    """Format completed indexes as the Job API does, for example "0-2,5"."""
    ranges: list[str] = []
    ordered = sorted(indexes)
    start = previous = None
    for index in ordered + [None]:
        if start is not None and (index is None or index != previous + 1):
            ranges.append(str(start) if start == previous else f"{start}-{previous}")
            start = None
        if index is not None and start is None:
            start = index
        previous = index
    return ",".join(ranges)


class JobController:
    """Runs batch/v1 Jobs: NonIndexed and Indexed completion modes, parallelism, backoffLimit,
    activeDeadlineSeconds, suspend and ttlSecondsAfterFinished.

    Failed pods are replaced at once; kube-controller-manager waits an exponential back-off first.
    Pod failure policies and backoffLimitPerIndex are not implemented.
    """

    def __init__(self, store: ObjectStore, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.clock = clock
        # Terminal pods already added to each job's succeeded/failed counts, by job uid.
        self._counted: dict[str, dict[str, str]] = {}
        self._started_at: dict[str, float] = {}
        self._finished_at: dict[str, float] = {}

    def sync(self) -> None:
        for job in self.store.select(JOBS):
            if not job["metadata"].get("deletionTimestamp"):
                self._sync_job(job)
        live = {job["metadata"]["uid"] for job in self.store.select(JOBS)}
        for table in (self._counted, self._started_at, self._finished_at):
            for uid in list(table):
                if uid not in live:
                    del table[uid]

    def _sync_job(self, job: dict[str, Any]) -> None:
        uid, spec = job["metadata"]["uid"], job["spec"]
        namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]
        status = copy.deepcopy(job.get("status") or {})
        if condition_is_true(job, "Complete") or condition_is_true(job, "Failed"):
            self._collect_finished(job)
            return

        pods = owned_objects(self.store, PODS, job)
        counted = self._counted.get(uid)
        if counted is None:
            # After a restart of the simulation, trust the counts already in status.
            counted = (
                {pod["metadata"]["uid"]: pod["status"]["phase"] for pod in pods if is_terminal(pod)}
                if status.get("succeeded") or status.get("failed")
                else {}
            )
            self._counted[uid] = counted
        for pod in pods:
            if is_terminal(pod) and pod["metadata"]["uid"] not in counted:
                counted[pod["metadata"]["uid"]] = pod["status"]["phase"]
                key = "succeeded" if pod["status"]["phase"] == "Succeeded" else "failed"
                status[key] = status.get(key, 0) + 1
                if key == "succeeded" and spec.get("completionMode") == "Indexed":
                    index = _completion_index(pod)
                    if index is not None:
                        completed = _parse_indexes(status.get("completedIndexes", ""))
                        completed.add(index)
                        status["completedIndexes"] = format_indexes(completed)
        active = [pod for pod in pods if is_active(pod)]
        conditions = status.get("conditions") or []

        if spec.get("suspend"):
            for pod in active:
                _delete_quietly(self.store, PODS, pod)
            status["conditions"] = set_condition(conditions, "Suspended", "True", "JobSuspended", "Job suspended")
            self._write_status(job, status, finished=True)
            return
        if condition_is_true(job, "Suspended"):
            status["conditions"] = set_condition(conditions, "Suspended", "False", "JobResumed", "Job resumed")
            conditions = status["conditions"]
        if not status.get("startTime"):
            status["startTime"] = now_timestamp()
        started = self._started_at.setdefault(uid, self.clock())

        failure = self._failure(spec, status, pods, started)
        if failure is not None:
            reason, message = failure
            for pod in active:
                _delete_quietly(self.store, PODS, pod)
            conditions = set_condition(conditions, "FailureTarget", "True", reason, message)
            status["conditions"] = set_condition(conditions, "Failed", "True", reason, message)
            logger.info("Job %s/%s failed: %s", namespace, name, message)
            self._write_status(job, status, finished=True)
            return

        if self._is_complete(spec, status, active):
            for pod in active:
                _delete_quietly(self.store, PODS, pod)
            message = "Reached expected number of succeeded pods"
            conditions = set_condition(conditions, "SuccessCriteriaMet", "True", "CompletionsReached", message)
            status["conditions"] = set_condition(conditions, "Complete", "True", "CompletionsReached", message)
            status["completionTime"] = now_timestamp()
            logger.info("Job %s/%s completed", namespace, name)
            self._write_status(job, status, finished=True)
            return

        self._create_pods(job, status, active)
        self._write_status(job, status, finished=False)

    def _failure(
        self, spec: dict[str, Any], status: dict[str, Any], pods: list[dict[str, Any]], started: float
    ) -> tuple[str, str] | None:
        restarts = sum(
            container.get("restartCount", 0)
            for pod in pods
            if is_active(pod)
            for container in (pod.get("status") or {}).get("containerStatuses") or []
        )
        if status.get("failed", 0) + restarts > spec.get("backoffLimit", 6):
            return "BackoffLimitExceeded", "Job has reached the specified backoff limit"
        deadline = spec.get("activeDeadlineSeconds")
        if deadline is not None and self.clock() - started >= deadline:
            return "DeadlineExceeded", "Job was active longer than specified deadline"
        return None

    @staticmethod
    def _is_complete(spec: dict[str, Any], status: dict[str, Any], active: list[dict[str, Any]]) -> bool:
        completions = spec.get("completions")
        if spec.get("completionMode") == "Indexed":
            return len(_parse_indexes(status.get("completedIndexes", ""))) >= completions
        if completions is not None:
            return status.get("succeeded", 0) >= completions
        return status.get("succeeded", 0) >= 1 and not active

    def _create_pods(self, job: dict[str, Any], status: dict[str, Any], active: list[dict[str, Any]]) -> None:
        spec, name, namespace = job["spec"], job["metadata"]["name"], job["metadata"]["namespace"]
        parallelism = spec.get("parallelism", 1)
        if spec.get("completionMode") == "Indexed":
            done = _parse_indexes(status.get("completedIndexes", ""))
            running = {_completion_index(pod) for pod in active}
            pending = [i for i in range(spec["completions"]) if i not in done and i not in running]
            for index in pending[: max(0, parallelism - len(active))]:
                pod = pod_from_template(job, spec["template"], f"{name}-{index}-")
                pod["metadata"]["annotations"][JOB_COMPLETION_INDEX_ANNOTATION] = str(index)
                pod["metadata"]["labels"][JOB_COMPLETION_INDEX_ANNOTATION] = str(index)
                pod["spec"].setdefault("hostname", f"{name}-{index}")
                for container in pod["spec"].get("containers") or []:
                    container.setdefault("env", []).append(
                        {
                            "name": "JOB_COMPLETION_INDEX",
                            "valueFrom": {
                                "fieldRef": {
                                    "apiVersion": "v1",
                                    "fieldPath": f"metadata.annotations['{JOB_COMPLETION_INDEX_ANNOTATION}']",
                                }
                            },
                        }
                    )
                _create_quietly(self.store, PODS, namespace, pod, "Job")
            return
        completions = spec.get("completions")
        if completions is None:
            desired = parallelism if status.get("succeeded", 0) == 0 else 0
        else:
            desired = min(parallelism, completions - status.get("succeeded", 0))
        for _ in range(max(0, desired - len(active))):
            _create_quietly(self.store, PODS, namespace, pod_from_template(job, spec["template"], f"{name}-"), "Job")

    def _write_status(self, job: dict[str, Any], status: dict[str, Any], finished: bool) -> None:
        """Write status with the pod counts as they are now; a finished (or suspended) job has none active."""
        pods = owned_objects(self.store, PODS, job)
        live_active = [] if finished else [pod for pod in pods if is_active(pod)]
        status["active"] = len(live_active)
        status["ready"] = sum(1 for pod in live_active if is_ready(pod))
        status["terminating"] = sum(
            1 for pod in pods if pod["metadata"].get("deletionTimestamp") and not is_terminal(pod)
        )
        status.setdefault("succeeded", 0)
        status.setdefault("failed", 0)
        status.setdefault("uncountedTerminatedPods", {})
        for key in ("active", "ready", "succeeded", "failed", "terminating"):
            if status[key] == 0:
                status.pop(key)

        def change(current: dict[str, Any]) -> None:
            current["status"] = status

        self.store.mutate(JOBS, job["metadata"]["namespace"], job["metadata"]["name"], change, subresource="status")

    def _collect_finished(self, job: dict[str, Any]) -> None:
        ttl = job["spec"].get("ttlSecondsAfterFinished")
        if ttl is None:
            return
        uid = job["metadata"]["uid"]
        finished = self._finished_at.setdefault(uid, self.clock())
        if self.clock() - finished >= ttl:
            logger.info(
                "Deleting finished job %s/%s after its TTL of %d s",
                job["metadata"]["namespace"],
                job["metadata"]["name"],
                ttl,
            )
            _delete_quietly(self.store, JOBS, job)


def _completion_index(pod: dict[str, Any]) -> int | None:
    value = (pod["metadata"].get("annotations") or {}).get(JOB_COMPLETION_INDEX_ANNOTATION)
    return int(value) if value is not None and value.isdigit() else None


def _parse_indexes(text: str) -> set[int]:
    indexes: set[int] = set()
    for part in filter(None, (text or "").split(",")):
        if "-" in part:
            first, last = part.split("-")
            indexes.update(range(int(first), int(last) + 1))
        else:
            indexes.add(int(part))
    return indexes


class ReplicaSetController:
    """Keeps `spec.replicas` active pods for every ReplicaSet and reports their readiness."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def sync(self) -> None:
        for replica_set in self.store.select(REPLICASETS):
            if not replica_set["metadata"].get("deletionTimestamp"):
                self._sync_replica_set(replica_set)

    def _sync_replica_set(self, replica_set: dict[str, Any]) -> None:
        namespace, name = replica_set["metadata"]["namespace"], replica_set["metadata"]["name"]
        selector = label_selector_from_object(replica_set["spec"].get("selector"))
        pods = [
            pod
            for pod in owned_objects(self.store, PODS, replica_set)
            if selector.matches(pod["metadata"].get("labels"))
        ]
        active = [pod for pod in pods if is_active(pod)]
        desired = replica_set["spec"].get("replicas", 1)
        for _ in range(desired - len(active)):
            _create_quietly(
                self.store,
                PODS,
                namespace,
                pod_from_template(replica_set, replica_set["spec"]["template"], f"{name}-"),
                "ReplicaSet",
            )
        if len(active) > desired:
            # Delete the pods that matter least first: unscheduled, then not ready, then the newest.
            ranked = sorted(
                active,
                key=lambda pod: (
                    bool(pod["spec"].get("nodeName")),
                    is_ready(pod),
                    _negated(pod["metadata"]["creationTimestamp"]),
                ),
            )
            for pod in ranked[: len(active) - desired]:
                _delete_quietly(self.store, PODS, pod)
        current = [
            pod
            for pod in owned_objects(self.store, PODS, replica_set)
            if is_active(pod) and selector.matches(pod["metadata"].get("labels"))
        ]
        ready = sum(1 for pod in current if is_ready(pod))
        status = {
            "replicas": len(current),
            "fullyLabeledReplicas": len(current),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": replica_set["metadata"].get("generation", 1),
        }
        for key in ("fullyLabeledReplicas", "readyReplicas", "availableReplicas"):
            if status[key] == 0:
                status.pop(key)

        def change(obj: dict[str, Any]) -> None:
            obj["status"] = status

        self.store.mutate(REPLICASETS, namespace, name, change, subresource="status")


def _negated(text: str) -> list[int]:
    return [-ord(char) for char in text]


def pod_template_hash(template: dict[str, Any]) -> str:
    """Hash a pod template like the Deployment controller: FNV-1a 32, then safe-encoded digits."""
    value = 0x811C9DC5
    for byte in json.dumps(template, sort_keys=True, separators=(",", ":")).encode():
        value ^= byte
        value = (value * 0x01000193) & 0xFFFFFFFF
    return "".join(_SAFE_ALPHABET[int(digit) % len(_SAFE_ALPHABET)] for digit in str(value))[:10]


def _max_unavailable(deployment: dict[str, Any]) -> int:
    replicas = deployment["spec"].get("replicas", 1)
    strategy = deployment["spec"].get("strategy") or {}
    if strategy.get("type") == "Recreate":
        return replicas
    value = (strategy.get("rollingUpdate") or {}).get("maxUnavailable", "25%")
    if isinstance(value, str) and value.endswith("%"):
        return replicas * int(value[:-1]) // 100
    return int(value)


class DeploymentController:
    """Rolls each Deployment out through a ReplicaSet per pod template.

    NOTE: a template change scales the new ReplicaSet up and the old ones to zero in one sync.
    maxSurge, maxUnavailable and progressDeadlineSeconds do not pace the rollout.
    """

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def sync(self) -> None:
        for deployment in self.store.select(DEPLOYMENTS):
            if not deployment["metadata"].get("deletionTimestamp"):
                self._sync_deployment(deployment)

    def _sync_deployment(self, deployment: dict[str, Any]) -> None:
        namespace, name = deployment["metadata"]["namespace"], deployment["metadata"]["name"]
        spec = deployment["spec"]
        template_hash = pod_template_hash(spec["template"])
        replica_sets = owned_objects(self.store, REPLICASETS, deployment)
        new_set = next(
            (
                rs
                for rs in replica_sets
                if (rs["metadata"].get("labels") or {}).get(POD_TEMPLATE_HASH_LABEL) == template_hash
            ),
            None,
        )
        revisions = [
            int((rs["metadata"].get("annotations") or {}).get(REVISION_ANNOTATION, "0")) for rs in replica_sets
        ]
        if new_set is None and not spec.get("paused"):
            new_set = self._create_replica_set(deployment, template_hash, max(revisions, default=0) + 1)
        for replica_set in replica_sets:
            desired = (
                spec.get("replicas", 1)
                if new_set is not None and replica_set["metadata"]["uid"] == new_set["metadata"]["uid"]
                else 0
            )
            if spec.get("paused"):
                continue
            if replica_set["spec"].get("replicas") != desired:
                self.store.mutate(
                    REPLICASETS,
                    namespace,
                    replica_set["metadata"]["name"],
                    lambda rs, desired=desired: rs["spec"].__setitem__("replicas", desired),
                )
        self._delete_old_history(deployment, replica_sets, new_set)
        if new_set is not None:
            revision = (new_set["metadata"].get("annotations") or {}).get(REVISION_ANNOTATION)

            def annotate(obj: dict[str, Any]) -> None:
                obj["metadata"].setdefault("annotations", {})[REVISION_ANNOTATION] = revision

            self.store.mutate(DEPLOYMENTS, namespace, name, annotate)
        self._write_status(deployment, new_set)

    def _create_replica_set(
        self, deployment: dict[str, Any], template_hash: str, revision: int
    ) -> dict[str, Any] | None:
        namespace, name = deployment["metadata"]["namespace"], deployment["metadata"]["name"]
        template = copy.deepcopy(deployment["spec"]["template"])
        template.setdefault("metadata", {}).setdefault("labels", {})[POD_TEMPLATE_HASH_LABEL] = template_hash
        selector = copy.deepcopy(deployment["spec"]["selector"])
        selector.setdefault("matchLabels", {})[POD_TEMPLATE_HASH_LABEL] = template_hash
        replica_set = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{name}-{template_hash}",
                "labels": template["metadata"]["labels"],
                "annotations": {
                    REVISION_ANNOTATION: str(revision),
                    "deployment.kubernetes.io/desired-replicas": str(deployment["spec"].get("replicas", 1)),
                    "deployment.kubernetes.io/max-replicas": str(deployment["spec"].get("replicas", 1)),
                },
                "ownerReferences": [controller_reference(deployment)],
            },
            "spec": {"replicas": deployment["spec"].get("replicas", 1), "selector": selector, "template": template},
        }
        try:
            created = self.store.create(REPLICASETS, namespace, replica_set)
        except errors.ApiError as err:
            logger.warning("Deployment %s/%s could not create its ReplicaSet: %s", namespace, name, err.message)
            return None
        logger.info(
            "Deployment %s/%s created ReplicaSet %s (revision %d)",
            namespace,
            name,
            created["metadata"]["name"],
            revision,
        )
        return created

    def _delete_old_history(
        self, deployment: dict[str, Any], replica_sets: list[dict[str, Any]], new_set: dict[str, Any] | None
    ) -> None:
        limit = deployment["spec"].get("revisionHistoryLimit", 10)
        old = [
            rs
            for rs in replica_sets
            if (new_set is None or rs["metadata"]["uid"] != new_set["metadata"]["uid"])
            and not (rs.get("status") or {}).get("replicas")
            and rs["spec"].get("replicas") == 0
        ]
        old.sort(key=lambda rs: int((rs["metadata"].get("annotations") or {}).get(REVISION_ANNOTATION, "0")))
        for replica_set in old[: max(0, len(old) - limit)]:
            _delete_quietly(self.store, REPLICASETS, replica_set)

    def _write_status(self, deployment: dict[str, Any], new_set: dict[str, Any] | None) -> None:
        namespace, name = deployment["metadata"]["namespace"], deployment["metadata"]["name"]
        replica_sets = owned_objects(self.store, REPLICASETS, deployment)
        desired = deployment["spec"].get("replicas", 1)

        def total(field: str) -> int:
            return sum((rs.get("status") or {}).get(field, 0) for rs in replica_sets)

        current_new = next(
            (rs for rs in replica_sets if new_set is not None and rs["metadata"]["uid"] == new_set["metadata"]["uid"]),
            None,
        )
        updated = (current_new.get("status") or {}).get("replicas", 0) if current_new else 0
        available = total("availableReplicas")
        status: dict[str, Any] = {
            "observedGeneration": deployment["metadata"].get("generation", 1),
            "replicas": total("replicas"),
            "updatedReplicas": updated,
            "readyReplicas": total("readyReplicas"),
            "availableReplicas": available,
            "unavailableReplicas": max(0, desired - available),
        }
        conditions = (deployment.get("status") or {}).get("conditions") or []
        if available >= desired - _max_unavailable(deployment):
            conditions = set_condition(
                conditions,
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
                "lastUpdateTime",
            )
        else:
            conditions = set_condition(
                conditions,
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
                "lastUpdateTime",
            )
        rs_name = (
            current_new["metadata"]["name"]
            if current_new
            else f"{name}-{pod_template_hash(deployment['spec']['template'])}"
        )
        if current_new and updated == desired and available >= desired and status["replicas"] == desired:
            conditions = set_condition(
                conditions,
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                f'ReplicaSet "{rs_name}" has successfully progressed.',
                "lastUpdateTime",
            )
        else:
            conditions = set_condition(
                conditions,
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                f'ReplicaSet "{rs_name}" is progressing.',
                "lastUpdateTime",
            )
        status["conditions"] = conditions
        for key in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas", "unavailableReplicas"):
            if status[key] == 0:
                status.pop(key)

        def change(obj: dict[str, Any]) -> None:
            obj["status"] = status

        self.store.mutate(DEPLOYMENTS, namespace, name, change, subresource="status")
