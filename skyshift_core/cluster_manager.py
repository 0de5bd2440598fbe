"""The ClusterManager interface: the core's public contract for cluster backends.

A backend plugin (Kubernetes, Slurm, simulated, ...) subclasses ClusterManager and registers it
under the `skyshift.cluster_managers` entry-point group. Nothing outside a backend plugin knows a
backend's API: the skylet of each attached cluster calls these methods and nothing else.

Every method may be called again after a crash of the caller, so each one is idempotent: submit
finds an earlier submission of the same (job uid, placement generation) instead of submitting twice,
and delete of something already gone succeeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, AsyncIterator, ClassVar, Mapping

from skyshift_core.objects import Job, NodeResources, Service, TaskStatus


class ClusterManagerError(Exception):
    """A backend call failed. `retryable` is False when the same call cannot succeed later.

    The skylet does not read `retryable` and makes a failed call again in a later cycle either way.
    So `submit` reports a share that the backend rejects for good with `WorkStatus.rejected` instead
    of raising."""

    def __init__(self, message: str, *, retryable: bool = True):
        super().__init__(message)
        self.retryable = retryable


class ConfigError(ValueError):
    """A Cluster's `spec.config` is invalid for this backend; the message names the field."""


@dataclass(frozen=True)
class WorkUnit:
    """One Job's share on one cluster: what `submit` creates.

    Replicas are numbered globally across clusters: this share runs the replicas whose indices
    are in `replica_indices` (for example 0-2 here and 3-4 on another cluster), out of
    `total_replicas`. The indices are usually contiguous but need not be after a re-placement.
    """

    job: Job
    cluster: str
    replica_indices: tuple[int, ...]
    total_replicas: int
    generation: int

    @property
    def replicas(self) -> int:
        return len(self.replica_indices)

    @property
    def key(self) -> str:
        """Identity of this submission: the Job's uid and the share's generation. Backends store it
        with the work (job name, comment or label) so a restarted skylet finds it again."""
        return f"{self.job.metadata.uid}-{self.generation}"

    def environment(self, replica_index: int) -> dict[str, str]:
        """Environment of one replica: SkyShift's variables, then the Job's envs."""
        variables = {
            "SKYSHIFT_JOB": self.job.metadata.name,
            "SKYSHIFT_NAMESPACE": self.job.metadata.namespace or "default",
            "SKYSHIFT_CLUSTER": self.cluster,
            "SKYSHIFT_REPLICA_INDEX": str(replica_index),
            "SKYSHIFT_REPLICAS": str(self.total_replicas),
        }
        return {**variables, **self.job.spec.envs}


# Reason of every task of a share that its backend rejected (see `WorkStatus.rejected`). The core
# reserves it: `skyshift logs` reads it from the Job to tell a rejected replica from one without output.
SUBMIT_REJECTED = "SubmitRejected"


@dataclass
class WorkStatus:
    """The status a backend reports for one submitted share."""

    key: str
    # Replica index (global, as a string) -> state. States use the Job phase vocabulary:
    # Pending, Running, Succeeded, Failed, plus backend detail in reason and message.
    tasks: dict[str, TaskStatus] = field(default_factory=dict)
    manager_job_ids: list[str] = field(default_factory=list)
    # Things the user should know about the work, such as "image ubuntu:22.04 was not used: the
    # cluster runs commands on the host"; the skylet records each as a Warning Event on the Job.
    warnings: list[str] = field(default_factory=list)
    # True when the backend found only part of the share's objects, for example because the skylet
    # stopped between two of a share's creates. The skylet then calls `submit` again, which
    # creates what is missing.
    partial: bool = False
    # The backend's own error text when `submit` found that the backend rejects the share and
    # submitting it again cannot change that (an invalid partition, a manifest that the API server
    # finds invalid). None when the work was created or found. Build such a status with `rejected`.
    rejection: str | None = None

    @classmethod
    def rejected(cls, unit: WorkUnit, message: str) -> WorkStatus:
        """Build the status of a share that the backend rejected: every replica Failed, with reason
        SUBMIT_REJECTED and `message`, the backend's own error text (such as sbatch's stderr)."""
        tasks = {
            str(index): TaskStatus(state="Failed", reason=SUBMIT_REJECTED, message=message)
            for index in unit.replica_indices
        }
        return cls(key=unit.key, tasks=tasks, rejection=message)


@dataclass
class ClusterHealth:
    ready: bool
    reason: str = ""
    message: str = ""


class ClusterManager:
    """Base class of every backend. One instance serves one attached cluster.

    `name` is the cluster's name in SkyShift; `config` is its `spec.config`, already checked by
    `validate_config`. Methods are async and must not block the event loop: run blocking client
    libraries and subprocesses through asyncio's executor or subprocess support.
    """

    # Short description shown by `skyshift plugins list`.
    provides: ClassVar[str] = "cluster manager"
    # Optional capabilities; the skylet checks these before calling the matching methods.
    supports_logs: ClassVar[bool] = False
    supports_exec: ClassVar[bool] = False
    supports_services: ClassVar[bool] = False
    supports_watch: ClassVar[bool] = False
    # How many `submit` calls the skylet may run at once, each for a different key. Raise it when
    # the backend takes concurrent submissions well.
    max_parallel_submits: ClassVar[int] = 1

    def __init__(self, name: str, config: Mapping[str, Any]):
        self.name = name
        self.config = dict(config)

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """Check a Cluster's spec.config and return it normalized; raise ConfigError naming the field."""
        return dict(config)

    async def start(self) -> None:
        """Open connections; called once before any other method. Failures are retried by the skylet."""

    async def stop(self) -> None:
        """Release connections; called when the Cluster is deleted or the skylet stops."""

    async def health(self) -> ClusterHealth:
        """Report whether the cluster accepts work now. Must not raise for an unreachable cluster:
        return ready=False with the reason instead."""
        raise NotImplementedError

    async def nodes(self) -> dict[str, NodeResources]:
        """Capacity and allocatable (free now) resources per schedulable node.

        Nodes that are down, drained, cordoned or otherwise closed to new work are left out."""
        raise NotImplementedError

    async def submit(self, unit: WorkUnit) -> WorkStatus:
        """Create the work for one share, or find it if a submission with `unit.key` exists.

        Must be idempotent: calling it twice with the same unit creates the work once.

        When the backend rejects the share for a reason that no retry can fix, return
        `WorkStatus.rejected(unit, message)` with the backend's own error text. The skylet then
        records a Warning Event `SubmitRejected` instead of `Submitted`, marks the share's replicas
        Failed with that text, and does not submit the share again while its placement stays the
        same. Raise ClusterManagerError for a failure that may pass, such as an unreachable cluster:
        the skylet records a Warning Event `SubmitFailed` and submits again in its next cycle."""
        raise NotImplementedError

    async def delete(self, key: str) -> None:
        """Remove the work submitted under `key`; succeed when it is already gone."""
        raise NotImplementedError

    async def statuses(self) -> dict[str, WorkStatus]:
        """Status of every share SkyShift submitted to this cluster, keyed by `WorkUnit.key`,
        gathered with as few backend queries as possible (one per cycle, never one per job)."""
        raise NotImplementedError

    async def watch_statuses(self) -> AsyncIterator[dict[str, WorkStatus]]:
        """For backends with `supports_watch`: yield the full status map whenever it changes."""
        raise NotImplementedError
        yield {}  # pragma: no cover - marks this as an async generator

    async def logs(
        self, key: str, replica: int | None = None, *, follow: bool = False, tail: int | None = None
    ) -> AsyncIterator[tuple[int, str]]:
        """For backends with `supports_logs`: yield (replica index, line) pairs of the work's output."""
        raise NotImplementedError
        yield (0, "")  # pragma: no cover

    async def create_service(self, service: Service, selector_keys: list[str]) -> list[str]:
        """For backends with `supports_services`: expose matching replicas; return the addresses."""
        raise NotImplementedError

    async def delete_service(self, service: Service) -> None:
        raise NotImplementedError
