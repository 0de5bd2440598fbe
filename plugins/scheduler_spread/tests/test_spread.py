"""Table tests for the spread plugin: arguments, score, and the even and weighted divisions worked out by hand."""

from __future__ import annotations

import pytest
from skyshift_scheduler_spread import SpreadPlugin
from skyshift_scheduler_spread.spread import SpreadArgs

from skyshift_core.objects import Job, ResourceList
from skyshift_core.plugins import SCHEDULER_PLUGINS, PluginCatalog
from skyshift_core.scheduler.framework import MIN_SCORE, Candidate, ClusterInfo, CycleState, NodeInfo


def candidate(name: str, fit: int, score: int = 0, current: int = 0, labels: dict[str, str] | None = None) -> Candidate:
    cluster = ClusterInfo(name=name, labels=labels or {}, ready=True, cordoned=False, nodes=[])
    return Candidate(cluster=cluster, fit_count=fit, score=score, current=current)


def job(replicas: int = 1, preferences: list[dict] | None = None) -> Job:
    return Job(
        metadata={"name": "train", "namespace": "default"},
        spec={"replicas": replicas, "placement": {"preferences": preferences or []}},
    )


def divide(args: dict, replicas: int, candidates: list[Candidate], preferences: list[dict] | None = None) -> dict:
    return SpreadPlugin(args).divide(CycleState(), job(replicas, preferences), replicas, candidates)


EVEN_CASES = [
    # 6 / 3 = 2 each, nothing left over.
    pytest.param(
        {}, 6, [candidate("a", 10), candidate("b", 10), candidate("c", 10)], {"a": 2, "b": 2, "c": 2}, id="even-split"
    ),
    # 7 / 3 = 2 each with 1 left over. Scores b=50 > c=30 > a=10, so b takes it.
    pytest.param(
        {},
        7,
        [candidate("a", 10, score=10), candidate("b", 10, score=50), candidate("c", 10, score=30)],
        {"a": 2, "b": 3, "c": 2},
        id="remainder-by-score",
    ),
    # 7 / 3 = 2 each with 1 left over. Scores are equal and c already runs 3 replicas of the job, so c takes it.
    pytest.param(
        {},
        7,
        [candidate("a", 10), candidate("b", 10), candidate("c", 10, current=3)],
        {"a": 2, "b": 2, "c": 3},
        id="remainder-by-current",
    ),
    # 8 / 3 = 2 each with 2 left over. Scores and current are equal, so a and b take them by name.
    pytest.param(
        {},
        8,
        [candidate("c", 10), candidate("b", 10), candidate("a", 10)],
        {"a": 3, "b": 3, "c": 2},
        id="remainder-by-name",
    ),
    # 10 / 4 -> 2, so a takes its 1. 9 / 3 -> 3, so b takes its 2. 7 / 2 -> 3 for c and d, and the 1 left
    # over goes to c by name: 1 + 2 + 4 + 3 = 10.
    pytest.param(
        {},
        10,
        [candidate("a", 1), candidate("b", 2), candidate("c", 10), candidate("d", 10)],
        {"a": 1, "b": 2, "c": 4, "d": 3},
        id="water-filling",
    ),
    # 2 replicas for 3 clusters: 2 / 3 -> 0 each, the 2 left over go to the highest scores c=90 and a=60.
    pytest.param(
        {},
        2,
        [candidate("a", 10, score=60), candidate("b", 10, score=20), candidate("c", 10, score=90)],
        {"a": 1, "c": 1},
        id="fewer-replicas-than-clusters",
    ),
    # b has no room, so a and c share 4 -> 2 each.
    pytest.param(
        {}, 4, [candidate("a", 10), candidate("b", 0), candidate("c", 10)], {"a": 2, "c": 2}, id="zero-fit-skipped"
    ),
    # a and b have room for 2 + 3 = 5 of 10. The division returns what fits, and the framework keeps the job pending.
    pytest.param({}, 10, [candidate("a", 2), candidate("b", 3)], {"a": 2, "b": 3}, id="capacity-short"),
    pytest.param({}, 3, [], {}, id="no-candidates"),
]

MIN_REPLICAS_CASES = [
    # 5 // 2 = 2 clusters, a and b by name, with 2 each. The 1 left over goes to a.
    pytest.param(
        {"min_replicas_per_cluster": 2},
        5,
        [candidate("a", 10), candidate("b", 10), candidate("c", 10)],
        {"a": 3, "b": 2},
        id="min-2-uses-two-clusters",
    ),
    # a has room for only 2 < 3, so it is skipped although it scores highest. b and c get 6 / 2 = 3 each.
    pytest.param(
        {"min_replicas_per_cluster": 3},
        6,
        [candidate("a", 2, score=90), candidate("b", 10), candidate("c", 10)],
        {"b": 3, "c": 3},
        id="min-3-skips-small-cluster",
    ),
    # 7 // 3 = 2 clusters. a (score 90) is taken: a + the largest other room, 3 + 10 >= 7. b (score 50) is
    # skipped: a + b = 3 + 3 < 7. c is taken. a and c start at 3 each, and the 1 left over goes to c,
    # because a is at its fit_count: a=3, c=4.
    pytest.param(
        {"min_replicas_per_cluster": 3},
        7,
        [candidate("a", 3, score=90), candidate("b", 3, score=50), candidate("c", 10, score=10)],
        {"a": 3, "c": 4},
        id="min-3-skips-cluster-without-room",
    ),
    # 1 replica is fewer than the minimum 2, so the job goes whole to the highest score, b.
    pytest.param(
        {"min_replicas_per_cluster": 2},
        1,
        [candidate("a", 10, score=10), candidate("b", 10, score=20)],
        {"b": 1},
        id="min-above-replicas",
    ),
    # b has room for 3 < 4 and is skipped. 10 // 4 = 2 clusters, a and c, have room for 5 + 4 = 9 < 10, so each is filled.
    pytest.param(
        {"min_replicas_per_cluster": 4},
        10,
        [candidate("a", 5), candidate("b", 3), candidate("c", 4)],
        {"a": 5, "c": 4},
        id="min-4-capacity-short",
    ),
]

MAX_SKEW_CASES = [
    # Start at 1 each (3 placed). a fills to 1 + 2 = 3 and b to 3. c is the only least loaded cluster, so
    # it takes 1 (c=2) and the least becomes 2. Then a and b each take 1 more: 4 + 4 + 2 = 10.
    pytest.param(
        {"max_skew": 2},
        10,
        [candidate("a", 100, score=3), candidate("b", 100, score=2), candidate("c", 100, score=1)],
        {"a": 4, "b": 4, "c": 2},
        id="max-skew-2",
    ),
    # Start at 1 each. a stops at its fit_count 2. b fills to 1 + 3 = 4, then c takes 1 (c=2), so the least
    # of b and c is 2. b takes 1 (5) and c takes 1 (3): 2 + 5 + 3 = 10, and b - c = 2 <= 3.
    pytest.param(
        {"max_skew": 3},
        10,
        [candidate("a", 2, score=3), candidate("b", 100, score=2), candidate("c", 100, score=1)],
        {"a": 2, "b": 5, "c": 3},
        id="max-skew-3-capped-cluster",
    ),
    # 2 replicas for 3 clusters: each chosen cluster gets its 1 first, so the skew never packs them.
    pytest.param(
        {"max_skew": 5},
        2,
        [candidate("a", 10, score=3), candidate("b", 10, score=2), candidate("c", 10, score=1)],
        {"a": 1, "b": 1},
        id="max-skew-fewer-replicas-than-clusters",
    ),
]

GOLD = {"match_labels": {"tier": "gold"}}
BRONZE = {"match_labels": {"tier": "bronze"}}

WEIGHTED_CASES = [
    # Weights a = 1 + 2 = 3 and b = 1, so q = 8 * 3/4 = 6 and 8 * 1/4 = 2, whole numbers.
    pytest.param(
        [{**GOLD, "weight": 2}],
        8,
        [candidate("a", 100, labels={"tier": "gold"}), candidate("b", 100)],
        {"a": 6, "b": 2},
        id="weighted-3-to-1",
    ),
    # Weights 3 and 1, but a holds only 4: lambda = 8 / 4 = 2 > 4 / 3, so a is capped at 4 and b takes 4.
    pytest.param(
        [{**GOLD, "weight": 2}],
        8,
        [candidate("a", 4, labels={"tier": "gold"}), candidate("b", 100)],
        {"a": 4, "b": 4},
        id="weighted-capped",
    ),
    # Weights 3, 1, 1 (W = 5): q = 2.4, 0.8, 0.8 with floors 2, 0, 0. The 2 left over go to b and c (0.8 > 0.4).
    pytest.param(
        [{**GOLD, "weight": 2}],
        4,
        [candidate("a", 100, labels={"tier": "gold"}), candidate("b", 100), candidate("c", 100)],
        {"a": 2, "b": 1, "c": 1},
        id="weighted-largest-remainder",
    ),
    # Weights 1, 1, 1: q = 5/3 each with floor 1. The 2 left over tie, so they go by score: c, then a.
    pytest.param(
        [],
        5,
        [candidate("a", 100, score=5), candidate("b", 100), candidate("c", 100, score=9)],
        {"a": 2, "b": 1, "c": 2},
        id="weighted-no-preferences",
    ),
    # Weights 6, 6, 2 (W = 14), 10 replicas: q = 4.29, 4.29, 1.43 with floors 4, 4, 1. The 1 left over goes to c.
    pytest.param(
        [{**GOLD, "weight": 5}, {**BRONZE, "weight": 1}],
        10,
        [
            candidate("a", 100, labels={"tier": "gold"}),
            candidate("b", 100, labels={"tier": "gold"}),
            candidate("c", 100, labels={"tier": "bronze"}),
        ],
        {"a": 4, "b": 4, "c": 2},
        id="weighted-alabama-10",
    ),
    # Same clusters, 11 replicas: q = 4.71, 4.71, 1.57 with floors 4, 4, 1. The 2 left over go to a and b,
    # so c drops from 2 to 1, because the largest-remainder method is not monotone.
    pytest.param(
        [{**GOLD, "weight": 5}, {**BRONZE, "weight": 1}],
        11,
        [
            candidate("a", 100, labels={"tier": "gold"}),
            candidate("b", 100, labels={"tier": "gold"}),
            candidate("c", 100, labels={"tier": "bronze"}),
        ],
        {"a": 5, "b": 5, "c": 1},
        id="weighted-alabama-11",
    ),
]


@pytest.mark.parametrize(
    ("args", "replicas", "candidates", "expected"), EVEN_CASES + MIN_REPLICAS_CASES + MAX_SKEW_CASES
)
def test_divide_even(args, replicas, candidates, expected):
    assert divide(args, replicas, candidates) == expected


@pytest.mark.parametrize(("preferences", "replicas", "candidates", "expected"), WEIGHTED_CASES)
def test_divide_weighted(preferences, replicas, candidates, expected):
    assert divide({"weight_by_preferences": True}, replicas, candidates, preferences) == expected


def test_divide_weighted_drops_cluster_below_minimum():
    # Weights a = 1 + 4 = 5, b = 1: q = 5, 1. b's 1 is below the minimum 2, so b is dropped and a takes all 6.
    args = {"weight_by_preferences": True, "min_replicas_per_cluster": 2}
    candidates = [candidate("a", 100, labels={"tier": "gold"}), candidate("b", 100)]

    assert divide(args, 6, candidates, [{**GOLD, "weight": 4}]) == {"a": 6}


def test_divide_ignores_input_order():
    candidates = [
        candidate("a", 3, score=5),
        candidate("b", 8),
        candidate("c", 8, current=2),
        candidate("d", 1, score=5),
    ]

    assert divide({}, 11, candidates) == divide({}, 11, list(reversed(candidates)))


def test_divide_zero_replicas():
    assert SpreadPlugin().divide(CycleState(), job(), 0, [candidate("a", 10)]) == {}


def test_score_is_neutral():
    node = NodeInfo(name="n1", capacity=ResourceList(cpus=8), allocatable=ResourceList(cpus=2))
    cluster = ClusterInfo(name="a", labels={}, ready=True, cordoned=False, nodes=[node])

    assert SpreadPlugin().score(CycleState(), job(), cluster) == MIN_SCORE


def test_args_defaults():
    assert SpreadPlugin().config == SpreadArgs(min_replicas_per_cluster=1, max_skew=1, weight_by_preferences=False)


def test_args_accepted():
    plugin = SpreadPlugin({"min_replicas_per_cluster": 2, "weight_by_preferences": True})

    assert plugin.config == SpreadArgs(min_replicas_per_cluster=2, max_skew=1, weight_by_preferences=True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param({"max_skew": 0}, "max_skew=0", id="max-skew-zero"),
        pytest.param({"max_skew": True}, "max_skew=True", id="max-skew-bool"),
        pytest.param({"max_skew": "2"}, "max_skew='2'", id="max-skew-string"),
        pytest.param({"max_skew": 1.5}, "max_skew=1.5", id="max-skew-float"),
        pytest.param({"min_replicas_per_cluster": -1}, "min_replicas_per_cluster=-1", id="min-replicas-negative"),
        pytest.param({"min_replicas_per_cluster": None}, "min_replicas_per_cluster=None", id="min-replicas-none"),
        pytest.param({"weight_by_preferences": "yes"}, "weight_by_preferences='yes'", id="weighted-string"),
        pytest.param({"weight_by_preferences": True, "max_skew": 2}, "max_skew=2", id="weighted-with-skew"),
        pytest.param({"maxskew": 2}, "did you mean 'max_skew'", id="unknown-argument"),
    ],
)
def test_args_rejected(args, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        SpreadPlugin(args)


def test_entry_point_loads_plugin():
    assert PluginCatalog.discover().load_driver(SCHEDULER_PLUGINS, "spread") is SpreadPlugin
