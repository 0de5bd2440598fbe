"""Validation of a simulated cluster's `spec.config` and of a Job's `spec.backend.simulated` section.

`SimulatedClusterManager.validate_config` calls `parse_config`; the manager calls `parse_job_settings`
on submit. Every error is a ConfigError whose message names the field and the expected form.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from skyshift_core.cluster_manager import ConfigError
from skyshift_core.objects import ResourceList, validate_name
from skyshift_core.objects.quantity import parse_mebibytes
from skyshift_core.objects.selectors import validate_label_key, validate_label_value

DEFAULT_RUN_SECONDS = 1.0
DEFAULT_PENDING_SECONDS = 0.0
DEFAULT_MAX_RESTARTS = 3
DEFAULT_RESTART_BACKOFF_SECONDS = 1.0
# Every node is kept in memory and reported on each capacity poll, so a typo such as
# `node_count: 1000000000` is rejected instead of exhausting the skylet's memory.
MAX_NODE_COUNT = 100_000

CONFIG_FIELDS = (
    "node_count",
    "node",
    "nodes",
    "run_seconds",
    "pending_seconds",
    "fail_replicas",
    "max_restarts",
    "restart_backoff_seconds",
    "unreachable",
)
NODE_FIELDS = ("cpus", "memory", "disk", "gpus", "accelerators", "labels")
JOB_FIELDS = ("run_seconds", "pending_seconds", "fail_replicas")

NODE_EXAMPLE = "{cpus: 8, memory: 32Gi}"
LAYOUT_EXAMPLE = f"node_count: 2 with node: {NODE_EXAMPLE}, or nodes: [{{name: a, cpus: 8, memory: 32Gi}}]"

# Accelerator types carry an upper-case letter or a digit (A100, H100, T4, L40S, TPU-v4), as the core
# requires of Job resources. An all-lower-case unknown key is reported as a misspelt field.
_ACCELERATOR = re.compile(r"^(?=.*[A-Z0-9])[A-Za-z][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class NodeShape:
    """One simulated node: its name, capacity and labels."""

    name: str
    capacity: ResourceList
    labels: dict[str, str] = field(default_factory=dict)

    def to_dict(self, *, with_name: bool = True) -> dict[str, Any]:
        shape: dict[str, Any] = {"name": self.name} if with_name else {}
        shape.update(
            cpus=self.capacity.cpus,
            memory=self.capacity.memory,
            disk=self.capacity.disk,
            gpus=self.capacity.gpus,
            accelerators=dict(self.capacity.accelerators),
            labels=dict(self.labels),
        )
        return shape


@dataclass(frozen=True)
class FailurePlan:
    """Injected failures: global replica index -> number of failing attempts, None for every attempt."""

    failing_attempts: dict[int, int | None] = field(default_factory=dict)
    # Whether the config wrote a list (every attempt fails), kept so `to_config` returns the same form.
    written_as_list: bool = True

    def fails(self, replica_index: int, attempt: int) -> bool:
        """Return whether attempt `attempt` (0 for the first run) of a replica exits with code 1."""
        if replica_index not in self.failing_attempts:
            return False
        limit = self.failing_attempts[replica_index]
        return limit is None or attempt < limit

    def to_config(self) -> list[int] | dict[str, int | None]:
        if self.written_as_list:
            return sorted(self.failing_attempts)
        # String keys, because a config stored as JSON cannot keep integer keys.
        return {str(index): self.failing_attempts[index] for index in sorted(self.failing_attempts)}


@dataclass(frozen=True)
class SimulatedConfig:
    """A validated simulated cluster config."""

    nodes: tuple[NodeShape, ...]
    run_seconds: float = DEFAULT_RUN_SECONDS
    pending_seconds: float = DEFAULT_PENDING_SECONDS
    fail_replicas: FailurePlan = field(default_factory=FailurePlan)
    max_restarts: int = DEFAULT_MAX_RESTARTS
    restart_backoff_seconds: float = DEFAULT_RESTART_BACKOFF_SECONDS
    unreachable: bool = False
    # Set when the config used `node_count` with one `node` shape, so `to_dict` keeps that form.
    node_count: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the normalized config: sizes in MiB, defaults filled in, accepted again unchanged."""
        if self.node_count is not None:
            layout: dict[str, Any] = {"node_count": self.node_count, "node": self.nodes[0].to_dict(with_name=False)}
        else:
            layout = {"nodes": [node.to_dict() for node in self.nodes]}
        return {
            **layout,
            "run_seconds": self.run_seconds,
            "pending_seconds": self.pending_seconds,
            "fail_replicas": self.fail_replicas.to_config(),
            "max_restarts": self.max_restarts,
            "restart_backoff_seconds": self.restart_backoff_seconds,
            "unreachable": self.unreachable,
        }


@dataclass(frozen=True)
class JobSettings:
    """A Job's own timing and failures on simulated clusters; None means the cluster's setting."""

    run_seconds: float | None = None
    pending_seconds: float | None = None
    fail_replicas: FailurePlan | None = None


def parse_config(config: Mapping[str, Any] | None) -> SimulatedConfig:
    """Validate a simulated cluster's `spec.config`; raise ConfigError naming the field."""
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        raise ConfigError(f"invalid simulated cluster config {config!r}: expected a mapping such as {LAYOUT_EXAMPLE}")
    values, _ = _split_fields(config, CONFIG_FIELDS, "config")

    nodes, node_count = _parse_layout(values)
    return SimulatedConfig(
        nodes=nodes,
        node_count=node_count,
        run_seconds=_number(values, "run_seconds", "run_seconds", default=DEFAULT_RUN_SECONDS),
        pending_seconds=_number(values, "pending_seconds", "pending_seconds", default=DEFAULT_PENDING_SECONDS),
        fail_replicas=_failure_plan(values.get("fail_replicas"), "fail_replicas"),
        max_restarts=_integer(values, "max_restarts", "max_restarts", default=DEFAULT_MAX_RESTARTS, minimum=0),
        restart_backoff_seconds=_number(
            values,
            "restart_backoff_seconds",
            "restart_backoff_seconds",
            default=DEFAULT_RESTART_BACKOFF_SECONDS,
            positive=True,
        ),
        unreachable=_boolean(values, "unreachable", "unreachable", default=False),
    )


def parse_job_settings(section: Any, where: str) -> JobSettings:
    """Validate a Job's `spec.backend.simulated` section; `where` prefixes field names in errors."""
    if section is None:
        return JobSettings()
    if not isinstance(section, Mapping):
        raise ConfigError(f"invalid {where} {section!r}: expected a mapping with some of {', '.join(JOB_FIELDS)}")
    values, _ = _split_fields(section, JOB_FIELDS, where)
    return JobSettings(
        run_seconds=_number(values, "run_seconds", f"{where}.run_seconds", default=None),
        pending_seconds=_number(values, "pending_seconds", f"{where}.pending_seconds", default=None),
        fail_replicas=(
            _failure_plan(values["fail_replicas"], f"{where}.fail_replicas") if "fail_replicas" in values else None
        ),
    )


# ---------------------------------------------------------------------------------------------
# Node layout
# ---------------------------------------------------------------------------------------------


def _parse_layout(values: dict[str, Any]) -> tuple[tuple[NodeShape, ...], int | None]:
    """Return the nodes, and the node count when the config used the `node_count` form."""
    has_list = "nodes" in values
    has_shape = "node" in values or "node_count" in values
    if has_list and has_shape:
        raise ConfigError(
            f"invalid node layout: set either nodes, or node_count with node, not both ({LAYOUT_EXAMPLE})"
        )
    if not has_list and not has_shape:
        raise ConfigError(f"missing node layout: set {LAYOUT_EXAMPLE}")

    if has_list:
        return _parse_node_list(values["nodes"]), None

    if "node" not in values:
        raise ConfigError(f"missing node: node_count needs the shape of each node, such as node: {NODE_EXAMPLE}")
    count = _integer(values, "node_count", "node_count", default=1, minimum=1)
    if count > MAX_NODE_COUNT:
        raise ConfigError(f"invalid node_count {count}: expected at most {MAX_NODE_COUNT} nodes")
    shape = _parse_node(values["node"], "node", named=False)
    nodes = tuple(NodeShape(f"node-{index}", shape.capacity, dict(shape.labels)) for index in range(count))
    return nodes, count


def _parse_node_list(nodes: Any) -> tuple[NodeShape, ...]:
    if not isinstance(nodes, Sequence) or isinstance(nodes, (str, bytes)):
        raise ConfigError(
            f"invalid nodes {nodes!r}: expected a list of node shapes such as [{{name: a, cpus: 8, memory: 32Gi}}]"
        )
    if not nodes:
        raise ConfigError("invalid nodes []: expected at least one node")
    if len(nodes) > MAX_NODE_COUNT:
        raise ConfigError(f"invalid nodes: {len(nodes)} nodes listed, expected at most {MAX_NODE_COUNT}")

    parsed = tuple(_parse_node(node, f"nodes[{index}]", named=True) for index, node in enumerate(nodes))
    first_index: dict[str, int] = {}
    for index, node in enumerate(parsed):
        if node.name in first_index:
            raise ConfigError(
                f"duplicate node name {node.name!r} in nodes[{first_index[node.name]}] and nodes[{index}]: "
                "node names must be unique"
            )
        first_index[node.name] = index
    return parsed


def _parse_node(data: Any, where: str, *, named: bool) -> NodeShape:
    """Validate one node shape; accelerator types may be written as extra keys (`A100: 4`)."""
    if not isinstance(data, Mapping):
        example = "{name: a, cpus: 8, memory: 32Gi}" if named else NODE_EXAMPLE
        raise ConfigError(f"invalid {where} {data!r}: expected a mapping such as {example}")
    fields = ("name", *NODE_FIELDS) if named else NODE_FIELDS
    values, accelerator_keys = _split_fields(data, fields, where, accept_accelerators=True)

    name = ""
    if named:
        if "name" not in values:
            raise ConfigError(f"missing {where}.name: every entry of nodes needs a name, such as name: gpu-1")
        if not isinstance(values["name"], str):
            raise ConfigError(f"invalid {where}.name {values['name']!r}: expected a string such as 'gpu-1'")
        try:
            name = validate_name(values["name"], f"{where}.name")
        except ValueError as error:
            raise ConfigError(str(error)) from error

    if "cpus" not in values:
        raise ConfigError(f"missing {where}.cpus: expected the number of CPUs of the node, such as cpus: 8")
    cpus = _number(values, "cpus", f"{where}.cpus", default=None, positive=True)
    if "memory" not in values:
        raise ConfigError(f"missing {where}.memory: expected MiB as a number or a quantity such as memory: 32Gi")
    memory = _size(values["memory"], f"{where}.memory")
    if memory <= 0:
        raise ConfigError(f"invalid {where}.memory {values['memory']!r}: expected a size above zero")
    disk = _size(values["disk"], f"{where}.disk") if "disk" in values else 0.0
    accelerators = _accelerators(values.get("accelerators"), accelerator_keys, where)
    gpus = _gpus(values, accelerators, where)
    labels = _labels(values.get("labels"), f"{where}.labels")

    capacity = ResourceList(cpus=cpus, memory=memory, disk=disk, gpus=gpus, accelerators=accelerators)
    return NodeShape(name=name, capacity=capacity, labels=labels)


def _accelerators(explicit: Any, extra_keys: dict[str, Any], where: str) -> dict[str, int]:
    """Merge an `accelerators` mapping with accelerator types written as extra keys."""
    if explicit is None:
        explicit = {}
    if not isinstance(explicit, Mapping):
        raise ConfigError(f"invalid {where}.accelerators {explicit!r}: expected a mapping such as {{A100: 4}}")
    merged: dict[str, int] = {}
    for name, count in [*explicit.items(), *extra_keys.items()]:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"invalid accelerator type {name!r} in {where}: expected a name such as 'A100'")
        if name in merged:
            raise ConfigError(f"duplicate accelerator type {name!r} in {where}: write it once")
        count = _integer({name: count}, name, f"{where}.{name}", default=None, minimum=0)
        if count:
            merged[name] = count
    return merged


def _gpus(values: dict[str, Any], accelerators: dict[str, int], where: str) -> int:
    """Return the node's GPU count: `gpus` if set, else the sum of its accelerator types."""
    typed = sum(accelerators.values())
    if "gpus" not in values:
        return typed
    gpus = _integer(values, "gpus", f"{where}.gpus", default=None, minimum=0)
    if gpus < typed:
        raise ConfigError(
            f"invalid {where}.gpus {gpus}: the accelerator types add up to {typed}; "
            "set gpus to at least their sum or leave it out"
        )
    return gpus


def _labels(labels: Any, where: str) -> dict[str, str]:
    if labels is None:
        return {}
    if not isinstance(labels, Mapping):
        raise ConfigError(f"invalid {where} {labels!r}: expected a mapping of strings such as {{zone: a}}")
    checked: dict[str, str] = {}
    for key, value in labels.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ConfigError(f"invalid label {key!r}: {value!r} in {where}: keys and values must be strings")
        try:
            checked[validate_label_key(key)] = validate_label_value(value)
        except ValueError as error:
            raise ConfigError(f"{error} in {where}") from error
    return checked


# ---------------------------------------------------------------------------------------------
# Failure injection
# ---------------------------------------------------------------------------------------------


def _failure_plan(value: Any, where: str) -> FailurePlan:
    """Parse `[1, 3]` (these replicas fail every attempt) or `{1: 2}` (replica 1 fails twice, then succeeds)."""
    if value is None:
        return FailurePlan()
    if isinstance(value, Mapping):
        attempts: dict[int, int | None] = {}
        for key, limit in value.items():
            index = _replica_index(key, where)
            if index in attempts:
                raise ConfigError(f"duplicate replica index {index} in {where}: write it once")
            if limit is not None:
                limit = _integer({"limit": limit}, "limit", f"{where}[{key!r}]", default=None, minimum=1)
            attempts[index] = limit
        return FailurePlan(attempts, written_as_list=False)
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return FailurePlan({_replica_index(item, where): None for item in value}, written_as_list=True)
    raise ConfigError(
        f"invalid {where} {value!r}: expected a list of global replica indices such as [0, 3], "
        "or a mapping from index to the number of failing attempts such as {3: 2}"
    )


def _replica_index(value: Any, where: str) -> int:
    # Mapping keys arrive as strings once a config has been stored as JSON.
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ConfigError(f"invalid replica index {value!r} in {where}: expected a whole number of at least 0")


# ---------------------------------------------------------------------------------------------
# Fields and scalar values
# ---------------------------------------------------------------------------------------------


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.title() for part in rest)


def _split_fields(
    data: Mapping[str, Any], fields: Sequence[str], where: str, *, accept_accelerators: bool = False
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return (known fields by snake_case name, accelerator-type keys); reject unknown keys by name.

    camelCase spellings (`nodeCount`) are accepted, as everywhere in SkyShift manifests.
    """
    spellings = {name: name for name in fields} | {_camel(name): name for name in fields}
    values: dict[str, Any] = {}
    accelerators: dict[str, Any] = {}
    unknown: list[str] = []
    for key, value in data.items():
        name = spellings.get(key) if isinstance(key, str) else None
        if name is not None:
            if name in values:
                raise ConfigError(f"duplicate field {name!r} in {where}: it is written twice (once as {key!r})")
            values[name] = value
        elif accept_accelerators and isinstance(key, str) and _ACCELERATOR.match(key):
            accelerators[key] = value
        else:
            unknown.append(str(key))
    if unknown:
        problems = [f"unknown field '{key}' in {where}{_closest(key, fields)}" for key in unknown]
        hint = ", or an accelerator type such as 'A100: 4'" if accept_accelerators else ""
        raise ConfigError("; ".join(problems) + f"; valid fields: {', '.join(sorted(fields))}{hint}")
    return values, accelerators


def _closest(name: str, choices: Sequence[str]) -> str:
    matches = difflib.get_close_matches(name.lower(), list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{matches[0]}'?)" if matches else ""


def _number(values: Mapping[str, Any], key: str, where: str, *, default: Any, positive: bool = False) -> Any:
    """Return a finite number of at least 0 (above 0 with `positive`), or `default` when absent."""
    if key not in values:
        return default
    value = values[key]
    bound = "above 0" if positive else "of at least 0"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"invalid {where} {value!r}: expected a number {bound}")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ConfigError(f"invalid {where} {value!r}: expected a finite number {bound}")
    return float(value)


def _integer(values: Mapping[str, Any], key: str, where: str, *, default: Any, minimum: int) -> Any:
    """Return a whole number of at least `minimum`, or `default` when absent."""
    if key not in values:
        return default
    value = values[key]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"invalid {where} {values[key]!r}: expected a whole number of at least {minimum}")
    return value


def _boolean(values: Mapping[str, Any], key: str, where: str, *, default: bool) -> bool:
    if key not in values:
        return default
    value = values[key]
    if not isinstance(value, bool):
        raise ConfigError(f"invalid {where} {value!r}: expected true or false")
    return value


def _size(value: Any, where: str) -> float:
    try:
        return parse_mebibytes(value, where)
    except ValueError as error:
        raise ConfigError(str(error)) from error
