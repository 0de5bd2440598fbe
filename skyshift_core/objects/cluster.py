"""The Cluster kind: an attached cluster, its manager backend and its observed capacity."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any, ClassVar, Literal

from pydantic import Field, StrictBool, field_validator

from skyshift_core.objects.base import SkyModel
from skyshift_core.objects.meta import Condition, Object
from skyshift_core.objects.resources import ResourceList


class ClusterPhase(str, Enum):
    INIT = "INIT"
    PROVISIONING = "PROVISIONING"
    READY = "READY"
    ERROR = "ERROR"
    DELETING = "DELETING"


class ClusterSpec(SkyModel):
    # Entry-point name of a plugin in the `skyshift.cluster_managers` group, such as `slurm`.
    manager: str
    # Backend-specific settings; the manager plugin validates them when it is installed.
    config: dict[str, Any] = Field(default_factory=dict)
    # A cordoned cluster keeps its work but receives no new placements, as `kubectl cordon`.
    cordoned: StrictBool = False

    @field_validator("manager")
    @classmethod
    def _check_manager(cls, manager: str) -> str:
        if not manager or not manager.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"invalid manager {manager!r}: expected a plugin name such as 'slurm' or 'kubernetes'")
        return manager


class NodeResources(SkyModel):
    capacity: ResourceList = Field(default_factory=ResourceList)
    # What is free for new work now: capacity minus what running work holds.
    allocatable: ResourceList = Field(default_factory=ResourceList)
    labels: dict[str, str] = Field(default_factory=dict)
    # The smallest number of CPUs that the node gives one replica, 0 when any fraction works. Slurm
    # gives whole CPUs (1), so the scheduler counts a request of 0.5 or 0 CPUs as 1 CPU there.
    cpu_allocation_unit: float = Field(default=0, ge=0)


class ClusterStatus(SkyModel):
    phase: ClusterPhase = ClusterPhase.INIT
    conditions: list[Condition] = Field(default_factory=list)
    nodes: dict[str, NodeResources] = Field(default_factory=dict)
    # When the manager last reported capacity; the scheduler ignores stale reports.
    observed_time: datetime | None = None

    def total_capacity(self) -> ResourceList:
        total = ResourceList()
        for node in self.nodes.values():
            total = total.add(node.capacity)
        return total

    def total_allocatable(self) -> ResourceList:
        total = ResourceList()
        for node in self.nodes.values():
            total = total.add(node.allocatable)
        return total


class Cluster(Object):
    plural: ClassVar[str] = "clusters"
    singular: ClassVar[str] = "cluster"
    short_names: ClassVar[tuple[str, ...]] = ("cl",)
    namespaced: ClassVar[bool] = False
    table_columns: ClassVar[tuple[str, ...]] = ("MANAGER", "STATUS", "CPUS", "MEMORY", "GPUS", "AGE")

    kind: Literal["Cluster"] = "Cluster"
    spec: ClusterSpec
    status: ClusterStatus = Field(default_factory=ClusterStatus)

    def table_row(self) -> dict[str, str]:
        from skyshift_core.objects.quantity import format_mebibytes

        free = self.status.total_allocatable()
        total = self.status.total_capacity()
        phase = self.status.phase.value + (",Cordoned" if self.spec.cordoned else "")
        return {
            "MANAGER": self.spec.manager,
            "STATUS": phase,
            "CPUS": f"{free.cpus:g}/{total.cpus:g}",
            "MEMORY": f"{format_mebibytes(free.memory)}/{format_mebibytes(total.memory)}",
            "GPUS": f"{free.gpus}/{total.gpus}",
        }
