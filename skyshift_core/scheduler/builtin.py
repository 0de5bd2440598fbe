"""Built-in scheduling plugins of the core, registered through the same entry points as
third-party ones (`skyshift.scheduler_plugins`): cluster-ready, placement, filter-policy,
resources-fit.
"""

from __future__ import annotations

from skyshift_core.objects import FilterPolicy, Job
from skyshift_core.objects.quantity import format_mebibytes
from skyshift_core.scheduler.framework import (
    MAX_SCORE,
    ClusterInfo,
    CycleState,
    FilterPlugin,
    ScorePlugin,
    Status,
    request_shape,
)

# CycleState key under which the scheduler stores the FilterPolicies that apply to the Job.
POLICIES_KEY = "filter_policies"


class ClusterReady(FilterPlugin):
    """Keeps clusters that are READY, not cordoned and not being deleted."""

    name = "cluster-ready"
    provides = "filter: cluster is READY, not cordoned and not being deleted"

    def filter(self, state: CycleState, job: Job, cluster: ClusterInfo) -> Status:
        if cluster.deleting:
            return Status.unschedulable("being deleted", plugin=self.name)
        if not cluster.ready:
            return Status.unschedulable("not ready", plugin=self.name)
        if cluster.cordoned:
            return Status.unschedulable("cordoned", plugin=self.name)
        return Status.success()


class Placement(FilterPlugin, ScorePlugin):
    """Applies the Job's placement: every filter must match the cluster's labels, and each matching
    preference adds its weight.

    Score = 100 x (sum of weights of matching preferences) / (sum of all preference weights).
    Example: preferences weighted 80 and 20, a cluster matching only the first scores 80.
    A Job without preferences scores 0 everywhere, so the plugin does not change the order.
    """

    name = "placement"
    provides = "filter and score: the Job's placement filters and weighted preferences"

    def pre_filter(self, state: CycleState, job: Job) -> Status:
        return Status.success() if job.spec.placement.filters else Status.skip()

    def pre_score(self, state: CycleState, job: Job, clusters: list[ClusterInfo]) -> Status:
        # Without preferences, or with weights that sum to 0, every cluster would score 0.
        if any(preference.weight for preference in job.spec.placement.preferences):
            return Status.success()
        return Status.skip()

    def filter(self, state: CycleState, job: Job, cluster: ClusterInfo) -> Status:
        for rule in job.spec.placement.filters:
            if not rule.matches(cluster.labels):
                label = f" {rule.name!r}" if rule.name else ""
                return Status.unresolvable(f"did not match placement filter{label}", plugin=self.name)
        return Status.success()

    def score(self, state: CycleState, job: Job, cluster: ClusterInfo) -> int:
        preferences = job.spec.placement.preferences
        total = sum(preference.weight for preference in preferences)
        if not total:
            return 0
        matched = sum(preference.weight for preference in preferences if preference.matches(cluster.labels))
        return MAX_SCORE * matched // total


class FilterPolicyFilter(FilterPlugin):
    """Applies FilterPolicies of the Job's namespace whose `labels_selector` matches the Job's labels:
    a cluster must be in every matching policy's non-empty `include` list and in no `exclude` list."""

    name = "filter-policy"
    provides = "filter: FilterPolicy include and exclude lists"

    def pre_filter(self, state: CycleState, job: Job) -> Status:
        return Status.success() if state.get(POLICIES_KEY) else Status.skip()

    def filter(self, state: CycleState, job: Job, cluster: ClusterInfo) -> Status:
        policies: list[FilterPolicy] = state.get(POLICIES_KEY, [])
        for policy in policies:
            include = policy.spec.cluster_filter.include
            if include and cluster.name not in include:
                return Status.unresolvable(f"not included by FilterPolicy {policy.metadata.name!r}", plugin=self.name)
            if cluster.name in policy.spec.cluster_filter.exclude:
                return Status.unresolvable(f"excluded by FilterPolicy {policy.metadata.name!r}", plugin=self.name)
        return Status.success()


def policies_for(job: Job, policies: list[FilterPolicy]) -> list[FilterPolicy]:
    """The FilterPolicies that apply to a Job: same namespace, selector matching its labels."""
    labels = job.metadata.labels
    return [
        policy
        for policy in policies
        if policy.metadata.namespace == job.metadata.namespace
        and all(labels.get(key) == value for key, value in policy.spec.labels_selector.items())
    ]


class ResourcesFit(FilterPlugin):
    """Keeps clusters with at least one node that can hold one replica now.

    The reason names the resource that is short on every node (for example "insufficient cpus"),
    as the Kubernetes NodeResourcesFit plugin does.
    """

    name = "resources-fit"
    provides = "filter: a replica fits on at least one node"

    def filter(self, state: CycleState, job: Job, cluster: ClusterInfo) -> Status:
        if state.fit_count(job, cluster) > 0:
            return Status.success()
        request = state.request(job)
        if not cluster.nodes:
            return Status.unschedulable("no schedulable nodes", plugin=self.name)
        shape = state.get("request_shape") or request_shape(request)
        reasons = cluster.remembered((self.name, shape), lambda: self._shortages(request, cluster))
        return Status.unschedulable(*reasons, plugin=self.name)

    @staticmethod
    def _shortages(request, cluster: ClusterInfo) -> tuple[str, ...]:
        """Resources that no node has enough of; if each is available somewhere, no single node has all.

        A request above every node's capacity, which waiting cannot satisfy, is named apart from
        a shortage of what is free now: "too large for every node (cpus 64, memory 1Ti)".
        """
        reasons = []
        labels = [label for label in ("cpus", "memory", "disk", "gpus") if getattr(request, label) > 0]
        # The GPUs of a request with accelerator types are those types, which `typed` names.
        if request.accelerators:
            labels = [label for label in labels if label != "gpus"]

        def short(label: str, of: str) -> bool:
            """Tell whether every node has less of `label` in `of` (capacity or allocatable) than a replica takes."""
            return all(
                getattr(getattr(node, of), label) + 1e-9 < getattr(node.allocation(request), label)
                for node in cluster.nodes
            )

        too_large = [label for label in labels if short(label, "capacity")]
        if too_large:
            amounts = ", ".join(f"{label} {format_amount(label, getattr(request, label))}" for label in too_large)
            reasons.append(f"too large for every node ({amounts})")
        reasons += [f"insufficient {label}" for label in labels if label not in too_large and short(label, "allocatable")]
        for accelerator, count in request.accelerators.items():
            if not any(node.capacity.accelerators.get(accelerator, 0) for node in cluster.nodes):
                # Waiting cannot help, so the reason does not read like a temporary shortage.
                reasons.append(f"no {accelerator} accelerators{_other_spelling(accelerator, cluster)}")
            elif all(node.allocatable.accelerators.get(accelerator, 0) < count for node in cluster.nodes):
                reasons.append(f"insufficient {accelerator}")
        return tuple(reasons) or ("no single node has all requested resources",)


def _other_spelling(accelerator: str, cluster: ClusterInfo) -> str:
    """Name the cluster's accelerator types that differ from `accelerator` only in letter case.

    Types match exactly, because backends use them as they are (the Kubernetes plugin selects
    nodes by a label value), so `a100` never matches `A100`, and the reason names the other spelling."""
    others = sorted(
        {
            name
            for node in cluster.nodes
            for name, count in node.capacity.accelerators.items()
            if count and name != accelerator and name.lower() == accelerator.lower()
        }
    )
    if not others:
        return ""
    return f", only {', '.join(others)} (accelerator types are case-sensitive)"


def format_amount(label: str, value: float) -> str:
    """Render a requested amount as a manifest writes it: memory and disk as quantities."""
    if label in ("memory", "disk"):
        return format_mebibytes(value)
    return f"{value:g}"
