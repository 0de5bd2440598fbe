"""Table tests for the binpack plugin: arguments, the most-allocated score and the division, worked out by hand."""

from __future__ import annotations

import pytest
from skyshift_scheduler_binpack import BinpackPlugin

from skyshift_core.objects import Job, ResourceList
from skyshift_core.plugins import SCHEDULER_PLUGINS, PluginCatalog
from skyshift_core.scheduler.framework import Candidate, ClusterInfo, CycleState, NodeInfo, replica_request


def node(name: str, capacity: dict, allocatable: dict) -> NodeInfo:
    return NodeInfo(name=name, capacity=ResourceList(**capacity), allocatable=ResourceList(**allocatable))


def cluster(name: str, *nodes: NodeInfo) -> ClusterInfo:
    return ClusterInfo(name=name, labels={}, ready=True, cordoned=False, nodes=list(nodes))


def job(replicas: int = 1, **resources) -> Job:
    return Job(metadata={"name": "train", "namespace": "default"}, spec={"replicas": replicas, "resources": resources})


def cpu_candidate(name: str, capacity: int, allocatable: int, score: int = 0, current: int = 0) -> Candidate:
    """A one-node cluster with `capacity` CPUs of which `allocatable` are free; its fit_count is for 1-CPU replicas."""
    info = cluster(name, node(f"{name}-node", {"cpus": capacity}, {"cpus": allocatable}))
    return Candidate(cluster=info, fit_count=info.fit_count(ResourceList(cpus=1)), score=score, current=current)


SCORE_CASES = [
    # cpus: 12 used + 2 requested of 16 -> 100 * 14 / 16 = 87.5 -> 87. memory: 32768 + 8192 of 65536 MiB
    # -> 100 * 40960 / 65536 = 62.5 -> 62. Score: (87 + 62) / 2 = 74.5 -> 74.
    pytest.param(
        {"cpus": 2, "memory": 8192},
        [node("n1", {"cpus": 16, "memory": 65536}, {"cpus": 4, "memory": 32768})],
        74,
        id="cpus-and-memory",
    ),
    # 6 used + 1 requested of 8 CPUs -> 100 * 7 / 8 = 87.5 -> 87. Memory is not requested, so not counted.
    pytest.param(
        {"cpus": 1}, [node("n1", {"cpus": 8, "memory": 1024}, {"cpus": 2, "memory": 1024})], 87, id="cpus-only"
    ),
    # Nodes add up: 4 + 4 = 8 CPUs, 0 + 4 allocatable, so 4 used + 1 requested -> 100 * 5 / 8 = 62.5 -> 62.
    pytest.param(
        {"cpus": 1},
        [node("n1", {"cpus": 4}, {"cpus": 0}), node("n2", {"cpus": 4}, {"cpus": 4})],
        62,
        id="nodes-summed",
    ),
    # 8 used + 1 requested exceeds the 8 CPUs, so the ratio is capped at 100 * 8 / 8 = 100.
    pytest.param({"cpus": 1}, [node("n1", {"cpus": 8}, {"cpus": 0})], 100, id="full-cluster-capped"),
    # 0 used + 2 requested of 16 -> 100 * 2 / 16 = 12.5 -> 12.
    pytest.param({"cpus": 2}, [node("n1", {"cpus": 16}, {"cpus": 16})], 12, id="idle-cluster"),
    # cpus: 0 + 1 of 32 -> 3.125 -> 3. A100: 6 used + 1 of 8 -> 87.5 -> 87. gpus are the A100 count and
    # are not counted again: (3 + 87) / 2 = 45.
    pytest.param(
        {"cpus": 1, "A100": 1},
        [node("n1", {"cpus": 32, "gpus": 8, "A100": 8}, {"cpus": 32, "gpus": 2, "A100": 2})],
        45,
        id="accelerator-type",
    ),
    # gpus without a type: 2 used + 2 of 4 -> 100. cpus: 4 used + 1 of 8 -> 62.5 -> 62. (100 + 62) / 2 = 81.
    pytest.param({"cpus": 1, "gpus": 2}, [node("n1", {"cpus": 8, "gpus": 4}, {"cpus": 4, "gpus": 2})], 81, id="gpus"),
    # disk is requested but the cluster reports none, which scores 0. cpus: 4 + 1 of 8 -> 62. (62 + 0) / 2 = 31.
    pytest.param({"cpus": 1, "disk": 100}, [node("n1", {"cpus": 8}, {"cpus": 4})], 31, id="zero-capacity"),
    # 0.19 used + 0.1 requested of 1 CPU -> 29 exactly, although floating point computes 28.999999999999993.
    pytest.param({"cpus": 0.1}, [node("n1", {"cpus": 1}, {"cpus": 0.81})], 29, id="float-rounding"),
    # A replica that requests nothing has no ratio to average: 0.
    pytest.param({"cpus": 0}, [node("n1", {"cpus": 8}, {"cpus": 1})], 0, id="nothing-requested"),
]


@pytest.mark.parametrize(("resources", "nodes", "expected"), SCORE_CASES)
def test_score_most_allocated(resources, nodes, expected):
    assert BinpackPlugin().score(CycleState(), job(**resources), cluster("a", *nodes)) == expected


DIVIDE_CASES = [
    # Allocation scores with 1-CPU replicas on 16-CPU clusters: a (12 free) 100 * 5 / 16 -> 31,
    # b (4 free) 100 * 13 / 16 -> 81, c (2 free) 100 * 15 / 16 -> 93. c is the most allocated but holds
    # only 2 of 3, so all 3 go to b, the most allocated cluster that holds them all.
    pytest.param(
        3,
        [cpu_candidate("a", 16, 12), cpu_candidate("b", 16, 4), cpu_candidate("c", 16, 2)],
        {"b": 3},
        id="fits-in-most-allocated",
    ),
    # Scores: a (3 free) 100 * 14 / 16 -> 87, b (8 free) 100 * 9 / 16 -> 56, c (9 free) 100 * 8 / 16 -> 50.
    # No cluster has room for 10, but the two largest have 9 + 8 >= 10. a is taken (3 + 9 >= 10),
    # then b (3 + 8 >= 10): a fills to 3 and b takes the other 7.
    pytest.param(
        10,
        [cpu_candidate("a", 16, 3), cpu_candidate("b", 16, 8), cpu_candidate("c", 16, 9)],
        {"a": 3, "b": 7},
        id="two-clusters-most-allocated-first",
    ),
    # Scores: a (2 free) 93, b (3 free) 87, c (8 free) 56. Two clusters are needed (8 + 3 >= 10). a is taken
    # (2 + 8 >= 10). b is skipped because a + b = 5 < 10. c is taken: a=2, c=8.
    pytest.param(
        10,
        [cpu_candidate("a", 16, 2), cpu_candidate("b", 16, 3), cpu_candidate("c", 16, 8)],
        {"a": 2, "c": 8},
        id="skips-cluster-without-room",
    ),
    # a and b have room for 2 + 3 = 5 of 10. Each is filled, and the framework keeps the job pending.
    pytest.param(10, [cpu_candidate("a", 16, 2), cpu_candidate("b", 16, 3)], {"a": 2, "b": 3}, id="capacity-short"),
    # Equal allocation (both 100 * 9 / 16 -> 56), and b has the higher profile score.
    pytest.param(
        4,
        [cpu_candidate("a", 16, 8, score=10), cpu_candidate("b", 16, 8, score=40)],
        {"b": 4},
        id="tie-by-profile-score",
    ),
    # Equal allocation and score, and b already runs 2 replicas of the job.
    pytest.param(
        4,
        [cpu_candidate("a", 16, 8), cpu_candidate("b", 16, 8, current=2)],
        {"b": 4},
        id="tie-by-current",
    ),
    # Everything equal: a by name.
    pytest.param(4, [cpu_candidate("b", 16, 8), cpu_candidate("a", 16, 8)], {"a": 4}, id="tie-by-name"),
    # a has no free CPU (fit 0) although it is the most allocated, so b takes all.
    pytest.param(2, [cpu_candidate("a", 16, 0), cpu_candidate("b", 16, 8)], {"b": 2}, id="zero-fit-skipped"),
    pytest.param(2, [], {}, id="no-candidates"),
]


@pytest.mark.parametrize(("replicas", "candidates", "expected"), DIVIDE_CASES)
def test_divide(replicas, candidates, expected):
    assert BinpackPlugin().divide(CycleState(), job(replicas, cpus=1), replicas, candidates) == expected


def test_divide_zero_replicas():
    assert BinpackPlugin().divide(CycleState(), job(cpus=1), 0, [cpu_candidate("a", 16, 8)]) == {}


def test_replica_request_matches_job():
    # The fit counts in DIVIDE_CASES assume a 1-CPU replica with no other resources.
    assert replica_request(job(cpus=1)) == ResourceList(cpus=1)


@pytest.mark.parametrize(
    "args", [{"max_skew": 1}, {"weights": {"cpus": 2}}], ids=["spread-argument", "unknown-argument"]
)
def test_args_rejected(args):
    (name,) = args
    with pytest.raises(ValueError, match=f"'{name}'.*takes no arguments"):
        BinpackPlugin(args)


def test_args_empty_accepted():
    assert BinpackPlugin({}).args == {}


def test_entry_point_loads_plugin():
    assert PluginCatalog.discover().load_driver(SCHEDULER_PLUGINS, "binpack") is BinpackPlugin
