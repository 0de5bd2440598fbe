"""SimulatedClusterManager, the `simulated` entry point of `skyshift.cluster_managers`, and the
process-wide registry of simulated clusters that lets a restarted skylet find its earlier work.

The skylet of each attached cluster calls the manager. State lives in memory only: a manager
created again in the same process, under the same cluster name and node layout, reuses the
cluster's state from the registry, while a new process starts with empty clusters.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, ClassVar

from skyshift_core.cluster_manager import (
    ClusterHealth,
    ClusterManager,
    ClusterManagerError,
    ConfigError,
    WorkStatus,
    WorkUnit,
)
from skyshift_core.objects import NodeResources

from skyshift_simulated.cluster import LogLine, SimulatedCluster
from skyshift_simulated.config import SimulatedConfig, parse_config, parse_job_settings

logger = logging.getLogger(__name__)

# Entry-point name, and the key of a Job's own settings under `spec.backend`.
MANAGER_NAME = "simulated"

_registry: dict[str, SimulatedCluster] = {}
_registry_lock = threading.Lock()


def registered_cluster(name: str) -> SimulatedCluster | None:
    """Return the state of the simulated cluster `name` in this process, or None."""
    with _registry_lock:
        return _registry.get(name)


def forget_cluster(name: str) -> bool:
    """Drop the simulated cluster `name` and all its work; return whether it existed.

    Managers that still hold the cluster keep using it, but new managers start empty."""
    with _registry_lock:
        return _registry.pop(name, None) is not None


def clear_registry() -> None:
    """Drop every simulated cluster of this process, for test isolation."""
    with _registry_lock:
        _registry.clear()


def _attach(name: str, config: SimulatedConfig, clock: Callable[[], float] | None) -> SimulatedCluster:
    """Return the registered state of cluster `name`, or register new state.

    Registered state is reused when its node layout equals the new config's. Its other settings
    are replaced by the new config's and apply to work submitted afterwards. A different node layout
    is a different cluster, so the old state and its work are dropped."""
    with _registry_lock:
        cluster = _registry.get(name)
        if cluster is not None and cluster.config.nodes == config.nodes:
            cluster.apply_config(config)
            if clock is not None:
                cluster.clock = clock
            logger.info("Reusing simulated cluster %s from this process's registry, with its earlier work.", name)
            return cluster
        if cluster is not None:
            logger.warning(
                "Simulated cluster %s is registered with a different node layout; dropping its earlier work "
                "and starting empty.",
                name,
            )
        cluster = SimulatedCluster(name, config, clock if clock is not None else time.monotonic)
        _registry[name] = cluster
        return cluster


class SimulatedClusterManager(ClusterManager):
    """A cluster that runs nothing: it places replicas first-fit on configured nodes and moves their
    tasks Pending -> Running -> Succeeded or Failed as its clock advances.

    `clock` returns seconds as a float (default `time.monotonic`); tests pass a ManualClock. When
    the cluster is already registered in this process, `clock=None` keeps the cluster's clock.
    """

    provides: ClassVar[str] = "simulated clusters that run nothing, for tests and local trials"
    supports_logs: ClassVar[bool] = True
    # Real seconds between polls while `logs(follow=True)` waits for new lines; tests may set 0.
    follow_poll_seconds: float = 0.1

    def __init__(self, name: str, config: Mapping[str, Any], *, clock: Callable[[], float] | None = None):
        parsed = parse_config(config)
        super().__init__(name, parsed.to_dict())
        self.cluster = _attach(name, parsed, clock)

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """Check a simulated cluster's spec.config and return it normalized (sizes in MiB, defaults set)."""
        return parse_config(config).to_dict()

    def set_reachable(self, reachable: bool) -> None:
        """Make the cluster reachable or not; while unreachable, health is not ready and calls raise.

        Replicas keep running meanwhile, as on a real cluster that only lost its connection."""
        self.cluster.reachable = bool(reachable)
        logger.info("Simulated cluster %s is now %s.", self.name, "reachable" if reachable else "unreachable")

    async def start(self) -> None:
        self._check_reachable()

    async def stop(self) -> None:
        # NOTE: the cluster's state stays in the registry so a restarted skylet finds its work;
        # call forget_cluster(name) to drop it.
        logger.debug("Stopped manager of simulated cluster %s; its state stays registered.", self.name)

    async def health(self) -> ClusterHealth:
        if not self.cluster.reachable:
            return ClusterHealth(ready=False, reason="Unreachable", message=self._unreachable_message())
        count = len(self.cluster.config.nodes)
        return ClusterHealth(ready=True, reason="Ready", message=f"{count} simulated node{'s' if count != 1 else ''}")

    async def nodes(self) -> dict[str, NodeResources]:
        self._check_reachable()
        return self.cluster.nodes()

    async def submit(self, unit: WorkUnit) -> WorkStatus:
        """Place the share's replicas, or return the status of the work already submitted under
        `unit.key`. Invalid `spec.backend.simulated` settings give a `WorkStatus.rejected` status
        that names the field, as a real backend rejects a request that does not suit it."""
        self._check_reachable()
        job = f"{unit.job.metadata.namespace or 'default'}/{unit.job.metadata.name}"
        indices = list(unit.replica_indices)
        if any(index < 0 for index in indices) or len(set(indices)) != len(indices):
            raise ClusterManagerError(
                f"invalid work unit {unit.key} of job {job}: replica_indices {indices} must be distinct "
                "and not negative",
                retryable=False,
            )
        try:
            settings = parse_job_settings(unit.job.spec.backend.get(MANAGER_NAME), f"spec.backend.{MANAGER_NAME}")
        except ConfigError as error:
            logger.info("Simulated cluster %s rejected work %s of job %s: %s", self.name, unit.key, job, error)
            return WorkStatus.rejected(unit, f"job {job}: {error}")

        status, created = self.cluster.submit(unit, settings)
        if created:
            logger.info(
                "Submitted %s of job %s to simulated cluster %s as %s.",
                describe_indices(indices),
                job,
                self.name,
                unit.key,
            )
        else:
            logger.debug("Work %s of job %s already exists on simulated cluster %s.", unit.key, job, self.name)
        return status

    async def delete(self, key: str) -> None:
        self._check_reachable()
        if self.cluster.delete(key):
            logger.info("Deleted work %s from simulated cluster %s.", key, self.name)

    async def cancel(self, key: str) -> None:
        """End the work's unfinished replicas as Failed, reason Cancelled; its log stays readable."""
        self._check_reachable()
        if self.cluster.cancel(key):
            logger.info("Cancelled work %s on simulated cluster %s.", key, self.name)

    async def statuses(self) -> dict[str, WorkStatus]:
        self._check_reachable()
        return self.cluster.statuses()

    async def logs(
        self, key: str, replica: int | None = None, *, follow: bool = False, tail: int | None = None
    ) -> AsyncIterator[tuple[int, str]]:
        """Yield (replica index, line) in time order. `tail` keeps the last lines of each replica.

        With `follow`, wait for new lines until the selected replicas have all ended or the work is
        deleted. An Always replica never ends, so following it lasts until the caller stops or the work is deleted."""
        self._check_reachable()
        indices = self.cluster.replica_indices(key)
        if indices is None:
            raise ClusterManagerError(
                f"no work with key {key!r} on simulated cluster {self.name!r} in this process: it was never "
                "submitted or was deleted, or it runs in another process. A simulated cluster keeps its work in "
                "the memory of the process that runs it (the controller manager), so an API server in another "
                "process cannot read its logs",
                retryable=False,
            )
        if replica is not None and replica not in indices:
            raise ClusterManagerError(
                f"replica {replica} is not part of work {key!r} on simulated cluster {self.name!r}, "
                f"which contains {describe_indices(indices)}",
                retryable=False,
            )
        if tail is not None and tail < 0:
            raise ClusterManagerError(f"invalid tail {tail}: expected a number of lines >= 0", retryable=False)

        current = self.cluster.log_lines(key, replica=replica)
        if current is None:
            return
        for line in _last_lines_per_replica(current.lines, tail):
            yield line.replica, line.text

        while follow and not current.ended:
            await asyncio.sleep(self.follow_poll_seconds)
            self._check_reachable()
            current = self.cluster.log_lines(key, current.next_start, replica=replica)
            if current is None:
                return  # Deleted while being followed.
            for line in current.lines:
                yield line.replica, line.text

    def _check_reachable(self) -> None:
        if not self.cluster.reachable:
            raise ClusterManagerError(self._unreachable_message(), retryable=True)

    def _unreachable_message(self) -> str:
        return (
            f"simulated cluster {self.name!r} is unreachable because its config sets unreachable: true or "
            "set_reachable(False) was called; call set_reachable(True) to reach it again"
        )


def describe_indices(indices: list[int]) -> str:
    """Render replica indices as ranges for messages: `replicas 0-2, 5`, or `no replicas`."""
    if not indices:
        return "no replicas"
    ordered = sorted(indices)
    ranges = []
    start = previous = ordered[0]
    for index in [*ordered[1:], None]:
        if index is not None and index == previous + 1:
            previous = index
            continue
        ranges.append(f"{start}-{previous}" if previous != start else str(start))
        if index is not None:
            start = previous = index
    noun = "replica" if len(ordered) == 1 else "replicas"
    return f"{noun} {', '.join(ranges)}"


def _last_lines_per_replica(lines: list[LogLine], tail: int | None) -> list[LogLine]:
    """Keep the last `tail` lines of each replica, in their original order; all lines when tail is None."""
    if tail is None:
        return lines
    remaining: dict[int, int] = {}
    for line in lines:
        remaining[line.replica] = remaining.get(line.replica, 0) + 1
    last_lines = []
    for line in lines:
        if remaining[line.replica] <= tail:
            last_lines.append(line)
        remaining[line.replica] -= 1
    return last_lines
