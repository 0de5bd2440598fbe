"""Config validation of simulated clusters: accepted configs and their normalized form, and the
message of each rejected config."""

from __future__ import annotations

import json
from typing import Any

import pytest
from skyshift_core.cluster_manager import ConfigError
from skyshift_simulated import SimulatedClusterManager, parse_config
from skyshift_simulated.config import MAX_NODE_COUNT

SHAPE = {"cpus": 4, "memory": "8Gi"}

# (id, config, expected nodes as (name, cpus, memory MiB, disk MiB, gpus, accelerators, labels)).
GOOD_LAYOUTS: list[tuple[str, dict[str, Any], list[tuple]]] = [
    (
        "count-with-quantities",
        {"node_count": 2, "node": {"cpus": 8, "memory": "32Gi", "disk": "100Gi", "A100": 4}},
        [
            ("node-0", 8, 32768, 102400, 4, {"A100": 4}, {}),
            ("node-1", 8, 32768, 102400, 4, {"A100": 4}, {}),
        ],
    ),
    (
        "count-defaults-to-one",
        {"node": {"cpus": 2, "memory": 1024}},
        [("node-0", 2, 1024, 0, 0, {}, {})],
    ),
    (
        "count-as-whole-float",
        {"node_count": 2.0, "node": SHAPE},
        [("node-0", 4, 8192, 0, 0, {}, {}), ("node-1", 4, 8192, 0, 0, {}, {})],
    ),
    (
        "list-with-labels-and-untyped-gpus",
        {
            "nodes": [
                {"name": "cpu-a", "cpus": 4, "memory": 4096, "labels": {"zone": "a"}},
                # 8 GPUs of which 4 are typed H100: gpus may exceed the sum of the types.
                {"name": "gpu-b", "cpus": 8, "memory": "16G", "gpus": 8, "H100": 4},
            ]
        },
        [
            ("cpu-a", 4, 4096, 0, 0, {}, {"zone": "a"}),
            # 16G is 16 * 10**9 bytes = 15258.7890625 MiB.
            ("gpu-b", 8, 15258.7890625, 0, 8, {"H100": 4}, {}),
        ],
    ),
    (
        "accelerators-mapping-sets-gpus",
        {"node": {"cpus": 4, "memory": "8Gi", "accelerators": {"T4": 2}, "L4": 1}},
        [("node-0", 4, 8192, 0, 3, {"T4": 2, "L4": 1}, {})],
    ),
    (
        "zero-accelerator-dropped",
        {"node": {"cpus": 4, "memory": "8Gi", "A100": 0}},
        [("node-0", 4, 8192, 0, 0, {}, {})],
    ),
]


@pytest.mark.parametrize(("config", "expected"), [case[1:] for case in GOOD_LAYOUTS], ids=[c[0] for c in GOOD_LAYOUTS])
def test_config_node_layout(config, expected):
    parsed = parse_config(config)

    observed = [
        (
            node.name,
            node.capacity.cpus,
            node.capacity.memory,
            node.capacity.disk,
            node.capacity.gpus,
            node.capacity.accelerators,
            node.labels,
        )
        for node in parsed.nodes
    ]
    assert observed == expected


def test_config_defaults():
    normalized = SimulatedClusterManager.validate_config({"node": SHAPE})

    assert normalized == {
        "node_count": 1,
        "node": {"cpus": 4.0, "memory": 8192.0, "disk": 0.0, "gpus": 0, "accelerators": {}, "labels": {}},
        "run_seconds": 1.0,
        "pending_seconds": 0.0,
        "fail_replicas": [],
        "max_restarts": 3,
        "restart_backoff_seconds": 1.0,
        "unreachable": False,
    }


def test_config_camel_case_accepted():
    normalized = SimulatedClusterManager.validate_config(
        {
            "nodeCount": 3,
            "node": SHAPE,
            "runSeconds": 5,
            "pendingSeconds": 2,
            "failReplicas": [4, 1, 4],
            "maxRestarts": 1,
            "restartBackoffSeconds": 0.5,
        }
    )

    assert normalized["node_count"] == 3
    assert normalized["run_seconds"] == 5.0
    assert normalized["pending_seconds"] == 2.0
    assert normalized["fail_replicas"] == [1, 4]
    assert normalized["max_restarts"] == 1
    assert normalized["restart_backoff_seconds"] == 0.5


def test_config_fail_replicas_mapping():
    parsed = parse_config({"node": SHAPE, "fail_replicas": {2: 1, "5": None}})

    assert parsed.fail_replicas.failing_attempts == {2: 1, 5: None}
    # Replica 2 fails its first attempt only; replica 5 fails every attempt.
    assert parsed.fail_replicas.fails(2, attempt=0)
    assert not parsed.fail_replicas.fails(2, attempt=1)
    assert parsed.fail_replicas.fails(5, attempt=7)
    assert not parsed.fail_replicas.fails(0, attempt=0)


ROUND_TRIP_CONFIGS = [case[1] for case in GOOD_LAYOUTS] + [
    {"node": SHAPE, "fail_replicas": {"2": 1, "5": None}, "unreachable": True},
    {"node": SHAPE, "fail_replicas": [3, 0], "run_seconds": 0, "max_restarts": 0},
]


@pytest.mark.parametrize("config", ROUND_TRIP_CONFIGS, ids=[f"config-{i}" for i in range(len(ROUND_TRIP_CONFIGS))])
def test_config_normalized_survives_json(config):
    # A Cluster's config is stored as JSON, so the normalized form must validate again unchanged
    # after a JSON round trip (which turns integer mapping keys into strings).
    normalized = SimulatedClusterManager.validate_config(config)
    stored = json.loads(json.dumps(normalized))

    assert SimulatedClusterManager.validate_config(stored) == normalized


# (id, config, text the ConfigError must contain).
BAD_CONFIGS: list[tuple[str, Any, str]] = [
    ("not-a-mapping", [1, 2], "invalid simulated cluster config [1, 2]: expected a mapping"),
    ("no-layout", {}, "missing node layout: set node_count: 2 with node: {cpus: 8, memory: 32Gi}, or nodes:"),
    (
        "both-layouts",
        {"node_count": 1, "node": SHAPE, "nodes": [{"name": "a", **SHAPE}]},
        "invalid node layout: set either nodes, or node_count with node, not both",
    ),
    ("count-without-node", {"node_count": 2}, "missing node: node_count needs the shape of each node"),
    ("count-zero", {"node_count": 0, "node": SHAPE}, "invalid node_count 0: expected a whole number of at least 1"),
    ("count-bool", {"node_count": True, "node": SHAPE}, "invalid node_count True: expected a whole number"),
    ("count-fraction", {"node_count": 1.5, "node": SHAPE}, "invalid node_count 1.5: expected a whole number"),
    (
        "count-too-large",
        {"node_count": MAX_NODE_COUNT + 1, "node": SHAPE},
        f"invalid node_count {MAX_NODE_COUNT + 1}: expected at most {MAX_NODE_COUNT} nodes",
    ),
    ("node-not-mapping", {"node": 4}, "invalid node 4: expected a mapping such as {cpus: 8, memory: 32Gi}"),
    ("missing-cpus", {"node": {"memory": "8Gi"}}, "missing node.cpus: expected the number of CPUs"),
    ("missing-memory", {"node": {"cpus": 4}}, "missing node.memory: expected MiB as a number or a quantity"),
    ("zero-cpus", {"node": {"cpus": 0, "memory": 1}}, "invalid node.cpus 0: expected a finite number above 0"),
    ("infinite-cpus", {"node": {"cpus": float("inf"), "memory": 1}}, "invalid node.cpus inf: expected a finite number"),
    ("zero-memory", {"node": {"cpus": 1, "memory": 0}}, "invalid node.memory 0: expected a size above zero"),
    ("bad-memory-unit", {"node": {"cpus": 1, "memory": "8Gx"}}, "invalid node.memory '8Gx': expected a number of MiB"),
    ("negative-disk", {"node": {**SHAPE, "disk": -1}}, "invalid node.disk -1: must not be negative"),
    (
        "gpus-below-types",
        {"node": {**SHAPE, "gpus": 1, "A100": 2}},
        "invalid node.gpus 1: the accelerator types add up to 2; set gpus to at least their sum",
    ),
    (
        "negative-accelerator",
        {"node": {**SHAPE, "A100": -1}},
        "invalid node.A100 -1: expected a whole number of at least 0",
    ),
    (
        "accelerator-twice",
        {"node": {**SHAPE, "A100": 1, "accelerators": {"A100": 1}}},
        "duplicate accelerator type 'A100' in node",
    ),
    (
        "misspelt-node-field",
        {"node": {"cpu": 4, "memory": 1}},
        (
            "unknown field 'cpu' in node (did you mean 'cpus'?); valid fields: accelerators, cpus, disk, gpus, "
            "labels, memory, or an accelerator type such as 'A100: 4'"
        ),
    ),
    (
        "misspelt-top-field",
        {"node": SHAPE, "run_second": 3},
        "unknown field 'run_second' in config (did you mean 'run_seconds'?); valid fields:",
    ),
    (
        "misspelt-camel-field",
        {"node": SHAPE, "failReplica": [1]},
        "unknown field 'failReplica' in config (did you mean 'fail_replicas'?)",
    ),
    (
        "unknown-field-no-match",
        {"node": SHAPE, "zzz": 1},
        "unknown field 'zzz' in config; valid fields: fail_replicas,",
    ),
    ("name-in-node-shape", {"node": {**SHAPE, "name": "a"}}, "unknown field 'name' in node"),
    ("field-written-twice", {"node_count": 1, "nodeCount": 2, "node": SHAPE}, "duplicate field 'node_count' in config"),
    ("empty-nodes", {"nodes": []}, "invalid nodes []: expected at least one node"),
    ("nodes-not-list", {"nodes": "a"}, "invalid nodes 'a': expected a list of node shapes"),
    ("node-without-name", {"nodes": [SHAPE]}, "missing nodes[0].name: every entry of nodes needs a name"),
    ("node-name-not-string", {"nodes": [{"name": 7, **SHAPE}]}, "invalid nodes[0].name 7: expected a string"),
    (
        "bad-node-name",
        {"nodes": [{"name": "Gpu_1", **SHAPE}]},
        "invalid nodes[0].name 'Gpu_1': must consist of lower case",
    ),
    (
        "duplicate-node-name",
        {"nodes": [{"name": "a", **SHAPE}, {"name": "b", **SHAPE}, {"name": "a", **SHAPE}]},
        "duplicate node name 'a' in nodes[0] and nodes[2]: node names must be unique",
    ),
    ("bad-label-value", {"node": {**SHAPE, "labels": {"zone": "a b"}}}, "invalid label value 'a b'"),
    ("label-not-string", {"node": {**SHAPE, "labels": {"zone": 1}}}, "in node.labels: keys and values must be strings"),
    ("labels-not-mapping", {"node": {**SHAPE, "labels": ["a"]}}, "invalid node.labels ['a']: expected a mapping"),
    (
        "negative-run-seconds",
        {"node": SHAPE, "run_seconds": -1},
        "invalid run_seconds -1: expected a finite number of at least 0",
    ),
    (
        "string-run-seconds",
        {"node": SHAPE, "run_seconds": "5s"},
        "invalid run_seconds '5s': expected a number of at least 0",
    ),
    (
        "bool-pending-seconds",
        {"node": SHAPE, "pending_seconds": True},
        "invalid pending_seconds True: expected a number",
    ),
    (
        "zero-backoff",
        {"node": SHAPE, "restart_backoff_seconds": 0},
        "invalid restart_backoff_seconds 0: expected a finite number above 0",
    ),
    (
        "negative-max-restarts",
        {"node": SHAPE, "max_restarts": -1},
        "invalid max_restarts -1: expected a whole number of at least 0",
    ),
    (
        "fail-replicas-string",
        {"node": SHAPE, "fail_replicas": "1,2"},
        "invalid fail_replicas '1,2': expected a list of global",
    ),
    ("fail-replica-negative", {"node": SHAPE, "fail_replicas": [-1]}, "invalid replica index -1 in fail_replicas"),
    ("fail-replica-bool", {"node": SHAPE, "fail_replicas": [True]}, "invalid replica index True in fail_replicas"),
    (
        "fail-attempts-zero",
        {"node": SHAPE, "fail_replicas": {"3": 0}},
        "invalid fail_replicas['3'] 0: expected a whole number of at least 1",
    ),
    (
        "fail-index-written-twice",
        {"node": SHAPE, "fail_replicas": {3: 1, "3": 2}},
        "duplicate replica index 3 in fail_replicas",
    ),
    ("unreachable-string", {"node": SHAPE, "unreachable": "yes"}, "invalid unreachable 'yes': expected true or false"),
]


@pytest.mark.parametrize(("config", "message"), [case[1:] for case in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS])
def test_config_rejected(config, message):
    with pytest.raises(ConfigError) as caught:
        SimulatedClusterManager.validate_config(config)

    assert message in str(caught.value)


def test_config_rejected_by_constructor():
    with pytest.raises(ConfigError, match="missing node layout"):
        SimulatedClusterManager("sim", {})


def test_config_lists_every_unknown_field():
    with pytest.raises(ConfigError) as caught:
        parse_config({"node": SHAPE, "run_second": 1, "pendingSecond": 1})

    assert "unknown field 'run_second' in config (did you mean 'run_seconds'?)" in str(caught.value)
    assert "unknown field 'pendingSecond' in config (did you mean 'pending_seconds'?)" in str(caught.value)
