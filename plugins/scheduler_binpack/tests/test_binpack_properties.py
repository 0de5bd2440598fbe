"""Property tests for the binpack plugin's division: sums, fit counts, single cluster, fewest clusters, input order."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from skyshift_scheduler_binpack import BinpackPlugin
from skyshift_scheduler_binpack.binpack import most_allocated_score

from skyshift_core.objects import Job, ResourceList
from skyshift_core.scheduler.framework import Candidate, ClusterInfo, CycleState, NodeInfo

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)
NAMES = [f"cluster-{index}" for index in range(8)]


@st.composite
def nodes(draw, name: str) -> NodeInfo:
    cpus = draw(st.integers(1, 32))
    memory = draw(st.integers(1, 64)) * 1024
    return NodeInfo(
        name=name,
        capacity=ResourceList(cpus=cpus, memory=memory),
        allocatable=ResourceList(cpus=draw(st.integers(0, cpus)), memory=draw(st.integers(0, memory))),
    )


@st.composite
def scenarios(draw) -> tuple[ResourceList, list[Candidate]]:
    """A replica request and candidate clusters of one or two nodes, with fit counts computed for that request."""
    request = ResourceList(cpus=draw(st.integers(1, 4)), memory=draw(st.sampled_from([0, 512, 2048])))
    names = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=6))
    candidates = []
    for name in names:
        cluster_nodes = [draw(nodes(f"{name}-node-{index}")) for index in range(draw(st.integers(1, 2)))]
        cluster = ClusterInfo(name=name, labels={}, ready=True, cordoned=False, nodes=cluster_nodes)
        # Small score and current ranges make ties common, so the tie-breaks are exercised.
        candidates.append(
            Candidate(
                cluster=cluster,
                fit_count=cluster.fit_count(request),
                score=draw(st.integers(0, 3)),
                current=draw(st.integers(0, 3)),
            )
        )
    return request, candidates


def divide(request: ResourceList, replicas: int, candidates: list[Candidate]) -> dict[str, int]:
    job = Job(
        metadata={"name": "train", "namespace": "default"},
        spec={"replicas": replicas, "resources": {"cpus": request.cpus, "memory": request.memory}},
    )
    return BinpackPlugin().divide(CycleState(), job, replicas, candidates)


def fewest_clusters(candidates: list[Candidate], replicas: int) -> int | None:
    """The minimum number of clusters whose fit counts add up to `replicas`, or None when all together hold fewer."""
    total = 0
    for count, fit in enumerate(sorted((c.fit_count for c in candidates), reverse=True), start=1):
        total += fit
        if total >= replicas:
            return count
    return None


@PROPERTY_SETTINGS
@given(scenario=scenarios(), replicas=st.integers(1, 100))
def test_division_places_every_replica_when_room(scenario, replicas):
    request, candidates = scenario
    total_fit = sum(c.fit_count for c in candidates)

    placement = divide(request, replicas, candidates)

    assert sum(placement.values()) == min(replicas, total_fit)


@PROPERTY_SETTINGS
@given(scenario=scenarios(), replicas=st.integers(1, 100))
def test_division_within_fit_counts(scenario, replicas):
    request, candidates = scenario
    fits = {c.name: c.fit_count for c in candidates}

    placement = divide(request, replicas, candidates)

    for name, count in placement.items():
        assert 0 < count <= fits[name], (name, count, fits[name])


@PROPERTY_SETTINGS
# Fewer replicas than in the other tests, so that several clusters often hold them all.
@given(scenario=scenarios(), replicas=st.integers(1, 24))
def test_division_single_cluster_when_one_fits(scenario, replicas):
    request, candidates = scenario
    holding_all = [c for c in candidates if c.fit_count >= replicas]

    placement = divide(request, replicas, candidates)

    if holding_all:
        assert len(placement) == 1
        (chosen,) = placement
        assert placement[chosen] == replicas
        chosen_allocation = most_allocated_score(request, next(c.cluster for c in candidates if c.name == chosen))
        for other in holding_all:
            assert most_allocated_score(request, other.cluster) <= chosen_allocation, (other.name, chosen)


@PROPERTY_SETTINGS
@given(scenario=scenarios(), replicas=st.integers(1, 100))
def test_division_uses_fewest_clusters(scenario, replicas):
    request, candidates = scenario
    fewest = fewest_clusters(candidates, replicas)

    placement = divide(request, replicas, candidates)

    if fewest is not None:
        assert len(placement) == fewest


@PROPERTY_SETTINGS
@given(
    scenario=scenarios().flatmap(lambda drawn: st.tuples(st.just(drawn), st.permutations(drawn[1]))),
    replicas=st.integers(1, 100),
)
def test_division_ignores_candidate_order(scenario, replicas):
    (request, listed), shuffled = scenario

    assert divide(request, replicas, listed) == divide(request, replicas, shuffled)
