"""The in-memory state of one simulated cluster: nodes, submitted work, and a clock-driven event queue.

SimulatedClusterManager calls this module; nothing here is async and nothing runs. Time advances
only when a caller observes the cluster. Then `advance` replays, in time order, every replica event
due by the clock's current reading. So the outcome at a given time does not depend on how often the
cluster was polled before.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from skyshift_core.cluster_manager import WorkStatus, WorkUnit
from skyshift_core.objects import NodeResources, ResourceList, RestartPolicy, TaskStatus
from skyshift_core.objects.quantity import format_mebibytes

from skyshift_simulated.config import FailurePlan, JobSettings, SimulatedConfig

logger = logging.getLogger(__name__)

# Backoff before restart n (1-based) is restart_backoff_seconds * 2**(n-1), capped at five minutes
# as the kubelet caps its container restart backoff (Kubernetes docs, "Pod Lifecycle").
MAX_BACKOFF_SECONDS = 300.0
FAILED_EXIT_CODE = 1


class ReplicaPhase(Enum):
    UNSCHEDULABLE = "Unschedulable"  # Waiting for a node with room; reserves nothing.
    STARTING = "Starting"  # Placed on a node, and starts after pending_seconds.
    RUNNING = "Running"
    BACKOFF = "BackOff"  # Exited with a failure, and restarts on the same node after a delay.
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


# Phases in which a replica's request counts against its node's capacity.
HOLDING_PHASES = frozenset({ReplicaPhase.STARTING, ReplicaPhase.RUNNING, ReplicaPhase.BACKOFF})
TERMINAL_PHASES = frozenset({ReplicaPhase.SUCCEEDED, ReplicaPhase.FAILED})


@dataclass
class Replica:
    index: int
    phase: ReplicaPhase = ReplicaPhase.UNSCHEDULABLE
    node: str | None = None
    restarts: int = 0
    # Exit code of the last finished attempt.
    exit_code: int | None = None
    # Exit code the running attempt will end with, decided when it starts.
    planned_exit_code: int | None = None
    reason: str = ""
    message: str = ""
    # Incremented whenever the replica's next event is queued, so stale queue entries are skipped.
    event_token: int = 0


@dataclass
class LogLine:
    time: float
    replica: int
    text: str


@dataclass
class LogSlice:
    lines: list[LogLine]
    # Position to pass as `start` next time to get only newer lines.
    next_start: int
    # Whether every selected replica has ended, so no more lines will come.
    ended: bool


@dataclass
class Work:
    """One submitted share: the unit's replicas and the settings in force when it was submitted."""

    key: str
    sequence: int
    manager_job_id: str
    job: str
    request: ResourceList
    restart_policy: RestartPolicy
    run_seconds: float
    pending_seconds: float
    fail_replicas: FailurePlan
    max_restarts: int
    restart_backoff_seconds: float
    replicas: dict[int, Replica] = field(default_factory=dict)
    # Chronological, append-only: lines are added while events are replayed in time order.
    log: list[LogLine] = field(default_factory=list)


class SimulatedCluster:
    """Nodes and work of one simulated cluster, shared by every manager instance of that cluster.

    Methods take an internal lock, so managers on different threads or event loops may share it.
    """

    def __init__(self, name: str, config: SimulatedConfig, clock: Callable[[], float]):
        self.name = name
        self.config = config
        self.clock = clock
        self.reachable = not config.unreachable
        self._lock = threading.RLock()
        # Latest time replayed; never moves backwards, even if a replacement clock does.
        self._time = clock()
        self._works: dict[str, Work] = {}
        self._works_by_sequence: dict[int, Work] = {}
        self._sequence = itertools.count(1)
        # Heap of (due time, work sequence, replica index, event token).
        self._events: list[tuple[float, int, int, int]] = []

    def apply_config(self, config: SimulatedConfig) -> None:
        """Take new settings for work submitted from now on; the node layout must be unchanged."""
        with self._lock:
            if config.nodes != self.config.nodes:
                raise ValueError(f"simulated cluster {self.name!r}: the node layout cannot change in place")
            self.config = config
            self.reachable = not config.unreachable

    # -----------------------------------------------------------------------------------------
    # Observation
    # -----------------------------------------------------------------------------------------

    def advance(self) -> float:
        """Replay every event due by the clock's current reading; return the simulated time."""
        with self._lock:
            self._time = max(self._time, self.clock())
            while self._events and self._events[0][0] <= self._time:
                due, sequence, index, token = heapq.heappop(self._events)
                work = self._works_by_sequence.get(sequence)
                if work is None:
                    continue  # Deleted since the event was queued.
                replica = work.replicas[index]
                if replica.event_token != token:
                    continue
                self._fire(work, replica, due)
            return self._time

    def nodes(self) -> dict[str, NodeResources]:
        with self._lock:
            self.advance()
            allocated = self._allocated()
            return {
                node.name: NodeResources(
                    capacity=node.capacity.model_copy(deep=True),
                    allocatable=node.capacity.subtract(allocated[node.name]),
                    labels=dict(node.labels),
                )
                for node in self.config.nodes
            }

    def statuses(self) -> dict[str, WorkStatus]:
        with self._lock:
            self.advance()
            return {key: self._status(work) for key, work in self._works.items()}

    def log_lines(self, key: str, start: int = 0, replica: int | None = None) -> LogSlice | None:
        """Return the work's log lines from position `start`, optionally of one replica only.

        None when no work has this key (never submitted, or deleted)."""
        with self._lock:
            self.advance()
            work = self._works.get(key)
            if work is None:
                return None
            lines = work.log[start:]
            replicas = list(work.replicas.values())
            if replica is not None:
                lines = [line for line in lines if line.replica == replica]
                replicas = [work.replicas[replica]] if replica in work.replicas else []
            ended = all(item.phase in TERMINAL_PHASES for item in replicas)
            return LogSlice(lines=lines, next_start=len(work.log), ended=ended)

    def replica_indices(self, key: str) -> list[int] | None:
        with self._lock:
            work = self._works.get(key)
            return sorted(work.replicas) if work is not None else None

    # -----------------------------------------------------------------------------------------
    # Changes
    # -----------------------------------------------------------------------------------------

    def submit(self, unit: WorkUnit, settings: JobSettings) -> tuple[WorkStatus, bool]:
        """Create the work for `unit`, or find it by `unit.key`; return its status and whether it is new."""
        with self._lock:
            now = self.advance()
            existing = self._works.get(unit.key)
            if existing is not None:
                return self._status(existing), False

            # The work keeps the settings in force now, so a later config change leaves it alone.
            sequence = next(self._sequence)
            work = Work(
                key=unit.key,
                sequence=sequence,
                manager_job_id=f"sim-{sequence}",
                job=f"{unit.job.metadata.namespace or 'default'}/{unit.job.metadata.name}",
                request=unit.job.spec.resources.model_copy(deep=True),
                restart_policy=RestartPolicy(unit.job.spec.restart_policy),
                run_seconds=_first_set(settings.run_seconds, self.config.run_seconds),
                pending_seconds=_first_set(settings.pending_seconds, self.config.pending_seconds),
                fail_replicas=_first_set(settings.fail_replicas, self.config.fail_replicas),
                max_restarts=self.config.max_restarts,
                restart_backoff_seconds=self.config.restart_backoff_seconds,
            )
            for index in sorted(unit.replica_indices):
                work.replicas[index] = Replica(index=index)
            self._works[work.key] = work
            self._works_by_sequence[sequence] = work

            # Place what fits now; a replica with pending_seconds 0 starts at once.
            self._place_waiting(now)
            self.advance()
            return self._status(work), True

    def delete(self, key: str) -> bool:
        """Remove the work and free what it held; return whether it existed."""
        with self._lock:
            now = self.advance()
            work = self._works.pop(key, None)
            if work is None:
                return False
            del self._works_by_sequence[work.sequence]
            # Waiting replicas of other work may fit in the room this work held.
            self._place_waiting(now)
            self.advance()
            return True

    def cancel(self, key: str) -> bool:
        """End the work's replicas that have not finished as Failed, keeping the work and its log;
        return whether the work exists."""
        with self._lock:
            now = self.advance()
            work = self._works.get(key)
            if work is None:
                return False
            for replica in work.replicas.values():
                if replica.phase in TERMINAL_PHASES:
                    continue
                # A queued start, end or restart of the replica is skipped from now on.
                replica.event_token += 1
                replica.planned_exit_code = None
                self._log(work, replica, now, "cancelled")
                self._end(work, replica, now, ReplicaPhase.FAILED, "Cancelled", "cancelled by SkyShift")
            self.advance()
            return True

    # -----------------------------------------------------------------------------------------
    # Events
    # -----------------------------------------------------------------------------------------

    def _fire(self, work: Work, replica: Replica, now: float) -> None:
        if replica.phase is ReplicaPhase.STARTING:
            self._start_attempt(work, replica, now)
        elif replica.phase is ReplicaPhase.BACKOFF:
            replica.restarts += 1
            self._start_attempt(work, replica, now)
        elif replica.phase is ReplicaPhase.RUNNING:
            self._finish_attempt(work, replica, now)

    def _start_attempt(self, work: Work, replica: Replica, now: float) -> None:
        replica.phase = ReplicaPhase.RUNNING
        replica.reason = ""
        replica.message = f"running on node {replica.node}"
        if replica.restarts:
            self._log(work, replica, now, f"restarted on {replica.node} (restart {replica.restarts})")
        else:
            self._log(work, replica, now, f"started on {replica.node}")

        # The attempt's outcome is fixed now. An Always replica that is not set to fail never ends.
        failing = work.fail_replicas.fails(replica.index, attempt=replica.restarts)
        replica.planned_exit_code = FAILED_EXIT_CODE if failing else 0
        if failing or work.restart_policy is not RestartPolicy.ALWAYS:
            self._schedule(work, replica, now + work.run_seconds)

    def _finish_attempt(self, work: Work, replica: Replica, now: float) -> None:
        code = replica.planned_exit_code if replica.planned_exit_code is not None else 0
        replica.exit_code = code
        replica.planned_exit_code = None
        self._log(work, replica, now, f"finished with exit code {code}")

        if code == 0:
            self._end(
                work, replica, now, ReplicaPhase.SUCCEEDED, "Completed", f"exited with code 0 on node {replica.node}"
            )
            return
        if work.restart_policy is RestartPolicy.NEVER:
            self._end(
                work, replica, now, ReplicaPhase.FAILED, "Error", f"exited with code {code}; restart_policy is Never"
            )
            return
        if work.restart_policy is RestartPolicy.ON_FAILURE and replica.restarts >= work.max_restarts:
            self._end(
                work,
                replica,
                now,
                ReplicaPhase.FAILED,
                "BackoffLimitExceeded",
                f"exited with code {code} after {replica.restarts} restarts; the limit is {work.max_restarts}",
            )
            return

        # OnFailure below its limit, or Always: restart on the same node after a growing delay.
        delay = min(work.restart_backoff_seconds * 2**replica.restarts, MAX_BACKOFF_SECONDS)
        next_restart = replica.restarts + 1
        of_limit = f" of {work.max_restarts}" if work.restart_policy is RestartPolicy.ON_FAILURE else ""
        replica.phase = ReplicaPhase.BACKOFF
        replica.reason = "BackOff"
        replica.message = f"exited with code {code}; restart {next_restart}{of_limit} in {delay:g}s"
        self._log(work, replica, now, f"restarting in {delay:g}s (restart {next_restart}{of_limit})")
        self._schedule(work, replica, now + delay)

    def _end(self, work: Work, replica: Replica, now: float, phase: ReplicaPhase, reason: str, message: str) -> None:
        replica.phase = phase
        replica.reason = reason
        replica.message = message
        logger.debug(
            "Replica %d of %s on simulated cluster %s ended: %s.", replica.index, work.job, self.name, phase.value
        )
        # The request no longer counts against the node, so waiting replicas may fit now.
        self._place_waiting(now)

    def _schedule(self, work: Work, replica: Replica, due: float) -> None:
        replica.event_token += 1
        heapq.heappush(self._events, (due, work.sequence, replica.index, replica.event_token))

    def _log(self, work: Work, replica: Replica, now: float, text: str) -> None:
        work.log.append(LogLine(now, replica.index, f"replica {replica.index} on {self.name}: {text}"))

    # -----------------------------------------------------------------------------------------
    # Placement
    # -----------------------------------------------------------------------------------------

    def _allocated(self) -> dict[str, ResourceList]:
        """Sum, per node, the requests of the replicas placed on it that have not ended."""
        allocated = {node.name: ResourceList() for node in self.config.nodes}
        for work in self._works.values():
            for replica in work.replicas.values():
                if replica.phase in HOLDING_PHASES and replica.node is not None:
                    allocated[replica.node] = allocated[replica.node].add(work.request)
        return allocated

    def _place_waiting(self, now: float) -> None:
        """Place waiting replicas first-fit onto nodes in config order.

        Work is visited in submission order and replicas by index. A replica that does not fit is
        skipped, so a smaller one behind it can still be placed."""
        waiting = [
            (work, replica)
            for work in self._works.values()
            for replica in work.replicas.values()
            if replica.phase is ReplicaPhase.UNSCHEDULABLE
        ]
        if not waiting:
            return
        allocated = self._allocated()
        free = {node.name: node.capacity.subtract(allocated[node.name]) for node in self.config.nodes}

        for work, replica in waiting:
            node = next((name for name, room in free.items() if room.fits(work.request)), None)
            if node is None:
                replica.reason = "Unschedulable"
                replica.message = self._unschedulable_message(work.request)
                continue
            free[node] = free[node].subtract(work.request)
            replica.node = node
            replica.phase = ReplicaPhase.STARTING
            replica.reason = "Starting"
            replica.message = f"placed on node {node}"
            logger.debug(
                "Placed replica %d of %s on node %s of simulated cluster %s.", replica.index, work.job, node, self.name
            )
            self._schedule(work, replica, now + work.pending_seconds)

    def _unschedulable_message(self, request: ResourceList) -> str:
        count = len(self.config.nodes)
        requested = describe_resources(request)
        if not any(node.capacity.fits(request) for node in self.config.nodes):
            return f"0/{count} nodes can hold {requested} even when empty; the replica will never start here"
        return f"0/{count} nodes have {requested} free; waiting for running replicas to end"

    # -----------------------------------------------------------------------------------------
    # Status
    # -----------------------------------------------------------------------------------------

    def _status(self, work: Work) -> WorkStatus:
        tasks = {str(index): _task_status(replica) for index, replica in sorted(work.replicas.items())}
        return WorkStatus(key=work.key, tasks=tasks, manager_job_ids=[work.manager_job_id])


def _task_status(replica: Replica) -> TaskStatus:
    # A replica between restarts reports Running, as a Kubernetes pod in CrashLoopBackOff does,
    # with reason BackOff and the last exit code.
    state = {
        ReplicaPhase.UNSCHEDULABLE: "Pending",
        ReplicaPhase.STARTING: "Pending",
        ReplicaPhase.RUNNING: "Running",
        ReplicaPhase.BACKOFF: "Running",
        ReplicaPhase.SUCCEEDED: "Succeeded",
        ReplicaPhase.FAILED: "Failed",
    }[replica.phase]
    exit_code = replica.exit_code if replica.phase in TERMINAL_PHASES or replica.phase is ReplicaPhase.BACKOFF else None
    return TaskStatus(
        state=state, exit_code=exit_code, reason=replica.reason, message=replica.message, restarts=replica.restarts
    )


def describe_resources(resources: ResourceList) -> str:
    """Render a request for messages: `cpus=2, memory=4Gi, gpus=1 (A100=1)`."""
    parts = [f"cpus={resources.cpus:g}"]
    if resources.memory:
        parts.append(f"memory={format_mebibytes(resources.memory)}")
    if resources.disk:
        parts.append(f"disk={format_mebibytes(resources.disk)}")
    if resources.gpus:
        types = ", ".join(f"{name}={count}" for name, count in sorted(resources.accelerators.items()))
        parts.append(f"gpus={resources.gpus}" + (f" ({types})" if types else ""))
    return ", ".join(parts)


def _first_set(value, default):
    return default if value is None else value
