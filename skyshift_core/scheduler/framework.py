"""Scheduler extension points: the public contract for scheduling plugins.

Modelled on the Kubernetes scheduling framework, with clusters in place of nodes. One scheduling
cycle for a Job runs, in order:

  1. filter   every FilterPlugin's pre_filter once, then its filter on every cluster; a cluster
              survives only if all return SUCCESS. A pre_filter that returns SKIP leaves its
              plugin's filter out of this cycle, as Kubernetes' PreFilter does.
  2. score    every ScorePlugin's pre_score once, then its score on every surviving cluster (0-100
              each) and its normalize_scores; a cluster's total is the sum of plugin score x
              profile weight. A pre_score that returns SKIP leaves the plugin out of the totals.
  3. divide   the profile's one DividePlugin splits the Job's replicas among the survivors.
  4. reserve  every ReservePlugin, in order, once the division places every replica; if one
              turns the placement down, every reserve plugin called so far (that one included)
              is unreserved in reverse order and the Job waits with its reason. A placement whose
              status write then fails is unreserved too.

Placement is all or nothing: if the division cannot place every replica the Job stays Pending with
the collected reasons, and is retried when clusters, capacity or the Job change. Plugins must be
deterministic and free of I/O: a cycle runs in memory against the scheduler's cache.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, ClassVar, Mapping

from skyshift_core.objects import Job, ResourceList

MAX_SCORE = 100
MIN_SCORE = 0


class Code(str, Enum):
    SUCCESS = "Success"
    # The cluster cannot take the Job now but might after a change (capacity freed, cluster ready).
    UNSCHEDULABLE = "Unschedulable"
    # The cluster can never take the Job as written (placement filter, policy exclusion).
    UNRESOLVABLE = "UnschedulableAndUnresolvable"
    # The plugin failed; the cycle is aborted and retried with backoff.
    ERROR = "Error"
    # From pre_filter or pre_score only: the plugin has nothing to decide for this Job, so its
    # filter or score is not called in this cycle.
    SKIP = "Skip"


@dataclass(frozen=True)
class Status:
    """Outcome of one plugin call. `reasons` are short phrases that appear in the Job's condition,
    such as "insufficient cpus", so they are worded for users and aggregated across clusters."""

    code: Code = Code.SUCCESS
    reasons: tuple[str, ...] = ()
    plugin: str = ""

    @property
    def ok(self) -> bool:
        return self.code is Code.SUCCESS

    @classmethod
    def success(cls) -> "Status":
        return _SUCCESS

    @classmethod
    def unschedulable(cls, *reasons: str, plugin: str = "") -> "Status":
        return cls(Code.UNSCHEDULABLE, reasons, plugin)

    @classmethod
    def unresolvable(cls, *reasons: str, plugin: str = "") -> "Status":
        return cls(Code.UNRESOLVABLE, reasons, plugin)

    @classmethod
    def error(cls, *reasons: str, plugin: str = "") -> "Status":
        return cls(Code.ERROR, reasons, plugin)

    @classmethod
    def skip(cls) -> "Status":
        return _SKIP


_SUCCESS = Status()
# The one successful Status that `Status.success` returns; a cycle compares against it first.
SUCCESS = _SUCCESS
_SKIP = Status(Code.SKIP)
# The one Status that `Status.skip` returns.
SKIP = _SKIP


@dataclass
class NodeInfo:
    """One node of a cluster as the scheduler sees it: allocatable already net of reservations."""

    name: str
    capacity: ResourceList
    allocatable: ResourceList
    labels: dict[str, str] = field(default_factory=dict)
    # CPUs are given to a replica in multiples of this, at least one; 0 when any fraction works.
    cpu_allocation_unit: float = 0

    def allocation(self, request: ResourceList) -> ResourceList:
        """Return what one replica of `request` takes on this node: its CPUs rounded up to the unit."""
        unit = self.cpu_allocation_unit
        if unit <= 0:
            return request
        cpus = max(unit, math.ceil(request.cpus / unit - 1e-9) * unit)
        return request if cpus == request.cpus else request.model_copy(update={"cpus": cpus})

    def fit_count(self, request: ResourceList, *, empty: bool = False) -> int:
        """Return how many replicas of `request` fit on this node at once. With `empty`, count them on
        the node with nothing running: its capacity instead of what is allocatable now.

        Each dimension allows floor(allocatable / requested); the node holds the minimum of them.
        A request of zero in every dimension fits an unbounded number; that is reported as a
        large finite number so sums stay integers. CPUs count as `allocation` rounds them.
        """
        request = self.allocation(request)
        allocatable = self.capacity if empty else self.allocatable
        fit = UNBOUNDED
        if request.cpus > 0:
            fit = min(fit, math.floor(allocatable.cpus / request.cpus + 1e-9))
        if request.memory > 0:
            fit = min(fit, math.floor(allocatable.memory / request.memory + 1e-9))
        if request.disk > 0:
            fit = min(fit, math.floor(allocatable.disk / request.disk + 1e-9))
        if request.gpus > 0:
            fit = min(fit, allocatable.gpus // request.gpus)
        for name, count in request.accelerators.items():
            if count:
                fit = min(fit, allocatable.accelerators.get(name, 0) // count)
        return max(0, fit)


# Fit count reported for a request of nothing; far above any realistic replica count.
UNBOUNDED = 1_000_000


def request_shape(request: ResourceList) -> tuple:
    """Return a hashable key of a per-replica request, under which fit counts are remembered."""
    return (request.cpus, request.memory, request.disk, request.gpus, tuple(sorted(request.accelerators.items())))


@dataclass
class ClusterInfo:
    """A cluster in the scheduler's cache: identity, labels, health and per-node resources."""

    name: str
    labels: dict[str, str]
    ready: bool
    cordoned: bool
    nodes: list[NodeInfo]
    manager: str = ""
    # True once the Cluster has been deleted and its work is being stopped.
    deleting: bool = False

    def __post_init__(self) -> None:
        self._fits: dict[tuple, int] = {}
        self._remembered: dict[Any, Any] = {}

    def fit_count(self, request: ResourceList, shape: tuple | None = None) -> int:
        """Replicas of `request` the cluster holds: the sum over nodes, since a replica must fit on one node.

        Results are remembered per request shape (`request_shape`, which a caller may pass when it
        has it) until `invalidate` is called. Code that changes a node's allocatable must call it.
        """
        shape = shape or request_shape(request)
        fit = self._fits.get(shape)
        if fit is None:
            fit = min(UNBOUNDED, sum(node.fit_count(request) for node in self.nodes))
            self._fits[shape] = fit
        return fit

    def remembered(self, key: Any, compute: Callable[[], Any]) -> Any:
        """Return `compute()`, remembered under `key` until `invalidate` is called.

        It is meant for results that depend only on the cluster's nodes and the key, such as the
        reasons a request fits on no node. A plugin's key starts with its name."""
        if key not in self._remembered:
            self._remembered[key] = compute()
        return self._remembered[key]

    def invalidate(self) -> None:
        """Forget remembered fit counts and results after a node's allocatable changed."""
        self._fits.clear()
        self._remembered.clear()

    def capacity(self) -> ResourceList:
        total = ResourceList()
        for node in self.nodes:
            total = total.add(node.capacity)
        return total

    def allocatable(self) -> ResourceList:
        total = ResourceList()
        for node in self.nodes:
            total = total.add(node.allocatable)
        return total


@dataclass
class Candidate:
    """A cluster that passed every filter, as handed to the divide plugin."""

    cluster: ClusterInfo
    fit_count: int
    # Weighted sum of the profile's score plugins, after normalization.
    score: int = 0
    # Replicas the Job already has there (from its current placement), for stable re-decisions.
    current: int = 0

    @property
    def name(self) -> str:
        return self.cluster.name


def first_feasible_clusters(ordered: list[Candidate], size: int, replicas: int) -> list[Candidate]:
    """Take `size` clusters in the given order, skipping one only when the set could then not hold `replicas`.

    The caller guarantees that the `size` clusters with the largest fit_count hold `replicas`. Each
    cluster is taken when the clusters after it, largest first, can still make up the rest, so the
    result is the first set in `ordered` order with room for every replica. Divide plugins that
    place on as few clusters as they must (binpack, spread with a cluster limit) share it.
    """
    chosen: list[Candidate] = []
    room = 0
    for index, candidate in enumerate(ordered):
        slots_after = size - len(chosen) - 1
        if slots_after < 0:
            break
        rest = sorted((other.fit_count for other in ordered[index + 1 :]), reverse=True)
        if len(rest) >= slots_after and room + candidate.fit_count + sum(rest[:slots_after]) >= replicas:
            chosen.append(candidate)
            room += candidate.fit_count
    return chosen


class CycleState(dict):
    """Scratch space shared by the plugins of one cycle for one Job, discarded afterwards."""

    def request(self, job: Job) -> ResourceList:
        """Return the Job's per-replica request, computed once per cycle."""
        if "request" not in self:
            self["request"] = replica_request(job)
        return self["request"]

    def fit_count(self, job: Job, cluster: "ClusterInfo") -> int:
        """Return the cluster's fit count for the Job, computed once per cycle."""
        fits = self.get("fit_counts")
        if fits is None:
            request = self.request(job)
            fits = self["fit_counts"] = {}
            self["request_shape"] = request_shape(request)
        fit = fits.get(cluster.name)
        if fit is None:
            fit = fits[cluster.name] = cluster.fit_count(self["request"], self["request_shape"])
        return fit


class Plugin:
    """Base of every scheduling plugin.

    `name` is the entry-point name under `skyshift.scheduler_plugins` and appears in profiles and
    in `skyshift explain`. `args` come from the profile configuration; a plugin validates them in
    `__init__` and raises ValueError naming the bad argument.
    """

    name: ClassVar[str] = ""

    def __init__(self, args: Mapping[str, Any] | None = None):
        self.args = dict(args or {})


class FilterPlugin(Plugin):
    def pre_filter(self, state: CycleState, job: Job) -> Status:
        """Look at the Job once per cycle, before any `filter` call; optional.

        Return SUCCESS to have `filter` called on every cluster, SKIP when the plugin would accept
        every cluster for this Job (for example, the Job has no placement filters), which saves the
        per-cluster calls. UNSCHEDULABLE or UNRESOLVABLE rejects every cluster with the reasons
        given; ERROR aborts the cycle. A plugin may keep what it computes here in `state`.
        """
        return SUCCESS

    def filter(self, state: CycleState, job: Job, cluster: ClusterInfo) -> Status:
        """Decide whether `cluster` may take the Job at all.

        Runs once per cluster per cycle. Return SUCCESS to keep the cluster, UNSCHEDULABLE when a
        change of state could make it fit, UNRESOLVABLE when only a change of the Job or a policy
        could. Must not modify the job or the cluster.
        """
        raise NotImplementedError


class ScorePlugin(Plugin):
    def pre_score(self, state: CycleState, job: Job, clusters: list[ClusterInfo]) -> Status:
        """Look at the Job and the clusters that passed the filters once per cycle; optional.

        Return SUCCESS to have `score` called on each of `clusters`, or SKIP when the plugin would
        give every cluster the same score (for example, the Job has no placement preferences).
        A skipped plugin adds nothing to any cluster's total and shows no score in `skyshift
        explain`. ERROR aborts the cycle.
        """
        return SUCCESS

    def score(self, state: CycleState, job: Job, cluster: ClusterInfo) -> int:
        """Rate a cluster that passed the filters, from MIN_SCORE (0) to MAX_SCORE (100)."""
        raise NotImplementedError

    def normalize_scores(self, state: CycleState, job: Job, scores: dict[str, int]) -> None:
        """Rescale this plugin's scores in place after every cluster was scored; optional.

        The framework rejects the cycle with an ERROR if a score is outside 0-100 afterwards.
        """


class DividePlugin(Plugin):
    def divide(self, state: CycleState, job: Job, replicas: int, candidates: list[Candidate]) -> dict[str, int]:
        """Split `replicas` among the candidates and return cluster name -> replicas (> 0 only).

        Must be deterministic for the same input, never give a cluster more than its fit_count,
        and either place exactly `replicas` or return what it could: the framework treats a sum
        below `replicas` as unschedulable (placement is all or nothing). Candidates arrive sorted
        by score (highest first), then name.
        """
        raise NotImplementedError


class ReservePlugin(Plugin):
    def reserve(self, state: CycleState, job: Job, placement: dict[str, int]) -> Status:
        """Claim what a placement needs before it is written, as Kubernetes' Reserve does.

        `placement` maps cluster name to the replicas newly placed there. Return SUCCESS to let
        the placement go on, UNSCHEDULABLE (with a reason users see) to make the Job wait and be
        tried again later, or ERROR for a failure of the plugin itself.
        """
        raise NotImplementedError

    def unreserve(self, state: CycleState, job: Job, placement: dict[str, int]) -> None:
        """Undo `reserve`. Called, last plugin first, for every reserve plugin that was called when
        one of them turns the placement down (that one included), and when the placement's status
        write fails. A write that timed out may still have been applied, so a plugin that keeps
        counts should also correct them from the Jobs' current placements.

        Must be idempotent and must not fail."""
        raise NotImplementedError


def replica_request(job: Job) -> ResourceList:
    """Return the resources that one replica of the Job requests."""
    resources = job.spec.resources
    return ResourceList(
        cpus=resources.cpus,
        memory=resources.memory,
        disk=resources.disk,
        gpus=resources.gpus,
        accelerators=dict(resources.accelerators),
    )
