"""Per-node capacity of a Kubernetes cluster, as the skylet reports it to the scheduler.

A node's capacity is its `status.allocatable` (what pods may use after the kubelet's and system
reservations), and what is free is that minus the requests of every pod bound to it that has not
finished. Nodes closed to new pods are left out: cordoned (`spec.unschedulable`), not Ready, or
carrying a taint with effect NoSchedule or NoExecute.

NOTE: every such taint excludes its node, including GPU-only taints like `nvidia.com/gpu:NoSchedule`
that some clouds add, because SkyShift's pods carry no tolerations.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

from kubernetes.utils import parse_quantity
from skyshift_core.objects import NodeResources, ResourceList

from skyshift_k8s.objects import GPU_RESOURCE
from skyshift_k8s.states import is_terminal

MEBIBYTE = Decimal(2**20)
_EXCLUDING_EFFECTS = ("NoSchedule", "NoExecute")


def exclusion_reason(node: dict[str, Any]) -> str | None:
    """Return why a node takes no new pods (cordoned, not ready, tainted), or None when it does."""
    spec = node.get("spec") or {}
    if spec.get("unschedulable"):
        return "cordoned"
    conditions = (node.get("status") or {}).get("conditions") or []
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    if ready is None or ready.get("status") != "True":
        return f"not ready ({(ready or {}).get('reason') or 'no Ready condition'})"
    for taint in spec.get("taints") or []:
        if taint.get("effect") in _EXCLUDING_EFFECTS:
            value = f"={taint['value']}" if taint.get("value") else ""
            return f"tainted {taint.get('key')}{value}:{taint['effect']}"
    return None


def _quantity(value: Any) -> Decimal:
    try:
        return parse_quantity(value)
    except ValueError:
        return Decimal(0)


def _container_requests(container: dict[str, Any]) -> dict[str, Decimal]:
    # The API server copies limits into requests that are not set, so limits stand in for them.
    resources = container.get("resources") or {}
    amounts = {name: _quantity(value) for name, value in (resources.get("limits") or {}).items()}
    amounts.update({name: _quantity(value) for name, value in (resources.get("requests") or {}).items()})
    return amounts


def pod_requests(pod: dict[str, Any]) -> dict[str, Decimal]:
    """Return a pod's effective requests, as kube-scheduler computes them.

    The app containers and sidecars (init containers with restartPolicy Always) add up. Each other
    init container runs alone next to the sidecars started before it, so the pod needs the maximum
    of the two sums. The pod's overhead comes on top."""
    spec = pod.get("spec") or {}
    total: dict[str, Decimal] = defaultdict(Decimal)
    for container in spec.get("containers") or []:
        for name, amount in _container_requests(container).items():
            total[name] += amount
    sidecars: dict[str, Decimal] = defaultdict(Decimal)
    init_peak: dict[str, Decimal] = defaultdict(Decimal)
    for container in spec.get("initContainers") or []:
        requests = _container_requests(container)
        if container.get("restartPolicy") == "Always":
            for name, amount in requests.items():
                total[name] += amount
                sidecars[name] += amount
        else:
            for name, amount in requests.items():
                init_peak[name] = max(init_peak[name], sidecars[name] + amount)
    for name, amount in init_peak.items():
        total[name] = max(total[name], amount)
    for name, amount in (spec.get("overhead") or {}).items():
        total[name] += _quantity(amount)
    return dict(total)


def _resource_list(amounts: dict[str, Decimal], accelerator: str | None) -> ResourceList:
    gpus = max(0, int(amounts.get(GPU_RESOURCE, Decimal(0))))
    return ResourceList(
        cpus=max(0.0, float(amounts.get("cpu", Decimal(0)))),
        memory=max(0.0, float(amounts.get("memory", Decimal(0)) / MEBIBYTE)),
        disk=max(0.0, float(amounts.get("ephemeral-storage", Decimal(0)) / MEBIBYTE)),
        gpus=gpus,
        accelerators={accelerator: gpus} if accelerator and gpus else {},
    )


def node_resources(
    nodes: list[dict[str, Any]], pods: list[dict[str, Any]], accelerator_label: str
) -> dict[str, NodeResources]:
    """Capacity and free resources of each node that takes new pods.

    `pods` may contain any pods; finished ones and those bound to no listed node are ignored.
    For example a 4-cpu node running pods that request 1500m and 500m cpu has 2 cpus free."""
    used: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for pod in pods:
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name or is_terminal(pod):
            continue
        for name, amount in pod_requests(pod).items():
            used[node_name][name] += amount

    report = {}
    for node in nodes:
        if exclusion_reason(node) is not None:
            continue
        name = node["metadata"]["name"]
        labels = dict(node["metadata"].get("labels") or {})
        allocatable = {
            key: _quantity(value) for key, value in ((node.get("status") or {}).get("allocatable") or {}).items()
        }
        free = {key: amount - used[name].get(key, Decimal(0)) for key, amount in allocatable.items()}
        accelerator = labels.get(accelerator_label)
        report[name] = NodeResources(
            capacity=_resource_list(allocatable, accelerator),
            allocatable=_resource_list(free, accelerator),
            labels=labels,
        )
    return report
