"""The Kubernetes objects SkyShift creates: namespaces, batch/v1 Jobs, apps/v1 Deployments and Services.

A share with restart policy Never or OnFailure is one Indexed Job. A share with restart policy
Always is one Deployment of one pod per replica, because a Deployment's pods are interchangeable:
only a Deployment of its own gives a replica a fixed global SKYSHIFT_REPLICA_INDEX.

Every object carries labels naming the SkyShift Job (or Service), its namespace and uid, the cluster
and the share's key, and gets a deterministic name, so a restarted manager finds what exists instead
of creating it again. The manager builds manifests here and sends them as plain dicts.
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any

from skyshift_core.cluster_manager import ClusterManagerError, WorkUnit
from skyshift_core.objects import Job, Resources, RestartPolicy, Service, Volume

from skyshift_k8s.config import KubernetesConfig

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "skyshift"
JOB_LABEL = "skyshift.io/job"
NAMESPACE_LABEL = "skyshift.io/namespace"
JOB_UID_LABEL = "skyshift.io/job-uid"
CLUSTER_LABEL = "skyshift.io/cluster"
WORK_KEY_LABEL = "skyshift.io/work-key"
# The global replica index of a Deployment (restart policy Always) and of its pod.
REPLICA_INDEX_LABEL = "skyshift.io/replica-index"
SERVICE_LABEL = "skyshift.io/service"
# The exact key, because the label contains a hash when the key is not a valid label value.
WORK_KEY_ANNOTATION = "skyshift.io/work-key"
# Global replica indices of the share, in the order of the Job's completion indices ("3,7,9").
REPLICA_INDICES_ANNOTATION = "skyshift.io/replica-indices"
# The indices of the whole share, on each of its Deployments (restart policy Always). They show
# when a Deployment is missing, for example after a crash between two creates.
SHARE_REPLICA_INDICES_ANNOTATION = "skyshift.io/share-replica-indices"
# Set, with spec.suspend, on a Job whose SkyShift Job failed: its replicas that had not finished
# are then Failed, where a Job suspended by hand only waits.
CANCELLED_ANNOTATION = "skyshift.io/cancelled"
# Set on the pods of an Indexed Job by the Job controller.
COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"

GPU_RESOURCE = "nvidia.com/gpu"
CONTAINER_NAME = "replica"
# backoffLimit of OnFailure Jobs: container restarts allowed across all of the share's pods before
# Kubernetes marks the Job Failed.
ON_FAILURE_BACKOFF_LIMIT = 3

REPLICA_INDEX_VARIABLE = "SKYSHIFT_REPLICA_INDEX"
# Space-separated global indices of the share; the wrapper script picks the one at $JOB_COMPLETION_INDEX.
SHARE_INDICES_VARIABLE = "SKYSHIFT_CLUSTER_REPLICA_INDICES"
REPLICA_INDEX_PRELUDE = (
    "# SkyShift: set the global replica index from this pod's Job completion index.\n"
    f"set -- ${SHARE_INDICES_VARIABLE}\n"
    'shift "$JOB_COMPLETION_INDEX"\n'
    f'export {REPLICA_INDEX_VARIABLE}="$1"\n'
    "set --\n"
)

MAX_NAME_LENGTH = 63
# Job names stay short enough for the pod hostname `<job name>-<completion index>`.
MAX_WORKLOAD_NAME_LENGTH = 52
_HASH_LENGTH = 8
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


def short_hash(text: str, length: int = _HASH_LENGTH) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def kubernetes_namespace(prefix: str, namespace: str) -> str:
    """Return the Kubernetes namespace of a SkyShift namespace: `<prefix><namespace>`.

    A name longer than 63 characters keeps its start and ends with a hash of the SkyShift
    namespace, for example `skyshift-<first 45 characters>-1a2b3c4d`."""
    name = prefix + namespace
    if len(name) <= MAX_NAME_LENGTH:
        return name
    keep = MAX_NAME_LENGTH - len(prefix) - _HASH_LENGTH - 1
    return f"{prefix}{namespace[:keep].rstrip('-')}-{short_hash(namespace)}"


def workload_name(job_name: str, key: str, replica: int | None = None) -> str:
    """Return the name of a share's Job: the job's name and a hash of the key.

    With `replica`, return the name of that replica's Deployment, which ends in `-r<replica>`."""
    suffix = f"-{short_hash(key)}" + (f"-r{replica}" if replica is not None else "")
    keep = MAX_WORKLOAD_NAME_LENGTH - len(suffix)
    return f"{job_name[:keep].rstrip('-')}{suffix}"


def service_name(name: str) -> str:
    """Return the Kubernetes Service name for a SkyShift Service name.

    Service names must start with a letter (DNS-1035), SkyShift names may start with a digit."""
    if name[0].isalpha():
        return name
    candidate = f"s-{name}"
    if len(candidate) <= MAX_NAME_LENGTH:
        return candidate
    return f"s-{name[: MAX_NAME_LENGTH - _HASH_LENGTH - 3].rstrip('-')}-{short_hash(name)}"


def label_value(text: str) -> str:
    """Return `text` when it is a valid label value, else `h-` and a hash of it."""
    return text if _LABEL_VALUE.match(text) else f"h-{short_hash(text, 40)}"


def dns_label(text: str) -> str:
    """Return `text` when it is a DNS-1123 label, else a valid label derived from it and its hash."""
    if _DNS_LABEL.match(text) and len(text) <= MAX_NAME_LENGTH:
        return text
    cleaned = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    cleaned = cleaned[: MAX_NAME_LENGTH - _HASH_LENGTH - 1].rstrip("-")
    return f"{cleaned}-{short_hash(text)}" if cleaned else f"x-{short_hash(text)}"


def cluster_selector(cluster: str) -> str:
    """Return the label selector of everything SkyShift created for `cluster`."""
    return f"{MANAGED_BY_LABEL}={MANAGED_BY},{CLUSTER_LABEL}={label_value(cluster)}"


def work_selector(cluster: str, key: str) -> str:
    """Return the label selector of one share's workload and pods."""
    return f"{cluster_selector(cluster)},{WORK_KEY_LABEL}={label_value(key)}"


def work_labels(unit: WorkUnit, cluster: str) -> dict[str, str]:
    """Labels of a share's objects; `cluster` is the manager's cluster, whose informers select by it."""
    job = unit.job
    return {
        MANAGED_BY_LABEL: MANAGED_BY,
        JOB_LABEL: job.metadata.name,
        NAMESPACE_LABEL: job.metadata.namespace or "default",
        JOB_UID_LABEL: label_value(job.metadata.uid or ""),
        CLUSTER_LABEL: label_value(cluster),
        WORK_KEY_LABEL: label_value(unit.key),
    }


def work_key(obj: dict[str, Any]) -> str | None:
    """Return the share key that an object SkyShift created carries, or None."""
    metadata = obj.get("metadata") or {}
    return (metadata.get("annotations") or {}).get(WORK_KEY_ANNOTATION)


def replica_indices(obj: dict[str, Any], annotation: str = REPLICA_INDICES_ANNOTATION) -> list[int]:
    """Return the global replica indices recorded on a workload or pod, in completion-index order."""
    text = ((obj.get("metadata") or {}).get("annotations") or {}).get(annotation, "")
    return [int(part) for part in text.split(",") if part.strip().isdigit()]


def share_complete(workloads: list[dict[str, Any]]) -> bool:
    """Tell whether the workloads of one share are all there: a Job, or a Deployment for each of
    the indices that the Deployments record for their share."""
    expected: set[int] = set()
    found: set[int] = set()
    for workload in workloads:
        if workload.get("kind") == "Job":
            return True
        expected.update(replica_indices(workload, SHARE_REPLICA_INDICES_ANNOTATION))
        found.update(replica_indices(workload))
    return expected <= found


def namespace_manifest(name: str, skyshift_namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY, NAMESPACE_LABEL: label_value(skyshift_namespace)},
        },
    }


def workload_manifests(unit: WorkUnit, config: KubernetesConfig, cluster: str) -> list[dict[str, Any]]:
    """Build the objects that run a share: one batch/v1 Job (restart policy Never or OnFailure), or
    one apps/v1 Deployment of one pod per replica (Always), in replica order.

    Raises ClusterManagerError(retryable=False) when the Job cannot be expressed on Kubernetes."""
    if unit.job.spec.restart_policy is not RestartPolicy.ALWAYS:
        return [_indexed_job_manifest(unit, config, cluster)]
    return [_deployment_manifest(unit, config, cluster, index) for index in unit.replica_indices]


def _workload_metadata(
    unit: WorkUnit, config: KubernetesConfig, labels: dict[str, str], indices: tuple[int, ...], replica: int | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the metadata of a workload and of its pod template."""
    job = unit.job
    annotations = {
        WORK_KEY_ANNOTATION: unit.key,
        REPLICA_INDICES_ANNOTATION: ",".join(str(index) for index in indices),
    }
    metadata = {
        "name": workload_name(job.metadata.name, unit.key, replica),
        "namespace": kubernetes_namespace(config.namespace_prefix, job.metadata.namespace or "default"),
        "labels": labels,
        "annotations": annotations,
    }
    return metadata, {"labels": {**job.metadata.labels, **labels}, "annotations": dict(annotations)}


def _indexed_job_manifest(unit: WorkUnit, config: KubernetesConfig, cluster: str) -> dict[str, Any]:
    job = unit.job
    metadata, template = _workload_metadata(unit, config, work_labels(unit, cluster), unit.replica_indices, None)
    backoff_limit = 0 if job.spec.restart_policy is RestartPolicy.NEVER else ON_FAILURE_BACKOFF_LIMIT
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "completionMode": "Indexed",
            "completions": unit.replicas,
            "parallelism": unit.replicas,
            "backoffLimit": backoff_limit,
            "template": {"metadata": template, "spec": pod_spec(unit, config)},
        },
    }


def _deployment_manifest(unit: WorkUnit, config: KubernetesConfig, cluster: str, replica: int) -> dict[str, Any]:
    # The replica index is part of the selector, so the Deployments of one share never adopt each
    # other's ReplicaSets or pods.
    labels = {**work_labels(unit, cluster), REPLICA_INDEX_LABEL: str(replica)}
    metadata, template = _workload_metadata(unit, config, labels, (replica,), replica)
    metadata["annotations"][SHARE_REPLICA_INDICES_ANNOTATION] = ",".join(str(index) for index in unit.replica_indices)
    selector = {key: labels[key] for key in (MANAGED_BY_LABEL, CLUSTER_LABEL, WORK_KEY_LABEL, REPLICA_INDEX_LABEL)}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": selector},
            "template": {"metadata": template, "spec": pod_spec(unit, config, replica)},
        },
    }


def replica_index_source(unit: WorkUnit) -> str:
    """Tell how a pod learns SKYSHIFT_REPLICA_INDEX.

    - "job-envs": the Job's own envs set it, and they win as in `WorkUnit.environment`.
    - "completion-index": the share contains replicas 0..n-1, so the index is the pod's Job
      completion index, read from the pod's annotation.
    - "wrapper": the run script is wrapped in a prelude that picks the global index at position
      $JOB_COMPLETION_INDEX of SKYSHIFT_CLUSTER_REPLICA_INDICES, because the indices have gaps or
      do not start at 0.
    - "deployment": restart policy Always. Each replica has a Deployment of its own, whose pod
      template contains the index as a plain value.
    - "unset": a gapped share whose Job has no `run` script to wrap.
    """
    job = unit.job
    if REPLICA_INDEX_VARIABLE in job.spec.envs:
        return "job-envs"
    if job.spec.restart_policy is RestartPolicy.ALWAYS:
        return "deployment"
    if tuple(unit.replica_indices) == tuple(range(unit.replicas)):
        return "completion-index"
    # NOTE: a gapped share without a run script runs the image's own command, which cannot be wrapped.
    return "wrapper" if job.spec.run.strip() else "unset"


def pod_spec(unit: WorkUnit, config: KubernetesConfig, replica: int | None = None) -> dict[str, Any]:
    """Return the pod spec of a share's Job, or with `replica`, of that replica's Deployment."""
    job = unit.job
    source = replica_index_source(unit)
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": job.spec.image,
        "env": container_env(unit, source, replica),
    }
    if job.spec.run.strip():
        script = REPLICA_INDEX_PRELUDE + job.spec.run if source == "wrapper" else job.spec.run
        container["command"] = ["/bin/sh", "-c", escape_references(script)]
    if config.image_pull_policy:
        container["imagePullPolicy"] = config.image_pull_policy
    resources = container_resources(job.spec.resources)
    if resources:
        container["resources"] = resources
    if job.spec.ports:
        container["ports"] = [{"containerPort": port, "protocol": "TCP"} for port in job.spec.ports]
    volumes, mounts = pod_volumes(job)
    if mounts:
        container["volumeMounts"] = mounts

    restart_policy = {
        RestartPolicy.ALWAYS: "Always",
        RestartPolicy.ON_FAILURE: "OnFailure",
        RestartPolicy.NEVER: "Never",
    }[job.spec.restart_policy]
    spec: dict[str, Any] = {
        "restartPolicy": restart_policy,
        "containers": [container],
        # Service links would add variables for every Service in the namespace; SkyShift sets its own.
        "enableServiceLinks": False,
    }
    if volumes:
        spec["volumes"] = volumes
    selector = node_selector(job, config)
    if selector:
        spec["nodeSelector"] = selector
    return spec


def escape_references(text: str) -> str:
    """Escape `$` so the kubelet's `$(NAME)` expansion of env values, command and args keeps `text` as written."""
    return text.replace("$", "$$")


def container_env(unit: WorkUnit, source: str, replica: int | None = None) -> list[dict[str, Any]]:
    """Return the environment of `WorkUnit.environment`, with SKYSHIFT_REPLICA_INDEX set per `source`
    (`replica` is the index of a Deployment's pod)."""
    entries: list[dict[str, Any]] = []
    index = unit.replica_indices[0] if replica is None else replica
    for name, value in unit.environment(index).items():
        if name != REPLICA_INDEX_VARIABLE or source in ("job-envs", "deployment"):
            entries.append({"name": name, "value": escape_references(value)})
        elif source == "completion-index":
            path = f"metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']"
            entries.append({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}})
    if source == "wrapper":
        indices = " ".join(str(index) for index in unit.replica_indices)
        entries.append({"name": SHARE_INDICES_VARIABLE, "value": indices})
    return entries


def container_resources(resources: Resources) -> dict[str, dict[str, str]]:
    """Return requests and limits, both equal to what one replica requests: cpu, memory in Mi,
    ephemeral-storage for disk, and nvidia.com/gpu."""
    amounts: dict[str, str] = {}
    if resources.cpus > 0:
        millicores = math.ceil(round(resources.cpus * 1000, 6))
        amounts["cpu"] = str(millicores // 1000) if millicores % 1000 == 0 else f"{millicores}m"
    if resources.memory > 0:
        amounts["memory"] = f"{math.ceil(resources.memory)}Mi"
    if resources.disk > 0:
        amounts["ephemeral-storage"] = f"{math.ceil(resources.disk)}Mi"
    if resources.gpus > 0:
        amounts[GPU_RESOURCE] = str(resources.gpus)
    if not amounts:
        return {}
    return {"requests": dict(amounts), "limits": dict(amounts)}


def node_selector(job: Job, config: KubernetesConfig) -> dict[str, str]:
    """Select nodes whose accelerator label names the requested accelerator type."""
    types = sorted(job.spec.resources.accelerators)
    if len(types) > 1:
        raise ClusterManagerError(
            f"Job {job.metadata.namespace}/{job.metadata.name} requests accelerators of several types "
            f"({', '.join(types)}) for one replica, but a Kubernetes pod runs on one node; request a single "
            "type per replica",
            retryable=False,
        )
    return {config.accelerator_label: types[0]} if types else {}


def _volume_source(volume: Volume) -> dict[str, Any] | None:
    if volume.type == "host_path":
        return {"hostPath": {"path": volume.host_path}}
    if volume.type == "empty_dir":
        return {"emptyDir": {}}
    return None


def pod_volumes(job: Job) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Return the pod's volumes and the container's mounts for the Job's volumes."""
    volumes, mounts = [], []
    for key, volume in sorted(job.spec.volumes.items()):
        source = _volume_source(volume)
        if source is None:
            raise ClusterManagerError(
                f"volume {key!r} of Job {job.metadata.namespace}/{job.metadata.name} has type {volume.type!r}, "
                "which the Kubernetes cluster manager does not support; use host_path or empty_dir",
                retryable=False,
            )
        name = dns_label(key)
        volumes.append({"name": name, **source})
        mount: dict[str, Any] = {"name": name, "mountPath": volume.container_dir}
        if volume.read_only:
            mount["readOnly"] = True
        mounts.append(mount)
    return volumes, mounts


def service_manifest(service: Service, cluster: str, config: KubernetesConfig) -> dict[str, Any]:
    """Build the Kubernetes Service for a SkyShift Service on one cluster.

    Its selector is the SkyShift Service's selector plus SkyShift's own labels, which matches the
    pods of the Jobs whose labels the SkyShift selector matches, because pods carry their Job's labels.
    A SkyShift Service without a selector becomes a Kubernetes Service without one, which selects nothing."""
    namespace = service.metadata.namespace or "default"
    labels = {
        MANAGED_BY_LABEL: MANAGED_BY,
        CLUSTER_LABEL: label_value(cluster),
        NAMESPACE_LABEL: namespace,
        SERVICE_LABEL: service.metadata.name,
    }
    ports = []
    for port in service.spec.ports:
        entry: dict[str, Any] = {
            "name": port.name or f"{port.protocol.lower()}-{port.port}",
            "protocol": port.protocol,
            "port": port.port,
            "targetPort": port.target_port or port.port,
        }
        if port.node_port:
            entry["nodePort"] = port.node_port
        ports.append(entry)
    spec: dict[str, Any] = {"type": service.spec.type.value, "ports": ports}
    if service.spec.selector:
        spec["selector"] = {**service.spec.selector, MANAGED_BY_LABEL: MANAGED_BY, CLUSTER_LABEL: label_value(cluster)}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name(service.metadata.name),
            "namespace": kubernetes_namespace(config.namespace_prefix, namespace),
            "labels": labels,
        },
        "spec": spec,
    }
