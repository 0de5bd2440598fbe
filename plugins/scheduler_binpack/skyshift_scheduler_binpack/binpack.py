"""Binpack: the scheduler policy plugin that packs a Job's replicas onto as few clusters as possible.

The scheduler calls `BinpackPlugin.score` for each cluster that passed the filters and `BinpackPlugin.divide`
once per cycle when the profile names `binpack`. Packing busy clusters first keeps other clusters empty
for large Jobs and lets idle ones be scaled down.

Score (most-allocated, the formula of Kubernetes' NodeResourcesFit MostAllocated strategy with every
resource weighted 1). For each resource r that one replica requests (cpus, memory, disk, and each
accelerator type, or gpus when no type is named), summed over the cluster's nodes:

    used_r  = capacity_r - allocatable_r
    score_r = floor(100 * min(used_r + request_r, capacity_r) / capacity_r)   (0 when capacity_r is 0)
    score   = floor(sum of score_r / number of requested resources)           (0 when nothing is requested)

    Worked number: 16 CPUs of which 4 are allocatable (12 used), 64 GiB of memory of which 32 GiB are
    allocatable (32 GiB used); one replica requests 2 CPUs and 8 GiB. cpus: 100 * 14 / 16 = 87.5 -> 87;
    memory: 100 * 40 / 64 = 62.5 -> 62; score = (87 + 62) / 2 = 74.5 -> 74.

Division. Clusters are ranked by that score (most allocated first), then by the profile's total score,
then by replicas of this Job already there, then by name. With R replicas, k is the smallest number of
clusters whose largest fit_counts add up to R. The plugin takes k clusters in rank order, skipping a
cluster only when the clusters after it could not make up the rest. It fills them in rank order, each up
to its fit_count. A Job that fits in one cluster therefore lands on the most allocated cluster that holds
all of it. When all clusters together hold fewer than R, each one is filled to its fit_count.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any, ClassVar

from skyshift_core.objects import Job, ResourceList
from skyshift_core.scheduler.framework import (
    MAX_SCORE,
    MIN_SCORE,
    Candidate,
    ClusterInfo,
    CycleState,
    DividePlugin,
    ScorePlugin,
    first_feasible_clusters,
    replica_request,
)

logger = logging.getLogger(__name__)

NAME = "binpack"

# Tolerance for float resource amounts (CPUs and MiB), as in NodeInfo.fit_count: 100 * 0.29 is
# 28.999999999999996 in floating point and must still floor to 29.
_EPSILON = 1e-9


class BinpackPlugin(DividePlugin, ScorePlugin):
    """Pack replicas onto as few clusters as possible, most allocated cluster first."""

    name: ClassVar[str] = NAME

    def __init__(self, args: Mapping[str, Any] | None = None):
        super().__init__(args)
        if self.args:
            raise ValueError(
                f"Unknown {NAME} argument(s) {', '.join(repr(name) for name in sorted(self.args))}: "
                f"the {NAME} plugin takes no arguments; remove them from the profile"
            )

    def score(self, state: CycleState, job: Job, cluster: ClusterInfo) -> int:
        """Rate the cluster with the most-allocated score of the module docstring (0-100)."""
        return most_allocated_score(replica_request(job), cluster)

    def divide(self, state: CycleState, job: Job, replicas: int, candidates: list[Candidate]) -> dict[str, int]:
        """Place `replicas` on the fewest clusters, most allocated first, each up to its fit_count."""
        if replicas <= 0:
            return {}

        request = replica_request(job)
        allocation = {candidate.name: most_allocated_score(request, candidate.cluster) for candidate in candidates}
        ranked = sorted(
            (candidate for candidate in candidates if candidate.fit_count > 0),
            key=lambda candidate: (-allocation[candidate.name], -candidate.score, -candidate.current, candidate.name),
        )

        placement: dict[str, int] = {}
        left = replicas
        for candidate in choose_fewest_clusters(ranked, replicas):
            placement[candidate.name] = min(candidate.fit_count, left)
            left -= placement[candidate.name]
        logger.debug(
            "Binpack divided %d replicas of job %s/%s among %d candidates (allocation scores %s): %s",
            replicas,
            job.metadata.namespace,
            job.metadata.name,
            len(candidates),
            allocation,
            placement,
        )
        return placement


def most_allocated_score(request: ResourceList, cluster: ClusterInfo) -> int:
    """Return the most-allocated score of the module docstring for one replica of `request` on `cluster`."""
    scores = [
        _resource_score(requested, capacity, allocatable)
        for requested, capacity, allocatable in requested_amounts(request, cluster.capacity(), cluster.allocatable())
    ]
    if not scores:
        return MIN_SCORE
    return sum(scores) // len(scores)


def requested_amounts(
    request: ResourceList, capacity: ResourceList, allocatable: ResourceList
) -> list[tuple[float, float, float]]:
    """List (requested, capacity, allocatable) for each resource the replica requests.

    Typed accelerators replace the plain GPU count, because `gpus` is their sum and counting both
    would weigh GPUs twice.
    """
    amounts = [
        (request.cpus, capacity.cpus, allocatable.cpus),
        (request.memory, capacity.memory, allocatable.memory),
        (request.disk, capacity.disk, allocatable.disk),
    ]
    if request.accelerators:
        for accelerator, count in sorted(request.accelerators.items()):
            amounts.append(
                (count, capacity.accelerators.get(accelerator, 0), allocatable.accelerators.get(accelerator, 0))
            )
    else:
        amounts.append((request.gpus, capacity.gpus, allocatable.gpus))
    return [amount for amount in amounts if amount[0] > 0]


def _resource_score(requested: float, capacity: float, allocatable: float) -> int:
    if capacity <= 0:
        return MIN_SCORE
    used = max(0.0, capacity - allocatable) + requested
    return math.floor(MAX_SCORE * min(used, capacity) / capacity + _EPSILON)


def choose_fewest_clusters(ranked: list[Candidate], replicas: int) -> list[Candidate]:
    """Choose the fewest clusters that hold `replicas`, preferring clusters early in `ranked`.

    Returns every cluster when all of them together hold fewer than `replicas`.
    """
    rooms = sorted((candidate.fit_count for candidate in ranked), reverse=True)
    total = 0
    for size, room in enumerate(rooms, start=1):
        total += room
        if total >= replicas:
            return first_feasible_clusters(ranked, size, replicas)
    return list(ranked)
