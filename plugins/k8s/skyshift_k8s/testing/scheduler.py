"""The simulated kube-scheduler: binds pending pods to nodes that pass the filters.

Filters, in kube-scheduler's order: node unschedulable (cordoned), nodeSelector, taints with
effect NoSchedule or NoExecute that the pod does not tolerate, node Ready condition, and
resources. Every resource the pod requests (cpu, memory, nvidia.com/gpu, ...) must fit in the
node's allocatable minus the requests of the non-terminal pods already on it, and one more pod
must fit under the node's `pods` limit. Among the nodes that pass, the one with the largest free share
of cpu and memory wins (LeastAllocated), ties broken by node name. A pod that fits nowhere gets
PodScheduled=False with reason Unschedulable and a message like kube-scheduler's, for example
"0/2 nodes are available: 1 Insufficient cpu, 1 node(s) were unschedulable."
"""

from __future__ import annotations

import collections
import logging
from fractions import Fraction
from typing import Any

from . import errors
from .quantity import parse_quantity
from .resources import NODES, PODS
from .store import ObjectStore, now_timestamp

logger = logging.getLogger(__name__)

TERMINAL_PHASES = ("Succeeded", "Failed")


def pod_requests(pod: dict[str, Any]) -> dict[str, Fraction]:
    """Return the pod's effective requests: the sum over containers, at least each init container's."""
    spec = pod.get("spec") or {}
    total: dict[str, Fraction] = collections.defaultdict(Fraction)
    for container in spec.get("containers") or []:
        for name, quantity in ((container.get("resources") or {}).get("requests") or {}).items():
            total[name] += parse_quantity(quantity)
    for container in spec.get("initContainers") or []:
        for name, quantity in ((container.get("resources") or {}).get("requests") or {}).items():
            total[name] = max(total[name], parse_quantity(quantity))
    total["pods"] = Fraction(1)
    return dict(total)


def node_is_ready(node: dict[str, Any]) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def tolerates(tolerations: list[dict[str, Any]], taint: dict[str, Any]) -> bool:
    """Tell whether any toleration matches the taint, with Kubernetes' matching rules."""
    for toleration in tolerations:
        if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
            continue
        operator = toleration.get("operator") or "Equal"
        if not toleration.get("key"):
            if operator == "Exists":
                return True
            continue
        if toleration["key"] != taint.get("key"):
            continue
        if operator == "Exists" or toleration.get("value", "") == taint.get("value", ""):
            return True
    return False


class Scheduler:
    """Binds each pending pod of the default scheduler to a feasible node, once per `schedule()`."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def schedule(self) -> int:
        """Try every unbound pending pod once and return how many were bound."""
        nodes = self.store.select(NODES)
        pods = self.store.select(PODS)
        usage = {node["metadata"]["name"]: collections.defaultdict(Fraction) for node in nodes}
        for pod in pods:
            node_name = pod["spec"].get("nodeName")
            if node_name in usage and (pod.get("status") or {}).get("phase") not in TERMINAL_PHASES:
                for name, amount in pod_requests(pod).items():
                    usage[node_name][name] += amount
        pending = [
            pod
            for pod in pods
            if not pod["spec"].get("nodeName")
            and pod["spec"].get("schedulerName", "default-scheduler") == "default-scheduler"
            and not pod["metadata"].get("deletionTimestamp")
            and (pod.get("status") or {}).get("phase", "Pending") == "Pending"
        ]
        pending.sort(
            key=lambda p: (-(p["spec"].get("priority") or 0), p["metadata"]["creationTimestamp"], p["metadata"]["name"])
        )
        bound = 0
        for pod in pending:
            if self._schedule_one(pod, nodes, usage):
                bound += 1
        return bound

    def _schedule_one(
        self, pod: dict[str, Any], nodes: list[dict[str, Any]], usage: dict[str, dict[str, Fraction]]
    ) -> bool:
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        if pod["spec"].get("schedulingGates"):
            self._mark_unschedulable(pod, "SchedulingGated", "Scheduling is blocked due to non-empty scheduling gates")
            return False
        requests = pod_requests(pod)
        reasons: collections.Counter[str] = collections.Counter()
        feasible = []
        for node in nodes:
            failures = self._filter(pod, requests, node, usage[node["metadata"]["name"]])
            if failures:
                reasons.update(failures)
            else:
                feasible.append(node)
        if not feasible:
            summary = ", ".join(f"{count} {reason}" for reason, count in sorted(reasons.items()))
            message = f"0/{len(nodes)} nodes are available" + (f": {summary}." if summary else ".")
            self._mark_unschedulable(pod, "Unschedulable", message)
            return False
        chosen = min(
            feasible,
            key=lambda node: (-self._free_share(node, usage[node["metadata"]["name"]]), node["metadata"]["name"]),
        )
        node_name = chosen["metadata"]["name"]
        try:
            self.store.bind(namespace, name, node_name)
        except errors.ApiError as err:
            logger.warning("Binding pod %s/%s to node %s failed: %s", namespace, name, node_name, err.message)
            return False
        for resource_name, amount in requests.items():
            usage[node_name][resource_name] += amount
        logger.info("Bound pod %s/%s to node %s", namespace, name, node_name)
        return True

    @staticmethod
    def _filter(
        pod: dict[str, Any], requests: dict[str, Fraction], node: dict[str, Any], used: dict[str, Fraction]
    ) -> list[str]:
        spec = node.get("spec") or {}
        if spec.get("unschedulable"):
            return ["node(s) were unschedulable"]
        labels = node["metadata"].get("labels") or {}
        for key, value in (pod["spec"].get("nodeSelector") or {}).items():
            if labels.get(key) != value:
                return ["node(s) didn't match Pod's node affinity/selector"]
        tolerations = pod["spec"].get("tolerations") or []
        for taint in spec.get("taints") or []:
            if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(tolerations, taint):
                return [f"node(s) had untolerated taint {{{taint.get('key')}: {taint.get('value', '')}}}"]
        if not node_is_ready(node):
            return ["node(s) were not ready"]
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        failures = []
        for resource_name, amount in sorted(requests.items()):
            if amount == 0:
                continue
            available = parse_quantity(allocatable.get(resource_name, "0")) - used.get(resource_name, Fraction(0))
            if amount > available:
                failures.append("Too many pods" if resource_name == "pods" else f"Insufficient {resource_name}")
        return failures

    @staticmethod
    def _free_share(node: dict[str, Any], used: dict[str, Fraction]) -> Fraction:
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        shares = []
        for resource_name in ("cpu", "memory"):
            capacity = parse_quantity(allocatable.get(resource_name, "0"))
            if capacity > 0:
                shares.append((capacity - used.get(resource_name, Fraction(0))) / capacity)
        return sum(shares, Fraction(0)) / len(shares) if shares else Fraction(0)

    def _mark_unschedulable(self, pod: dict[str, Any], reason: str, message: str) -> None:
        def change(current: dict[str, Any]) -> None:
            status = current.setdefault("status", {})
            conditions = status.setdefault("conditions", [])
            existing = next((c for c in conditions if c.get("type") == "PodScheduled"), None)
            if (
                existing
                and existing.get("status") == "False"
                and existing.get("reason") == reason
                and existing.get("message") == message
            ):
                return
            condition = {
                "type": "PodScheduled",
                "status": "False",
                "lastProbeTime": None,
                "lastTransitionTime": now_timestamp(),
                "reason": reason,
                "message": message,
            }
            status["conditions"] = [c for c in conditions if c.get("type") != "PodScheduled"] + [condition]
            logger.info(
                "Pod %s/%s is unschedulable: %s", current["metadata"]["namespace"], current["metadata"]["name"], message
            )

        self.store.mutate(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"], change, subresource="status")
