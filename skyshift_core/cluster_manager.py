"""The ClusterManager interface: the core's public contract for cluster backends.

A backend plugin (Kubernetes, Slurm, simulated, ...) subclasses ClusterManager and registers it
under the `skyshift.cluster_managers` entry-point group. Nothing outside a backend plugin knows a
backend's API: the skylet of each attached cluster and the API server call these methods and
nothing else. `skyshift_core.testing.conformance.ClusterManagerConformance` checks a backend
against this contract.

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
    """A Cluster's `spec.config` or a Job's `spec.backend.<manager>` section is invalid for this
    backend; the message names the field and what was expected.

    The API server then responds with 422 Invalid. Any other exception from `validate_config` or
    `validate_job_settings` counts as a bug in the plugin: the API server responds with 500 and an
    error that names the plugin, the method and the exception."""


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
    # Replica index (global, as a string) -> its TaskStatus, one entry per replica of the share.
    # `state` must be a value of `skyshift_core.objects.JobPhase` spelled exactly: Pending,
    # Running, Succeeded or Failed. The job status controller and the scheduler compare the text,
    # so any other state counts as Pending. Backend detail goes in `reason` and `message`, the
    # exit code of the last ended attempt in `exit_code`, and the number of restarts in `restarts`.
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


@dataclass(frozen=True)
class ExecResult:
    """Output and exit code of a command that `ClusterManager.exec` ran in a replica. With a TTY,
    stderr is merged into stdout."""

    stdout: str
    stderr: str
    exit_code: int


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

    Two processes create instances. The skylet of the cluster, in the controller manager, builds
    one and keeps it until the Cluster is deleted or its spec changes, and then builds a new one.
    The API server builds a fresh instance for each `skyshift logs` request and calls only
    `start`, `logs` and `stop` on it. So several instances of one cluster can exist at the same
    time, in one process or several. An instance may keep caches in memory, but what a new
    instance must find (which work is whose) lives in the backend, in job names or labels. The
    classmethods `validate_config` and `validate_job_settings` run in the API server, without an
    instance.
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
        """Check a Cluster's spec.config and return it normalized; raise ConfigError naming the field.

        The API server calls it before it stores a Cluster of this manager, when the plugin is
        installed where the API server runs, and stores the config as written. The skylet and the
        API server call it again before they build an instance, and pass the returned config to
        the constructor."""
        return dict(config)

    @classmethod
    def validate_job_settings(cls, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Check a Job's settings for this backend and return them normalized; raise ConfigError
        naming the field.

        `settings` is the Job's section `spec.backend.<name>`, where <name> is the entry-point
        name of this plugin, such as `spec.backend.slurm`. The API server calls this method before
        it stores a Job that has such a section, when the plugin is installed where the API server
        runs, so a mistake fails `skyshift apply` with a 422 error. The API server stores the
        section as written and does not use the returned value. So `submit` reads the section
        again from `unit.job.spec.backend`. There it may also find settings that no API server
        checked, because the plugin was not installed there, and it reports invalid ones with
        `WorkStatus.rejected`.

        The default accepts any section and returns it unchanged. Override it when the backend
        reads settings from `spec.backend`."""
        return dict(settings)

    def _not_implemented(self, method: str) -> NotImplementedError:
        return NotImplementedError(
            f"cluster manager {type(self).__module__}.{type(self).__qualname__} does not implement {method}(); "
            "this is a bug in the plugin: report it to its authors"
        )

    async def start(self) -> None:
        """Open connections. Called once per instance, before any other method: by the skylet when
        it builds the instance, and by the API server for each `skyshift logs` request, so one
        process may call it many times on different instances. When it raises, the skylet records
        the error on the Cluster's status and calls `start` again on the same instance after a
        backoff."""

    async def stop(self) -> None:
        """Release what `start` opened. Called when the skylet stops (the Cluster was deleted or
        changed, or the controller manager stops) and at the end of each logs request. The API
        server calls it even when `start` raised, so it must cope with a partial start. Its errors
        are logged and otherwise ignored."""

    async def health(self) -> ClusterHealth:
        """Report whether the cluster accepts work now. Must not raise for an unreachable cluster:
        return ready=False with the reason instead."""
        raise self._not_implemented("health")

    async def nodes(self) -> dict[str, NodeResources]:
        """Capacity and allocatable (free now) resources per schedulable node, keyed by node name,
        with memory and disk in MiB.

        Nodes that are down, drained, cordoned or otherwise closed to new work are left out."""
        raise self._not_implemented("nodes")

    async def submit(self, unit: WorkUnit) -> WorkStatus:
        """Create the work for one share, or find it if a submission with `unit.key` exists.

        Must be idempotent: calling it twice with the same unit creates the work once.

        The backend runs each replica under `unit.job.spec.restart_policy`, because the core
        restarts no replica itself. Never runs a replica once. OnFailure runs it again after a
        non-zero exit, up to a limit that the backend may set (such as a `max_restarts` config
        field). Always runs it again after any exit.

        When the backend rejects the share for a reason that no retry can fix, return
        `WorkStatus.rejected(unit, message)` with the backend's own error text. The skylet then
        records a Warning Event `SubmitRejected` instead of `Submitted`, marks the share's replicas
        Failed with that text, and does not submit the share again while its placement stays the
        same. Raise ClusterManagerError for a failure that may pass, such as an unreachable cluster:
        the skylet records a Warning Event `SubmitFailed` and submits again in its next cycle."""
        raise self._not_implemented("submit")

    async def delete(self, key: str) -> None:
        """Remove the work submitted under `key` and stop its running replicas; succeed when it is
        already gone or was never submitted.

        Once it returns, `statuses` stops listing `key`, at once or within a short time (the
        conformance suite waits up to its `finish_timeout`). The skylet calls `delete` again in
        every cycle for as long as `statuses` lists the key."""
        raise self._not_implemented("delete")

    async def statuses(self) -> dict[str, WorkStatus]:
        """Return the status of every share submitted to this cluster, keyed by `WorkUnit.key`,
        gathered with as few backend queries as possible (one per cycle, never one per job).

        The skylet deletes every key listed here that no Job places on this cluster. So list only
        the work of this Cluster, found by `self.name` in job names, labels or comments: other
        SkyShift Clusters may share the backend (two partitions of one Slurm cluster, or one
        Kubernetes cluster attached twice), and work that SkyShift did not create must never be
        listed. Keep listing ended work until `delete`, because the skylet submits a missing share
        again while its Job has not ended.

        Task states follow the rules at `WorkStatus.tasks`. Report a replica that will run again
        as Running (reason BackOff, as Kubernetes reports a container in CrashLoopBackOff) or
        Pending, never as Failed. Under restart_policy Never or OnFailure, the job status
        controller marks the Job Failed for good as soon as one replica is Failed. `restarts`
        counts the replica's restarts, and the skylet records a Restarted Event when it grows."""
        raise self._not_implemented("statuses")

    async def watch_statuses(self) -> AsyncIterator[dict[str, WorkStatus]]:
        """For backends with `supports_watch`: yield the full status map whenever it changes."""
        raise self._not_implemented("watch_statuses")
        yield {}  # pragma: no cover - marks this as an async generator

    async def logs(
        self, key: str, replica: int | None = None, *, follow: bool = False, tail: int | None = None
    ) -> AsyncIterator[tuple[int, str]]:
        """For backends with `supports_logs`: yield (replica index, line) pairs of the work's output.

        The API server calls it on a fresh instance for `skyshift logs`, and passes `replica` only
        to the clusters whose share has that replica.

        - A line is one line of output without its line ending; the CLI adds one.
        - With `replica`, yield that replica's lines only: the backend does the filtering. With
          None, yield the lines of every replica of the share. One replica's lines come in the
          order they were written.
        - With `tail`, yield only the last `tail` lines of each selected replica. The API server
          rejects a negative value before the call.
        - Without `follow`, yield the output written so far and return. With `follow`, also yield
          new lines until every selected replica has ended for good (it will not restart) or the
          work is deleted. A replica under restart_policy Always never ends, so following it lasts
          until the client disconnects. The API server then cancels the task that iterates, which
          raises CancelledError at the generator's current await: release what it opened in a
          `finally` block.
        - Raise ClusterManagerError(retryable=False), with a message that names the key, when no
          work has `key` (never submitted, deleted, or purged by the backend) or when `replica` is
          not part of it. The API server sends the message to the client as this cluster's error,
          and the lines of other clusters still come. It sends any other exception as well, with
          its type name, and logs a warning."""
        raise self._not_implemented("logs")
        yield (0, "")  # pragma: no cover

    async def cancel(self, key: str) -> None:
        """End the replicas of work `key` that have not finished, and keep the work itself, so that
        `statuses` and `logs` still report the finished ones. Kubernetes keeps the pods of a failed
        Job the same way.

        The skylet calls it for the work of a Job that has failed, then calls `delete` when the
        Job is deleted. Cancelling work that has ended or is gone does nothing. A cancelled replica
        must not restart, and `statuses` reports it as Failed. The default calls `delete`, which
        loses the output of the work's finished replicas, so override it where the backend can end
        replicas and keep their records (Slurm's scancel, a suspended Kubernetes Job)."""
        await self.delete(key)

    async def exec(
        self, key: str, replica: int, command: list[str], tty: bool = False, stdin: bool | str = False
    ) -> ExecResult:
        """For backends with `supports_exec`: run `command` once in a running replica and return its
        output and exit code, for `skyshift exec`.

        The CLI calls it on a fresh instance in its own process, with the Cluster's config, so
        that config must work on the user's machine. `stdin` may be a string to write to the
        command's standard input, which is then closed (True sends nothing and closes it). Raise
        ClusterManagerError(retryable=False), with a message that names the replica and its state,
        when no work has `key`, `replica` is not part of it or the replica is not running."""
        raise self._not_implemented("exec")

    async def exec_interactive(self, key: str, replica: int, command: list[str], *, tty: bool, stdin: bool) -> int:
        """Optional, for `skyshift exec -i/-t`: connect this process's terminal to `command` in a
        running replica, and return the command's exit code. Only a CLI calls it."""
        raise self._not_implemented("exec_interactive")

    async def create_service(self, service: Service, selector_keys: list[str]) -> list[str]:
        """For backends with `supports_services`: expose matching replicas; return the addresses."""
        raise self._not_implemented("create_service")

    async def delete_service(self, service: Service) -> None:
        raise self._not_implemented("delete_service")
