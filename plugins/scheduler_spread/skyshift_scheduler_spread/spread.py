"""Spread: the scheduler policy plugin that divides a Job's replicas evenly among the candidate clusters.

The scheduler calls `SpreadPlugin.divide` once per cycle, after filter and score, when the profile names
`spread` as its divide plugin. R is the number of replicas, fit_i the replicas cluster i can hold
(`Candidate.fit_count`). Priority orders the clusters: higher score first, then more replicas of this
Job already there (`Candidate.current`, so re-running a decision changes nothing), then name.

Even split (the default). The chosen clusters have room for at least min_replicas_per_cluster each,
and there are as many of them as R // min_replicas_per_cluster allows, taken in priority order. A
cluster is skipped only when taking it would leave too little room for all R replicas. Each chosen cluster first gets min_replicas_per_cluster. Each further replica goes to the
highest-priority cluster that is below its fit_count and stays within max_skew of the least loaded
chosen cluster that is below its fit_count. With max_skew 1 this is water-filling:

    share = floor(R / n). A cluster whose fit_count is below the share takes its fit_count, and the
    rest is shared again among the others. The R mod n replicas left over go one each to the first
    clusters in priority order.

    Worked number: R = 10, fit counts A=1, B=2, C=10, D=10, equal scores. 10 / 4 -> 2, so A takes
    its 1. 9 / 3 -> 3 for B, C and D, so B takes its 2. 7 / 2 -> 3 for C and D, and the 1 left over
    goes to C by name: A=1, B=2, C=4, D=3.

Weighted split (`weight_by_preferences: true`). Cluster i has the weight w_i = 1 + the sum of the
weights of the Job's placement preferences that its labels match. Its quota is
q_i = min(fit_i, lambda * w_i), where lambda makes the quotas add up to R (water-filling by weight).
Each cluster gets floor(q_i). The R - sum(floor(q_i)) replicas left over go one each to the largest
fractional parts q_i - floor(q_i) (the largest-remainder, or Hamilton, method), with ties in priority
order. A cluster whose count ends up between 0 and min_replicas_per_cluster is dropped, and the
replicas are split again among the others.

    Worked number: R = 4, weights A=3, B=1, C=1, so W = 5 and q = 2.4, 0.8, 0.8. The floors are
    2, 0, 0, and the 2 replicas left over go to B and C (0.8 > 0.4): A=2, B=1, C=1.

NOTE: the largest-remainder method is not monotone in R (the Alabama paradox): with weights 6, 6, 2,
R = 10 gives 4, 4, 2 but R = 11 gives 5, 5, 1. A divisor method (Webster/Sainte-Laguë) would not do
that. The even split with min_replicas_per_cluster 1 is monotone: raising R never takes a replica from
a cluster. A larger minimum is not: with minimum 2 and fit counts a=2 (highest score), b=10, c=10,
R = 3 goes whole to b, but R = 4 gives a=2, b=2.
"""

from __future__ import annotations

import difflib
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, ClassVar

from skyshift_core.objects import Job
from skyshift_core.scheduler.framework import (
    MIN_SCORE,
    Candidate,
    ClusterInfo,
    CycleState,
    DividePlugin,
    ScorePlugin,
    Status,
    first_feasible_clusters,
)

logger = logging.getLogger(__name__)

NAME = "spread"

MIN_REPLICAS_PER_CLUSTER = "min_replicas_per_cluster"
MAX_SKEW = "max_skew"
WEIGHT_BY_PREFERENCES = "weight_by_preferences"
ARGUMENT_NAMES = (MIN_REPLICAS_PER_CLUSTER, MAX_SKEW, WEIGHT_BY_PREFERENCES)


@dataclass(frozen=True)
class SpreadArgs:
    """Validated arguments of the spread plugin, read from the scheduler profile."""

    # A cluster that gets any replicas gets at least this many. A Job with fewer replicas puts all
    # of them on one cluster, so that this profile-wide setting never makes a small Job unschedulable.
    min_replicas_per_cluster: int = 1
    # Maximum difference in replicas between two chosen clusters that are below their fit_count.
    max_skew: int = 1
    # Split in proportion to placement preference weights instead of evenly.
    weight_by_preferences: bool = False

    @classmethod
    def parse(cls, args: Mapping[str, Any]) -> SpreadArgs:
        """Validate profile arguments and raise ValueError naming the bad argument and the accepted values."""
        for name in args:
            if name not in ARGUMENT_NAMES:
                close = difflib.get_close_matches(str(name), ARGUMENT_NAMES, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(
                    f"Unknown {NAME} argument {name!r}{hint}; valid arguments: {', '.join(ARGUMENT_NAMES)}"
                )

        weighted = args.get(WEIGHT_BY_PREFERENCES, False)
        if not isinstance(weighted, bool):
            raise ValueError(f"Invalid {NAME} argument {WEIGHT_BY_PREFERENCES}={weighted!r}: expected true or false")
        # The skew bounds only the even split, because a weighted split is uneven on purpose.
        if weighted and MAX_SKEW in args:
            raise ValueError(
                f"Invalid {NAME} argument {MAX_SKEW}={args[MAX_SKEW]!r}: it applies to the even split and cannot "
                f"be combined with {WEIGHT_BY_PREFERENCES}=true; remove one of the two"
            )

        return cls(
            min_replicas_per_cluster=_positive_integer(args, MIN_REPLICAS_PER_CLUSTER, 1),
            max_skew=_positive_integer(args, MAX_SKEW, 1),
            weight_by_preferences=weighted,
        )


def _positive_integer(args: Mapping[str, Any], name: str, default: int) -> int:
    value = args.get(name, default)
    # bool is a subclass of int, but `max_skew: true` is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"Invalid {NAME} argument {name}={value!r}: expected an integer of at least 1")
    return value


class SpreadPlugin(DividePlugin, ScorePlugin):
    """Divide replicas evenly, or by placement preference weight, among clusters, each within its free capacity."""

    name: ClassVar[str] = NAME

    def __init__(self, args: Mapping[str, Any] | None = None):
        super().__init__(args)
        self.config = SpreadArgs.parse(self.args)

    def pre_score(self, state: CycleState, job: Job, clusters: list[ClusterInfo]) -> Status:
        """Skip scoring: the score is the same for every cluster (see `score`)."""
        return Status.skip()

    def score(self, state: CycleState, job: Job, cluster: ClusterInfo) -> int:
        """Return MIN_SCORE (0) for every cluster: spread balances replicas in `divide`, not through scores.

        A least-allocated score would count this Job's own replicas against the clusters that hold
        them, so re-running a decision could move the leftover replicas to other clusters. A constant
        score leaves the order of the leftover replicas to the profile's other score plugins and to
        the current placement.
        """
        return MIN_SCORE

    def divide(self, state: CycleState, job: Job, replicas: int, candidates: list[Candidate]) -> dict[str, int]:
        """Split `replicas` among the candidates by the even or weighted split of the module docstring."""
        if replicas <= 0:
            return {}

        # Sorting here, not trusting the caller's order, makes the result independent of input order.
        ordered = sorted(candidates, key=priority)
        minimum = min(self.config.min_replicas_per_cluster, replicas)
        eligible = [candidate for candidate in ordered if candidate.fit_count >= minimum]

        if self.config.weight_by_preferences:
            weights = {candidate.name: preference_weight(job, candidate.cluster) for candidate in eligible}
            counts = divide_by_weight(eligible, replicas, weights, minimum)
        else:
            chosen = choose_clusters(eligible, replicas, minimum)
            counts = fill_within_skew(chosen, replicas, minimum, self.config.max_skew)

        placement = {name: count for name, count in counts.items() if count > 0}
        logger.debug(
            "Spread divided %d replicas of job %s/%s among %d candidates: %s",
            replicas,
            job.metadata.namespace,
            job.metadata.name,
            len(candidates),
            placement,
        )
        return placement


def priority(candidate: Candidate) -> tuple[int, int, str]:
    """Sort key: higher score first, then more replicas of the Job already there, then name."""
    return (-candidate.score, -candidate.current, candidate.name)


def preference_weight(job: Job, cluster: ClusterInfo) -> int:
    """Return 1 + the weights of the Job's placement preferences that the cluster's labels match."""
    return 1 + sum(
        preference.weight for preference in job.spec.placement.preferences if preference.matches(cluster.labels)
    )


def choose_clusters(ordered: list[Candidate], replicas: int, minimum: int) -> list[Candidate]:
    """Choose the clusters of an even split: as many as `replicas // minimum`, in priority order.

    `ordered` holds only clusters with fit_count >= minimum. If no set of that many clusters can hold
    every replica, the ones with the most room are returned, so the division places as many as it can.
    """
    size = min(len(ordered), replicas // minimum)
    by_room = sorted(ordered, key=lambda candidate: -candidate.fit_count)
    if sum(candidate.fit_count for candidate in by_room[:size]) < replicas:
        return sorted(by_room[:size], key=priority)
    return first_feasible_clusters(ordered, size, replicas)


def fill_within_skew(chosen: list[Candidate], replicas: int, minimum: int, max_skew: int) -> dict[str, int]:
    """Give each chosen cluster `minimum`, then each further replica to the first cluster, in priority order,
    that is below its fit_count and below least + max_skew, where least is the lowest count among the
    clusters still below their fit_count.

    Applying that rule one replica at a time would cost O(replicas) steps. The loop takes the same
    decisions in batches instead, and a comment on each batch explains why it matches the rule.
    """
    counts = {candidate.name: minimum for candidate in chosen}
    fits = {candidate.name: candidate.fit_count for candidate in chosen}
    left = replicas - minimum * len(chosen)

    while left > 0:
        # `counts` keeps the priority order of `chosen`.
        open_names = [name for name in counts if counts[name] < fits[name]]
        if not open_names:
            break
        least = min(counts[name] for name in open_names)

        # Steady pattern: the last open cluster is the least loaded and every other one is max_skew - 1
        # above it. The rule then adds one replica to each open cluster in priority order and returns
        # to the same pattern, so whole rounds are added at once, up to the first fit_count reached.
        last = open_names[-1]
        if counts[last] == least and all(counts[name] == least + max_skew - 1 for name in open_names[:-1]):
            rounds = min(left // len(open_names), min(fits[name] - counts[name] for name in open_names))
            if rounds > 0:
                for name in open_names:
                    counts[name] += rounds
                left -= rounds * len(open_names)
                continue

        # The first open cluster below least + max_skew takes replicas. While it does, `least` stays the
        # same and the clusters before it stay at their limit, so it takes up to its own limit at once.
        # The only exception is the sole least loaded cluster: one more replica there raises `least`,
        # which lets the clusters before it take more, so it takes a single replica.
        name = next(name for name in open_names if counts[name] < least + max_skew)
        limit = min(fits[name], least + max_skew)
        sole_least = counts[name] == least and sum(counts[other] == least for other in open_names) == 1
        taken = 1 if sole_least else min(limit - counts[name], left)
        counts[name] += taken
        left -= taken
    return counts


def divide_by_weight(
    eligible: list[Candidate], replicas: int, weights: Mapping[str, int], minimum: int
) -> dict[str, int]:
    """Apportion `replicas` in proportion to `weights` (largest-remainder method, capped by fit_count).

    A cluster whose share falls between 0 and `minimum` is dropped, the one with the fewest replicas
    first (the last in priority order on a tie), and the replicas are apportioned again.
    """
    # NOTE: dropping a cluster can leave too little room for every replica, even where another choice
    # of clusters would have room. The division then returns the partial placement.
    members = list(eligible)
    while True:
        counts = apportion(members, replicas, weights)
        short = [candidate for candidate in members if 0 < counts[candidate.name] < minimum]
        if not short:
            return counts
        dropped = min(reversed(short), key=lambda candidate: counts[candidate.name])
        members.remove(dropped)


def apportion(members: list[Candidate], replicas: int, weights: Mapping[str, int]) -> dict[str, int]:
    """Give each member floor(q_i) of its quota, then the replicas left over to the largest fractional parts."""
    quotas = weighted_quotas(members, replicas, weights)
    counts = {name: math.floor(quota) for name, quota in quotas.items()}

    # The quotas add up to min(replicas, total fit_count) exactly, so `left` is an integer.
    left = int(sum(quotas.values())) - sum(counts.values())
    # sorted() is stable, so equal fractional parts keep the priority order of `members`.
    by_remainder = sorted(members, key=lambda candidate: -(quotas[candidate.name] - counts[candidate.name]))
    for candidate in by_remainder[:left]:
        counts[candidate.name] += 1
    return counts


def weighted_quotas(members: list[Candidate], replicas: int, weights: Mapping[str, int]) -> dict[str, Fraction]:
    """Return q_i = min(fit_i, lambda * w_i) with lambda chosen so that the quotas add up to `replicas`.

    Computed exactly with fractions, so equal remainders compare equal. When the members together hold
    fewer than `replicas`, each quota is its fit_count.
    """
    if sum(candidate.fit_count for candidate in members) <= replicas:
        return {candidate.name: Fraction(candidate.fit_count) for candidate in members}

    # A cluster reaches its fit_count when lambda passes fit_i / w_i, so clusters are capped in that order.
    by_cap = sorted(members, key=lambda candidate: Fraction(candidate.fit_count, weights[candidate.name]))
    capped: set[str] = set()
    left = Fraction(replicas)
    weight_left = sum(weights[candidate.name] for candidate in members)
    for candidate in by_cap:
        if Fraction(candidate.fit_count, weights[candidate.name]) >= left / weight_left:
            break
        capped.add(candidate.name)
        left -= candidate.fit_count
        weight_left -= weights[candidate.name]

    level = left / weight_left
    return {
        candidate.name: Fraction(candidate.fit_count) if candidate.name in capped else level * weights[candidate.name]
        for candidate in members
    }
