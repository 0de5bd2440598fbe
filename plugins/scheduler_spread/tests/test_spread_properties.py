"""Property tests for the spread plugin's division: sums, fit counts, skew, order independence, monotonicity."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st
from skyshift_scheduler_spread import SpreadPlugin

from skyshift_core.objects import Job
from skyshift_core.scheduler.framework import Candidate, ClusterInfo, CycleState

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)
NAMES = [f"cluster-{index}" for index in range(8)]
TIERS = ["gold", "silver", "bronze"]


def candidate(name: str, fit: int, score: int = 0, current: int = 0, tier: str | None = None) -> Candidate:
    labels = {"tier": tier} if tier else {}
    cluster = ClusterInfo(name=name, labels=labels, ready=True, cordoned=False, nodes=[])
    return Candidate(cluster=cluster, fit_count=fit, score=score, current=current)


@st.composite
def candidate_lists(draw, max_fit: int = 30, min_fit: int = 0) -> list[Candidate]:
    names = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=6))
    # Small score and current ranges make ties common, so the tie-breaks are exercised.
    return [
        candidate(
            name,
            fit=draw(st.integers(min_fit, max_fit)),
            score=draw(st.integers(0, 3)),
            current=draw(st.integers(0, 4)),
            tier=draw(st.sampled_from([None, *TIERS])),
        )
        for name in names
    ]


def job(replicas: int, preferences: list[dict] | None = None) -> Job:
    return Job(
        metadata={"name": "train", "namespace": "default"},
        spec={"replicas": replicas, "placement": {"preferences": preferences or []}},
    )


def divide(args: dict, replicas: int, candidates: list[Candidate], preferences: list[dict] | None = None) -> dict:
    return SpreadPlugin(args).divide(CycleState(), job(replicas, preferences), replicas, candidates)


def skew_below_fit(placement: dict[str, int], candidates: list[Candidate]) -> int:
    """Max minus min replicas among the clusters that got fewer than their fit_count (0 when fewer than two)."""
    counts = [placement.get(c.name, 0) for c in candidates if placement.get(c.name, 0) < c.fit_count]
    return max(counts) - min(counts) if len(counts) > 1 else 0


def divide_one_at_a_time(candidates: list[Candidate], replicas: int, max_skew: int) -> dict[str, int]:
    """The even split's rule applied literally, one replica at a time (default min_replicas_per_cluster 1)."""
    ordered = sorted((c for c in candidates if c.fit_count > 0), key=lambda c: (-c.score, -c.current, c.name))
    chosen = ordered[:replicas]
    counts = {c.name: 1 for c in chosen}
    for _ in range(replicas - len(chosen)):
        below_fit = [c for c in chosen if counts[c.name] < c.fit_count]
        if not below_fit:
            break
        least = min(counts[c.name] for c in below_fit)
        target = next(c for c in below_fit if counts[c.name] + 1 - least <= max_skew)
        counts[target.name] += 1
    return counts


EVEN_ARGS = st.one_of(st.just({}), st.builds(lambda skew: {"max_skew": skew}, st.integers(1, 6)))
ANY_ARGS = st.one_of(EVEN_ARGS, st.just({"weight_by_preferences": True}))
PREFERENCES = st.lists(
    st.builds(
        lambda tier, weight: {"match_labels": {"tier": tier}, "weight": weight},
        st.sampled_from(TIERS),
        st.integers(1, 100),
    ),
    max_size=3,
)


@PROPERTY_SETTINGS
@given(args=ANY_ARGS, replicas=st.integers(1, 120), candidates=candidate_lists(), preferences=PREFERENCES)
def test_division_places_every_replica_when_room(args, replicas, candidates, preferences):
    placement = divide(args, replicas, candidates, preferences)

    if sum(c.fit_count for c in candidates) >= replicas:
        assert sum(placement.values()) == replicas
    else:
        assert sum(placement.values()) == sum(c.fit_count for c in candidates)


@PROPERTY_SETTINGS
@given(args=ANY_ARGS, replicas=st.integers(1, 120), candidates=candidate_lists(), preferences=PREFERENCES)
def test_division_within_fit_counts(args, replicas, candidates, preferences):
    fits = {c.name: c.fit_count for c in candidates}

    placement = divide(args, replicas, candidates, preferences)

    for name, count in placement.items():
        assert 0 < count <= fits[name], (name, count, fits[name])


@PROPERTY_SETTINGS
@given(replicas=st.integers(1, 120), candidates=candidate_lists())
def test_division_default_skew_at_most_one(replicas, candidates):
    placement = divide({}, replicas, candidates)

    assert skew_below_fit(placement, candidates) <= 1


@PROPERTY_SETTINGS
@given(max_skew=st.integers(1, 6), replicas=st.integers(1, 120), candidates=candidate_lists())
def test_division_skew_at_most_max_skew(max_skew, replicas, candidates):
    placement = divide({"max_skew": max_skew}, replicas, candidates)

    assert skew_below_fit(placement, candidates) <= max_skew


@PROPERTY_SETTINGS
@given(max_skew=st.integers(1, 6), replicas=st.integers(1, 120), candidates=candidate_lists())
def test_division_matches_one_at_a_time_rule(max_skew, replicas, candidates):
    expected = divide_one_at_a_time(candidates, replicas, max_skew)

    assert divide({"max_skew": max_skew}, replicas, candidates) == expected


@PROPERTY_SETTINGS
@given(
    args=ANY_ARGS,
    replicas=st.integers(1, 120),
    candidates=candidate_lists().flatmap(lambda listed: st.tuples(st.just(listed), st.permutations(listed))),
    preferences=PREFERENCES,
)
def test_division_ignores_candidate_order(args, replicas, candidates, preferences):
    listed, shuffled = candidates

    assert divide(args, replicas, listed, preferences) == divide(args, replicas, shuffled, preferences)


@PROPERTY_SETTINGS
@given(args=EVEN_ARGS, replicas=st.integers(1, 120), extra=st.integers(1, 40), candidates=candidate_lists())
def test_division_monotonic_in_replicas(args, replicas, extra, candidates):
    smaller = divide(args, replicas, candidates)
    larger = divide(args, replicas + extra, candidates)

    for name, count in smaller.items():
        assert larger.get(name, 0) >= count, (name, count, larger.get(name, 0))


@PROPERTY_SETTINGS
@given(minimum=st.integers(1, 8), replicas=st.integers(1, 60), candidates=candidate_lists(max_fit=20))
def test_division_min_replicas_per_cluster(minimum, replicas, candidates):
    effective = min(minimum, replicas)

    placement = divide({"min_replicas_per_cluster": minimum}, replicas, candidates)

    for name, count in placement.items():
        assert count >= effective, (name, count)
    # If some set of clusters can take `effective` each and together has room for every replica, the
    # split must find one. Brute force is cheap for the at most 6 clusters generated here.
    eligible = [c for c in candidates if c.fit_count >= effective]
    feasible = any(
        len(subset) * effective <= replicas <= sum(c.fit_count for c in subset)
        for size in range(1, len(eligible) + 1)
        for subset in itertools.combinations(eligible, size)
    )
    if feasible:
        assert sum(placement.values()) == replicas


@PROPERTY_SETTINGS
@given(replicas=st.integers(1, 60), candidates=candidate_lists(max_fit=200, min_fit=60), preferences=PREFERENCES)
def test_weighted_division_within_one_of_quota(replicas, candidates, preferences):
    # Every fit_count (>= 60) is at least the replicas (<= 60), so no cluster is capped and each quota
    # is replicas * w_i / W.
    weights = {
        c.name: 1 + sum(p["weight"] for p in preferences if p["match_labels"]["tier"] == c.cluster.labels.get("tier"))
        for c in candidates
    }
    total_weight = sum(weights.values())

    placement = divide({"weight_by_preferences": True}, replicas, candidates, preferences)

    for c in candidates:
        quota = Fraction(replicas * weights[c.name], total_weight)
        assert math.floor(quota) <= placement.get(c.name, 0) <= math.ceil(quota), (c.name, quota, placement)


@PROPERTY_SETTINGS
@given(minimum=st.integers(2, 8), replicas=st.integers(1, 60), candidates=candidate_lists(), preferences=PREFERENCES)
def test_weighted_division_min_replicas_per_cluster(minimum, replicas, candidates, preferences):
    args = {"weight_by_preferences": True, "min_replicas_per_cluster": minimum}

    placement = divide(args, replicas, candidates, preferences)

    for name, count in placement.items():
        assert count >= min(minimum, replicas), (name, count)
