"""Per-node capacity and allocatable resources from Slurm's node records, and GRES strings.

The manager's `nodes()` calls `node_resources`; `gpu_gres` turns a replica's GPU request into
the `--gres` value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from skyshift_core.objects import NodeResources, ResourceList
from skyshift_slurm.records import NodeRecord

# Base states and flags of nodes that take no new work (sinfo(1), "NODE STATE CODES"). A drained
# or draining node carries the flag `drain`. sinfo prints a drained idle node as `idle+drain`,
# and slurmrestd as state IDLE with flag DRAIN.
EXCLUDED_STATES = frozenset(
    {"down", "drained", "draining", "fail", "failing", "future", "unknown", "maint", "reserved", "inval"}
)
EXCLUDED_FLAGS = frozenset(
    {
        "down",
        "drain",
        "drained",
        "draining",
        "fail",
        "failing",
        "maint",
        "reserved",
        "not_responding",
        "no_respond",
        "powered_down",
        "powering_down",
        "power_down",
        "reboot_requested",
        "reboot_issued",
        "invalid_reg",
    }
)

# One GRES entry: name[:type]:count[(details)], for example gpu:a100:4(S:0-1) or gpu:2.
_GRES_ENTRY = re.compile(r"^(?P<name>[^:()]+)(?::(?P<type>[^:()]+))?:(?P<count>\d+)(?P<suffix>[KMGTP]?)(?:\(.*\))?$")
_SUFFIX_FACTOR = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}


def is_schedulable(node: NodeRecord) -> bool:
    """Return False for nodes that are down, drained, failing, in maintenance, reserved or not responding."""
    return node.state not in EXCLUDED_STATES and not (node.flags & EXCLUDED_FLAGS)


def node_resources(records: Iterable[NodeRecord]) -> dict[str, NodeResources]:
    """Capacity and allocatable resources of each schedulable node, memory and disk in MiB.

    Allocatable is what is free now: CPUs neither allocated nor otherwise unusable, RealMemory
    minus AllocMem, and each GPU type's count minus its used count. Slurm does not account for
    --tmp, so disk is the node's TmpDisk in both. A replica gets whole CPUs (`--cpus-per-task` is
    at least 1), so the nodes report a CPU allocation unit of 1, and the scheduler rounds CPU
    requests up to whole ones.
    """
    nodes = {}
    for record in records:
        if not is_schedulable(record):
            continue
        total = parse_gpus(record.gres)
        used = parse_gpus(record.gres_used)
        free = {name: max(0, count - used.get(name, 0)) for name, count in total.items()}
        capacity = ResourceList(
            cpus=record.cpus,
            memory=record.memory_mb,
            disk=record.tmp_disk_mb,
            gpus=sum(total.values()),
            accelerators=_typed(total),
        )
        allocatable = ResourceList(
            cpus=max(0, record.cpus - record.cpus_allocated - record.cpus_other),
            memory=max(0, record.memory_mb - record.memory_allocated_mb),
            disk=record.tmp_disk_mb,
            gpus=sum(free.values()),
            accelerators=_typed(free),
        )
        nodes[record.name] = NodeResources(capacity=capacity, allocatable=allocatable, cpu_allocation_unit=1)
    return nodes


def parse_gpus(gres: str) -> dict[str, int]:
    """Return GPU counts by type from a GRES string; untyped GPUs are under the key "".

    `gpu:a100:4(S:0-1),gpu:t4:2,shard:8` gives {"a100": 4, "t4": 2}. Other GRES are left out.
    """
    counts: dict[str, int] = {}
    for entry in _split_gres(gres):
        match = _GRES_ENTRY.match(entry)
        if match is None or match["name"] != "gpu":
            continue
        count = int(match["count"]) * _SUFFIX_FACTOR[match["suffix"]]
        kind = match["type"] or ""
        counts[kind] = counts.get(kind, 0) + count
    return counts


def gpu_gres(gpus: int, accelerators: Mapping[str, int], known_types: Iterable[str] = ()) -> str | None:
    """Return the --gres value for a replica's GPUs: `gpu:2`, or `gpu:a100:2` per accelerator type.

    Slurm compares GRES types case-sensitively and sites usually write them in lower case, while
    SkyShift manifests write `A100`. A type is therefore spelt as the nodes spell it when the
    nodes have it in any case (`known_types`), and as written otherwise.
    """
    if not gpus:
        return None
    if not accelerators:
        return f"gpu:{gpus}"
    spelling = {kind.lower(): kind for kind in known_types if kind}
    return ",".join(f"gpu:{spelling.get(name.lower(), name)}:{count}" for name, count in sorted(accelerators.items()))


def _typed(counts: Mapping[str, int]) -> dict[str, int]:
    # SkyShift writes accelerator types in upper case (A100, H100), as SkyPilot does; Slurm sites
    # mostly write them in lower case, so the report uses SkyShift's spelling.
    typed: dict[str, int] = {}
    for kind, count in counts.items():
        if kind and count:
            typed[kind.upper()] = typed.get(kind.upper(), 0) + count
    return typed


def _split_gres(gres: str) -> list[str]:
    """Split at commas outside parentheses: `gpu:a100:2(S:0,1),gpu:t4:1` has two entries."""
    entries, depth, current = [], 0, ""
    for character in gres:
        if character == "(":
            depth += 1
        elif character == ")":
            depth = max(0, depth - 1)
        if character == "," and depth == 0:
            entries.append(current.strip())
            current = ""
            continue
        current += character
    if current.strip():
        entries.append(current.strip())
    return [entry for entry in entries if entry not in ("(null)", "")]
